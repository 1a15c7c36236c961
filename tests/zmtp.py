"""ZMTP 3 by hand, over a plain TCP socket: what a stranger sends, as a tool would not.

A real ZeroMQ socket finishes what it starts (a frame, a multipart message) and answers
the other side as the protocol says; an attacker need not. These helpers speak the NULL
mechanism as a DEALER: the 64-byte greeting, then frames of a flags byte (1: more follows,
2: an 8-byte size, 4: a command), a 1- or 8-byte size and the body.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

DEADLINE = 10.0

GREETING = (b"\xff" + bytes(8) + b"\x7f" + bytes([3, 1]) + b"NULL".ljust(20, b"\x00")
            + bytes(32))  # ZMTP 3.1, NULL mechanism, not as-server


def frame(body: bytes, command: bool = False, more: bool = False) -> bytes:
    """One ZMTP 3 frame carrying `body` (the last of its message, unless `more`)."""
    flags = (4 if command else 0) | (1 if more else 0)
    if len(body) > 255:
        return bytes([flags | 2]) + len(body).to_bytes(8, "big") + body
    return bytes([flags, len(body)]) + body


def ready(routing_id: bytes = b"") -> bytes:
    """A DEALER's READY command, presenting `routing_id` if given."""
    props = b"\x0bSocket-Type" + len(b"DEALER").to_bytes(4, "big") + b"DEALER"
    if routing_id:
        props += b"\x08Identity" + len(routing_id).to_bytes(4, "big") + routing_id
    return frame(b"\x05READY" + props, command=True)


def dealer(port: int, routing_id: bytes = b"") -> tuple[socket.socket, bytes]:
    """A TCP connection to `port` on loopback past ZeroMQ's greeting and READY, as a DEALER
    (presenting `routing_id` if given), up to where it may send messages; and what the other
    end sent so far (its greeting). A node that wants another mechanism closes it first:
    then `ConnectionError`."""
    sock = socket.create_connection(("127.0.0.1", port), DEADLINE)
    try:
        sock.sendall(GREETING)
        got = read_until(sock, lambda got: len(got) >= 64)  # libzmq wants no pipelining here
        sock.sendall(ready(routing_id))
    except AssertionError as e:
        sock.close()
        raise ConnectionError(str(e)) from None
    except BaseException:
        sock.close()
        raise
    return sock, got


def messages(stream: bytes) -> list[list[bytes]]:
    """The complete messages (lists of frames) in one direction of a ZMTP 3 connection
    with the NULL mechanism: after the 64-byte greeting, each frame is a flags byte (1:
    more, 2: long size, 4: command), a 1- or 8-byte size and the body; commands (READY,
    PING) are skipped. An incomplete frame at the end is ignored."""
    pos, found, frames = 64, [], []
    while pos < len(stream):
        flags = stream[pos]
        width = 8 if flags & 2 else 1
        if pos + 1 + width > len(stream):
            break
        size = int.from_bytes(stream[pos + 1:pos + 1 + width], "big")
        start = pos + 1 + width
        if start + size > len(stream):
            break
        pos = start + size
        if flags & 4:
            continue
        frames.append(stream[start:pos])
        if not flags & 1:
            found.append(frames)
            frames = []
    return found


def wait_closed(sock: socket.socket, timeout: float = DEADLINE) -> None:
    """Read from `sock`, discarding, until the other end closes it; fail after `timeout` s."""
    end = time.monotonic() + timeout
    while True:
        remaining = end - time.monotonic()
        assert remaining > 0, f"the connection is still open after {timeout} s"
        sock.settimeout(remaining)
        try:
            if sock.recv(65536) == b"":
                return
        except TimeoutError:
            continue
        except OSError:  # reset: closed too
            return


def read_until(sock: socket.socket, done: Callable[[bytes], bool], got: bytes = b"",
               timeout: float = DEADLINE) -> bytes:
    """Read from `sock` onto `got` until ``done(got)``; fail after `timeout` s or at EOF."""
    end = time.monotonic() + timeout
    while not done(got):
        remaining = end - time.monotonic()
        assert remaining > 0, f"not there within {timeout} s; got {got!r}"
        sock.settimeout(remaining)
        data = sock.recv(65536)
        assert data, f"closed by the other end; got {got!r}"
        got += data
    return got
