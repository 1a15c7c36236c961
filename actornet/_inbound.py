"""Connections into a node's ROUTER: which TCP connection each message came on, what may
come in before authenticating, and the acceptor's side of the handshake (`Arrivals`). Runs
on the I/O thread; the ROUTER itself is the transport's.

Inbound connections: the ROUTER names each by the routing id the peer presents (a peer may
choose it), and libzmq gives that id to a new connection once the one that held it is gone.
So an inbound entry is bound to the TCP connection of its first message (`Inbounds.bind`),
and a message counts as that entry's only if it came on that connection: the descriptor
libzmq says it came from (``ZMQ_SRCFD``) is the entry's, and still holds the same socket
(`Inbounds.same_connection`, checked for every message; it is cheap). If that socket is
closed, the message is still the entry's when no connection was accepted on that
descriptor since (the ROUTER's monitor says so, with one I/O thread, before such a
connection can send anything): it was sent before the close (`Inbounds.sent_before_close`).
Anything else is the first message of a new connection, which must authenticate.

Before authenticating (`_admission`): each accepted TCP connection is tracked from libzmq's
"accepted" event, before it sends anything (`Inbounds.accepted`): it is closed if it has not
authenticated `handshake_timeout` seconds later, or once it has received more than a
handshake takes (its byte count is looked at every 10 ms: `Inbounds.watch_pending`),
whether or not any message of it ever reached this node.

Dropped entries are kept a while (`Inbounds.sweep`), so that what a peer still sends on
them is ignored quietly instead of looking like an unauthenticated stranger.

`Arrivals` places each message the ROUTER reads: on an authenticated connection it goes to
the peer's session, on a new one to the handshake (`_handshake.Acceptor`), whose success
hands the connection to its peer (`_peers.Peers.inbound_up`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import zmq

from actornet import _admission, _tcpconn
from actornet import _wire as w
from actornet._dialer import zmtp_failure
from actornet._handshake import Acceptor, Established, Failed, Send
from actornet._peer import Conn, Inbound, Peer

__all__ = ["ADMIT_BUDGET", "Arrivals", "Inbounds"]

log = logging.getLogger("actornet.dist")

# Bytes a connection may receive before it authenticates: a handshake takes a few KiB
# (ZeroMQ's greeting, a HELLO of at most 4 KiB, a RESPONSE, CurveZMQ's commands).
ADMIT_BUDGET = 16 * 1024
_REFUSED_LINGER = 0.5  # s a refused connection stays open, so that its REJECT goes out
_SRCFD: int = getattr(zmq, "SRCFD", -1)  # -1: no such property, every check fails


class Inbounds:
    """The connections into one node's ROUTER, by routing id, by socket and by descriptor.

    Args:
        node_name: for log lines.
        port: the node's port (to tell its accepted connections from others).
        handshake_timeout: seconds a connection has to authenticate.
        tick_time: dead entries are forgotten `3 * tick_time` after their last message.
        monitor: the ROUTER's monitor socket (``ZMTP_FAILED``, accepts, disconnections),
            read now and then (`read_monitor`) as well as when it is readable, so that an
            accept is known before a message of that connection is placed.
    """

    def __init__(self, node_name: str, port: int, handshake_timeout: float, tick_time: float,
                 monitor: zmq.Socket[bytes], secure: bool) -> None:
        self.node_name = node_name
        self.port = port
        self.handshake_timeout = handshake_timeout
        self.tick_time = tick_time
        self._monitor, self._secure = monitor, secure
        self.by_rid: dict[bytes, Inbound] = {}
        self.pending = _admission.Pending(handshake_timeout, ADMIT_BUDGET)
        self._tcp_owner: dict[int, Inbound] = {}  # socket inode -> the connection it is
        self._fd_owner: dict[int, Inbound] = {}  # descriptor -> the entry last bound to it
        self._accepts: dict[int, int] = {}  # descriptor -> serial of the last accept on it
        self._accepted = 0  # accepts seen so far
        self.srcfd_missing: str | None = None  # why inbound connections cannot be told apart
        self._srcfd_works = False  # libzmq said which connection a message came from, once

    # -- which connection ---------------------------------------------------------------------

    @staticmethod
    def same_connection(conn: Inbound, head: zmq.Frame) -> bool:
        """Whether the message whose first frame is `head` came on the connection `conn`
        is bound to (its descriptor, still holding the same socket)."""
        try:
            st = os.fstat(conn.fd)
            return (st.st_ino == conn.ino and head.get(_SRCFD) == conn.fd
                    and st.st_dev == conn.dev)
        except (OSError, zmq.ZMQError):  # a closed descriptor; no fd property
            return False

    def sent_before_close(self, conn: Inbound, head: zmq.Frame) -> bool:
        """Whether a message under `conn`'s routing id that did not come on its socket is
        `conn`'s all the same: sent before that socket closed (or connections cannot be
        told apart here). Else it is the first message of a new connection."""
        if self.srcfd_missing is not None:
            return True
        try:
            fd = head.get(_SRCFD)
        except zmq.ZMQError:
            fd = -1
        if conn.fd >= 0 and fd == conn.fd:
            # The socket it was bound to is closed. Only a connection accepted since can
            # have reused the descriptor, and libzmq has said so by now, if one was.
            self.read_monitor()
            return self._accepts.get(fd, 0) == conn.accept
        return False

    def bind(self, conn: Inbound, head: zmq.Frame) -> str | None:
        """Bind `conn` to the TCP connection its first message came on (`head`, its first
        frame): only what comes on that connection is `conn`'s. Also note that connection,
        so that it can be closed if it does not authenticate. None once bound, else why
        not (`_tcpconn.GONE`: that connection is closed already)."""
        if self.srcfd_missing is not None:
            conn.untracked = self.srcfd_missing
            return conn.untracked
        self.read_monitor()  # so that `_accepts` has this connection's accept
        try:
            tcp = _tcpconn.source(head, self.port)
        except _tcpconn.Unsupported as e:
            if self._srcfd_works:  # libzmq says it for others: something about this one
                conn.untracked = f"libzmq did not say which connection it is ({e})"
                return conn.untracked
            self.srcfd_missing = conn.untracked = f"libzmq cannot say which connection it is ({e})"
            for entry in self.pending.entries():  # which of them authenticates is unknown
                self.pending.closed(entry.fd)
            log.warning("node %s: inbound connections cannot be told apart (%s): a connection "
                        "that fails the handshake is ignored and stays open until its peer "
                        "closes it, and one that presents the routing id of a closed "
                        "connection that had authenticated is taken for it",
                        self.node_name, e)
            return conn.untracked
        self._srcfd_works = True
        if isinstance(tcp, str):
            conn.untracked = tcp
            return tcp
        conn.fd, conn.ino, conn.dev, conn.addr = tcp.fd, tcp.inode, tcp.dev, str(tcp)
        conn.accept = self._accepts.get(tcp.fd, 0)
        self._fd_owner[tcp.fd] = conn
        other = self._tcp_owner.pop(tcp.inode, None)
        if other is not None:
            # One socket cannot be two connections: one of them was closed before its first
            # message was read here, and its descriptor reused. Close neither. (Each is still
            # bound to it: what comes under either routing id must come on it.)
            other.tcp = None
            other.untracked = conn.untracked = "it cannot be told apart from another connection"
            return None
        conn.tcp = tcp
        self._tcp_owner[tcp.inode] = conn
        return None

    def forget(self, conn: Inbound) -> None:
        """Remove `conn` from the tables of connections by socket and by descriptor."""
        if conn.tcp is not None and self._tcp_owner.get(conn.tcp.inode) is conn:
            del self._tcp_owner[conn.tcp.inode]
        if self._fd_owner.get(conn.fd) is conn:
            del self._fd_owner[conn.fd]

    def authenticated(self, conn: Inbound) -> None:
        """`conn` authenticated: no longer bounded as a stranger."""
        if conn.fd >= 0:
            self.pending.authenticated(conn.fd, conn.accept)

    # -- the ROUTER's monitor -----------------------------------------------------------------

    def read_monitor(self) -> None:
        """Read what the ROUTER's monitor says: which descriptor a connection was accepted on
        (`accepted`), which connection closed (`disconnected`), and which failed ZeroMQ's
        handshake for a configuration mismatch (logged: ZeroMQ cannot tell who the peer
        was)."""
        while True:
            try:
                frames = self._monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            event = int.from_bytes(frames[0][:2], "little")
            value = int.from_bytes(frames[0][2:6], "little")  # the descriptor, for these two
            if event == zmq.EVENT_ACCEPTED:
                self.accepted(value)
                continue
            if event == zmq.EVENT_DISCONNECTED:
                self.disconnected(value)
                continue
            why = zmtp_failure(event, value, self._secure)
            if why:
                log.warning("node %s: refused an incoming connection: %s", self.node_name, why)

    def accepted(self, fd: int) -> None:
        """libzmq accepted a connection on `fd`: bound it until it authenticates. Unless
        inbound connections cannot be told apart here: then which one authenticated is
        unknown, and none could be closed safely."""
        self._accepted += 1
        self._accepts[fd] = serial = self._accepted
        if self.srcfd_missing is not None:
            return
        tcp = _tcpconn.identify(fd, self.port)
        if tcp == _tcpconn.GONE:
            return  # closed already (its "disconnected" event follows)
        self.pending.accepted(fd, serial, tcp if isinstance(tcp, _tcpconn.TcpConn) else None,
                              time.monotonic())

    def disconnected(self, fd: int) -> None:
        """libzmq says the connection on `fd` closed: its entry is dropped once what it sent
        before closing is read (`sweep`)."""
        serial = self._accepts.get(fd, 0)
        self.pending.closed(fd, serial)
        conn = self._fd_owner.get(fd)
        if conn is not None and conn.accept == serial:
            del self._fd_owner[fd]
            conn.gone_at = time.monotonic()

    # -- refusing and closing -----------------------------------------------------------------

    @staticmethod
    def refuse(conn: Inbound, now: float, why: str) -> None:
        """Drop an unauthenticated connection for `why`; it is closed a moment later, once
        what was sent to it (a REJECT) has gone out."""
        conn.state = Conn.DEAD
        conn.last_seen = now
        conn.why = why
        conn.close_at = now + _REFUSED_LINGER

    def close(self, conn: Inbound) -> str:
        """Close the TCP connection of a dropped connection; say what became of it."""
        conn.close_at = None
        tcp, conn.tcp = conn.tcp, None
        if tcp is None:
            if conn.untracked == _tcpconn.GONE:
                return conn.untracked
            return f"left it open: {conn.untracked or 'which connection it is is unknown'}"
        if self._tcp_owner.get(tcp.inode) is conn:
            del self._tcp_owner[tcp.inode]
        why_not = _tcpconn.shut_down(tcp)
        if why_not is None:
            return f"closed the connection from {tcp}"
        if why_not == _tcpconn.GONE:
            return f"the connection from {tcp}: {why_not}"
        conn.untracked = why_not
        return f"left the connection from {tcp} open: {why_not}"

    def watch_pending(self, now: float) -> None:
        """Close the connections not authenticated in time, or over the byte budget."""
        for entry in self.pending.expired(now):
            self._drop_pending(entry, "dropped a connection that did not finish the "
                                      f"handshake in {self.handshake_timeout:.1f} s")
        for entry in self.pending.due(now):
            if entry.conn is None:
                continue  # not identified at its accept: the deadline holds
            received = _tcpconn.bytes_received(entry.conn)
            if not isinstance(received, int):
                continue  # gone (its "disconnected" event follows), or unknown: the deadline
            over = self.pending.over_budget(entry.fd, received)
            if over is not None:
                self._drop_pending(over, f"dropped a connection that sent {received} bytes "
                                         "without finishing the handshake (at most "
                                         f"{self.pending.budget})")

    def _drop_pending(self, entry: _admission.Unauthenticated, what: str) -> None:
        """Close a connection that did not authenticate in time or within the budget; its
        entry, if a message of it was read, is dead."""
        conn = self._fd_owner.get(entry.fd)
        if conn is not None and conn.accept == entry.accept and conn.state is not Conn.UP:
            conn.state = Conn.DEAD
            conn.last_seen = time.monotonic()
            conn.close_at = None  # closed here, now
            if conn.tcp is not None and self._tcp_owner.get(conn.tcp.inode) is conn:
                del self._tcp_owner[conn.tcp.inode]
            conn.tcp = None
            conn.untracked = _tcpconn.GONE
        tcp = entry.conn
        if tcp is None:  # it could not be told at its accept: try again
            tcp = _tcpconn.identify(entry.fd, self.port)
            if not isinstance(tcp, _tcpconn.TcpConn):
                if tcp != _tcpconn.GONE:
                    log.warning("node %s: %s; left it open: %s", self.node_name, what, tcp)
                return
        why_not = _tcpconn.shut_down(tcp)
        if why_not is None:
            log.warning("node %s: %s; closed the connection from %s", self.node_name, what, tcp)
        elif why_not != _tcpconn.GONE:
            log.warning("node %s: %s; left the connection from %s open: %s", self.node_name,
                        what, tcp, why_not)

    def sweep(self, now: float) -> list[Inbound]:
        """Drop what has expired: handshakes past `handshake_timeout`, connections that
        closed (once what they sent before is read), refused ones once their REJECT went
        out, dead entries after `3 * tick_time`. The authenticated connections that closed
        are returned, for the transport to retire with their peer."""
        grace = self.tick_time / 4  # for what a closed connection sent to be read
        closed = []
        for rid, conn in list(self.by_rid.items()):
            if (conn.gone_at is not None and conn.state is not Conn.DEAD
                    and now - conn.gone_at >= grace and now - conn.last_seen >= grace):
                if conn.state is Conn.UP:
                    closed.append(conn)
                else:
                    conn.state = Conn.DEAD
                    conn.last_seen = now
                    log.info("node %s: dropped a connection that closed during the handshake "
                             "(from %s)", self.node_name, conn.addr or "?")
            elif conn.state is Conn.HANDSHAKE and now - conn.started > self.handshake_timeout:
                conn.state = Conn.DEAD
                conn.last_seen = now
                log.warning("node %s: dropped a connection that did not finish the "
                            "handshake in %.1f s; %s", self.node_name, self.handshake_timeout,
                            self.close(conn))
            elif conn.state is not Conn.DEAD:
                continue
            elif conn.close_at is not None:
                if now >= conn.close_at:
                    log.info("node %s: %s (refused: %s)", self.node_name, self.close(conn),
                             conn.why)
            elif now - conn.last_seen > 3 * self.tick_time:
                # Kept a while after it died, so what the peer still sends on it
                # (it learns we dropped it only when our ticks stop) is ignored
                # quietly instead of looking like an unauthenticated stranger.
                del self.by_rid[rid]
                self.forget(conn)
        return closed


class Arrivals:
    """Every message the ROUTER reads, placed on its connection: an authenticated one's go
    to its peer's session (`batch`), a dead one's are dropped, and a new connection runs the
    acceptor's side of the handshake until it authenticates (`up`).

    Args:
        inbounds: the connections into the node.
        acceptor: a new `Acceptor` for a new connection.
        reply: sends a handshake frame to a routing id (`zmq.ZMQError` if it cannot).
        batch: a message on an authenticated connection.
        up: a connection authenticated (`Peers.inbound_up`).
        retire: a connection is gone (`Peers.retire`).
        strike: its peer sent something malformed (`Peers.strike`).
        stats: the transport's counters (``bad_frames``).
    """

    def __init__(self, inbounds: Inbounds, *, acceptor: Callable[[], Acceptor],
                 reply: Callable[[bytes, bytes], None],
                 batch: Callable[[Inbound, list[bytes]], None],
                 up: Callable[[Inbound, Established, float], None],
                 retire: Callable[[Inbound, str], None], strike: Callable[[Peer], bool],
                 stats: dict[str, int]) -> None:
        self.inbounds = inbounds
        self.node_name = inbounds.node_name
        self._acceptor, self._reply, self._batch = acceptor, reply, batch
        self._up, self._retire, self._strike = up, retire, strike
        self.stats = stats

    def on_message(self, head: zmq.Frame, frames: list[bytes]) -> None:
        """Handle one message from the ROUTER (`head` its first frame, `frames` all)."""
        conn = self.inbounds.by_rid.get(frames[0])
        if conn is None:
            self._new_inbound(head, frames)
            return
        # Did it come on the connection `conn` is bound to?
        if not self.inbounds.same_connection(conn, head) and not self.inbounds.sent_before_close(
                conn, head):
            self._new_inbound(head, frames, replaces=conn)
            return
        if conn.state is Conn.UP:
            self._batch(conn, frames)
        elif conn.state is Conn.DEAD:
            self.stats["bad_frames"] += 1
            conn.last_seen = time.monotonic()
        else:
            self._on_handshake_frame(conn, frames)

    def failed(self, rid: bytes, error: Exception) -> None:
        """Handling a message under routing id `rid` failed: log it, naming where it came
        from; the message is dropped; an unauthenticated connection is refused, and an
        authenticated peer struck (`Peers.strike`)."""
        self.stats["bad_frames"] += 1
        conn = self.inbounds.by_rid.get(rid)
        peer = conn.peer if conn is not None and conn.state is Conn.UP else None
        source = peer.name if peer is not None else (conn.addr if conn is not None else "") or "?"
        log.error("node %s: dropped a message from %s: handling it failed: %s", self.node_name,
                  source, w.shown(error, 200), exc_info=True)
        if peer is not None:
            self._strike(peer)
        elif conn is not None and conn.state is Conn.HANDSHAKE:
            self.inbounds.refuse(conn, time.monotonic(), "handling its message failed")

    def _new_inbound(self, head: zmq.Frame, frames: list[bytes],
                     replaces: Inbound | None = None) -> None:
        """Start the handshake of a new inbound connection from its first message (`head` its
        first frame, `frames` all of them), which came under the routing id of `replaces`,
        if given, on another connection."""
        rid, now = frames[0], time.monotonic()
        conn = self.inbounds.by_rid[rid] = Inbound(rid, self._acceptor(), now)
        unbound = self.inbounds.bind(conn, head)
        if replaces is not None:
            self._replaced(replaces, conn)
        if unbound is None or self.inbounds.srcfd_missing is not None:
            self._on_handshake_frame(conn, frames)
        elif unbound == _tcpconn.GONE:  # it closed before its first message was read
            conn.state = Conn.DEAD
            self.stats["bad_frames"] += 1
        else:  # then nothing could be told to be from it: it cannot authenticate
            self.stats["bad_frames"] += 1
            self.inbounds.refuse(conn, now, f"which connection it is is unknown: {unbound}")
            log.warning("node %s: refused an incoming connection: which connection it is is "
                        "unknown (%s)", self.node_name, unbound)

    def _replaced(self, old: Inbound, new: Inbound) -> None:
        """`new`, a new connection, came under the routing id of `old`, whose connection is
        therefore gone (libzmq gives a routing id to one connection at a time): drop `old`."""
        self.inbounds.forget(old)
        source = f"from {new.addr}" if new.addr else "on a new connection"
        if old.peer is not None:
            name = old.peer.name
            log.warning("node %s: refused to take a message %s as %s's: it came on another "
                        "connection than the one %s authenticated on (from %s), which is gone; "
                        "that connection must authenticate itself", self.node_name, source,
                        name, name, old.addr or "?")
        elif old.state is not Conn.DEAD:
            log.info("node %s: a connection %s took the routing id of one that was still in "
                     "the handshake (from %s), which is gone; it starts over",
                     self.node_name, source, old.addr or "?")
        self._retire(old, "its connection to this node closed")

    def _on_handshake_frame(self, conn: Inbound, frames: list[bytes]) -> None:
        now = time.monotonic()
        if len(frames) != 2:
            self.stats["bad_frames"] += 1
            log.warning("node %s: dropped a %d-frame message from an unauthenticated peer",
                        self.node_name, len(frames) - 1)
            self.inbounds.refuse(conn, now, f"it sent a {len(frames) - 1}-frame message")
            return
        for event in conn.acceptor.receive(frames[1]):
            if isinstance(event, Send):
                try:
                    self._reply(conn.rid, event.frame)
                except zmq.ZMQError:
                    conn.state = Conn.DEAD  # ZeroMQ is dropping the connection already
            elif isinstance(event, Established):
                self._up(conn, event, now)
            elif isinstance(event, Failed):
                self.inbounds.refuse(conn, now, str(event.error))
                self.stats["bad_frames"] += 1
                log.warning("node %s: refused an incoming connection: %s",
                            self.node_name, event.error)
