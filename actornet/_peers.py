"""The remote nodes a node knows, and each one's lifecycle (Erlang's ``net_kernel`` side of a
connection): connect, up, down, the grace of a lost connection, goodbye, mesh, strikes and
fault injection. Runs on the I/O thread, except the table's look-ups and `Peers.connect`'s
wait, which any thread may call.

A peer is *up* once this node's outbound connection to it (`_dialer`) has authenticated;
its connection into this node (`_inbound`) is followed too: `nodes()` counts a peer whose
connection in is up while the one out is still being made, and a peer whose connection in
authenticates is connected back to at once. Down, for any reason, runs one path
(`Peers.down`): the GOODBYE on the connection being dropped, both connections closed, the
senders released, and the node told (`node_down`: links and monitors fire). The protocol
behind each transition (ticks, the grace, strikes) is the session's (`_session`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import zmq

from actornet import _address
from actornet import _wire as w
from actornet._dialer import Dialer, stop_monitor
from actornet._handshake import Established
from actornet._inbound import Inbounds
from actornet._peer import Conn, Inbound, Peer
from actornet._sendqueue import SendQueue
from actornet._session import Down, Session, State, Tick

__all__ = ["HIDDEN", "Peers"]

log = logging.getLogger("actornet.dist")

HIDDEN = 2  # handshake flag bit: the node is hidden
# s an outbound attempt may take before a connection from the peer that gets through
# makes us start it over (`inbound_up`); a healthy one takes milliseconds
_STALE_ATTEMPT = 1.0
_LOST_READS = 50  # budgets of ROUTER reads before a lost peer is declared down (100,000 msgs)

# A command for the I/O thread (`SendQueue.command`): what the caller wants, then its terms.
Command = tuple[object, ...]


class Peers:
    """Every remote node one node knows, by name, and what happens to each.

    Args:
        name: this node's name.
        hello: this node's name, creation, endpoint and handshake flags (for `Dialer`).
        ctx, poller: the node's ZeroMQ context, and its I/O loop's poller (for `Dialer`).
        cookie, secure, tick_time, handshake_timeout, max_message_size, mesh: as the
            transport's.
        resolve: name -> endpoint (a port-mapper look-up; may block).
        stats: the transport's counters, which each session adds to.
        sendq: the outbox (commands go on it; senders to a peer that goes down are released).
        inbounds: the connections into the node (one is closed when its peer is refused).
        flush: hands what a peer's session has to its DEALER.
        read_more: reads the ROUTER once more; True if it may hold more.
        node_up, node_down: tell the node (``node_down(name, visible)``).
    """

    def __init__(self, hello: tuple[str, int, str, int], *, ctx: zmq.Context[zmq.Socket[bytes]],
                 poller: zmq.Poller, cookie: bytes, secure: bool, tick_time: float,
                 handshake_timeout: float, max_message_size: int, mesh: bool,
                 resolve: Callable[[str], str | None] | None, stats: dict[str, int],
                 sendq: SendQueue, inbounds: Inbounds, flush: Callable[[Peer], None],
                 read_more: Callable[[], bool], node_up: Callable[[str], None],
                 node_down: Callable[[str, bool], None]) -> None:
        self.name = hello[0]
        self.secure, self.tick_time, self.mesh = secure, tick_time, mesh
        self.handshake_timeout = handshake_timeout
        self.max_message_size = max_message_size
        self.stats = stats
        self.sendq, self.inbounds = sendq, inbounds
        self._flush, self._read_more = flush, read_more
        self._node_up, self._node_down = node_up, node_down
        self.by_name: dict[str, Peer] = {}
        self._lock = threading.Lock()
        self.dialer = Dialer(ctx, poller, hello=hello, cookie=cookie, secure=secure,
                             handshake_timeout=handshake_timeout, resolve=resolve,
                             command=sendq.command, up=self.outbound_up, fail=self.down,
                             lost=self.lost)
        # fault injection: nodes we pretend cannot be reached -> when to heal (or None)
        self.cuts: dict[str, float | None] = {}
        # peers whose outbound connection dropped, until their inbound one closes too or
        # the session's grace passes (`settle_lost`)
        self.losing: set[Peer] = set()

    # == the table, for any thread ====================================================

    def peer(self, name: str) -> Peer:
        """The peer named `name`, made if new; `ValueError` if `name` is not a node name."""
        peer = self.by_name.get(name)
        if peer is None:
            _address.check_name(name)
            with self._lock:
                peer = self.by_name.get(name)
                if peer is None:
                    session = Session(name, tick_time=self.tick_time,
                                      max_message_size=self.max_message_size, mesh=self.mesh,
                                      stats=self.stats)
                    peer = self.by_name[name] = Peer(name, session)
        return peer

    def at(self, address: str) -> tuple[Peer, str | None]:
        """The peer `address` names, and the endpoint it gives (None: none given). Raises
        `ValueError` for a malformed address, in the caller's thread: nothing malformed
        reaches the I/O thread (or libzmq)."""
        name, endpoint = _address.parse(address)
        peer = self.peer(name)
        if endpoint is not None and peer.address is None:
            peer.address = endpoint  # how to reach it if it is not connected yet
        return peer, endpoint

    def connect(self, node: str, timeout: float | None = None) -> bool:
        """Connect to `node` if needed; True once connected, False if it failed.

        Raises `ValueError` if `node` is not an address (``name@host[:port]``)."""
        if _address.parse(node)[0] == self.name:
            return True
        peer, endpoint = self.at(node)
        if peer.state is State.UP:
            return True
        if not self.sendq.running:
            return False
        done = peer.attempts_done
        self.sendq.command(("connect", peer, endpoint))
        with peer.changed:
            peer.changed.wait_for(
                lambda: peer.state is State.UP or peer.attempts_done > done
                or not self.sendq.running,
                timeout if timeout is not None else self.handshake_timeout + 6.0,
            )
        return peer.up

    def failure(self, node: str) -> str | None:
        """Why the last attempt to connect to `node` failed; None if it did not fail (or
        is still going on)."""
        peer = self.by_name.get(_base_name(node))
        return None if peer is None else peer.failure

    def creation(self, node: str) -> int | None:
        """The creation of the incarnation of `node` last connected in either direction,
        or None if none was."""
        peer = self.by_name.get(node)
        return None if peer is None else peer.creation

    def nodes(self) -> list[str]:
        """Peers connected in either direction (a peer that just connected to us
        counts at once, while our connection back to it is still being made)."""
        return sorted(
            p.name for p in list(self.by_name.values())
            if (p.state is State.UP or (p.inbound is not None and p.inbound.state is Conn.UP))
            and not p.hidden
        )

    def info(self) -> dict[str, dict[str, object]]:
        """Each peer's state, for `node_info`."""
        # busy: a sender waits for it, or what is queued for it is over the limit (a
        # lightweight sender owes the wait then, `_backpressure`)
        return {p.name: {"state": p.state.value, "backlog_bytes": p.backlog,
                         "busy": self.sendq.busy_now(p),
                         "creation": p.creation, "endpoint": p.endpoint}
                for p in list(self.by_name.values())}

    def cut_reason(self, peer_name: str) -> str | None:
        """Why a connection from `peer_name` is refused here (the acceptor asks)."""
        return "the link is cut (fault injection)" if peer_name in self.cuts else None

    # == commands, on the I/O thread ====================================================

    def command(self, cmd: Command) -> None:
        """Run a command another thread queued (`SendQueue.command`), but ``stop``."""
        match cmd:
            case ("connect", Peer() as peer, (str() | None) as endpoint):
                if peer.idle:
                    self.start_connect(peer, endpoint)
                elif peer.state is State.UP:
                    self.attempt_done(peer)
            case ("dial", Peer() as peer, (str() | None) as endpoint, (str() | None) as error,
                  attempt):
                if attempt is peer.attempt:  # else a late answer of an abandoned attempt
                    self.dialer.dial(peer, endpoint, error)
            case ("cut", str() as name, (float() | None) as heal_at):
                self.cuts[name] = heal_at
                cut = self.by_name.get(name)
                if cut is not None and (not cut.idle or cut.inbound):
                    self.down(cut, "link cut (fault injection)")
            case ("heal", str() as name):
                self.cuts.pop(name, None)
            case ("disconnect", str() as name):
                gone = self.by_name.get(name)
                if gone is not None and not gone.idle:
                    self.down(gone, "disconnected by request")

    def command_failed(self, cmd: Command, error: Exception) -> None:
        """A command failed in this thread: log it; an attempt to connect fails with it
        (its caller hears so at once), the thread goes on."""
        log.error("node %s: %s failed: %r", self.name, cmd[0], error, exc_info=True)
        if cmd[0] in ("connect", "dial") and isinstance(peer := cmd[1], Peer):
            if peer.state is State.CONNECTING:
                self.down(peer, f"{cmd[0]} failed: {error!r:.200}")
            else:
                self.attempt_done(peer)

    # == connecting =====================================================================

    def start_connect(self, peer: Peer, endpoint: str | None) -> None:
        """Connect to `peer` (`Dialer`); `endpoint` is the one its address gave, if any."""
        peer.attempt_at = time.monotonic()
        peer.session.connect(peer.attempt_at, self.handshake_timeout + 5.0)
        if peer.name in self.cuts:
            self.down(peer, "link cut (fault injection)")
            return
        self.dialer.look_up(peer, endpoint)

    def attempt_done(self, peer: Peer) -> None:
        with peer.changed:
            peer.attempts_done += 1
            peer.changed.notify_all()

    def outbound_up(self, peer: Peer, event: Established) -> None:
        """Our connection to `peer` authenticated: it is up."""
        if peer.creation is not None and peer.creation != event.peer_creation and peer.inbound:
            # The inbound connection belongs to an older incarnation.
            peer.inbound.state = Conn.DEAD
            peer.inbound = None
            peer.session.inbound_down()
        peer.creation = event.peer_creation
        peer.hidden = bool(event.peer_flags & HIDDEN)
        peer.session.established(b"" if self.secure else event.session_key, time.monotonic())
        self.attempt_done(peer)
        log.info("node %s: connected to %s", self.name, peer.name)
        if not peer.hidden:
            self._node_up(peer.name)
        if self.mesh and not peer.hidden:
            # Erlang meshes transitively: the new peer learns our peers, and our
            # peers learn the new one, so everyone ends up connected to everyone.
            others = [p for p in self.by_name.values()
                      if p.state is State.UP and p is not peer and p.endpoint and not p.hidden]
            peer.session.queue(w.encode_op([w.NODES, [[p.name, p.endpoint] for p in others]]))
            news = w.encode_op([w.NODES, [[peer.name, peer.endpoint]]])
            for other in others:
                other.session.queue(news)
                self._flush(other)
        self._flush(peer)

    def inbound_up(self, conn: Inbound, event: Established, now: float) -> None:
        """A connection into this node authenticated as `event`'s peer: its session reads
        it from now on; a peer not connected to yet is connected back to."""
        peer = self.peer(event.peer_name)
        old = peer.inbound
        if peer.creation is not None and peer.creation != event.peer_creation:
            if not peer.idle:
                self.down(peer, "it restarted (new incarnation)")
            peer = self.peer(event.peer_name)
        elif old is not None and old is not conn:
            old.state = Conn.DEAD
        conn.state = Conn.UP
        conn.peer = peer
        conn.last_seen = now
        peer.inbound = conn
        peer.session.inbound_up(b"" if self.secure else event.session_key, now)
        peer.creation = event.peer_creation
        peer.hidden = bool(event.peer_flags & HIDDEN)
        self.inbounds.authenticated(conn)
        if peer.idle and event.peer_endpoint:
            self.start_connect(peer, event.peer_endpoint)
        elif (peer.state is State.CONNECTING and event.peer_endpoint
              and now - peer.attempt_at > _STALE_ATTEMPT):
            # Its connection got through while ours has been trying for a while: ours most
            # likely began during a silent cut that has healed since (TCP retries a lost
            # SYN only seconds later). Start over, towards where the peer says it is.
            self.dialer.close(peer)
            self.start_connect(peer, event.peer_endpoint)

    def meet(self, entries: list[tuple[str, str]]) -> None:
        """Connect to each node a peer says it is connected to (Erlang's transitive mesh;
        the session checked the entries)."""
        for name, endpoint in entries:
            if name != self.name:
                other = self.peer(name)
                if other.idle:
                    self.start_connect(other, endpoint)

    # == going down =====================================================================

    def retire(self, conn: Inbound, why: str) -> None:
        """`conn`'s connection is gone: mark it dead, and its peer down if it was up."""
        was = conn.state
        conn.state = Conn.DEAD
        conn.last_seen = time.monotonic()
        peer = conn.peer
        if was is Conn.UP and peer is not None and peer.inbound is conn:
            if peer.state is State.UP:
                self.down(peer, why)
            else:
                peer.inbound = None  # a connection this node is making to it goes on
                peer.session.inbound_down()

    def strike(self, peer: Peer) -> bool:
        """`peer` sent something malformed (logged where it was found): True if it is
        refused for it (`Session.strike`)."""
        refused = peer.session.strike(time.monotonic())
        if refused is None:
            return False
        self.refuse(peer, refused.reason)
        return True

    def refuse(self, peer: Peer, why: str) -> None:
        """Drop `peer` for sending too many malformed ops, and close its connection in."""
        conn = peer.inbound
        log.warning("node %s: refusing %s: %s", self.name, peer.name, why)
        self.down(peer, why)
        if conn is not None:
            conn.state = Conn.DEAD
            log.warning("node %s: %s", self.name, self.inbounds.close(conn))

    def lost(self, peer: Peer) -> None:
        """`peer`'s outbound connection dropped: down once what it sent before is read
        (`settle_lost`)."""
        peer.session.lost("connection lost", time.monotonic())
        self.losing.add(peer)

    def settle_lost(self) -> None:
        """Declare down each peer whose outbound connection dropped (`losing`), once its
        session says so (`Session.settled`): what it sent before, such as its last
        messages or the GOODBYE of a node that stopped, is handled first."""
        now = time.monotonic()
        ready = []
        for peer in list(self.losing):
            conn = peer.inbound
            closed = conn is None or conn.state is not Conn.UP or conn.gone_at is not None
            if peer.session.settled(now, closed):
                ready.append(peer)
        if not ready:
            return
        for _ in range(_LOST_READS):  # all it sent, unless a flood keeps coming
            if not self._read_more():
                break
        for peer in ready:
            if peer in self.losing:
                self.losing.discard(peer)
                down = peer.session.take_lost()
                if down is not None:
                    self.down(peer, down.reason)

    def tick(self, now: float) -> None:
        """Heal the cuts that are due, run each session's ticks and failure detection, and
        retire the connections into this node that closed."""
        for name, heal_at in list(self.cuts.items()):
            if heal_at is not None and now >= heal_at:
                del self.cuts[name]
                peer = self.by_name.get(name)
                if peer is not None and peer.idle:
                    self.start_connect(peer, peer.address)
        for peer in list(self.by_name.values()):
            match peer.session.tick(now):
                case Down(reason):
                    self.down(peer, reason)
                case Tick():
                    self._flush(peer)
        for conn in self.inbounds.sweep(now):
            self.retire(conn, "its connection to this node closed")

    def down(self, peer: Peer, why: str) -> None:
        """`peer` is down (or could not be connected to) for `why`."""
        self.losing.discard(peer)
        peer.failure = why
        was_up = peer.state is State.UP
        goodbye = peer.session.down()
        linger = 0
        if was_up:
            log.warning("node %s: node %s is down: %s", self.name, peer.name, why)
            if peer.dealer is not None and goodbye is not None:
                # Sent on the connection being dropped: whatever made us give up on it
                # (a cut, a request, silence after we were frozen), the peer then sees
                # the link go too, instead of talking on into a link we no longer read.
                with contextlib.suppress(zmq.ZMQError):
                    peer.dealer.send_multipart(goodbye, zmq.NOBLOCK)
                    linger = 500
        else:
            log.info("node %s: cannot connect to %s: %s", self.name, peer.name, why)
        self.dialer.close(peer, linger)
        if peer.inbound is not None:
            peer.inbound.state = Conn.DEAD
            peer.inbound = None
        self.attempt_done(peer)
        self.sendq.release(peer)
        self._node_down(peer.name, was_up and not peer.hidden)

    def goodbye(self) -> None:
        """Tell every connected peer this node is leaving (the node stops)."""
        for peer in list(self.by_name.values()):
            if peer.state is State.UP and peer.dealer is not None:
                peer.session.goodbye()
                self._flush(peer)
                peer.dealer.setsockopt(zmq.LINGER, 1000)

    def close_all(self) -> None:
        """Close every outbound connection; release whoever waits on a peer."""
        for peer in list(self.by_name.values()):
            stop_monitor(peer.dealer)
            for sock in (peer.monitor, peer.dealer):
                if sock is not None:
                    sock.close()
            peer.dealer = peer.monitor = None
            peer.session.down()
            self.attempt_done(peer)
            self.sendq.release(peer)


def _base_name(node: str) -> str:
    """``name@host`` from ``name@host:port``."""
    name, _, host = node.partition("@")
    if host.count(":") == 1:
        host = host.split(":")[0]
    return f"{name}@{host}"
