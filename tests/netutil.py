"""Helpers for the tests that poke at nodes over the network."""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

import actornet

DEADLINE = 10.0  # seconds: generous for a loaded 2-core machine, never a synchronisation


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
