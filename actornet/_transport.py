"""The ZeroMQ transport of a node: one I/O thread owns every socket.

Sockets: one ROUTER bound on the node's port reads everything peers send; one
DEALER per peer, connected to that peer's ROUTER, carries everything this node
sends to it. So each direction of a node pair is its own connection with its
own handshake (`_handshake`) and sequence numbers (`_wire`); a pair is
*connected* once this side's DEALER is authenticated.

The loop: poll, recv, feed the session, dispatch, send. Process threads hand ops to the
I/O thread through the outbox (`_sendqueue`, which also holds back-pressure; libzmq holds at
most `_dialer.SNDHWM` batches per peer before a peer's queue grows). The I/O thread gives what it
finds per peer to that peer's session (`_session`), which cuts it into batches; it reads
the ROUTER, runs handshakes, feeds each batch to its session, and hands the ops that come
out to the node (`_dispatch`). The protocol (sequence numbers, MACs, ticks and failure
detection, the lost-peer grace, the oversize policy, goodbye, strikes) is the session's;
this module only moves bytes and acts on the session's events. Nothing else touches a
socket.

Inbound connections: the ROUTER names each by the routing id the peer presents; which
TCP connection a message came on, and what a connection may hold before it authenticates,
is `_inbound`'s. On an encrypted node (the default) CurveZMQ lets in only clients that hold
the cluster's key, which a ZAP handler here checks, so a stranger gets nothing past
ZeroMQ's own handshake. libzmq holds at most `_RCVHWM` messages (of at most
`MAX_FRAME` bytes) per connection that this node has not read. On a plain connection
every batch carries a MAC made with the session key of its handshake (`_wire`), so
authentication holds for the connection, not only for its first frames.

Containment: the I/O thread handles each message, each socket event and each command on
its own; an error in one (a peer's value the code did not expect, libzmq refusing an
endpoint, no file descriptor left) is logged with the peer it came from and costs that
message or that connection attempt, not the thread. A peer whose messages keep failing is
disconnected. If the loop itself fails, it is restarted; if it keeps failing, the node
stops (loudly, leaving the port mapper) rather than live on deaf.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq
from zmq.utils import z85

from actornet import _address, _admission, _tcpconn
from actornet import _wire as w
from actornet._dialer import ZMTP_FAILED, Dialer, stop_monitor, zmtp_failure
from actornet._dispatch import dispatch
from actornet._handshake import Acceptor, Established, Failed, Send, curve_keypair
from actornet._ids import Pid, Ref
from actornet._inbound import Inbounds
from actornet._peer import Conn, Inbound, Peer
from actornet._sendqueue import COUNTED, SendQueue
from actornet._session import (
    Broken,
    Down,
    Dropped,
    Mesh,
    Oversized,
    Refused,
    Session,
    State,
    Tick,
)
from actornet.errors import ActornetError

if TYPE_CHECKING:
    from actornet._process import NodeApi as Node

__all__ = ["Transport"]

log = logging.getLogger("actornet.dist")

_HIDDEN = 2  # handshake flag bit: the node is hidden
_READ_BUDGET = 2000  # messages read from the ROUTER per loop turn
# The tick check runs every tick_time / _CHECKS seconds, so a silent peer is declared down
# at most tick_time * (1 + 1 / _CHECKS) after its last frame (4.5 s with the default 4 s).
_CHECKS = 8
# s an outbound attempt may take before a connection from the peer that gets through
# makes us start it over (`_inbound_up`); a healthy one takes milliseconds
_STALE_ATTEMPT = 1.0
_LOST_READS = 50  # budgets of ROUTER reads before a lost peer is declared down (100,000 msgs)
# Messages libzmq holds per inbound connection that this node has not read (at most
# MAX_FRAME bytes each); then it stops reading that connection, and its sender waits.
_RCVHWM = 16
_CRASHES = 5  # failures of the I/O loop within _CRASH_WINDOW s before the node stops
_CRASH_WINDOW = 10.0
_ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # where libzmq asks (RFC 27), per context
class Transport:
    """ZeroMQ distribution for one node; created by `actornet.start_node`."""

    def __init__(
        self,
        node: Node,
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
        self.max_message_size = max_message_size
        self.busy_limit = busy_limit
        self.mesh = mesh and not hidden
        self.hidden = hidden
        # handshake flags: bit 0 secure (CURVE), bit 1 hidden (not part of the mesh)
        self._flags = (1 if secure else 0) | (_HIDDEN if hidden else 0)
        # One I/O thread: libzmq then says a connection was accepted before that connection
        # can send anything (`_inbound`).
        self._ctx = zmq.Context(io_threads=1)
        self._zap: zmq.Socket[Any] | None = None
        if secure:
            # Bound before the ROUTER listens: libzmq asks it about every CurveZMQ client.
            self._zap = self._ctx.socket(zmq.REP)
            self._zap.setsockopt(zmq.LINGER, 0)
            self._zap.bind(_ZAP_ENDPOINT)
        self._router = self._ctx.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # The default, said so: libzmq ignores a connection that presents a routing id in
        # use. With handover the newcomer would take it and cut the connection that had
        # it, so anyone who learnt a peer's routing id could cut that peer off.
        self._router.setsockopt(zmq.ROUTER_HANDOVER, 0)
        self._router.setsockopt(zmq.LINGER, 0)
        # Frames are at most MAX_FRAME (messages over it span frames): ZeroMQ refuses a
        # larger frame before reading it, so a stranger cannot make us hold more.
        self._router.setsockopt(zmq.MAXMSGSIZE, w.MAX_FRAME + 1024)
        # Set before binding: each connection's pipe takes the options the socket had then.
        self._router.setsockopt(zmq.RCVHWM, _RCVHWM)
        # A TCP connection that never starts ZeroMQ's own greeting is closed as soon as
        # one that never finishes our handshake (libzmq's default waits 30 s).
        self._router.setsockopt(zmq.HANDSHAKE_IVL, int(handshake_timeout * 1000))
        self._cluster_key = b""  # the raw CurveZMQ public key every node of the cluster has
        if secure:
            public, secret = curve_keypair(cookie)
            self._cluster_key = z85.decode(public)
            self._router.curve_server = True
            self._router.curve_publickey = public
            self._router.curve_secretkey = secret
            self._router.setsockopt(zmq.ZAP_DOMAIN, b"actornet")
        try:
            if port:
                self._router.bind(f"tcp://{bind_ip}:{port}")
                self.port = port
            else:
                self.port = self._router.bind_to_random_port(f"tcp://{bind_ip}")
        except zmq.ZMQError as e:
            self._router.close()
            if self._zap is not None:
                self._zap.close()
            self._ctx.term()
            raise ActornetError(f"cannot listen on {bind_ip}:{port or 'any port'}: {e}") from e
        self.endpoint = f"tcp://{advertise_host}:{self.port}"
        self._peers: dict[str, Peer] = {}
        # connections into the ROUTER, and those accepted but not yet authenticated
        self._in = Inbounds(node.name, self.port, handshake_timeout, tick_time,
                            self._on_router_event)
        self._inbound = self._in.by_rid
        self._pending = self._in.pending
        self._lock = threading.Lock()
        self.stats = {"bytes_out": 0, "bytes_in": 0, "batches_out": 0, "batches_in": 0,
                      "ticks_out": 0, "bad_frames": 0, "oversized_in": 0}
        self._sendq = SendQueue(node.name, busy_limit)
        self._outbox = self._sendq.outbox
        self._poller = zmq.Poller()
        self._poller.register(self._router, zmq.POLLIN)
        self._poller.register(self._sendq.fd, zmq.POLLIN)
        if self._zap is not None:
            self._poller.register(self._zap, zmq.POLLIN)
        self._crashes: deque[float] = deque()  # when the I/O loop failed, lately
        # CURVE failures never reach our own handshake: this is their only trace here.
        # Accepts and disconnections say which connection a descriptor holds (`_inbound`).
        # libzmq's I/O thread blocks on a full monitor socket, freezing every connection:
        # this one is never full (RCVHWM 0), and is read whenever it has something.
        address = f"inproc://actornet-router-monitor-{id(self):x}"
        self._router.monitor(address, ZMTP_FAILED | zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        self._router_monitor = self._ctx.socket(zmq.PAIR)
        self._router_monitor.setsockopt(zmq.RCVHWM, 0)
        self._router_monitor.setsockopt(zmq.LINGER, 0)
        self._router_monitor.connect(address)
        self._poller.register(self._router_monitor, zmq.POLLIN)
        self._dialer = Dialer(self._ctx, self._poller,
                              hello=(node.name, node.creation, self.endpoint, self._flags),
                              cookie=cookie, secure=secure, handshake_timeout=handshake_timeout,
                              resolve=resolve, command=self._sendq.command,
                              up=self._outbound_up, fail=self._peer_down, lost=self._lost_peer)
        # fault injection: nodes we pretend cannot be reached -> when to heal (or None)
        self._cut: dict[str, float | None] = {}
        # peers whose outbound connection dropped, until their inbound one closes too or
        # the session's grace passes (`_settle_lost`)
        self._lost: set[Peer] = set()
        self._thread = threading.Thread(target=self._loop, name=f"actornet-io {node.name}",
                                        daemon=True)
        self._sendq.io_thread = self._thread
        self._thread.start()

    @property
    def _running(self) -> bool:
        return self._sendq.running

    @property
    def _resolve(self) -> Callable[[str], str | None] | None:
        """name -> endpoint (a port-mapper look-up; may block)."""
        return self._dialer.resolve

    @_resolve.setter
    def _resolve(self, resolve: Callable[[str], str | None] | None) -> None:
        self._dialer.resolve = resolve

    @property
    def _srcfd_missing(self) -> str | None:
        """Why inbound connections cannot be told apart here (None: they can)."""
        return self._in.srcfd_missing

    # == API for other threads ===================================================

    def _wake(self) -> None:
        self._sendq.wake()

    def _peer(self, name: str) -> Peer:
        """The peer named `name`, made if new; `ValueError` if `name` is not a node name."""
        peer = self._peers.get(name)
        if peer is None:
            _address.check_name(name)
            with self._lock:
                peer = self._peers.get(name)
                if peer is None:
                    session = Session(name, tick_time=self.tick_time,
                                      max_message_size=self.max_message_size, mesh=self.mesh,
                                      stats=self.stats)
                    peer = self._peers[name] = Peer(name, session)
        return peer

    def _peer_at(self, address: str) -> tuple[Peer, str | None]:
        """The peer `address` names, and the endpoint it gives (None: none given). Raises
        `ValueError` for a malformed address, in the caller's thread: nothing malformed
        reaches the I/O thread (or libzmq)."""
        name, endpoint = _address.parse(address)
        peer = self._peer(name)
        if endpoint is not None and peer.address is None:
            peer.address = endpoint  # how to reach it if it is not connected yet
        return peer, endpoint

    def _enqueue(self, node: str, op: list[Any], connect: bool = True,
                 address: bool = False) -> None:
        """Queue `op` for `node`: a node name (a pid's), or with `address` one a caller gave
        (``name@host:port`` too). `ValueError` if it is neither."""
        peer = self._peers.get(node)  # the common case: a plain name we know
        if peer is None:
            # A pid's node is a name: one with a port (a peer may send any) is not dialled.
            peer = self._peer_at(node)[0] if address else self._peer(node)
        data = w.encode_op(op, self.max_message_size)
        if not connect:
            if peer.idle:
                return  # noconnect: no connection is made for it (one being made is used)
            data = _NoConnect(data)  # checked again when drained: the link may go meanwhile
        self._sendq.put(peer, data)

    def send(self, pid: Pid, msg: Any, connect: bool = True) -> None:
        self._enqueue(pid.node, [w.SEND, pid.id, pid.creation, msg], connect)

    def send_many(self, node: str, pids: list[Pid], msg: Any) -> None:
        """Send `msg` to each of `pids` (all of `node`) as one op: one copy of `msg` on the
        wire, delivered on arrival in the order of `pids` (`pg.broadcast`)."""
        self._enqueue(node, [w.SEND_MANY, [[p.id, p.creation] for p in pids], msg])

    def send_name(self, from_: Pid, name: str, node: str, msg: Any,
                  connect: bool = True) -> None:
        self._enqueue(node, [w.REG_SEND, from_, name, msg], connect, address=True)

    def link(self, from_: Pid, to: Pid) -> None:
        self._enqueue(to.node, [w.LINK, from_, to])

    def unlink(self, from_: Pid, to: Pid) -> None:
        self._enqueue(to.node, [w.UNLINK, from_, to])

    def exit(self, from_: Pid, to: Pid, reason: Any, *, linked: bool) -> None:
        self._enqueue(to.node, [w.EXIT if linked else w.EXIT2, from_, to, reason])

    def monitor(self, watcher: Pid, target: Pid | tuple[str, str], ref: Ref) -> None:
        node, what = (target.node, target) if isinstance(target, Pid) else (target[1], target[0])
        self._enqueue(node, [w.MONITOR, watcher, what, ref], address=not isinstance(target, Pid))

    def demonitor(self, watcher: Pid, target: Pid | tuple[str, str], ref: Ref) -> None:
        node, what = (target.node, target) if isinstance(target, Pid) else (target[1], target[0])
        if isinstance(what, str) and what.startswith("$"):
            return  # the monitor of a pending remote spawn: nothing to undo remotely
        self._enqueue(node, [w.DEMONITOR, watcher, what, ref],
                      address=not isinstance(target, Pid))

    def down(self, watcher: Pid, ref: Ref, item: Any, reason: Any) -> None:
        self._enqueue(watcher.node, [w.DOWN, watcher, ref, item, reason])

    def alias_send(self, to: Pid, ref: Ref, msg: Any) -> None:
        self._enqueue(to.node, [w.ALIAS, to, ref, msg])

    def spawn_request(self, node: str, requester: Pid, ref: Ref, module: str, qualname: str,
                      args: tuple[Any, ...], flags: int) -> None:
        self._enqueue(node, [w.SPAWN, requester, ref, module, qualname, args, flags],
                      address=True)

    def spawn_reply(self, requester: Pid, ref: Ref, result: Any, flags: int) -> None:
        self._enqueue(requester.node, [w.SPAWN_REPLY, requester, ref, result, flags])

    def connect(self, node: str, timeout: float | None = None) -> bool:
        """Connect to `node` if needed; True once connected, False if it failed.

        Raises `ValueError` if `node` is not an address (``name@host[:port]``)."""
        if _address.parse(node)[0] == self.node.name:
            return True
        peer, endpoint = self._peer_at(node)
        if peer.state is State.UP:
            return True
        if not self._running:
            return False
        done = peer.attempts_done
        self._sendq.command(("connect", peer, endpoint))
        with peer.changed:
            peer.changed.wait_for(
                lambda: peer.state is State.UP or peer.attempts_done > done
                or not self._running,
                timeout if timeout is not None else self.handshake_timeout + 6.0,
            )
        return peer.state is State.UP

    def failure(self, node: str) -> str | None:
        """Why the last attempt to connect to `node` failed; None if it did not fail (or
        is still going on)."""
        peer = self._peers.get(_base_name(node))
        return None if peer is None else peer.failure

    def creation(self, node: str) -> int | None:
        """The creation of the incarnation of `node` last connected in either direction,
        or None if none was."""
        peer = self._peers.get(node)
        return None if peer is None else peer.creation

    def nodes(self) -> list[str]:
        """Peers connected in either direction (a peer that just connected to us
        counts at once, while our connection back to it is still being made)."""
        return sorted(
            p.name for p in list(self._peers.values())
            if (p.state is State.UP or (p.inbound is not None and p.inbound.state is Conn.UP))
            and not p.hidden
        )


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

    def peer_info(self) -> dict[str, dict[str, Any]]:
        # busy: a sender waits for it, or what is queued for it is over the limit (a
        # lightweight sender owes the wait then, `_backpressure`)
        return {p.name: {"state": p.state.value, "backlog_bytes": p.backlog,
                         "busy": self._sendq.busy_now(p),
                         "creation": p.creation, "endpoint": p.endpoint}
                for p in list(self._peers.values())}

    def cut(self, node: str, heal_after: float | None = None) -> None:
        """Fault injection: drop everything to and from `node` until `heal` (and say it is down).

        With `heal_after`, the cut heals by itself after that many seconds and
        this node connects to `node` again.
        """
        heal_at = None if heal_after is None else time.monotonic() + heal_after
        self._sendq.command(("cut", _address.parse(node)[0], heal_at))

    def heal(self, node: str) -> None:
        """Undo `cut`; the next use (or a ping) connects again."""
        self._sendq.command(("heal", _address.parse(node)[0]))

    def disconnect(self, node: str) -> None:
        """Drop the connection to `node` as if it went down (Erlang `disconnect_node/1`)."""
        self._sendq.command(("disconnect", _address.parse(node)[0]))

    def stop(self) -> None:
        """Tell connected peers we are leaving, close every socket, end the I/O thread."""
        if not self._running:
            return
        self._sendq.command(("stop",))
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
        sendq = self._sendq
        while self._running:
            sendq.sleeping = True
            now = time.monotonic()
            wake_at = next_tick
            deadline = self._pending.next_deadline()
            if deadline is not None:  # and their byte counts are looked at meanwhile
                wake_at = min(wake_at, deadline, now + self._pending.interval)
            timeout = 0 if not self._outbox.empty() else max(0, int((wake_at - now) * 1000) + 1)
            if self._lost or sendq.busy:
                timeout = min(timeout, 20)
            ready = dict(self._poller.poll(timeout))
            sendq.sleeping = False
            if sendq.fd in ready:
                sendq.woken()
            if self._router_monitor in ready:  # accepts first: see `Inbounds.accepted`
                self._on_router_event()
            if self._zap is not None and self._zap in ready:
                self._on_zap()
            if self._router in ready:
                self._read_router()
            sockets = self._dialer.sockets
            for sock in [s for s in ready if s in sockets]:
                entry = sockets.get(sock)
                if entry is None:
                    continue  # closed by what handled a socket before it in this turn
                kind, peer = entry
                try:
                    if kind == "dealer":
                        self._on_dealer(peer, ready[sock])
                    else:
                        self._dialer.on_monitor(peer)
                except Exception as e:
                    self._contain(peer, f"its connection failed here: {e!r:.200}")
            if self._lost:  # after both ends' events of this turn: a killed peer at once
                self._settle_lost()
            self._drain_outbox()
            if sendq.busy:
                sendq.check_busy()
            now = time.monotonic()
            if now >= next_tick:
                self._tick(now)
                next_tick = now + self.tick_time / _CHECKS
            if deadline is not None:
                self._in.watch_pending(now)

    def _contain(self, peer: Peer, why: str) -> None:
        """Something about `peer` failed in this thread: log it with its traceback, and
        drop the peer (its links and monitors fire) rather than the thread."""
        log.error("node %s: dropping %s: %s", self.node.name, peer.name, why, exc_info=True)
        if peer.state in (State.UP, State.CONNECTING):
            self._peer_down(peer, why)

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
                    self._command_failed(item, e)
                if not self._running:
                    return
                continue
            if len(item) >= COUNTED:
                peer.flow.taken += len(item)
            if item.__class__ is _NoConnect and peer.idle:
                continue  # noconnect, and the connection went down since it was sent
            peer.session.queue(item)
            touched.add(peer)
        self._send_touched(touched)

    def _send_touched(self, touched: set[Peer]) -> None:
        for peer in touched:
            if peer.state is State.UP:
                self._flush(peer)
            elif peer.idle:
                self._start_connect(peer, peer.address)

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

    def _attempt_done(self, peer: Peer) -> None:
        with peer.changed:
            peer.attempts_done += 1
            peer.changed.notify_all()

    def _command(self, cmd: tuple[Any, ...]) -> None:
        match cmd:
            case ("connect", Peer() as peer, endpoint):
                if peer.idle:
                    self._start_connect(peer, endpoint)
                elif peer.state is State.UP:
                    self._attempt_done(peer)
            case ("dial", Peer() as peer, endpoint, error, attempt):
                if attempt is peer.attempt:  # else a late answer of an abandoned attempt
                    self._dialer.dial(peer, endpoint, error)
            case ("cut", str() as name, heal_at):
                self._cut[name] = heal_at
                cut = self._peers.get(name)
                if cut is not None and (not cut.idle or cut.inbound):
                    self._peer_down(cut, "link cut (fault injection)")
            case ("heal", str() as name):
                self._cut.pop(name, None)
            case ("disconnect", str() as name):
                gone = self._peers.get(name)
                if gone is not None and not gone.idle:
                    self._peer_down(gone, "disconnected by request")
            case ("stop",):
                self._goodbye()
                self._sendq.running = False

    def _command_failed(self, cmd: tuple[Any, ...], error: Exception) -> None:
        """A command failed in this thread: log it; an attempt to connect fails with it
        (its caller hears so at once), the thread goes on."""
        log.error("node %s: %s failed: %r", self.node.name, cmd[0], error, exc_info=True)
        if cmd[0] in ("connect", "dial"):
            peer = cmd[1]
            if peer.state is State.CONNECTING:
                self._peer_down(peer, f"{cmd[0]} failed: {error!r:.200}")
            else:
                self._attempt_done(peer)

    def _start_connect(self, peer: Peer, endpoint: str | None) -> None:
        """Connect to `peer` (`Dialer`); `endpoint` is the one its address gave, if any."""
        peer.attempt_at = time.monotonic()
        peer.session.connect(peer.attempt_at, self.handshake_timeout + 5.0)
        if peer.name in self._cut:
            self._peer_down(peer, "link cut (fault injection)")
            return
        self._dialer.look_up(peer, endpoint)

    def _on_dealer(self, peer: Peer, events: int) -> None:
        if events & zmq.POLLOUT and peer.state is State.UP:
            self._flush(peer)
        if events & zmq.POLLIN:
            self._dialer.on_readable(peer)

    def _outbound_up(self, peer: Peer, event: Established) -> None:
        if peer.creation is not None and peer.creation != event.peer_creation and peer.inbound:
            # The inbound connection belongs to an older incarnation.
            peer.inbound.state = Conn.DEAD
            peer.inbound = None
            peer.session.inbound_down()
        peer.creation = event.peer_creation
        peer.hidden = bool(event.peer_flags & _HIDDEN)
        peer.session.established(b"" if self.secure else event.session_key, time.monotonic())
        self._attempt_done(peer)
        log.info("node %s: connected to %s", self.node.name, peer.name)
        if not peer.hidden:
            self.node.node_up(peer.name)
        if self.mesh and not peer.hidden:
            # Erlang meshes transitively: the new peer learns our peers, and our
            # peers learn the new one, so everyone ends up connected to everyone.
            others = [p for p in self._peers.values()
                      if p.state is State.UP and p is not peer and p.endpoint and not p.hidden]
            peer.session.queue(w.encode_op([w.NODES, [[p.name, p.endpoint] for p in others]]))
            news = w.encode_op([w.NODES, [[peer.name, peer.endpoint]]])
            for other in others:
                other.session.queue(news)
                self._flush(other)
        self._flush(peer)

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
                self._on_message(head, frames)
            except Exception as e:  # a value the code did not expect: this message only
                self._message_failed(frames[0], e)
        return True

    def _on_message(self, head: zmq.Frame, frames: list[bytes]) -> None:
        """Handle one message from the ROUTER (`head` its first frame, `frames` all)."""
        conn = self._inbound.get(frames[0])
        if conn is None:
            self._new_inbound(head, frames)
            return
        # Did it come on the connection `conn` is bound to? (`_inbound`)
        if not self._in.same_connection(conn, head) and not self._in.sent_before_close(
                conn, head):
            self._new_inbound(head, frames, replaces=conn)
            return
        if conn.state is Conn.UP:
            if conn.peer is not None and conn.peer.name in self._cut:
                return
            self._on_batch(conn, frames)
        elif conn.state is Conn.DEAD:
            self.stats["bad_frames"] += 1
            conn.last_seen = time.monotonic()
        else:
            self._on_handshake_frame(conn, frames)

    def _message_failed(self, rid: bytes, error: Exception) -> None:
        """Handling a message under routing id `rid` failed: log it, naming where it came
        from; the message is dropped; an unauthenticated connection is refused, and an
        authenticated peer struck (`_strike`)."""
        self.stats["bad_frames"] += 1
        conn = self._inbound.get(rid)
        peer = conn.peer if conn is not None and conn.state is Conn.UP else None
        source = peer.name if peer is not None else (conn.addr if conn is not None else "") or "?"
        log.error("node %s: dropped a message from %s: handling it failed: %s", self.node.name,
                  source, w.shown(error, 200), exc_info=True)
        if peer is not None:
            self._strike(peer)
        elif conn is not None and conn.state is Conn.HANDSHAKE:
            self._in.refuse(conn, time.monotonic(), "handling its message failed")

    def _new_inbound(self, head: zmq.Frame, frames: list[bytes],
                     replaces: Inbound | None = None) -> None:
        """Start the handshake of a new inbound connection from its first message (`head` its
        first frame, `frames` all of them), which came under the routing id of `replaces`,
        if given, on another connection."""
        rid, now = frames[0], time.monotonic()
        acceptor = Acceptor(self.cookie, self.node.name, self.node.creation, self._flags,
                            refuse=self._refuse)
        conn = self._inbound[rid] = Inbound(rid, acceptor, now)
        unbound = self._in.bind(conn, head)
        if replaces is not None:
            self._replaced(replaces, conn)
        if unbound is None or self._in.srcfd_missing is not None:
            self._on_handshake_frame(conn, frames)
        elif unbound == _tcpconn.GONE:  # it closed before its first message was read
            conn.state = Conn.DEAD
            self.stats["bad_frames"] += 1
        else:  # then nothing could be told to be from it: it cannot authenticate
            self.stats["bad_frames"] += 1
            self._in.refuse(conn, now, f"which connection it is is unknown: {unbound}")
            log.warning("node %s: refused an incoming connection: which connection it is is "
                        "unknown (%s)", self.node.name, unbound)

    def _replaced(self, old: Inbound, new: Inbound) -> None:
        """`new`, a new connection, came under the routing id of `old`, whose connection is
        therefore gone (libzmq gives a routing id to one connection at a time): drop `old`."""
        self._in.forget(old)
        source = f"from {new.addr}" if new.addr else "on a new connection"
        if old.peer is not None:
            name = old.peer.name
            log.warning("node %s: refused to take a message %s as %s's: it came on another "
                        "connection than the one %s authenticated on (from %s), which is gone; "
                        "that connection must authenticate itself", self.node.name, source,
                        name, name, old.addr or "?")
        elif old.state is not Conn.DEAD:
            log.info("node %s: a connection %s took the routing id of one that was still in "
                     "the handshake (from %s), which is gone; it starts over",
                     self.node.name, source, old.addr or "?")
        self._retire(old, "its connection to this node closed")

    def _retire(self, conn: Inbound, why: str) -> None:
        """`conn`'s connection is gone: mark it dead, and its peer down if it was up."""
        was = conn.state
        conn.state = Conn.DEAD
        conn.last_seen = time.monotonic()
        peer = conn.peer
        if was is Conn.UP and peer is not None and peer.inbound is conn:
            if peer.state is State.UP:
                self._peer_down(peer, why)
            else:
                peer.inbound = None  # a connection this node is making to it goes on
                peer.session.inbound_down()

    def _on_handshake_frame(self, conn: Inbound, frames: list[bytes]) -> None:
        now = time.monotonic()
        if len(frames) != 2:
            self.stats["bad_frames"] += 1
            log.warning("node %s: dropped a %d-frame message from an unauthenticated peer",
                        self.node.name, len(frames) - 1)
            self._in.refuse(conn, now, f"it sent a {len(frames) - 1}-frame message")
            return
        for event in conn.acceptor.receive(frames[1]):
            if isinstance(event, Send):
                try:
                    self._router.send_multipart([conn.rid, event.frame], zmq.NOBLOCK)
                except zmq.ZMQError:
                    conn.state = Conn.DEAD  # ZeroMQ is dropping the connection already
            elif isinstance(event, Established):
                self._inbound_up(conn, event, now)
            elif isinstance(event, Failed):
                self._in.refuse(conn, now, str(event.error))
                self.stats["bad_frames"] += 1
                log.warning("node %s: refused an incoming connection: %s",
                            self.node.name, event.error)

    def _refuse(self, peer_name: str) -> str | None:
        return "the link is cut (fault injection)" if peer_name in self._cut else None

    def _inbound_up(self, conn: Inbound, event: Established, now: float) -> None:
        peer = self._peer(event.peer_name)
        old = peer.inbound
        if peer.creation is not None and peer.creation != event.peer_creation:
            if not peer.idle:
                self._peer_down(peer, "it restarted (new incarnation)")
            peer = self._peer(event.peer_name)
        elif old is not None and old is not conn:
            old.state = Conn.DEAD
        conn.state = Conn.UP
        conn.peer = peer
        conn.last_seen = now
        peer.inbound = conn
        peer.session.inbound_up(b"" if self.secure else event.session_key, now)
        peer.creation = event.peer_creation
        peer.hidden = bool(event.peer_flags & _HIDDEN)
        self._in.authenticated(conn)
        if peer.idle and event.peer_endpoint:
            self._start_connect(peer, event.peer_endpoint)
        elif (peer.state is State.CONNECTING and event.peer_endpoint
              and now - peer.attempt_at > _STALE_ATTEMPT):
            # Its connection got through while ours has been trying for a while: ours most
            # likely began during a silent cut that has healed since (TCP retries a lost
            # SYN only seconds later). Start over, towards where the peer says it is.
            self._dialer.close(peer)
            self._start_connect(peer, event.peer_endpoint)

    def _on_batch(self, conn: Inbound, frames: list[bytes]) -> None:
        """A batch on an authenticated connection: its session says what it means."""
        peer = conn.peer
        assert peer is not None
        now = conn.last_seen = time.monotonic()
        if len(frames) != 3:
            self.stats["batches_in"] += 1
            self._bad_frame(peer, f"a batch has 2 frames, this one {len(frames) - 1}")
            self._strike(peer)
            return
        procs, send = self.node.procs, w.SEND
        for item in peer.session.feed(frames[1], frames[2], now):
            if isinstance(item, list):  # an op for the node
                if item[0] == send:  # the hot path, inline: a message to a local pid
                    proc = procs.get(item[1])
                    if proc is not None and proc.pid.creation == item[2]:
                        proc.mailbox.put(item[3])
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
                    self._meet(entries)
                case Down(reason):
                    self._peer_down(peer, reason)
                case Refused(reason):
                    self._refuse_peer(peer, reason)
                case Broken(reason):
                    self._retire(conn, reason)
                    log.warning("node %s: %s", self.node.name, self._in.close(conn))
        if peer.state is State.UP and peer.session.pending:
            self._flush(peer)

    def _dispatch(self, peer: Peer, conn: Inbound, op: list[Any]) -> bool:
        """Hand `op` from `peer` (not a SEND) to the node; False if `peer` was dropped."""
        try:
            for why in dispatch(self.node, op):
                self._bad_frame(peer, why)
                if self._strike(peer):
                    return False
        except Exception:
            self.stats["bad_frames"] += 1
            log.exception("node %s: failed to handle %s from %s", self.node.name,
                          w.shown(op[:2], 80), peer.name)
            self._strike(peer)
        return conn.state is Conn.UP

    def _bad_frame(self, peer: Peer, why: str) -> None:
        self.stats["bad_frames"] += 1
        log.error("node %s: dropped a frame from %s: %s", self.node.name, peer.name, why)

    def _meet(self, entries: list[tuple[str, str]]) -> None:
        """Connect to each node a peer says it is connected to (Erlang's transitive mesh;
        the session checked the entries)."""
        for name, endpoint in entries:
            if name != self.node.name:
                other = self._peer(name)
                if other.idle:
                    self._start_connect(other, endpoint)

    def _strike(self, peer: Peer) -> bool:
        """`peer` sent something malformed (logged where it was found): True if it is
        refused for it (`Session.strike`)."""
        refused = peer.session.strike(time.monotonic())
        if refused is None:
            return False
        self._refuse_peer(peer, refused.reason)
        return True

    def _refuse_peer(self, peer: Peer, why: str) -> None:
        """Drop `peer` for sending too many malformed ops, and close its connection in."""
        conn = peer.inbound
        log.warning("node %s: refusing %s: %s", self.node.name, peer.name, why)
        self._peer_down(peer, why)
        if conn is not None:
            conn.state = Conn.DEAD
            log.warning("node %s: %s", self.node.name, self._in.close(conn))

    # -- failure detection --------------------------------------------------------------

    def _lost_peer(self, peer: Peer) -> None:
        """`peer`'s outbound connection dropped: down once what it sent before is read
        (`_settle_lost`)."""
        peer.session.lost("connection lost", time.monotonic())
        self._lost.add(peer)

    def _on_router_event(self) -> None:
        """Read what the ROUTER's monitor says: which descriptor a connection was accepted on
        (`Inbounds.bind`), which connection closed (its entry is then dropped once what it sent
        before closing is read: `_tick`), and which failed ZeroMQ's handshake for a
        configuration mismatch (logged: ZeroMQ cannot tell who the peer was)."""
        while True:
            try:
                frames = self._router_monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            event = int.from_bytes(frames[0][:2], "little")
            value = int.from_bytes(frames[0][2:6], "little")  # the descriptor, for these two
            if event == zmq.EVENT_ACCEPTED:
                self._in.accepted(value)
                continue
            if event == zmq.EVENT_DISCONNECTED:
                self._in.disconnected(value)
                continue
            why = zmtp_failure(event, value, self.secure)
            if why:
                log.warning("node %s: refused an incoming connection: %s", self.node.name, why)

    def _on_zap(self) -> None:
        """Answer libzmq's questions about CurveZMQ clients (`_admission.zap_reply`)."""
        zap = self._zap
        assert zap is not None
        while True:
            try:
                request = zap.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            reply, refused = _admission.zap_reply(request, self._cluster_key)
            zap.send_multipart(reply)
            if refused:
                log.warning("node %s: refused an incoming connection: %s", self.node.name,
                            refused)

    def _tick(self, now: float) -> None:
        for name, heal_at in list(self._cut.items()):
            if heal_at is not None and now >= heal_at:
                del self._cut[name]
                peer = self._peers.get(name)
                if peer is not None and peer.idle:
                    self._start_connect(peer, peer.address)
        for peer in list(self._peers.values()):
            match peer.session.tick(now):
                case Down(reason):
                    self._peer_down(peer, reason)
                case Tick():
                    self._flush(peer)
        for conn in self._in.sweep(now):
            self._retire(conn, "its connection to this node closed")

    def _settle_lost(self) -> None:
        """Declare down each peer whose outbound connection dropped (`_lost`), once its
        session says so (`Session.settled`): what it sent before, such as its last
        messages or the GOODBYE of a node that stopped, is handled first."""
        now = time.monotonic()
        ready = []
        for peer in list(self._lost):
            conn = peer.inbound
            closed = conn is None or conn.state is not Conn.UP or conn.gone_at is not None
            if peer.session.settled(now, closed):
                ready.append(peer)
        if not ready:
            return
        for _ in range(_LOST_READS):  # all it sent, unless a flood keeps coming
            if not self._read_router():
                break
        for peer in ready:
            if peer in self._lost:
                self._lost.discard(peer)
                down = peer.session.take_lost()
                if down is not None:
                    self._peer_down(peer, down.reason)

    def _peer_down(self, peer: Peer, why: str) -> None:
        self._lost.discard(peer)
        peer.failure = why
        was_up = peer.state is State.UP
        goodbye = peer.session.down()
        linger = 0
        if was_up:
            log.warning("node %s: node %s is down: %s", self.node.name, peer.name, why)
            if peer.dealer is not None and goodbye is not None:
                # Sent on the connection being dropped: whatever made us give up on it
                # (a cut, a request, silence after we were frozen), the peer then sees
                # the link go too, instead of talking on into a link we no longer read.
                with contextlib.suppress(zmq.ZMQError):
                    peer.dealer.send_multipart(goodbye, zmq.NOBLOCK)
                    linger = 500
        else:
            log.info("node %s: cannot connect to %s: %s", self.node.name, peer.name, why)
        self._dialer.close(peer, linger)
        if peer.inbound is not None:
            peer.inbound.state = Conn.DEAD
            peer.inbound = None
        self._attempt_done(peer)
        self._sendq.release(peer)
        self.node.node_down(peer.name, was_up and not peer.hidden)

    def _goodbye(self) -> None:
        for peer in list(self._peers.values()):
            if peer.state is State.UP and peer.dealer is not None:
                peer.session.goodbye()
                self._flush(peer)
                peer.dealer.setsockopt(zmq.LINGER, 1000)

    def _close_all(self) -> None:
        self._sendq.running = False
        for peer in list(self._peers.values()):
            stop_monitor(peer.dealer)
            for sock in (peer.monitor, peer.dealer):
                if sock is not None:
                    sock.close()
            peer.dealer = peer.monitor = None
            peer.session.down()
            self._attempt_done(peer)
            self._sendq.release(peer)
        stop_monitor(self._router)
        self._router_monitor.close(linger=0)
        self._router.close(linger=0)
        if self._zap is not None:
            self._zap.close(linger=0)
        self._sendq.close()
        self._ctx.term()


class _NoConnect(bytes):
    """An encoded op sent noconnect: dropped, not connected for, if its peer is down."""

    __slots__ = ()


def _base_name(node: str) -> str:
    """``name@host`` from ``name@host:port``."""
    name, _, host = node.partition("@")
    if host.count(":") == 1:
        host = host.split(":")[0]
    return f"{name}@{host}"
