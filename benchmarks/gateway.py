"""Gateway: idle users one chat node holds through its gateway, and memory per connection.

The chat side is a real ``python -m examples.chatty node --gateway 0`` (one node, a
private port mapper, no room logs); the harness opens N TCP connections to its
gateway and says ``HELLO userI`` on each (every one a session process with a
nickname registered in ``global_``), then measures the node's resident memory
(``VmRSS``) against before, and checks that a user can still chat through it
while it holds them all (one message round trip).

The baseline is the floor for the same shape: a bare asyncio server (`_FLOOR`, in
a child process) that accepts the connections and keeps each one's reader and
writer, answering one line per connection, with no session and no chat behind it.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import tempfile
import time
from typing import Any

from benchmarks._common import ACTORNET, Children, Config, Sample, free_port, interleave, row

__all__ = ["gateway"]

HOST = "127.0.0.1"
WAIT = 60.0
BASELINE = "bare asyncio server"
_FLOOR = """
import asyncio, sys
held = []
async def main():
    async def accepted(reader, writer):
        held.append((reader, writer))
        await reader.readline()
        writer.write(b"CONNECTED\\n")
    server = await asyncio.start_server(accepted, "127.0.0.1", 0, backlog=1024)
    print("floor", server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def _hold(port: int, n: int) -> tuple[list[Any], float]:
    """Open `n` connections, HELLO on each; the open writers and the seconds it took."""
    started = time.perf_counter()
    writers: list[Any] = []
    batch = 200
    for first in range(0, n, batch):
        async def one(i: int) -> Any:
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(f"HELLO user{i}\n".encode())
            line = await asyncio.wait_for(reader.readline(), WAIT)
            if not line.startswith(b"CONNECTED"):
                raise RuntimeError(f"connection {i}: {line!r}")
            return writer
        writers += await asyncio.gather(*(one(i) for i in range(first, min(n, first + batch))))
    return writers, time.perf_counter() - started


async def _chat(port: int) -> float:
    """Seconds for one user to join a room and have its message acknowledged."""
    reader, writer = await asyncio.open_connection(HOST, port)
    started = time.perf_counter()
    writer.write(b"HELLO probe\n/join calm\nstill serving\n")
    while not (await asyncio.wait_for(reader.readline(), WAIT)).startswith(b"OK sent calm"):
        pass
    took = time.perf_counter() - started
    writer.close()
    return took


def _measure(pid: int, port: int, n: int, chat: bool) -> Sample:
    async def run() -> Sample:
        before = _rss_kib(pid)
        writers, took = await _hold(port, n)
        await asyncio.sleep(0.5)  # let the node settle before reading its memory
        after = _rss_kib(pid)
        sample: Sample = {"connections": float(n), "kib_per_conn": (after - before) / n,
                          "connect_s": took}
        if chat:
            sample["chat_ms"] = 1000 * await _chat(port)
        for w in writers:
            w.close()
        return sample

    return asyncio.run(run())


def gateway(cfg: Config) -> dict[str, Any]:
    """Idle gateway connections one chat node holds, and memory per connection."""
    n = cfg.n(10_000, 500)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < n + 200:
        return {"rows": [], "notes": [f"gateway: skipped: {hard} open files at most here"]}
    epmd_port = free_port()
    with Children() as kids, tempfile.TemporaryDirectory() as data:
        env = {"ACTORNET_EPMD_PORT": str(epmd_port), "ACTORNET_COOKIE": "bench-gateway",
               "CHATTY_DATA_DIR": data, "PYTHONUNBUFFERED": "1"}
        epmd = kids.start([sys.executable, "-m", "actornet.epmd", "--port", str(epmd_port),
                           "--address", HOST], env=env)
        # before any node: one that finds no port mapper starts one of its own, which stays
        epmd.wait_line(r"listening on", WAIT)
        results: dict[str, list[Sample]] = {}

        def actornet_rep(rep: int) -> Sample:
            name = f"benchgw{os.getpid() % 10000}r{rep + 1}"
            node = kids.start([sys.executable, "-m", "examples.chatty", "node", "--name", name,
                               "--data-dir", "none", "--gateway", "0",
                               "--gateway-max-connections", str(n + 100)], env=env)
            port = int(node.wait_line(r"chatty gateway \S+:(\d+)", WAIT).group(1))
            try:
                return _measure(node.proc.pid, port, n, chat=True)
            finally:
                node.close()

        def floor_rep(rep: int) -> Sample:
            floor = kids.start([sys.executable, "-c", _FLOOR], env=env)
            port = int(floor.wait_line(r"floor (\d+)", WAIT).group(1))
            try:
                return _measure(floor.proc.pid, port, n, chat=False)
            finally:
                floor.close()

        reps = Config(quick=cfg.quick, reps=1 if cfg.quick else min(cfg.reps, 3),
                      log=cfg.log)
        results = interleave(reps, {ACTORNET: actornet_rep, BASELINE: floor_rep},
                             warmup={})
    note = (f"{n:,} TCP connections to one chat node's gateway, each a session with a "
            "nickname (HELLO), held idle; growth of the node's VmRSS over the connections")
    return {"rows": [
        row(f"gateway: memory per idle connection ({n:,} held)", "kib_per_conn", "KiB",
            results, higher_is_better=False, note=note),
        row(f"gateway: seconds to connect {n:,} users", "connect_s", "s", results,
            higher_is_better=False, note="HELLO on each, 200 at a time"),
        row(f"gateway: a message round trip while holding {n:,}", "chat_ms", "ms", results,
            higher_is_better=False, note="join a room and have a message acknowledged",
            no_ratio=(BASELINE,)),
    ], "notes": []}
