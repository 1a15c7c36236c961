"""``python -m tests.fuzz``: see `tests.fuzz.cli`."""

from tests.fuzz.cli import main

raise SystemExit(main())
