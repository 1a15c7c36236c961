"""``python -m benchmarks.attacks``: what hostile inputs cost a node (issue 12's figures).

Not a speed figure, so not part of ``python -m benchmarks``: it attacks a node in a child
process (``python -m actornet node``, with the ``--node-arg`` flags given) over loopback and
prints, for each attack, how much memory the node held (the growth of its RSS) and how long
it took to close the attacker's connection. A fresh node takes each attack.

Attacks on an unauthenticated connection (hand-written ZMTP, NULL mechanism, as a DEALER):

- ``silent``: 100 connections finish ZeroMQ's greeting, then send nothing;
- ``half-frame``: 100 connections announce a 256 KiB frame and send half of it;
- ``duplicate-id``: one connection presents a routing id (and then sends nothing), a second
  presents the same one and sends 400 whole messages of 250 KiB (both close times shown);
- ``multipart``: one connection sends 400 frames of 250 KiB, each saying "more follows".

And from a node that has the cookie:

- ``stall`` (class 4): it sends one message holding a set of 50,000 integers that share one
  hash; another node calls the node under attack every 50 ms, and the longest wait for an
  answer is the time the node stalled;
- ``deaf`` (class 3): it has the node ping an address whose host libzmq refuses; how long
  the node then does not answer a ping and a call (every 50 ms, for 15 s);
- ``diverge`` (class 6): it registers a global name, sends the node's name server one
  malformed message, then kills that server; how long the node's `whereis_name`
  disagrees with the cluster after each (polled every 10 ms, for 10 s).

Run it under the machine's test lock: ``flock /work/.testlock python -m benchmarks.attacks``
(or the path your machine uses), with ``--node-arg=--insecure`` for plain mode.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgpack

from benchmarks._common import COOKIE, ActornetChild, Children
from tests import zmtp
from tests.zmtp import frame

CLOSE_CAP = 20.0  # s: a connection still open after this is reported "not closed"
FRAME = 250 * 1024

def zmtp_connect(port: int, routing_id: bytes = b"") -> socket.socket:
    """A TCP connection to `port` past ZeroMQ's greeting and READY, as a DEALER."""
    return zmtp.dealer(port, routing_id)[0]


