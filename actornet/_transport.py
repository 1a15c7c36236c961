"""The ZeroMQ transport of a node: one I/O thread owns every socket, and runs the loop:
poll, recv, feed the session, dispatch, send.

Sockets: one ROUTER bound on the node's port reads everything peers send (`_listener`);
one DEALER per peer, connected to that peer's ROUTER, carries everything this node sends
to it (`_dialer`). So each direction of a node pair is its own connection with its own
handshake (`_handshake`) and sequence numbers (`_wire`); a pair is *connected* once this
side's DEALER is authenticated.

The loop: process threads build ops (`_ops`) and hand them to the I/O thread through the
outbox (`_sendqueue`, which also holds back-pressure; libzmq holds at most
`_dialer.SNDHWM` batches per peer before a peer's queue grows). The I/O thread gives what
it finds per peer to that peer's session (`_session`), which cuts it into batches for the
DEALER. It reads the ROUTER, places each message on its connection (`_inbound`: a new one
runs the handshake), feeds each batch to its session, and hands the ops that come out to
the node (`_dispatch`). The protocol (sequence numbers, MACs, ticks and failure detection,
the lost-peer grace, the oversize policy, goodbye, strikes) is the session's; what
happens to a peer on the session's events (connect, up, down, mesh) is `_peers`'s; this
module moves the bytes. On a plain connection every batch carries a MAC made with the
session key of its handshake (`_wire`), so authentication holds for the connection, not
only for its first frames.

Containment: the I/O thread handles each message, each socket event and each command on
its own; an error in one (a peer's value the code did not expect, libzmq refusing an
endpoint, no file descriptor left) is logged with the peer it came from and costs that
message or that connection attempt, not the thread. A peer whose messages keep failing is
disconnected. If the loop itself fails, it is restarted; if it keeps failing, the node
stops (loudly, leaving the port mapper) rather than live on deaf.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq

from actornet import _address
from actornet import _wire as w
from actornet._dispatch import dispatch
from actornet._handshake import Acceptor
from actornet._inbound import Arrivals, Inbounds
from actornet._listener import Listener
from actornet._ops import NoConnect, Ops
from actornet._peer import Conn, Inbound, Peer
from actornet._peers import HIDDEN, Peers
from actornet._sendqueue import COUNTED, SendQueue
from actornet._session import Broken, Down, Dropped, Mesh, Oversized, Refused, State
from actornet.errors import ActornetError

if TYPE_CHECKING:
    from actornet._process import NodeApi

__all__ = ["Transport"]

log = logging.getLogger("actornet.dist")

_READ_BUDGET = 2000  # messages read from the ROUTER per loop turn
# The tick check runs every tick_time / _CHECKS seconds, so a silent peer is declared down
# at most tick_time * (1 + 1 / _CHECKS) after its last frame (4.5 s with the default 4 s).
_CHECKS = 8
_CRASHES = 5  # failures of the I/O loop within _CRASH_WINDOW s before the node stops
_CRASH_WINDOW = 10.0


class Transport(Ops):
    """ZeroMQ distribution for one node; created by `actornet.start_node`."""

    def __init__(
        self,
        node: NodeApi,
        *,
        bind_ip: str,
        advertise_host: str,
        port: int,
        cookie: bytes,
        secure: bool = True,
        tick_time: float = 4.0,
        handshake_timeout: float = 5.0,
        max_message_size: int = w.DEFAULT_MAX_MESSAGE_SIZE,
        busy_limit: int = 8 * 1024 * 1024,
        mesh: bool = True,
        hidden: bool = False,
        resolve: Callable[[str], str | None] | None = None,
    ) -> None:
        self.node = node
        self.cookie = cookie
        self.secure = secure
        self.tick_time = tick_time
        self.handshake_timeout = handshake_timeout
        self.busy_limit = busy_limit
        self.mesh = mesh and not hidden
        self.hidden = hidden
        # handshake flags: bit 0 secure (CURVE), bit 1 hidden (not part of the mesh)
        self._flags = (1 if secure else 0) | (HIDDEN if hidden else 0)
        # One I/O thread: libzmq then says a connection was accepted before that connection
        # can send anything (`_inbound`).
        self._ctx = zmq.Context(io_threads=1)
        try:
            self._listener = Listener(self._ctx, bind_ip=bind_ip, port=port, cookie=cookie,
                                      secure=secure, handshake_timeout=handshake_timeout)
        except ActornetError:
            self._ctx.term()
            raise
        self.port = self._listener.port
        self._router, self._zap = self._listener.router, self._listener.zap
        self._router_monitor = self._listener.monitor
        self.endpoint = f"tcp://{advertise_host}:{self.port}"
        # connections into the ROUTER, and those accepted but not yet authenticated
        self._in = Inbounds(node.name, self.port, handshake_timeout, tick_time,
                            self._router_monitor, secure)
        self._inbound = self._in.by_rid
        self._pending = self._in.pending
        self.stats = {"bytes_out": 0, "bytes_in": 0, "batches_out": 0, "batches_in": 0,
                      "ticks_out": 0, "bad_frames": 0, "oversized_in": 0}
        sendq = SendQueue(node.name, busy_limit)
        self._outbox = sendq.outbox
        self._poller = zmq.Poller()
        self._poller.register(self._router, zmq.POLLIN)
        self._poller.register(sendq.fd, zmq.POLLIN)
        if self._zap is not None:
            self._poller.register(self._zap, zmq.POLLIN)
        self._crashes: deque[float] = deque()  # when the I/O loop failed, lately
        self._poller.register(self._router_monitor, zmq.POLLIN)
        peers = Peers((node.name, node.creation, self.endpoint, self._flags), ctx=self._ctx,
                      poller=self._poller, cookie=cookie, secure=secure, tick_time=tick_time,
                      handshake_timeout=handshake_timeout, max_message_size=max_message_size,
                      mesh=self.mesh, resolve=resolve, stats=self.stats, sendq=sendq,
                      inbounds=self._in, flush=self._flush, read_more=self._read_router,
                      node_up=node.node_up, node_down=node.node_down)
        super().__init__(peers, sendq, max_message_size)
        self._peers = peers.by_name
        self._arrivals = Arrivals(self._in, acceptor=self._acceptor, reply=self._reply,
                                  batch=self._on_batch, up=peers.inbound_up,
                                  retire=peers.retire, strike=peers.strike, stats=self.stats)
        self._thread = threading.Thread(target=self._loop, name=f"actornet-io {node.name}",
                                        daemon=True)
        sendq.io_thread = self._thread
        self._thread.start()

    @property
    def _running(self) -> bool:
        return self.sendq.running

    @property
    def _resolve(self) -> Callable[[str], str | None] | None:
        """name -> endpoint (a port-mapper look-up; may block)."""
        return self.peers.dialer.resolve

    @_resolve.setter
    def _resolve(self, resolve: Callable[[str], str | None] | None) -> None:
        self.peers.dialer.resolve = resolve

    @property
    def _srcfd_missing(self) -> str | None:
        """Why inbound connections cannot be told apart here (None: they can)."""
        return self._in.srcfd_missing

    # == API for other threads ===================================================

    def _wake(self) -> None:
        self.sendq.wake()

    def connect(self, node: str, timeout: float | None = None) -> bool:
        """Connect to `node` if needed (`Peers.connect`); True once connected."""
        return self.peers.connect(node, timeout)

    def failure(self, node: str) -> str | None:
        """Why the last attempt to connect to `node` failed (`Peers.failure`)."""
        return self.peers.failure(node)

    def creation(self, node: str) -> int | None:
        """The creation of `node` last connected (`Peers.creation`)."""
        return self.peers.creation(node)

    def nodes(self) -> list[str]:
        """Peers connected in either direction (`Peers.nodes`)."""
        return self.peers.nodes()

    def info(self) -> dict[str, Any]:
        """The transport's part of `node_info`."""
        return {
            "endpoint": self.endpoint,
            "secure": self.secure,
            "hidden": self.hidden,
            "tick_time": self.tick_time,
            "connections": self.peer_info(),
            "outbox_depth": self._outbox.qsize(),
            **self.stats,
        }

    def peer_info(self) -> dict[str, dict[str, object]]:
        """Each peer's state (`Peers.info`)."""
        return self.peers.info()

    def cut(self, node: str, heal_after: float | None = None) -> None:
        """Fault injection: drop everything to and from `node` until `heal` (and say it is down).

        With `heal_after`, the cut heals by itself after that many seconds and
        this node connects to `node` again.
        """
        heal_at = None if heal_after is None else time.monotonic() + heal_after
        self.sendq.command(("cut", _address.parse(node)[0], heal_at))

    def heal(self, node: str) -> None:
        """Undo `cut`; the next use (or a ping) connects again."""
        self.sendq.command(("heal", _address.parse(node)[0]))

    def disconnect(self, node: str) -> None:
        """Drop the connection to `node` as if it went down (Erlang `disconnect_node/1`)."""
        self.sendq.command(("disconnect", _address.parse(node)[0]))

    def stop(self) -> None:
        """Tell connected peers we are leaving, close every socket, end the I/O thread."""
        if not self._running:
            return
        self.sendq.command(("stop",))
        self._thread.join(5.0)

    # == the I/O thread ============================================================

    def _loop(self) -> None:
        """Run the I/O loop; restart it if it fails, stop the node if it keeps failing
        (`_CRASHES` times in `_CRASH_WINDOW` s): a node whose I/O thread is gone is deaf
        to every peer while it looks alive, so it must not stay registered as alive."""
        fatal = False
        try:
            while self._running:
                try:
                    self._run()
                except Exception:
                    now = time.monotonic()
                    self._crashes.append(now)
                    while now - self._crashes[0] > _CRASH_WINDOW:
                        self._crashes.popleft()
                    if len(self._crashes) >= _CRASHES:
                        log.critical("node %s: the I/O thread failed %d times in %.0f s; "
                                     "stopping the node", self.node.name, len(self._crashes),
                                     _CRASH_WINDOW, exc_info=True)
                        fatal = True
                        return
                    log.exception("node %s: the I/O thread failed; restarting its loop",
                                  self.node.name)
        finally:
            self._close_all()
            if fatal:
                # Off this thread: stopping the node joins it. The node's processes end,
                # and it leaves the port mapper, so peers find it gone.
                threading.Thread(target=self.node.stop, name=f"actornet-stop {self.node.name}",
                                 daemon=True).start()

    def _run(self) -> None:
        next_tick = time.monotonic() + self.tick_time / _CHECKS
        sendq = self.sendq
        while self._running:
            sendq.sleeping = True
            now = time.monotonic()
            wake_at = next_tick
            deadline = self._pending.next_deadline()
            if deadline is not None:  # and their byte counts are looked at meanwhile
                wake_at = min(wake_at, deadline, now + self._pending.interval)
            timeout = 0 if not self._outbox.empty() else max(0, int((wake_at - now) * 1000) + 1)
            if self.peers.losing or sendq.busy:
                timeout = min(timeout, 20)
            ready = dict(self._poller.poll(timeout))
            sendq.sleeping = False
            if sendq.fd in ready:
                sendq.woken()
            if self._router_monitor in ready:  # accepts first: see `Inbounds.accepted`
                self._in.read_monitor()
            if self._zap is not None and self._zap in ready:
                self._listener.answer_zap(self.node.name)
            if self._router in ready:
                self._read_router()
            sockets = self.peers.dialer.sockets
            for sock in [s for s in ready if s in sockets]:
                entry = sockets.get(sock)
                if entry is None:
                    continue  # closed by what handled a socket before it in this turn
                kind, peer = entry
                try:
                    if kind == "dealer":
                        self._on_dealer(peer, ready[sock])
                    else:
                        self.peers.dialer.on_monitor(peer)
                except Exception as e:
                    self._contain(peer, f"its connection failed here: {e!r:.200}")
            if self.peers.losing:  # after both ends' events of this turn: a killed peer at once
                self.peers.settle_lost()
            self._drain_outbox()
            if sendq.busy:
                sendq.check_busy()
            now = time.monotonic()
            if now >= next_tick:
                self._tick(now)
                next_tick = now + self.tick_time / _CHECKS
            if deadline is not None:
                self._in.watch_pending(now)

    def _tick(self, now: float) -> None:
        self.peers.tick(now)

    def _contain(self, peer: Peer, why: str) -> None:
        """Something about `peer` failed in this thread: log it with its traceback, and
        drop the peer (its links and monitors fire) rather than the thread."""
        log.error("node %s: dropping %s: %s", self.node.name, peer.name, why, exc_info=True)
        if peer.state in (State.UP, State.CONNECTING):
            self.peers.down(peer, why)

    # -- outbound -----------------------------------------------------------------------

    def _drain_outbox(self) -> None:
        touched: set[Peer] = set()
        get = self._outbox.get_nowait
        for _ in range(20000):
            try:
                peer, item = get()
            except queue.Empty:
                break
            if peer is None:
                # Whatever was queued before a command goes out before it runs
                # (a cut must not swallow the reply queued just before it).
                self._send_touched(touched)
                touched.clear()
                try:
                    self._command(item)
                except Exception as e:
                    self.peers.command_failed(item, e)
                if not self._running:
                    return
                continue
            if len(item) >= COUNTED:
                peer.flow.taken += len(item)
            if item.__class__ is NoConnect and peer.idle:
                continue  # noconnect, and the connection went down since it was sent
            peer.session.queue(item)
            touched.add(peer)
        self._send_touched(touched)

    def _send_touched(self, touched: set[Peer]) -> None:
        for peer in touched:
            if peer.state is State.UP:
                self._flush(peer)
            elif peer.idle:
                self.peers.start_connect(peer, peer.address)

    def _flush(self, peer: Peer) -> None:
        """Hand what the session has for `peer` to its DEALER, until ZeroMQ says "again"."""
        dealer = peer.dealer
        assert dealer is not None
        session, send = peer.session, dealer.send_multipart
        while (batch := session.next_batch()) is not None:
            try:
                send(batch, zmq.NOBLOCK)
            except zmq.Again:
                if not peer.waiting_pollout:
                    peer.waiting_pollout = True
                    self._poller.modify(dealer, zmq.POLLIN | zmq.POLLOUT)
                return
            session.sent(time.monotonic())
        if peer.waiting_pollout:
            peer.waiting_pollout = False
            self._poller.modify(dealer, zmq.POLLIN)

    def _command(self, cmd: tuple[object, ...]) -> None:
        if cmd == ("stop",):
            self.peers.goodbye()
            self.sendq.running = False
        else:
            self.peers.command(cmd)

    def _on_dealer(self, peer: Peer, events: int) -> None:
        if events & zmq.POLLOUT and peer.state is State.UP:
            self._flush(peer)
        if events & zmq.POLLIN:
            self.peers.dialer.on_readable(peer)

    # -- inbound ---------------------------------------------------------------------------

    def _read_router(self) -> bool:
        """Handle what the ROUTER holds, up to `_READ_BUDGET` messages; True if it may hold
        more."""
        router = self._router
        recv, getsockopt = router.recv, router.getsockopt
        for _ in range(_READ_BUDGET):
            try:
                head = recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return False
            frames = [head.bytes]
            while getsockopt(zmq.RCVMORE):
                frames.append(recv(zmq.NOBLOCK))
            try:
                self._arrivals.on_message(head, frames)
            except Exception as e:  # a value the code did not expect: this message only
                self._arrivals.failed(frames[0], e)
        return True

    def _acceptor(self) -> Acceptor:
        """The acceptor's side of a new inbound connection's handshake."""
        return Acceptor(self.cookie, self.node.name, self.node.creation, self._flags,
                        refuse=self.peers.cut_reason)

    def _reply(self, rid: bytes, frame: bytes) -> None:
        """Send a handshake frame on the inbound connection `rid` (`zmq.ZMQError` if it is
        gone)."""
        self._router.send_multipart([rid, frame], zmq.NOBLOCK)

    def _on_batch(self, conn: Inbound, frames: list[bytes]) -> None:
        """A batch on an authenticated connection: its session says what it means."""
        peer = conn.peer
        assert peer is not None
        if peer.name in self.peers.cuts:
            return
        now = conn.last_seen = time.monotonic()
        if len(frames) != 3:
            self.stats["batches_in"] += 1
            self._bad_frame(peer, f"a batch has 2 frames, this one {len(frames) - 1}")
            self.peers.strike(peer)
            return
        deliver, send = self.node.deliver, w.SEND
        for item in peer.session.feed(frames[1], frames[2], now):
            if isinstance(item, list):  # an op for the node
                if item[0] == send:  # the hot path, without a dispatch: a message to a pid
                    deliver(item[1], item[2], item[3])
                elif not self._dispatch(peer, conn, item):
                    return  # it was dropped meanwhile (too many malformed ops)
                continue
            match item:
                case Dropped(why):
                    log.error("node %s: dropped a frame from %s: %s", self.node.name,
                              peer.name, why)
                case Oversized(sizes):
                    for size in sizes:
                        log.error("node %s: dropped an op of %d bytes from %s: over "
                                  "max_message_size (%d bytes)", self.node.name, size,
                                  peer.name, self.max_message_size)
                case Mesh(entries):
                    self.peers.meet(entries)
                case Down(reason):
                    self.peers.down(peer, reason)
                case Refused(reason):
                    self.peers.refuse(peer, reason)
                case Broken(reason):
                    self.peers.retire(conn, reason)
                    log.warning("node %s: %s", self.node.name, self._in.close(conn))
        if peer.state is State.UP and peer.session.pending:
            self._flush(peer)

    def _dispatch(self, peer: Peer, conn: Inbound, op: list[Any]) -> bool:
        """Hand `op` from `peer` (not a SEND) to the node; False if `peer` was dropped."""
        try:
            for why in dispatch(self.node, op):
                self._bad_frame(peer, why)
                if self.peers.strike(peer):
                    return False
        except Exception:
            self.stats["bad_frames"] += 1
            log.exception("node %s: failed to handle %s from %s", self.node.name,
                          w.shown(op[:2], 80), peer.name)
            self.peers.strike(peer)
        return conn.state is Conn.UP

    def _bad_frame(self, peer: Peer, why: str) -> None:
        self.stats["bad_frames"] += 1
        log.error("node %s: dropped a frame from %s: %s", self.node.name, peer.name, why)

    def _close_all(self) -> None:
        self.sendq.running = False
        self.peers.close_all()
        self._listener.close()
        self.sendq.close()
        self._ctx.term()

