"""The far side of the raw baselines, run as ``python -m benchmarks._rawpeer``.

It binds a REP control socket on loopback, prints ``control PORT``, and then
serves one command at a time (msgpack lists):

``["pull", n]``
    Bind a PULL socket, answer ``["port", p]``, decode `n` messages, then answer
    the next request (``["wait"]``) with ``["done", n]``.
``["router", n]``
    Bind a ROUTER, answer ``["port", p]``, echo `n` requests (decode, re-encode),
    then answer ``["wait"]`` with ``["done", n]``.
``["sub_open", endpoint, k]``
    Connect `k` SUB sockets to the publisher at `endpoint` and answer ``["ok"]``;
    once every one got a hello (a frame ``b"h"``), answer the next request with
    ``["ready"]``. Then ``["sub_count", m]`` answers ``["go"]``, decodes `m`
    data messages on each socket and answers ``["wait"]`` with ``["done", total]``;
    ``["sub_close"]`` closes them.
``["redis_open", port, channel, k]``
    Subscribe `k` Redis connections (redis.asyncio, on a loop in a thread) to
    `channel`; answer ``["ready"]`` once Redis confirmed every subscription.
    ``["redis_count", m]`` and ``["redis_close"]`` work as for ``sub``; the messages
    are ``(kind, i, payload)`` and ``["wait"]`` is answered ``["done", total,
    disordered, errors]``, `disordered` counting the connections on which some `i` was
    not the one after the previous, `errors` saying why connections stopped early.
``["redis_stream", publishers]``
    Answer ``["go"]``; every subscribed connection then reads messages
    ``(publisher, i, payload)`` until it has seen the end marker (``i == -1``) of
    each of `publishers` publishers. ``["wait"]`` is answered once all are done
    with ``["done", [[received, gaps, error], ...]]``, one entry per connection:
    `gaps` counts messages whose `i` was not the one after the previous message
    of that publisher (lost or out of order); `error` is "" or why the
    connection stopped early.
``["redis_publish", port, channel, who, seconds, payload]``
    Connect to Redis, then publish ``(who, i, payload)`` for i = 0, 1, ... one
    at a time (each waits for Redis's answer) for `seconds`, then the end
    marker ``(who, -1, b"")``; answer ``["done", count, fewest]``, `fewest`
    being the fewest subscribers Redis said received one of the messages.
``["quit"]``
    Answer ``["bye"]`` and exit.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

import msgpack
import zmq

unpackb = msgpack.unpackb
packb = msgpack.packb


def _bind(ctx: zmq.Context[Any], kind: int) -> tuple[zmq.Socket[Any], int]:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    return sock, port


def _pull(ctx: zmq.Context[Any], ctl: zmq.Socket[Any], n: int) -> None:
    sock, port = _bind(ctx, zmq.PULL)
    ctl.send(packb(["port", port]))
    recv = sock.recv
    for _ in range(n):
        unpackb(recv())
    ctl.recv()
    ctl.send(packb(["done", n]))
    sock.close()


def _router(ctx: zmq.Context[Any], ctl: zmq.Socket[Any], n: int) -> None:
    sock, port = _bind(ctx, zmq.ROUTER)
    ctl.send(packb(["port", port]))
    recv, send = sock.recv_multipart, sock.send_multipart
    for _ in range(n):
        rid, data = recv()
        send([rid, packb(unpackb(data))])
    ctl.recv()
    ctl.send(packb(["done", n]))
    sock.close()


class _Subs:
    """K SUB sockets connected to one publisher, kept across rounds."""

    def __init__(self, ctx: zmq.Context[Any], endpoint: str, k: int) -> None:
        ctx.setsockopt(zmq.MAX_SOCKETS, max(1023, 2 * k + 64))
        self.socks = []
        self.poller = zmq.Poller()
        for _ in range(k):
            s = ctx.socket(zmq.SUB)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.RCVHWM, 0)
            s.setsockopt(zmq.SUBSCRIBE, b"")
            s.connect(endpoint)
            self.socks.append(s)
            self.poller.register(s, zmq.POLLIN)
        self.index = {s: i for i, s in enumerate(self.socks)}

    def join(self) -> None:
        """Return once every subscriber got a hello (``b"h"``)."""
        hello = [False] * len(self.socks)
        waiting = len(self.socks)
        while waiting:
            for s, _ in self.poller.poll(1000):
                i = self.index[s]
                while True:
                    try:
                        frame = s.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if frame == b"h" and not hello[i]:
                        hello[i] = True
                        waiting -= 1

    def count(self, m: int) -> int:
        """Decode `m` data messages on every subscriber (hellos are skipped)."""
        got = [0] * len(self.socks)
        left = len(self.socks)
        index, poll = self.index, self.poller.poll
        while left:
            for s, _ in poll(1000):
                i = index[s]
                while True:
                    try:
                        frame = s.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if frame == b"h":
                        continue
                    unpackb(frame)
                    got[i] += 1
                    if got[i] == m:
                        left -= 1
        return sum(got)

    def close(self) -> None:
        for s in self.socks:
            s.close()


class _RedisSubs:
    """K Redis connections subscribed to one channel, on an event loop in a thread."""

    def __init__(self, port: int, channel: str, k: int) -> None:
        import redis.asyncio as aioredis

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.pool = aioredis.ConnectionPool(host="127.0.0.1", port=port,
                                            max_connections=k + 8)
        self.client = aioredis.Redis(connection_pool=self.pool)
        self.subs: list[Any] = []
        self._call(self._open(channel, k))

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def _open(self, channel: str, k: int) -> None:
        for _ in range(k):
            ps = self.client.pubsub()
            await ps.subscribe(channel)
            self.subs.append(ps)
        for ps in self.subs:  # wait for Redis to confirm each subscription
            while True:
                msg = await ps.get_message(timeout=10)
                if msg is not None and msg["type"] == "subscribe":
                    break

    def start_count(self, m: int) -> Any:
        """Start decoding `m` messages on every connection; a future of the total and of
        the connections that saw them out of order."""

        async def one(ps: Any) -> tuple[int, bool, str]:
            n = 0
            in_order = True
            try:
                while n < m:
                    msg = await ps.get_message(ignore_subscribe_messages=True, timeout=None)
                    if msg is not None:
                        in_order = in_order and unpackb(msg["data"])[1] == n
                        n += 1
            except Exception as e:  # a connection Redis dropped: report what it got, and why
                return n, in_order, f"{type(e).__name__}: {e}"
            return n, in_order, ""

        async def every() -> list[Any]:
            counts = await asyncio.gather(*(one(ps) for ps in self.subs))
            errors = sorted({why for _, _, why in counts if why})
            return [sum(n for n, _, _ in counts), sum(not ok for _, ok, _ in counts),
                    errors[:3]]

        return asyncio.run_coroutine_threadsafe(every(), self.loop)

    def start_stream(self, publishers: int) -> Any:
        """Read every connection until each publisher's end marker; a future of the counts."""

        async def one(ps: Any) -> list[Any]:
            last: dict[int, int] = {}
            received = gaps = ended = 0
            try:
                while ended < publishers:
                    msg = await ps.get_message(ignore_subscribe_messages=True, timeout=None)
                    if msg is None:
                        continue
                    who, i, _ = unpackb(msg["data"])
                    if i == -1:
                        ended += 1
                        continue
                    if i != last.get(who, -1) + 1:
                        gaps += 1
                    last[who] = i
                    received += 1
            except Exception as e:  # a connection Redis dropped: report what it got
                return [received, gaps, f"{type(e).__name__}: {e}"]
            return [received, gaps, ""]

        async def every() -> list[list[Any]]:
            return list(await asyncio.gather(*(one(ps) for ps in self.subs)))

        return asyncio.run_coroutine_threadsafe(every(), self.loop)

    def close(self) -> None:
        async def shut() -> None:
            for ps in self.subs:
                await ps.aclose()
            await self.client.aclose()
            await self.pool.aclose()

        self._call(shut())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _redis_publish(port: int, channel: str, who: int, seconds: float,
                   payload: bytes) -> list[Any]:
    import time

    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        client.ping()
        publish = client.publish
        i = 0
        fewest = sys.maxsize
        stop_at = time.perf_counter() + seconds
        while time.perf_counter() < stop_at:
            fewest = min(fewest, publish(channel, packb((who, i, payload))))
            i += 1
        publish(channel, packb((who, -1, b"")))
        return ["done", i, fewest]
    finally:
        client.close()


