"""Spawn idle processes in a fresh interpreter: ``python -m benchmarks._spawnworker KIND MODE N``.

KIND is ``actornet`` or ``pykka``. MODE ``rate`` spawns N and reports the rate
and the resident memory each one added; MODE ``max`` spawns until N or the
first failure and reports how many it reached. One JSON line is printed, then
the interpreter exits at once (without joining thousands of threads).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any


def rss_kib() -> int:
    """Resident memory of this process, KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _spawner(kind: str) -> Callable[[], Any]:
    if kind == "actornet":
        import actornet
        from benchmarks._remote import idle

        actornet.Node("spawn@localhost")
        return lambda: actornet.spawn(idle)
    if kind == "pykka":
        import pykka

        class Idle(pykka.ThreadingActor):
            use_daemon_thread = True

        return Idle.start
    raise SystemExit(f"unknown kind {kind!r}")


def main(argv: list[str]) -> int:
    kind, mode, n = argv[0], argv[1], int(argv[2])
    spawn = _spawner(kind)
    for _ in range(20):  # warm up: imports, first thread, allocator arenas
        spawn()
    time.sleep(0.1)
    before = rss_kib()
    reached, error = 0, None
    t0 = time.perf_counter()
    try:
        for _ in range(n):
            spawn()
            reached += 1
    except Exception as e:  # the point of "max": how far it gets
        error = f"{type(e).__name__}: {e}"
    elapsed = time.perf_counter() - t0
    time.sleep(0.3)  # let every new thread block in its receive
    after = rss_kib()
    print(json.dumps({
        "rate": reached / elapsed if elapsed > 0 else 0.0,
        "kib": (after - before) / max(reached, 1),
        "reached": reached,
        "elapsed": elapsed,
        "rss_kib": after,
        "error": error,
        "mode": mode,
    }), flush=True)
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
