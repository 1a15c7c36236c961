"""Lightweight processes in a fresh interpreter: ``python -m benchmarks._lightworker MODE N``.

MODE ``rate`` spawns N idle lightweight processes from a lightweight process
(as Erlang's figure spawns from a process) and reports the rate of the spawn
calls, the rate until all of them are idle in their receive, and the resident
memory each added. MODE ``fill`` does the same to N (a million), then kills
them all and reports how long that took and what memory came back. One JSON
line is printed, then the interpreter exits at once.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from typing import Any

import actornet
from actornet import aio
from benchmarks._spawnworker import rss_kib


async def idle() -> None:
    await aio.receive()


async def _run(mode: str, n: int, parent: actornet.Pid) -> None:
    spawn = actornet.spawn
    warm = [spawn(idle) for _ in range(200)]  # imports, allocator arenas
    await asyncio.sleep(0.05)
    for pid in warm:
        actornet.exit(pid, "kill")
    await asyncio.sleep(0.05)
    gc.collect()
    before = rss_kib()
    t0 = time.perf_counter()
    pids = [spawn(idle) for _ in range(n)]
    t1 = time.perf_counter()
    await asyncio.sleep(0)  # every new task runs to its receive before this returns
    t2 = time.perf_counter()
    after = rss_kib()
    out: dict[str, Any] = {
        "rate": n / (t1 - t0),
        "idle_rate": n / (t2 - t0),
        "kib": (after - before) / n,
        "reached": len(pids),
        "fill_s": t2 - t0,
        "rss_kib": after,
    }
    if mode == "fill":
        t3 = time.perf_counter()
        for pid in pids:
            actornet.exit(pid, "kill")
        await asyncio.sleep(0)  # the cancelled tasks unwind
        while len(asyncio.all_tasks()) > 2:
            await asyncio.sleep(0.01)
        out["kill_s"] = time.perf_counter() - t3
        del pids
        gc.collect()
        out["processes_left"] = len(actornet.processes())
        out["rss_after_kill_kib"] = rss_kib()
    actornet.send(parent, out)


def main(argv: list[str]) -> int:
    mode, n = argv[0], int(argv[1])
    actornet.Node("light@localhost")
    actornet.spawn(_run, mode, n, actornet.self())
    print(json.dumps(actornet.receive(timeout=1800)), flush=True)
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