def main() -> int:
    ctx: zmq.Context[Any] = zmq.Context()
    ctl, port = _bind(ctx, zmq.REP)
    print(f"control {port}", flush=True)
    subs: _Subs | None = None
    rsubs: _RedisSubs | None = None
    while True:
        cmd = unpackb(ctl.recv())
        op = cmd[0]
        if op == "pull":
            _pull(ctx, ctl, cmd[1])
        elif op == "router":
            _router(ctx, ctl, cmd[1])
        elif op == "sub_open":
            subs = _Subs(ctx, cmd[1], cmd[2])
            ctl.send(packb(["ok"]))
            subs.join()
            ctl.recv()  # "ready?"
            ctl.send(packb(["ready"]))
        elif op == "sub_count" and subs is not None:
            ctl.send(packb(["go"]))
            total = subs.count(cmd[1])
            ctl.recv()  # "wait"
            ctl.send(packb(["done", total]))
        elif op == "sub_close" and subs is not None:
            subs.close()
            subs = None
            ctl.send(packb(["ok"]))
        elif op == "redis_open":
            rsubs = _RedisSubs(cmd[1], cmd[2], cmd[3])
            ctl.send(packb(["ready"]))
        elif op == "redis_count" and rsubs is not None:
            future = rsubs.start_count(cmd[1])
            ctl.send(packb(["go"]))
            ctl.recv()  # "wait"
            ctl.send(packb(["done", *future.result()]))
        elif op == "redis_stream" and rsubs is not None:
            future = rsubs.start_stream(cmd[1])
            ctl.send(packb(["go"]))
            ctl.recv()  # "wait"
            ctl.send(packb(["done", future.result()]))
        elif op == "redis_publish":
            ctl.send(packb(_redis_publish(*cmd[1:])))
        elif op == "redis_close" and rsubs is not None:
            rsubs.close()
            rsubs = None
            ctl.send(packb(["ok"]))
        elif op == "quit":
            ctl.send(packb(["bye"]))
            break
        else:
            ctl.send(packb(["error", f"unknown or out-of-order command {op!r}"]))
    ctl.close()
    ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
