"""The listening side of a node: the ROUTER every peer sends to, set up against strangers,
its monitor, and on an encrypted node the ZAP handler that lets in only the CurveZMQ
clients that hold the cluster's key (`_admission.zap_reply`), so a stranger gets nothing
past ZeroMQ's own handshake. Made here; only the I/O thread (`_transport`) uses them.

libzmq holds at most `RCVHWM` messages (of at most `MAX_FRAME` bytes) per connection that
this node has not read.
"""

from __future__ import annotations

import logging

import zmq
from zmq.utils import z85

from actornet import _admission
from actornet import _wire as w
from actornet._dialer import ZMTP_FAILED, stop_monitor
from actornet._handshake import curve_keypair
from actornet.errors import ActornetError

__all__ = ["RCVHWM", "Listener"]

log = logging.getLogger("actornet.dist")

# Messages libzmq holds per inbound connection that this node has not read (at most
# MAX_FRAME bytes each); then it stops reading that connection, and its sender waits.
RCVHWM = 16
_ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # where libzmq asks (RFC 27), per context


class Listener:
    """A node's ROUTER, bound; its monitor socket; its ZAP handler if `secure`.

    Raises `ActornetError` if it cannot listen on `bind_ip`:`port` (0: any port), having
    closed what it made.
    """

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], *, bind_ip: str, port: int,
                 cookie: bytes, secure: bool, handshake_timeout: float) -> None:
        self.zap: zmq.Socket[bytes] | None = None
        if secure:
            # Bound before the ROUTER listens: libzmq asks it about every CurveZMQ client.
            self.zap = ctx.socket(zmq.REP)
            self.zap.setsockopt(zmq.LINGER, 0)
            self.zap.bind(_ZAP_ENDPOINT)
        self.router = router = ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # The default, said so: libzmq ignores a connection that presents a routing id in
        # use. With handover the newcomer would take it and cut the connection that had
        # it, so anyone who learnt a peer's routing id could cut that peer off.
        router.setsockopt(zmq.ROUTER_HANDOVER, 0)
        router.setsockopt(zmq.LINGER, 0)
        # Frames are at most MAX_FRAME (messages over it span frames): ZeroMQ refuses a
        # larger frame before reading it, so a stranger cannot make us hold more.
        router.setsockopt(zmq.MAXMSGSIZE, w.MAX_FRAME + 1024)
        # Set before binding: each connection's pipe takes the options the socket had then.
        router.setsockopt(zmq.RCVHWM, RCVHWM)
        # A TCP connection that never starts ZeroMQ's own greeting is closed as soon as
        # one that never finishes our handshake (libzmq's default waits 30 s).
        router.setsockopt(zmq.HANDSHAKE_IVL, int(handshake_timeout * 1000))
        self.cluster_key = b""  # the raw CurveZMQ public key every node of the cluster has
        if secure:
            public, secret = curve_keypair(cookie)
            self.cluster_key = z85.decode(public)
            router.curve_server = True
            router.curve_publickey = public
            router.curve_secretkey = secret
            router.setsockopt(zmq.ZAP_DOMAIN, b"actornet")
        try:
            if port:
                router.bind(f"tcp://{bind_ip}:{port}")
                self.port = port
            else:
                self.port = router.bind_to_random_port(f"tcp://{bind_ip}")
        except zmq.ZMQError as e:
            router.close()
            if self.zap is not None:
                self.zap.close()
            raise ActornetError(f"cannot listen on {bind_ip}:{port or 'any port'}: {e}") from e
        # CURVE failures never reach our own handshake: this is their only trace here.
        # Accepts and disconnections say which connection a descriptor holds (`_inbound`).
        # libzmq's I/O thread blocks on a full monitor socket, freezing every connection:
        # this one is never full (RCVHWM 0), and is read whenever it has something.
        address = f"inproc://actornet-router-monitor-{id(self):x}"
        router.monitor(address, ZMTP_FAILED | zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        self.monitor = ctx.socket(zmq.PAIR)
        self.monitor.setsockopt(zmq.RCVHWM, 0)
        self.monitor.setsockopt(zmq.LINGER, 0)
        self.monitor.connect(address)

    def answer_zap(self, node_name: str) -> None:
        """Answer libzmq's questions about CurveZMQ clients (`_admission.zap_reply`)."""
        zap = self.zap
        assert zap is not None
        while True:
            try:
                request = zap.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            reply, refused = _admission.zap_reply(request, self.cluster_key)
            zap.send_multipart(reply)
            if refused:
                log.warning("node %s: refused an incoming connection: %s", node_name, refused)

    def close(self) -> None:
        """Close the ROUTER, its monitor and the ZAP handler."""
        stop_monitor(self.router)
        self.monitor.close(linger=0)
        self.router.close(linger=0)
        if self.zap is not None:
            self.zap.close(linger=0)
