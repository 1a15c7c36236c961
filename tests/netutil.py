"""Helpers for the tests that poke at nodes over the network."""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

import zmq

import actornet
from actornet import _handshake as hs

DEADLINE = 10.0  # seconds: generous for a loaded 2-core machine, never a synchronisation
# The two modes of a node: "secure" (the default: CurveZMQ) and "plain" (insecure=True);
# the hostile-peer suites run in both.
MODES = ("secure", "plain")


def insecure(mode: str) -> bool:
    """The `insecure` argument of `start_node` for `mode`."""
    assert mode in MODES, mode
    return mode == "plain"


def node_args(mode: str) -> list[str]:
    """The ``python -m actornet node`` flags for `mode`."""
    return ["--insecure"] if insecure(mode) else []


def as_cookie_holder(sock: zmq.Socket[Any], mode: str, cookie: str, *,
                     server: bool = False) -> zmq.Socket[Any]:
    """Give a raw socket, before it connects or binds, what a node of `mode` with `cookie`
    has: in secure mode the cluster's CurveZMQ keys (as a client, or a `server`); nothing
    in plain mode. Returns the socket."""
    if not insecure(mode):
        public, secret = hs.curve_keypair(cookie.encode())
        if server:
            sock.curve_server = True
        else:
            sock.curve_serverkey = public
        sock.curve_publickey = public
        sock.curve_secretkey = secret
    return sock


def on(node: actornet.Node, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` in a new process of `node`, so the module API acts on that node;
    return its result (or raise its exception)."""
    box: queue.Queue[tuple[bool, Any]] = queue.Queue()

    def run() -> None:
        try:
            box.put((True, fn(*args)))
        except BaseException as e:  # handed to the test thread
            box.put((False, e))

    node.spawn(run)
    ok, value = box.get(timeout=2 * DEADLINE)
    if not ok:
        raise value
    return value


class RecordingProxy:
    """A TCP forwarder on a free loopback port that records, per connection, the bytes
    going each way: ``connections()`` is ``[(upstream, downstream), ...]``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._records: list[tuple[bytearray, bytearray]] = []
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), DEADLINE)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            record = (bytearray(), bytearray())
            with self._lock:
                self._socks += [client, server]
                self._records.append(record)
            for src, dst, buf in ((client, server, record[0]), (server, client, record[1])):
                t = threading.Thread(target=self._pump, args=(src, dst, buf), daemon=True)
                self._threads.append(t)
                t.start()

    def _pump(self, src: socket.socket, dst: socket.socket, buf: bytearray) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    buf.extend(data)  # recorded before it is forwarded
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def connections(self) -> list[tuple[bytes, bytes]]:
        """``[(upstream, downstream), ...]`` so far, one pair per connection."""
        with self._lock:
            return [(bytes(up), bytes(down)) for up, down in self._records]

    def recorded(self) -> tuple[bytes, bytes]:
        """Everything sent upstream, and everything sent back, over all connections."""
        conns = self.connections()
        return b"".join(u for u, _ in conns), b"".join(d for _, d in conns)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(DEADLINE)
        for s in socks:
            s.close()

    def __enter__(self) -> RecordingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InjectingRelay:
    """A TCP relay on a free loopback port to `target_port`, for one connection, that can
    add bytes of its own to what goes upstream (`inject`), between two ZMTP messages: it
    forwards upstream only whole messages (after the 64-byte greeting: frames of a flags
    byte, a 1- or 8-byte size and a body; a message ends at a frame without the "more" bit,
    a command is one frame), and everything downstream as it comes.

    It stands for a program that answered a port-mapper lookup with its own port: the
    node that dials through it completes its handshake with the node behind it, which
    takes the connection for that node's."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.messages_up = 0  # messages (not commands) forwarded upstream so far
        self.changed = threading.Condition()
        self._upstream: socket.socket | None = None
        self._socks: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:
            return  # closed
        server = socket.create_connection(("127.0.0.1", self.target_port), DEADLINE)
        server.settimeout(None)
        with self.changed:
            self._socks += [client, server]
            self._upstream = server
        for target, args in ((self._up, (client, server)), (self._down, (server, client))):
            t = threading.Thread(target=target, args=args, daemon=True)
            self._threads.append(t)
            t.start()

    def _down(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _up(self, src: socket.socket, dst: socket.socket) -> None:
        buf, greeting, message_start = bytearray(), 64, 0
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                buf += data
                if greeting:
                    n = min(greeting, len(buf))
                    with self.changed:
                        dst.sendall(buf[:n])
                    del buf[:n]
                    greeting -= n
                pos = message_start = 0
                while not greeting and pos + 2 <= len(buf):
                    flags = buf[pos]
                    width = 8 if flags & 2 else 1
                    if pos + 1 + width > len(buf):
                        break
                    end = pos + 1 + width + int.from_bytes(buf[pos + 1:pos + 1 + width], "big")
                    if end > len(buf):
                        break
                    pos = end
                    if flags & 4 or not flags & 1:  # a command, or a message's last frame
                        with self.changed:
                            dst.sendall(buf[message_start:pos])
                            self.messages_up += 0 if flags & 4 else 1
                            self.changed.notify_all()
                        message_start = pos
                del buf[:message_start]
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def inject(self, data: bytes) -> None:
        """Send `data` upstream, between two messages of the node that dialled."""
        with self.changed:
            assert self._upstream is not None, "nothing connected through the relay yet"
            self._upstream.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.changed:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(DEADLINE)
        for s in socks:
            s.close()

    def __enter__(self) -> InjectingRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
