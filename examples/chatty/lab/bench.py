"""How far does the lab's single server go? A measurement for the lab's first open question.

  python -m examples.chatty.lab.bench [--clients 1 10 100 1000] [--lines 200] [--local-only]

For each number of clients N: one server (server.py, its printing sent to /dev/null),
N client processes that count the lines they get, and one sender pushing M lines
through the server. It reports the time until every client has all M lines, the lines
the server handled per second and the deliveries (N * M) per second: first with the
clients on the server's node, then with them on a second node (a child process).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import actornet
from actornet import Pid
from examples.chatty.lab import server

COOKIE = "bench"
TIMEOUT = 60.0  # seconds a run may take


def counter(report_to: Pid, server_: Any, name: str, lines: int) -> None:
    """A client that joins, counts `lines` chat lines, and says when it has them all."""
    me = actornet.self()
    actornet.send(server_, ("client_join_req", name, me))
    actornet.receive(lambda m: m == ("join", name), timeout=30)
    actornet.send(report_to, ("joined", name))
    seen = 0
    while seen < lines:
        if actornet.receive(timeout=60)[0] == "msg":
            seen += 1
    actornet.send(report_to, ("done", name))


def run(clients: int, lines: int, node: str | None) -> float:
    """Seconds from the first line sent to the last line delivered to the last client."""
    me = actornet.self()
    pid = server.start()
    names = [f"c{i}" for i in range(clients)]
    for name in names:
        actornet.spawn(counter, me, ("myserver", actornet.node()), name, lines, node=node)
    for name in names:
        actornet.receive(equals(("joined", name)), timeout=60)
    t0 = time.perf_counter()
    try:
        for i in range(lines):
            actornet.send(pid, ("send", "bench", str(i)))
        for name in names:
            actornet.receive(equals(("done", name)), timeout=TIMEOUT)
        return time.perf_counter() - t0
    finally:
        ref = actornet.monitor(pid)
        server.stop()
        actornet.receive(lambda m: m[:2] == ("DOWN", ref), timeout=30)


def equals(expected: Any) -> Callable[[Any], bool]:
    """A receive match for one exact message."""
    return lambda m: m == expected


def table(counts: list[int], lines: int, node: str | None) -> None:
    where = "on the server's node" if node is None else f"on another node ({node})"
    print(f"clients {where}, {lines} lines each run:", flush=True)
    print(f"{'clients':>8} {'seconds':>8} {'lines/s':>9} {'deliveries/s':>13}", flush=True)
    for n in counts:
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the server prints every line
                elapsed = run(n, lines, node)
        except actornet.Timeout:
            print(f"{n:>8} did not finish within {TIMEOUT:.0f} s", flush=True)
            continue
        print(f"{n:>8} {elapsed:>8.3f} {lines / elapsed:>9.0f} {n * lines / elapsed:>13.0f}",
              flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.chatty.lab.bench",
                                description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, nargs="+", default=[1, 10, 100, 1000])
    p.add_argument("--lines", type=int, default=200)
    p.add_argument("--local-only", action="store_true", help="skip the two-node runs")
    p.add_argument("--tick-time", type=float, default=4.0,
                   help="seconds of silence after which a node declares the other down")
    args = p.parse_args(argv)
    with actornet.start_node(f"bench{os.getpid()}@127.0.0.1", cookie=COOKIE, port=0,
                             tick_time=args.tick_time):
        table(args.clients, args.lines, None)
        if not args.local_only:
            with other_node(args.tick_time) as node:
                table(args.clients, args.lines, node)
    return 0


@contextlib.contextmanager
def other_node(tick_time: float) -> Iterator[str]:
    """A second node in a child process (``python -m actornet node``), killed at the end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    name = f"benchc{os.getpid()}@127.0.0.1"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    child = subprocess.Popen(
        [sys.executable, "-m", "actornet", "node", "--name", name, "--cookie", COOKIE,
         "--port", str(port), "--tick-time", str(tick_time), "--no-shell"],
        cwd=root, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": root},
    )
    try:
        deadline = time.monotonic() + 20
        while actornet.ping(f"{name}:{port}", timeout=1) != "pong":
            if time.monotonic() > deadline or child.poll() is not None:
                raise RuntimeError(f"the second node {name} did not start")
            time.sleep(0.1)
        yield name
    finally:
        child.kill()
        child.wait(10)


if __name__ == "__main__":
    # Run the module under its real name, so `counter` can be spawned on the other node.
    from examples.chatty.lab.bench import main as bench_main

    sys.exit(bench_main())
