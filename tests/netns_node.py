"""A node on a test host (`tests.netns`), driven by the test through its standard input.

The test process lives outside the test hosts' network, so it cannot be a node of their
cluster; it runs functions on the nodes instead. On a host, ``python -m tests.netns_node
--name a@alpha --cookie C [--tick-time T]`` starts the node (registered with the host's
port mapper), prints ``@ready``, then reads requests, one JSON object a line::

    {"id": 1, "fn": "tests.netns_node:nodes", "args": []}

and runs each ``fn(*args)`` in a new process of the node, so the module API acts on it
and a request that waits does not hold up the others. Each answer is one line,
``@{"id": 1, "ok": true, "value": [...]}`` (or ``"ok": false, "error": "..."``). Pids and
refs cross as ``{"$pid": [node, id, creation]}``, tuples as ``{"$tuple": [...]}``, sets as
lists. The node logs (INFO)
on stderr. `Agent` is the test's side of it. The node-side helpers below use
`time.monotonic`, which is the same clock in every network namespace of the machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import actornet

from .helpers import pump_lines
from .netns import WAIT, Host

# -- values across the pipe ------------------------------------------------------------------


def encode(value: Any) -> Any:
    if isinstance(value, actornet.Pid):
        return {"$pid": [value.node, value.id, value.creation]}
    if isinstance(value, actornet.Ref):
        return {"$ref": [value.node, value.id, value.creation]}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, list | set | frozenset):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "$pid" in value:
            return actornet.Pid(*value["$pid"])
        if "$ref" in value:
            return actornet.Ref(*value["$ref"])
        if "$tuple" in value:
            return tuple(decode(v) for v in value["$tuple"])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


# -- the node side ---------------------------------------------------------------------------

_out = threading.Lock()
_watches: dict[str, dict[str, Any]] = {}


def _answer(reply: dict[str, Any]) -> None:
    line = "@" + json.dumps(reply)
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _run(request: dict[str, Any]) -> None:
    module, _, qualname = request["fn"].partition(":")
    try:
        fn: Any = __import__(module, fromlist=["_"])
        for part in qualname.split("."):
            fn = getattr(fn, part)
        value = fn(*decode(request["args"]))
        _answer({"id": request["id"], "ok": True, "value": encode(value)})
    except BaseException as e:  # the test gets it
        _answer({"id": request["id"], "ok": False, "error": f"{type(e).__name__}: {e}"})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.netns_node")
    p.add_argument("--name", required=True)
    p.add_argument("--cookie", required=True)
    p.add_argument("--tick-time", type=float, default=4.0)
    p.add_argument("--port", type=int, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        node = actornet.start_node(args.name, args.cookie, port=args.port,
                                   tick_time=args.tick_time)
    except Exception as e:
        _answer({"id": 0, "ok": False, "error": f"{type(e).__name__}: {e}"})
        return 1
    _answer({"id": 0, "ok": True, "value": node.name})
    for line in sys.stdin:
        node.spawn(_run, json.loads(line))
    node.stop()
    return 0


# Functions the tests run on the nodes (tests.remote has more).


def nodes() -> list[str]:
    return actornet.nodes()


def ping(name: str, timeout: float | None = None) -> str:
    return actornet.ping(name, timeout)


def ping_timed(name: str, timeout: float | None = None) -> tuple[str, float]:
    """`ping`, and how long it took in seconds."""
    t0 = time.monotonic()
    answer = actornet.ping(name, timeout)
    return answer, time.monotonic() - t0


def wait_nodes(want: list[str], timeout: float = WAIT) -> list[str]:
    """Wait until `nodes()` is exactly `want` (sorted); returns it, or raises."""
    deadline = time.monotonic() + timeout
    while sorted(actornet.nodes()) != sorted(want):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nodes() is {actornet.nodes()}, not {sorted(want)}")
        time.sleep(0.01)
    return actornet.nodes()


def watch(key: str, node: str, pids: list[actornet.Pid]) -> None:
    """Watch `node` (monitor_node) and `pids` (a monitor and a link each) from a new
    process; record when each fires, and how (see `watched`). Returns once set."""
    me = actornet.self()
    record: dict[str, Any] = {"events": []}
    _watches[key] = record

    def watcher() -> None:
        actornet.trap_exit(True)
        actornet.monitor_node(node)
        for pid in pids:
            actornet.monitor(pid)
            actornet.link(pid)
        actornet.send(me, ("set", key))
        while True:
            msg = actornet.receive()
            kind = msg[0]
            reason = msg[2] if kind in ("EXIT",) else msg[4] if kind == "DOWN" else None
            record["events"].append([kind, reason, time.monotonic()])

    actornet.spawn(watcher)
    actornet.receive(lambda m: m == ("set", key), timeout=WAIT)


def watched(key: str, count: int, timeout: float = WAIT, extra: float = 0.3) -> list[Any]:
    """The events of watch `key`, ``[kind, reason, monotonic time]``, once there are
    `count` (or `timeout` passed), and `extra` seconds later: one more would be a bug."""
    events = _watches[key]["events"]
    deadline = time.monotonic() + timeout
    while len(events) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    settle = time.monotonic() + extra
    while len(events) == count and time.monotonic() < settle:
        time.sleep(0.005)
    return list(events)


def spawn_waiter() -> actornet.Pid:
    from . import remote

    return actornet.spawn(remote.wait_forever)


def in_order(node: str, count: int) -> bool:
    """Send ``count`` messages to a new process on `node`; whether all arrived, in order."""
    from . import remote

    sink = actornet.spawn(remote.ordered_sink, actornet.self(), node=node)
    blob = b"x" * 100
    for i in range(count):
        actornet.send(sink, ("m", i, blob))
    actornet.send(sink, ("end", count))
    _, n, ok = actornet.receive(lambda m: m[0] == "sink", timeout=WAIT)
    return bool(ok and n == count)


def call_timed(server: Any, request: Any, timeout: float = 30.0) -> list[Any]:
    """``call(server, request)``: ``[outcome, value, monotonic time it ended]``, where
    outcome is "ok" or the exception's type name."""
    try:
        value, outcome = actornet.call(server, request, timeout=timeout), "ok"
    except Exception as e:
        value, outcome = str(e), type(e).__name__
    return [outcome, value, time.monotonic()]


