"""``python -m tests.soak --minutes N [--seed S] [--no-chat]``: see `tests.soak`."""

from __future__ import annotations

import sys

from .runner import main

if __name__ == "__main__":
    sys.exit(main())
