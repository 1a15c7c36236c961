"""What a node's I/O thread knows about each remote node and each connection into it:
records only, kept by the peer table (`_peers`); the protocol is the session's
(`_session`), the identity of inbound connections `_inbound`'s."""

from __future__ import annotations

import enum
import threading
from typing import Any

import zmq

from actornet import _tcpconn
from actornet._handshake import Acceptor, Initiator
from actornet._sendqueue import Flow
from actornet._session import Session, State

__all__ = ["Conn", "Inbound", "Peer"]


class Peer:
    """Everything about one remote node, as seen from here: its session, its outbound
    connection (a DEALER and its monitor), what its senders share with the I/O thread
    (`Flow`), and its connection into this node, if authenticated."""

    def __init__(self, name: str, session: Session) -> None:
        self.name = name
        self.session = session
        self.flow = Flow()
        self.endpoint: str | None = None
        self.dealer: zmq.Socket[Any] | None = None
        self.monitor: zmq.Socket[Any] | None = None
        self.handshake: Initiator | None = None
        self.creation: int | None = None
        self.inbound: Inbound | None = None
        self.changed = threading.Condition()  # notified when a connection attempt ends
        self.attempts_done = 0
        self.waiting_pollout = False
        self.hidden = False  # a hidden node: not in nodes(), not meshed
        self.address: str | None = None  # the endpoint a user gave for it, if any
        self.failure: str | None = None  # why its last connection attempt failed (for ping)
        self.attempt: object | None = None  # the current attempt (a late lookup is ignored)
        self.attempt_at = 0.0  # when it started

    def __repr__(self) -> str:
        return f"<Peer {self.name} {self.session.state}>"

    @property
    def state(self) -> State:
        return self.session.state

    @property
    def up(self) -> bool:
        """Connected: its outbound connection is authenticated."""
        return self.session.state is State.UP

    @property
    def backlog(self) -> int:
        return self.session.backlog

    @property
    def idle(self) -> bool:
        """Neither connected nor connecting."""
        return self.session.state in (State.NEW, State.DOWN)


class Conn(str, enum.Enum):
    """The state of a connection into this node (a str, as log lines show it)."""

    HANDSHAKE = "handshake"  # its handshake runs
    UP = "up"  # authenticated: its peer's session reads it (`Peer.inbound` is it)
    DEAD = "dead"  # dropped; kept a while so that what still comes on it is ignored quietly

    def __str__(self) -> str:
        return self.value


class Inbound:
    """One connection into this node's ROUTER, identified by its routing id."""

    def __init__(self, rid: bytes, acceptor: Acceptor, now: float) -> None:
        self.rid = rid
        self.acceptor = acceptor
        self.state = Conn.HANDSHAKE
        self.peer: Peer | None = None
        self.started = now
        self.last_seen = now
        self.tcp: _tcpconn.TcpConn | None = None  # its TCP connection, if it can be closed
        self.untracked = ""  # why `tcp` is None
        self.close_at: float | None = None  # when to close it (refused before authenticating)
        self.why = ""  # why it was refused
        # The connection it is bound to (`Inbounds.bind`): its descriptor, the socket that
        # descriptor held, and the serial of its accept (`Inbounds.accepts`).
        self.fd = -1  # -1: bound to none
        self.dev = self.ino = self.accept = 0
        self.addr = ""  # "host:port" of its peer, for log lines
        self.gone_at: float | None = None  # when libzmq said its connection closed

    def __repr__(self) -> str:
        return f"<Inbound {self.addr or '?'} {self.state}>"
