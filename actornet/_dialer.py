"""A node's outbound connections: finding a peer's endpoint, its DEALER, the initiator's
side of the handshake (`_handshake`), and what that DEALER's monitor says. Runs on the I/O
thread, except the look-up of an endpoint, which blocks and so runs on a thread of its own.

A DEALER never reconnects by itself (libzmq's reconnection is off): ops lost in between
would go unnoticed. A broken connection stays broken, and the next use of the peer dials
again with a new handshake.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from actornet import _address
from actornet import _wire as w
from actornet._handshake import Established, Failed, Initiator, Send, curve_keypair
from actornet._peer import Peer
from actornet._session import State

__all__ = ["FAIL_EVENTS", "ZMTP_FAILED", "Dialer", "stop_monitor", "zmtp_failure"]

log = logging.getLogger("actornet.dist")

# Batches libzmq holds per peer before the DEALER says "again" (at most 16 MiB at 256 KiB
# a batch). Beyond that, ops wait in the peer's session, where `busy_limit` applies. More
# made no difference to remote send throughput, and let a slow peer hold ~250 MiB here.
SNDHWM = 64
FAIL_EVENTS = (
    zmq.EVENT_DISCONNECTED
    | zmq.EVENT_CLOSED
    | zmq.EVENT_CONNECT_RETRIED
    | getattr(zmq, "EVENT_HANDSHAKE_FAILED_NO_DETAIL", 0)
    | getattr(zmq, "EVENT_HANDSHAKE_FAILED_PROTOCOL", 0)
    | getattr(zmq, "EVENT_HANDSHAKE_FAILED_AUTH", 0)
)
ZMTP_FAILED = FAIL_EVENTS & ~(zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
                              | zmq.EVENT_CONNECT_RETRIED)  # the handshake-failed events


class Dialer:
    """Makes and watches the outbound connections of one node.

    Args:
        ctx, poller: the node's ZeroMQ context, and the poller of its I/O loop.
        hello: this node's name, creation, endpoint and handshake flags.
        cookie, secure, handshake_timeout: as the transport's.
        resolve: name -> endpoint (a port-mapper look-up; may block, may raise).
        command: queues a command for the I/O thread (the answer of a look-up).
        up: an outbound handshake succeeded.
        fail: an attempt failed, or a connection broke: the peer is down for that reason.
        lost: an up peer's connection dropped: down once what it sent before is read.
    """

    def __init__(self, ctx: zmq.Context[Any], poller: zmq.Poller, *,
                 hello: tuple[str, int, str, int], cookie: bytes, secure: bool,
                 handshake_timeout: float, resolve: Callable[[str], str | None] | None,
                 command: Callable[[tuple[Any, ...]], None],
                 up: Callable[[Peer, Established], None],
                 fail: Callable[[Peer, str], None],
                 lost: Callable[[Peer], None]) -> None:
        self._ctx, self._poller = ctx, poller
        self.node_name = hello[0]
        self._hello = hello
        self._cookie, self._secure = cookie, secure
        self._handshake_timeout = handshake_timeout
        self.resolve = resolve
        self._command, self._up, self._fail, self._lost = command, up, fail, lost
        self.sockets: dict[zmq.Socket[Any], tuple[str, Peer]] = {}  # DEALERs and monitors

    def look_up(self, peer: Peer, endpoint: str | None) -> None:
        """Find the peer's endpoint off this thread (a port-mapper look-up blocks), then
        have the I/O thread `dial` it. `endpoint` is the one its address gave, if any."""
        peer.failure = None
        peer.attempt = attempt = object()
        known = peer.endpoint

        def resolve() -> None:  # (named so in profiles: the resolver thread)
            # An address with a port wins; else the port mapper; else the
            # endpoint the peer had last time (a node started with port=).
            found, error = endpoint, None
            if found is None:
                try:
                    found = self.resolve(peer.name) if self.resolve else None
                except Exception as e:  # reported as a failed connection
                    error = str(e)
                found = found or known
                if found is None and error is None:
                    error = f"cannot find node {peer.name}"
            self._command(("dial", peer, found, error, attempt))

        try:
            threading.Thread(target=resolve, name=f"actornet-resolve {peer.name}",
                             daemon=True).start()
        except RuntimeError as e:  # no thread to be had (out of memory, or of threads)
            self._fail(peer, f"cannot start a thread to look it up: {e}")

    def dial(self, peer: Peer, endpoint: str | None, error: str | None) -> None:
        """Connect a DEALER to `endpoint` (None: `error` says why there is none) and start
        the handshake."""
        if peer.state is not State.CONNECTING or peer.dealer is not None:
            return  # a stale answer: this attempt ended, or another one is already dialling
        if endpoint is None:
            self._fail(peer, error or "no endpoint")
            return
        if not _address.is_endpoint(endpoint):  # from the port mapper: checked all the same
            self._fail(peer, f"cannot dial {w.shown(endpoint, 80)}: not an endpoint")
            return
        dealer = monitor = None
        try:
            dealer = self._ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.setsockopt(zmq.RECONNECT_IVL, -1)  # a broken connection stays broken
            dealer.setsockopt(zmq.SNDHWM, SNDHWM)
            dealer.setsockopt(zmq.MAXMSGSIZE, 65536)  # it only ever reads handshake frames
            dealer.setsockopt(zmq.HANDSHAKE_IVL, int(self._handshake_timeout * 1000))
            if self._secure:
                public, secret = curve_keypair(self._cookie)
                dealer.curve_serverkey = public
                dealer.curve_publickey = public
                dealer.curve_secretkey = secret
            monitor = dealer.get_monitor_socket(FAIL_EVENTS)
            dealer.connect(endpoint)
        except zmq.ZMQError as e:
            # Out of descriptors or sockets (EMFILE, ENFILE), or an endpoint libzmq refuses:
            # this attempt fails, logged; the next use of the peer tries again.
            log.warning("node %s: cannot dial %s at %s: %s", self.node_name, peer.name,
                        endpoint, e)
            stop_monitor(dealer)
            for sock in (monitor, dealer):
                if sock is not None:
                    sock.close(linger=0)
            self._fail(peer, f"cannot dial {endpoint}: {e}")
            return
        peer.dealer, peer.monitor, peer.endpoint = dealer, monitor, endpoint
        self.sockets[dealer] = ("dealer", peer)
        self.sockets[monitor] = ("monitor", peer)
        self._poller.register(dealer, zmq.POLLIN)
        self._poller.register(monitor, zmq.POLLIN)
        name, creation, here, flags = self._hello
        peer.handshake = Initiator(self._cookie, name, creation, here, peer.name, flags)
        peer.session.connect(time.monotonic(), self._handshake_timeout)
        # ZeroMQ drops the pipe of a connection that failed at once (no reconnect), maybe
        # already: then this send fails, and the monitor's event takes the peer down.
        with contextlib.suppress(zmq.ZMQError):
            dealer.send(peer.handshake.start(), zmq.NOBLOCK)

    def on_readable(self, peer: Peer) -> None:
        """Read the DEALER of `peer`: handshake frames only (it carries data one way)."""
        while peer.dealer is not None:
            try:
                frames = peer.dealer.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if peer.handshake is None or len(frames) != 1:
                self._fail(peer, "unexpected frames on the outbound connection")
                return
            for event in peer.handshake.receive(frames[0]):
                if isinstance(event, Send):
                    with contextlib.suppress(zmq.ZMQError):  # broken: the monitor will say
                        peer.dealer.send(event.frame, zmq.NOBLOCK)
                elif isinstance(event, Established):
                    peer.handshake = None
                    self._up(peer, event)
                elif isinstance(event, Failed):
                    log.error("node %s: connection to %s refused: %s",
                              self.node_name, peer.name, event.error)
                    self._fail(peer, str(event.error))
                    return

    def on_monitor(self, peer: Peer) -> None:
        """Read what the monitor of `peer`'s DEALER says: a connection that failed, or one
        that was up and dropped (`lost`: what the peer sent before is read first)."""
        monitor = peer.monitor
        while monitor is not None:
            try:
                frames = monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            event = int.from_bytes(frames[0][:2], "little")
            value = int.from_bytes(frames[0][2:6], "little")
            if event & FAIL_EVENTS and not peer.idle:
                if peer.state is State.UP and not event & ZMTP_FAILED:
                    self._lost(peer)
                    continue
                what = "connection lost" if peer.state is State.UP else "connection failed"
                if event & ZMTP_FAILED:
                    what = zmtp_failure(event, value, self._secure) or ""
                    if what:
                        log.error("node %s: connection to %s refused: %s",
                                  self.node_name, peer.name, what)
                    else:  # the peer saw the mismatch first and closed, or it went away
                        what = "transport handshake failed (insecure=True on one side only" + (
                            ", or another cookie?)" if self._secure else "?)")
                self._fail(peer, what)
                return

    def close(self, peer: Peer, linger: int = 0) -> None:
        """Close the outbound connection of `peer` and its monitor, if any."""
        stop_monitor(peer.dealer)
        for sock in (peer.dealer, peer.monitor):
            if sock is not None:
                self._poller.unregister(sock)
                self.sockets.pop(sock, None)
                sock.close(linger=linger if sock is peer.dealer else 0)
        peer.dealer = peer.monitor = None
        peer.handshake = None


def stop_monitor(sock: zmq.Socket[Any] | None) -> None:
    """Stop `sock`'s monitor before its monitor socket is closed: ZeroMQ's I/O thread sends
    events to it blocking, so one event for a closed monitor socket (a closing connection
    has several) freezes every connection of the node, for good."""
    if sock is not None and not sock.closed:
        with contextlib.suppress(zmq.ZMQError):
            sock.disable_monitor()


def zmtp_failure(event: int, value: int, secure: bool) -> str | None:
    """What a failed ZeroMQ handshake (a socket monitor's `event` and `value`) surely says
    about the configuration, or None (the peer closed first, or a network failure)."""
    if event & getattr(zmq, "EVENT_HANDSHAKE_FAILED_PROTOCOL", 0):
        if value == getattr(zmq, "PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH", -1):
            here = "encrypted" if secure else "insecure=True"
            return f"transport handshake failed: insecure=True on one side only (here {here})"
        if secure and value == getattr(zmq, "PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC", -1):
            return "encrypted transport handshake failed: the peer has another cookie"
    return None
