"""Which TCP connection a message came on, and shutting that one connection down.

A bound ROUTER cannot disconnect one peer. libzmq says which descriptor a message came from
(``ZMQ_SRCFD``): `source` records the connection behind it when a connection's first
message arrives (the transport binds the connection's entry to it: see `_inbound`);
`shut_down` later shuts that connection down, if the descriptor still holds the very same
connection (libzmq may have closed it and reused the number). libzmq then reads EOF, closes
its descriptor and forgets the peer. Nothing here ever closes libzmq's descriptor: only
duplicates of it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
from typing import Any, NamedTuple

import zmq

__all__ = ["GONE", "TcpConn", "Unsupported", "bytes_received", "identify", "shut_down",
           "source"]

_SRCFD: int | None = getattr(zmq, "SRCFD", None)  # deprecated in libzmq, still in 4.x
GONE = "it was already closed"
_TCP_INFO: int = getattr(socket, "TCP_INFO", 11)
# struct tcp_info (linux/tcp.h): tcpi_bytes_received, a u64, follows 8 bytes of u8 fields,
# 24 u32 fields and 3 u64 (pacing rates, bytes_acked)
_BYTES_RECEIVED = 8 + 24 * 4 + 3 * 8
_TCP_INFO_SIZE = 256


class Unsupported(Exception):
    """This pyzmq or libzmq does not say which descriptor a message came from."""


class TcpConn(NamedTuple):
    """One TCP connection libzmq holds: its descriptor then, and what identifies it."""

    fd: int
    inode: int  # unique among open sockets ...
    dev: int  # ... which all have this device (sockfs); a file could have the same inode
    local: Any  # getsockname()
    peer: Any  # getpeername()

    def __str__(self) -> str:
        host, port = self.peer[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _dup(fd: int) -> socket.socket:
    """A socket object on a duplicate of `fd`: closing it leaves `fd` open."""
    dup = os.dup(fd)
    try:
        return socket.socket(fileno=dup)
    except BaseException:
        os.close(dup)
        raise


def _identity(sock: socket.socket) -> tuple[int, int, Any, Any]:
    """What tells `sock` from every other open socket, and its two addresses."""
    st = os.fstat(sock.fileno())
    return st.st_ino, st.st_dev, sock.getsockname(), sock.getpeername()


def source(frame: zmq.Frame, port: int) -> TcpConn | str:
    """The TCP connection into our `port` that `frame` (received with ``copy=False``)
    arrived on, or why it cannot be known; `Unsupported` if it never can be."""
    if _SRCFD is None:
        raise Unsupported("this pyzmq has no ZMQ_SRCFD")
    try:
        fd = frame.get(_SRCFD)
    except zmq.ZMQError as e:
        raise Unsupported(f"zmq_msg_get(ZMQ_SRCFD) failed: {e}") from None
    if not isinstance(fd, int) or fd < 0:
        raise Unsupported(f"zmq_msg_get(ZMQ_SRCFD) gave {fd!r}")
    claimed = None
    with contextlib.suppress(zmq.ZMQError, KeyError):  # a property this libzmq lacks
        claimed = frame.get("Peer-Address")  # from libzmq, when the message arrived
    return identify(fd, port, claimed if isinstance(claimed, str) else None)


def identify(fd: int, port: int, peer_address: str | None = None) -> TcpConn | str:
    """The TCP connection into our `port` that descriptor `fd` holds (one libzmq accepted),
    or why it cannot be known (`GONE`: it holds no such connection any more). With
    `peer_address`, a connection from another address is `GONE` too."""
    try:
        with _dup(fd) as sock:
            if sock.type != socket.SOCK_STREAM or sock.family not in (
                    socket.AF_INET, socket.AF_INET6):
                return GONE  # the number was reused for something else meanwhile
            inode, dev, local, peer = _identity(sock)
    except OSError as e:
        if e.errno in (errno.EBADF, errno.ENOTSOCK, errno.ENOTCONN, errno.EINVAL):
            return GONE
        return f"cannot inspect its descriptor: {e}"
    if local[1] != port:
        return GONE  # the number now holds a connection that is not one into our port
    if peer_address is not None and peer_address != peer[0]:
        return GONE
    return TcpConn(fd, inode, dev, local, peer)


def bytes_received(conn: TcpConn) -> int | str:
    """How many bytes the kernel has received on `conn` so far (``TCP_INFO``), or why
    not (`GONE`: its descriptor holds another connection now, or none)."""
    try:
        with _dup(conn.fd) as sock:
            st = os.fstat(sock.fileno())  # the socket's inode: unique while it is open
            if (st.st_ino, st.st_dev) != (conn.inode, conn.dev):
                return GONE
            info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_SIZE)
    except OSError as e:
        if e.errno in (errno.EBADF, errno.ENOTSOCK, errno.ENOTCONN):
            return GONE
        return f"cannot read its TCP_INFO: {e}"
    if len(info) < _BYTES_RECEIVED + 8:
        return "this kernel's TCP_INFO has no tcpi_bytes_received (Linux 4.1+)"
    return int.from_bytes(info[_BYTES_RECEIVED:_BYTES_RECEIVED + 8], sys.byteorder)


def shut_down(conn: TcpConn) -> str | None:
    """Shut down `conn` (both directions) if its descriptor still holds it: None if it
    did, else why not (`GONE` if the connection is closed already)."""
    try:
        with _dup(conn.fd) as sock:
            if _identity(sock) != (conn.inode, conn.dev, conn.local, conn.peer):
                return GONE  # the number now holds another connection: leave that alone
            sock.shutdown(socket.SHUT_RDWR)
    except OSError as e:
        if e.errno in (errno.EBADF, errno.ENOTSOCK, errno.ENOTCONN):
            return GONE
        return f"cannot shut it down: {e}"
    return None