def pending_rpc(key: str, node: str) -> None:
    """Start an `rpc.call` from here that runs a minute on `node`; return once it runs
    there. Its end, ``[outcome, None, monotonic time]``, is recorded under `key` (see
    `watched`): outcome "ok" or the exception's type name."""
    from . import remote

    record: dict[str, Any] = {"events": []}
    _watches[key] = record
    me = actornet.self()

    def caller() -> None:
        try:
            actornet.rpc.call(node, remote.notify_then_sleep, me, 60.0, timeout=90.0)
            outcome = "ok"
        except Exception as e:
            outcome = type(e).__name__
        record["events"].append([outcome, None, time.monotonic()])

    actornet.spawn(caller)
    actornet.receive(lambda m: m == "running", timeout=WAIT)


def send(name: str, node: str, msg: Any) -> None:
    """``send((name, node), msg)``: connects to `node` first if need be."""
    actornet.send((name, node), msg)


def disconnect(node: str) -> None:
    actornet.disconnect_node(node)


def outbound(node: str) -> str:
    """The state of this node's own connection to `node` (up, connecting, down, ...)."""
    return str(actornet.node_info()["connections"].get(node, {}).get("state", ""))


def rpc(node: str, fn: str, *args: Any) -> Any:
    """``rpc.call(node, module:qualname, *args)`` from this node."""
    module, _, qualname = fn.partition(":")
    target: Any = __import__(module, fromlist=["_"])
    for part in qualname.split("."):
        target = getattr(target, part)
    return actornet.rpc.call(node, target, *args)


def pg_view(group: str) -> list[actornet.Pid]:
    from actornet import pg

    return sorted(pg.get_members(group))


def global_view(name: str) -> list[Any]:
    """``[whereis_name(name), whether it is alive]`` as this node sees it."""
    from actornet import global_

    pid = global_.whereis_name(name)
    return [pid, pid is not None and actornet.rpc.call(pid.node, actornet.is_alive, pid)]


# -- the test side ---------------------------------------------------------------------------


class Agent:
    """A `tests.netns_node` process on a test host, and the calls the test makes to it."""

    def __init__(self, host: Host, name: str, cookie: str, *, tick_time: float = 4.0,
                 port: int | None = None) -> None:
        self.host = host
        self.name = name
        args = [sys.executable, "-m", "tests.netns_node", "--name", name, "--cookie", cookie,
                "--tick-time", str(tick_time)]
        if port is not None:
            args += ["--port", str(port)]
        self.proc = host.spawn(args, stdin=subprocess.PIPE)
        self.log: list[str] = []  # its stderr: the actornet log
        self._replies: dict[int, dict[str, Any]] = {}
        self._ids = 0
        self._cond = threading.Condition()
        self._eof = False
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=pump_lines, daemon=True, args=(
            self.proc.stderr, self.log, self._cond, lambda: None)).start()
        ready = self.result(0, WAIT)
        assert ready == name, ready

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("@"):
                reply = json.loads(line[1:])
                with self._cond:
                    self._replies[reply["id"]] = reply
                    self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def start(self, fn: Callable[..., Any], *args: Any) -> int:
        """Run ``fn(*args)`` on the node; returns the request id for `result`."""
        with self._cond:
            self._ids += 1
            rid = self._ids
        request = {"id": rid, "fn": f"{fn.__module__}:{fn.__qualname__}",
                   "args": encode(list(args))}
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return rid

    def result(self, rid: int, timeout: float = WAIT) -> Any:
        """The value of request `rid`; raises `RemoteError` if it raised."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while rid not in self._replies:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    why = "exited" if self._eof else f"gave no answer in {timeout} s"
                    raise AssertionError(f"node {self.name} {why} (request {rid})\n"
                                         + self.report())
                self._cond.wait(remaining)
            reply = self._replies.pop(rid)
        if not reply["ok"]:
            raise RemoteError(f"on {self.name}: {reply['error']}")
        return decode(reply["value"])

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = WAIT) -> Any:
        return self.result(self.start(fn, *args), timeout)

    def wait_log(self, pattern: str, timeout: float = WAIT) -> str:
        """The first log line that `pattern` searches into, waiting for it."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.log:
                    if rx.search(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{self.name} never logged /{pattern}/\n"
                                         + self.report())
                self._cond.wait(remaining)

    def report(self) -> str:
        with self._cond:
            return f"--- log of {self.name}:\n" + "\n".join(self.log[-40:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT)


class RemoteError(Exception):
    """The function raised on the node."""


if __name__ == "__main__":
    sys.exit(main())
