"""Micro-benchmarks behind the suggestions in docs/performance.md: ``python -m benchmarks.micro``.

Each prints a cost per operation, so a change to the library can be checked
against the numbers it was meant to move:

- ``framing``: one ZeroMQ frame per op (what the transport does) against one
  length-prefixed frame per batch;
- ``codec``: the wire codec and the message check, per op;
- ``wake``: the floor of thread-per-receiver fan-out in CPython (one producer,
  K threads blocked on a `SimpleQueue` each);
- ``threads``: how thread creation slows down as threads pile up.
"""

from __future__ import annotations

import argparse
import os
import queue
import struct
import subprocess
import sys
import threading
import time
import timeit
from collections.abc import Callable
from typing import Any

__all__ = ["framing", "codec", "wake", "threads"]


def _per_op(fn: Callable[[], Any], number: int) -> float:
    """Best of 3, microseconds per call."""
    return min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e6


def framing() -> None:
    """pyzmq cost per op: multipart (copy=False / True) against one joined frame."""
    import zmq

    ctx: zmq.Context[Any] = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    push = ctx.socket(zmq.PUSH)
    push.connect(f"tcp://127.0.0.1:{port}")
    ops = [bytes(130) for _ in range(512)]
    header = b"AD" + bytes(8)
    prefix = struct.Struct("!I")

    def joined() -> None:
        push.send(header + b"".join(prefix.pack(len(o)) + o for o in ops))
        data, pos, out = pull.recv(), len(header), []
        while pos < len(data):
            (n,) = prefix.unpack_from(data, pos)
            out.append(data[pos + 4:pos + 4 + n])
            pos += 4 + n

    cases: dict[str, Callable[[], Any]] = {
        "multipart, copy=False (the transport today)":
            lambda: (push.send_multipart([header, *ops], copy=False), pull.recv_multipart()),
        "multipart, copy=True":
            lambda: (push.send_multipart([header, *ops]), pull.recv_multipart()),
        "one frame per batch, length-prefixed ops": joined,
    }
    for label, fn in cases.items():
        print(f"  {label:48} {_per_op(fn, 100) / len(ops):6.2f} µs/op (send + receive)")
    push.close(0)
    pull.close(0)
    ctx.term()


def codec() -> None:
    """The wire codec and message check, per call."""
    import msgpack

    from actornet import _codec
    from actornet import _wire as w
    from actornet._ids import Pid, Ref
    from actornet._terms import check_term
    from actornet._transport import _base_name

    msg = ("msg", 12345, bytes(100))
    op = [w.SEND, 42, 123456789, msg]
    data = w.encode_op(op)
    pid, ref = Pid("a@h", 1, 2), Ref("a@h", 3, 4)
    call = ("$gen_call", (pid, ref), ("call", 1))
    cases: dict[str, Callable[[], Any]] = {
        "encode_op([SEND, id, creation, ('msg', i, 100 B)])": lambda: w.encode_op(op),
        "msgpack.packb of the same (tuple as plain array)": lambda: msgpack.packb(op),
        "decode_op (decode + shape check)": lambda: w.decode_op(data),
        "_codec.decode alone": lambda: _codec.decode(data),
        "_base_name(node) (done on every remote send)": lambda: _base_name("a@127.0.0.1"),
        "check_term(('msg', i, bytes))": lambda: check_term(msg),
        "check_term(call envelope)": lambda: check_term(call),
        "Ref(node, id, creation)": lambda: Ref("a@h", 3, 4),
    }
    for label, fn in cases.items():
        print(f"  {label:55} {_per_op(fn, 100_000):6.3f} µs")


def wake() -> None:
    """Deliveries/s from one producer to K threads blocked on a SimpleQueue each."""

    def run(k: int, m: int) -> float:
        boxes: list[queue.SimpleQueue[Any]] = [queue.SimpleQueue() for _ in range(k)]
        done = threading.Barrier(k + 1)

        def consume(box: queue.SimpleQueue[Any]) -> None:
            for _ in range(m):
                box.get()
            done.wait()

        for box in boxes:
            threading.Thread(target=consume, args=(box,), daemon=True).start()
        time.sleep(0.2)
        t0 = time.perf_counter()
        for i in range(m):
            item = ("msg", i)
            for box in boxes:
                box.put(item)
        done.wait()
        return k * m / (time.perf_counter() - t0)

    for k in (10, 100, 300, 1000):
        rates = [run(k, max(1, 50_000 // k)) for _ in range(3)]
        print(f"  K={k:5}: " + ", ".join(f"{r:,.0f}" for r in rates) + " deliveries/s")


def threads() -> None:
    """Plain thread creation rate, per 2,000, as threads pile up (in a fresh interpreter)."""
    code = (
        "import os, threading, time\n"
        "ev = threading.Event()\n"
        "for c in range(10):\n"
        "    t = time.perf_counter()\n"
        "    for _ in range(2000): threading.Thread(target=ev.wait, daemon=True).start()\n"
        "    print(f'  {(c + 1) * 2000:6} alive: {2000 / (time.perf_counter() - t):8,.0f}"
        " threads/s', flush=True)\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=False, timeout=600)


def main(argv: list[str] | None = None) -> int:
    names = {"framing": framing, "codec": codec, "wake": wake, "threads": threads}
    p = argparse.ArgumentParser(prog="python -m benchmarks.micro",
                                description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="*", help=f"default all: {', '.join(names)}")
    args = p.parse_args(argv)
    for name in args.names or list(names):
        if name not in names:
            p.error(f"unknown micro-benchmark {name!r}")
        print(f"== {name}: {(names[name].__doc__ or '').strip()}", flush=True)
        names[name]()
    print(f"(pid {os.getpid()}; absolute numbers depend on the machine's load)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
