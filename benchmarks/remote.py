"""Figures across two OS processes: remote send throughput and remote call latency.

actornet runs between this process's node and a child node (``python -m
actornet node``), in both modes side by side: encrypted (CurveZMQ, the default:
the "actornet" column) and ``insecure=True`` (plain text, each batch MACed); each
mode has its own pair of nodes, and each runs in a process of its own node. The raw
baselines run between this process and a child `benchmarks._rawpeer`, with pyzmq and
msgpack'd tuples.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import zmq

import actornet
from benchmarks import _remote
from benchmarks._common import (
    ACTORNET,
    ERLANG,
    ActornetChild,
    Child,
    Children,
    Config,
    Sample,
    await_msg,
    connect,
    interleave,
    latency_sample,
    local_node,
    on,
    python_child,
    row,
)

__all__ = ["RawPeer", "remote_send", "remote_call", "PLAIN"]

PLAIN = "actornet insecure=True"  # the column of plain-text connections

packb = msgpack.packb
unpackb = msgpack.unpackb


class RawPeer:
    """Talks to a `benchmarks._rawpeer` child over its control socket."""

    def __init__(self, kids: Children) -> None:
        self.child: Child = python_child(kids, "benchmarks._rawpeer")
        port = int(self.child.wait_line(r"control (\d+)", 30).group(1))
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.ctl = self.ctx.socket(zmq.REQ)
        self.ctl.setsockopt(zmq.LINGER, 0)
        self.ctl.connect(f"tcp://127.0.0.1:{port}")

    def request(self, *cmd: Any, timeout: float = 120.0) -> list[Any]:
        """Send a command and wait for its answer."""
        self.ctl.send(packb(list(cmd)))
        return self.answer(timeout)

    def answer(self, timeout: float) -> list[Any]:
        if not self.ctl.poll(int(timeout * 1000)):
            raise TimeoutError(f"raw peer did not answer within {timeout} s")
        return unpackb(self.ctl.recv())  # type: ignore[no-any-return]

    def socket(self, kind: int, port: int) -> zmq.Socket[Any]:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{port}")
        return sock

    def close(self) -> None:
        try:
            self.ctl.send(packb(["quit"]))
            self.ctl.poll(2000)
        finally:
            self.ctl.close()
            self.ctx.term()
            self.child.close()


def _payloads() -> dict[str, bytes]:
    return {"100 B": bytes(range(100)), "1 KiB": bytes(i % 251 for i in range(1024))}


@contextlib.contextmanager
def _pairs(kids: Children, prefix: str) -> Iterator[dict[bool, tuple[Any, ActornetChild]]]:
    """A connected (local node, child node) pair per mode: {insecure: (node, child)}."""
    with (local_node(prefix) as secure, local_node(f"{prefix}_plain", insecure=True) as plain):
        pairs = {}
        for insecure, node in ((False, secure), (True, plain)):
            far = ActornetChild(kids, f"{prefix}_far", extra=["--insecure"] if insecure else [])
            on(node, lambda far=far: connect(far.address))
            pairs[insecure] = (node, far)
        yield pairs


def remote_send(cfg: Config) -> dict[str, Any]:
    """Remote send throughput, 100 B and 1 KiB payloads, beside pyzmq PUSH/PULL."""
    n = cfg.n(100_000, 10_000)
    rows = []
    with Children() as kids, _pairs(kids, "bench_send") as pairs:
        raw = RawPeer(kids)
        try:
            payloads = _payloads()
            cases = [(f"remote send {label}", payload, False)
                     for label, payload in payloads.items()]
            cases.append(("remote send 100 B to (name, node)", payloads["100 B"], True))
            for title, payload, by_name in cases:
                size = len(payload)

                def an(rep: int, payload: bytes = payload, insecure: bool = False,
                       by_name: bool = by_name) -> Sample:
                    node, far = pairs[insecure]
                    count = n if rep >= 0 else n // 10

                    def run() -> Sample:
                        me = actornet.self()
                        if by_name:
                            pid = actornet.spawn(_remote.named_sink, me, count, "bench_sink",
                                                 node=far.name)
                            await_msg(lambda m: m == ("sink_ready", pid), 30)
                            dest: Any = ("bench_sink", far.name)
                        else:
                            dest = pid = actornet.spawn(_remote.sink, me, count, node=far.name)
                        send = actornet.send
                        t0 = time.perf_counter()
                        for i in range(count):
                            send(dest, ("msg", i, payload))
                        await_msg(lambda m: m == ("sink_done", pid), 300)
                        return {"rate": count / (time.perf_counter() - t0)}

                    return on(node, run)  # type: ignore[no-any-return]

                def push(rep: int, payload: bytes = payload) -> Sample:
                    count = n if rep >= 0 else n // 10
                    _, port = raw.request("pull", count)
                    sock = raw.socket(zmq.PUSH, port)
                    send = sock.send
                    t0 = time.perf_counter()
                    for i in range(count):
                        send(packb(("msg", i, payload)))
                    raw.request("wait", timeout=300)
                    rate = count / (time.perf_counter() - t0)
                    sock.close()
                    return {"rate": rate}

                erl = None if cfg.erlang is None or by_name else (
                    lambda rep, size=size: cfg.erlang.run("remote_send", n, size))
                results = interleave(cfg, {
                    ACTORNET: an, PLAIN: lambda rep, p=payload: an(rep, p, insecure=True),
                    "pyzmq PUSH/PULL": push, ERLANG: erl})
                rows.append(row(
                    title, "rate", "msgs/s", results, higher_is_better=True,
                    skipped={ERLANG: "sends to pids only" if by_name else cfg.erlang_note},
                    goal=("pyzmq PUSH/PULL", 0.4, ">= 0.4 x raw"),
                    note=f"{n:,} messages ('msg', i, <{size} bytes>) per repetition"
                         f"{' to a registered name' if by_name else ''}, "
                         "until the far side has received (and decoded) the last; "
                         f"actornet encrypted (the default) and {PLAIN} (plain text)",
                ))
        finally:
            raw.close()
    return {"rows": rows, "notes": []}


def remote_call(cfg: Config) -> dict[str, Any]:
    """Remote GenServer call p50/p99, beside a pyzmq DEALER/ROUTER round trip."""
    n = cfg.n(5_000, 500)
    with Children() as kids, _pairs(kids, "bench_call") as pairs:
        raw = RawPeer(kids)
        try:
            servers = {insecure: on(node, lambda far=far: actornet.rpc.call(
                far.name, _remote.start_echo)) for insecure, (node, far) in pairs.items()}

            def an(rep: int, insecure: bool = False) -> Sample:
                count = n if rep >= 0 else n // 10
                server = servers[insecure]

                def run() -> Sample:
                    call = actornet.call
                    clock = time.perf_counter_ns
                    lat: list[int] = []
                    t0 = time.perf_counter()
                    for i in range(count):
                        t = clock()
                        call(server, ("call", i))
                        lat.append(clock() - t)
                    return latency_sample(lat, time.perf_counter() - t0)

                return on(pairs[insecure][0], run)  # type: ignore[no-any-return]

            def dealer(rep: int) -> Sample:
                count = n if rep >= 0 else n // 10
                _, port = raw.request("router", count)
                sock = raw.socket(zmq.DEALER, port)
                send, recv = sock.send, sock.recv
                clock = time.perf_counter_ns
                lat: list[int] = []
                t0 = time.perf_counter()
                for i in range(count):
                    t = clock()
                    send(packb(("call", i)))
                    unpackb(recv())
                    lat.append(clock() - t)
                elapsed = time.perf_counter() - t0
                raw.request("wait")
                sock.close()
                return latency_sample(lat, elapsed)

            erl = None if cfg.erlang is None else (
                lambda rep: cfg.erlang.run("remote_call", n))
            results = interleave(cfg, {ACTORNET: an,
                                       PLAIN: lambda rep: an(rep, insecure=True),
                                       "pyzmq DEALER/ROUTER": dealer, ERLANG: erl})
        finally:
            raw.close()
    skipped = {ERLANG: cfg.erlang_note}
    note = (f"{n:,} sequential calls per repetition to an echo server on the other node; "
            f"actornet encrypted (the default) and {PLAIN} (plain text)")
    return {"rows": [
        row("remote GenServer call p50", "p50", "µs", results, higher_is_better=False,
            skipped=skipped, goal=("pyzmq DEALER/ROUTER", 0.5, "p50 <= 2 x raw"), note=note),
        row("remote GenServer call p99", "p99", "µs", results, higher_is_better=False,
            skipped=skipped, note=note),
        row("remote GenServer call rate", "rate", "calls/s", results, higher_is_better=True,
            skipped=skipped, note=note),
    ], "notes": []}