def rss(pid: int) -> int:
    """Resident memory of process `pid`, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def send_for(sock: socket.socket, data: bytes, seconds: float) -> int:
    """Send `data` for at most `seconds` (the node may stop reading), or until the node
    closes the connection (end of file: a closed connection may still take bytes into
    the kernel's buffer, so a failing send alone would report the close late); bytes sent."""
    sock.setblocking(False)
    sent, end = 0, time.monotonic() + seconds
    view = memoryview(data)
    while sent < len(data) and time.monotonic() < end:
        try:
            if sock.recv(65536) == b"":  # what the node sends is of no interest
                break
        except BlockingIOError:
            pass
        except OSError:
            break
        try:
            sent += sock.send(view[sent:sent + 65536])
        except BlockingIOError:
            time.sleep(0.001)
        except OSError:
            break
    return sent


def close_times(socks: list[socket.socket], since: float) -> list[float | None]:
    """Seconds from `since` until the node closed each of `socks`; None: not within the cap."""
    when: list[float | None] = [None] * len(socks)
    for s in socks:
        s.setblocking(False)
    end = since + CLOSE_CAP
    while any(w is None for w in when) and time.monotonic() < end:
        for i, s in enumerate(socks):
            if when[i] is not None:
                continue
            try:
                while data := s.recv(65536):
                    del data
                when[i] = time.monotonic() - since
            except BlockingIOError:
                pass
            except OSError:
                when[i] = time.monotonic() - since
        time.sleep(0.01)
    return when


class PeakRss:
    """The highest RSS of process `pid` while the block runs, sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        import threading

        self.pid, self.peak, self._stop = pid, rss(pid), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _silent(port: int) -> list[socket.socket]:
    return [zmtp_connect(port) for _ in range(100)]


def _half_frame(port: int) -> list[socket.socket]:
    socks = []
    for _ in range(100):
        s = zmtp_connect(port)
        s.sendall(bytes([2]) + (256 * 1024).to_bytes(8, "big") + bytes(128 * 1024))
        socks.append(s)
    return socks


def _duplicate_id(port: int) -> list[socket.socket]:
    holder = zmtp_connect(port, b"\x01taken")
    time.sleep(0.2)  # the holder's pipe is attached first
    dup = zmtp_connect(port, b"\x01taken")
    send_for(dup, frame(bytes(FRAME)) * 400, 10.0)
    return [holder, dup]


def _multipart(port: int) -> list[socket.socket]:
    s = zmtp_connect(port)
    send_for(s, frame(bytes(FRAME), more=True) * 400, 10.0)
    return [s]


ATTACKS: dict[str, Callable[[int], list[socket.socket]]] = {
    "silent": _silent, "half-frame": _half_frame, "duplicate-id": _duplicate_id,
    "multipart": _multipart,
}


def connection_attack(name: str, node_args: list[str]) -> str:
    with Children() as kids:
        child = ActornetChild(kids, "victim", tick_time=4.0, extra=node_args)
        pid = child.child.proc.pid
        time.sleep(1.0)  # settled
        before = rss(pid)
        with PeakRss(pid) as peak:
            t0 = time.monotonic()
            try:
                socks = ATTACKS[name](child.port)
            except OSError as e:
                return f"{name:13} refused at once ({e})"
            took = close_times(socks, t0)
        for s in socks:
            s.close()
        time.sleep(2.0)
        after = rss(pid) - before
        shown = ", ".join(f"{t:.1f} s" if t is not None else f"not in {CLOSE_CAP:.0f} s"
                          for t in (took if len(took) <= 2 else [max(took, key=_never)]))
        return (f"{name:13} held at most {(peak.peak - before) / 2**20:6.1f} MiB, closed "
                f"after {shown}; {after / 2**20:6.1f} MiB still held 2 s after")


def _never(t: float | None) -> float:
    return float("inf") if t is None else t


def stall_attack(node_args: list[str], count: int = 50_000) -> str:
    import threading

    import actornet
    from actornet import rpc

    with Children() as kids:
        child = ActornetChild(kids, "victim", tick_time=4.0, extra=node_args)
        kw = _mode_kw(_plain(node_args))
        attacker = actornet.start_node(f"attacker{os.getpid()}@127.0.0.1", cookie=COOKIE,
                                       port=0, **kw)
        probe = actornet.start_node(f"probe{os.getpid()}@127.0.0.1", cookie=COOKIE, port=0,
                                    **kw)
        try:
            ready, attacked = threading.Event(), threading.Event()
            out: queue.Queue[Any] = queue.Queue()

            def probing() -> None:
                assert actornet.ping(child.address) == "pong"
                ready.set()
                longest, last, failed = 0.0, time.monotonic(), 0
                end = time.monotonic() + 90
                while time.monotonic() < end:
                    try:
                        rpc.call(child.name, os.getpid, timeout=90)
                    except Exception:
                        failed += 1
                        actornet.ping(child.address)
                        continue
                    now = time.monotonic()
                    longest, last = max(longest, now - last), now
                    if attacked.is_set() and now - attacked_at[0] > 3:
                        break
                    time.sleep(0.05)
                out.put((longest, failed))

            attacked_at = [0.0]

            def attack() -> None:
                assert actornet.ping(child.address) == "pong"
                target = actornet.spawn(actornet.receive, node=child.name)
                big = 2**61 - 1  # ints that differ by a multiple of it share a hash
                items = [msgpack.ExtType(4, n.to_bytes(n.bit_length() // 8 + 1, "big",
                                                       signed=True))
                         for n in (7 + i * big for i in range(9, count + 9))]
                hostile = msgpack.ExtType(2, msgpack.packb(items))  # a set
                op = msgpack.packb([1, target.id, target.creation, hostile])  # SEND
                # Handed to the transport as encoded, as a peer that crafts bytes would
                transport = attacker.dist
                transport._outbox.put((transport._peers[child.name], op))
                transport._wake()
                attacked_at[0] = time.monotonic()
                attacked.set()

            probe.spawn(probing)
            assert ready.wait(30)
            attacker.spawn(attack)
            longest, failed = out.get(timeout=180)
            return (f"{'stall':13} longest wait for an answer {longest:5.2f} s "
                    f"({count:,} colliding ints in a set; {failed} calls failed)")
        finally:
            attacker.stop()
            probe.stop()


@contextlib.contextmanager
def _victim_and_me(node_args: list[str]) -> Iterator[tuple[ActornetChild, Any]]:
    """The node under attack (a child) and a node of this process connected to it."""
    import actornet

    with Children() as kids:
        child = ActornetChild(kids, "victim", tick_time=4.0, extra=node_args)
        me = actornet.start_node(f"me{os.getpid()}@127.0.0.1", cookie=COOKIE, port=0,
                                 **_mode_kw(_plain(node_args)))
        try:
            assert _on(me, lambda: actornet.ping(child.address)) == "pong"
            yield child, me
        finally:
            me.stop()


def _on(node: Any, fn: Callable[[], Any]) -> Any:
    """`fn()` run in a new process of `node` (so the module API acts on it); its result."""
    out: queue.Queue[tuple[bool, Any]] = queue.Queue()

    def run() -> None:
        try:
            out.put((True, fn()))
        except Exception as e:  # handed to the caller
            out.put((False, e))

    node.spawn(run)
    ok, value = out.get(timeout=120)
    if not ok:
        raise value
    return value


def _wrong_for(check: Callable[[], bool], seconds: float,
               every: float = 0.05) -> tuple[float, bool]:
    """Poll `check` every `every` s for `seconds`: how long it was False in all, and
    whether it was True at the end."""
    wrong, last, ok = 0.0, time.monotonic(), False
    end = last + seconds
    while (now := time.monotonic()) < end:
        try:
            ok = check()
        except Exception:
            ok = False
        now = time.monotonic()
        if not ok:
            wrong += now - last
        last = now
        time.sleep(every)
    return wrong, ok


def deaf_attack(node_args: list[str], seconds: float = 15.0) -> str:
    """Issue 12, class 3: a cookie holder has the node ping an address whose host libzmq
    refuses (a remote spawn of ``ping("b@-x:5")``); then it is asked for its pid every
    50 ms (pinged first, so that a connection it dropped is made again)."""
    import actornet
    from actornet import rpc
    from actornet.errors import ActornetError

    with _victim_and_me(node_args) as (child, me):
        with contextlib.suppress(ActornetError):  # no pid back: its I/O thread is gone
            _on(me, lambda: actornet.spawn(actornet.ping, "b@-x:5", node=child.name))

        def answers() -> bool:
            if actornet.ping(child.address) != "pong":
                return False
            return bool(rpc.call(child.name, os.getpid, timeout=1.0) == child.child.proc.pid)

        deaf, ok = _on(me, lambda: _wrong_for(answers, seconds))
        return (f"{'deaf':13} did not answer for {deaf:5.2f} s of {seconds:.0f} s; answering "
                f"at the end: {'yes' if ok else 'no'}")


def diverge_attack(node_args: list[str], seconds: float = 10.0) -> str:
    """Issue 12, class 6: a global name registered on this process's node; the node under
    attack's name server is sent one malformed message (a ``dead`` notice without its pid),
    then killed; after each, how long its `whereis_name` disagrees with the cluster."""
    import actornet
    from actornet import global_, rpc

    with _victim_and_me(node_args) as (child, me):
        pid = _on(me, lambda: actornet.spawn(actornet.receive))
        assert _on(me, lambda: global_.register_name("keeper", pid)) == "yes"

        def agrees() -> bool:
            return bool(rpc.call(child.name, global_.whereis_name, "keeper", timeout=1.0) == pid)

        assert _on(me, lambda: _wrong_for(agrees, 0.2))[1]
        _on(me, lambda: actornet.send((global_.SERVER, child.name), ("dead", "x")))
        garbled, ok1 = _on(me, lambda: _wrong_for(agrees, seconds, 0.01))

        def kill() -> None:
            server = rpc.call(child.name, actornet.whereis, global_.SERVER)
            actornet.exit(server, "kill")

        _on(me, kill)
        killed, ok2 = _on(me, lambda: _wrong_for(agrees, seconds, 0.01))
        return (f"{'diverge':13} whereis_name wrong for {garbled:5.2f} s of {seconds:.0f} after "
                f"a malformed message (right at the end: {'yes' if ok1 else 'no'}), "
                f"{killed:5.2f} s after a kill (right at the end: {'yes' if ok2 else 'no'})")


def _plain(node_args: list[str]) -> bool:
    return "--insecure" in node_args or ("--secure" not in node_args and _plain_by_default())


def _plain_by_default() -> bool:
    """True for an actornet from before issue 12 (plain unless ``secure=True``): this
    script also measures such a checkout, for the figures before the fix."""
    import inspect

    import actornet

    return "insecure" not in inspect.signature(actornet.start_node).parameters


def _mode_kw(plain: bool) -> dict[str, Any]:
    return {"secure": not plain} if _plain_by_default() else {"insecure": plain}


NODE_ATTACKS: dict[str, Callable[[list[str]], str]] = {
    "stall": stall_attack, "deaf": deaf_attack, "diverge": diverge_attack,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.attacks",
                                description=__doc__.split("\n")[0])
    p.add_argument("--node-arg", action="append", default=[],
                   help="an extra argument for the node under attack (repeatable)")
    p.add_argument("--only", action="append", choices=[*ATTACKS, *NODE_ATTACKS])
    args = p.parse_args(argv)
    names = args.only or [*ATTACKS, *NODE_ATTACKS]
    print(f"node: python -m actornet node {' '.join(args.node_arg)}", flush=True)
    for name in names:
        try:
            line = (NODE_ATTACKS[name](args.node_arg) if name in NODE_ATTACKS
                    else connection_attack(name, args.node_arg))
        except KeyboardInterrupt:
            continue
        except Exception as e:  # the other attacks still run
            line = f"{name:13} failed: {e!r}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
