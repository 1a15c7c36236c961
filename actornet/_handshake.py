"""The connection handshake between two nodes, as a pure state machine.

No sockets, threads or clocks: bytes in, events out (in the style of h11). The
*Initiator* (the node that dials) and the *Acceptor* (the node dialled) prove
to each other that they know the shared cookie, which never goes on the wire.
The transport moves the frames and owns the timeouts.

Frame layout (one ZeroMQ frame, at most `MAX_HANDSHAKE_FRAME` bytes)::

    b"ACN" | version: 1 byte | kind: 1 byte | msgpack map, str keys (extra keys ignored)
    1 HELLO      name: node, creation: uint, flags: uint, endpoint: endpoint, to: node
    2 CHALLENGE  name: node, creation: uint, flags: uint, nonce: 16 bytes
    3 RESPONSE   nonce: 16 bytes, digest: 32 bytes
    4 ACK        digest: 32 bytes
    5 REJECT     reason: str, auth: bool (True: the cookie was wrong)

A node is a node name and an endpoint ``tcp://host:port`` (`_address`): a field that is
not one is refused here, before the transport acts on it. ``to`` is the name the initiator
believes the acceptor has. Both digests are HMAC-SHA256(cookie,
msgpack([b"actornet handshake", version, role, i_name, i_creation, i_flags, i_endpoint,
a_name, a_creation, a_flags, nonce_b, nonce_a])) (i_ initiator, a_ acceptor, from HELLO and
CHALLENGE), with role "initiator" in RESPONSE and "acceptor" in ACK, so one side's digest
is never valid for the other. Both nonces are fresh, so a handshake cannot be replayed.

The same with role "session" is the connection's *session key*, which both sides learn
(`Established.session_key`) and nobody else can: a third party that relays the handshake
sees every field but the cookie. On a plain connection every data batch after the
handshake carries a MAC made with it (`_wire`), so what a relay would inject is refused:
authentication holds for the connection, not only for its first frames (as TLS's
channel binding ties an authentication to its session). On an encrypted connection
CurveZMQ already authenticates every frame.

States (frame received -> what goes out, next state)::

    Initiator  idle            start()         -> HELLO                wait_challenge
               wait_challenge  CHALLENGE       -> RESPONSE             wait_ack
               wait_ack        ACK, digest ok  -> Established          established
               idle            any frame       -> Failed               failed
    Acceptor   wait_hello      HELLO, to ok    -> CHALLENGE            wait_response
               wait_response   RESPONSE, ok    -> ACK, Established     established
    both       live state      REJECT          -> Failed               failed
               live state      anything else   -> REJECT, Failed       failed
               established, failed  any frame  -> Failed (state unchanged)
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import zmq
from zmq.utils import z85

from ._address import is_endpoint, is_name
from .errors import AuthenticationError, DecodeError, ProtocolError

__all__ = [
    "Acceptor",
    "Established",
    "FLAG_SECURE",
    "Failed",
    "Initiator",
    "MAX_HANDSHAKE_FRAME",
    "PROTOCOL_VERSION",
    "Send",
    "curve_keypair",
]

# 2: global_ tables and conflicts carry each registration's resolve method and home; an
# op over the receiver's limit is skipped (a signal one closes the connection)
# 3: a session key MACs every batch of a plain connection; names and endpoints are checked;
# global_ name servers ask for each other's tables
PROTOCOL_VERSION: int = 4  # 4: SEND_MANY
MAX_HANDSHAKE_FRAME: int = 4096
FLAG_SECURE: int = 1  # flags bit 0: this node wants CURVE encryption

_MAGIC = b"ACN"
HELLO, CHALLENGE, RESPONSE, ACK, REJECT = 1, 2, 3, 4, 5
_KINDS = dict(enumerate(["HELLO", "CHALLENGE", "RESPONSE", "ACK", "REJECT"], start=1))
_LABEL = b"actornet handshake"
_MAX_REASON = 1024

_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": (is_name, "a node name, 'name@host'"),
    "uint": (lambda v: type(v) is int and 0 <= v < 2**64, "an int in [0, 2**64)"),
    "endpoint": (is_endpoint, "an endpoint, 'tcp://host:port'"),
    "nonce": (lambda v: isinstance(v, bytes) and len(v) == 16, "16 bytes"),
    "digest": (lambda v: isinstance(v, bytes) and len(v) == 32, "32 bytes"),
    "text": (lambda v: isinstance(v, str) and len(v) <= _MAX_REASON, "a str of at most 1024 chars"),
    "bool": (lambda v: isinstance(v, bool), "a bool"),
    "cookie": (lambda v: isinstance(v, bytes) and len(v) > 0, "non-empty bytes"),
}
_WHO = {"name": "name", "creation": "uint", "flags": "uint"}  # who the sender is
_SCHEMA: dict[int, dict[str, str]] = {
    HELLO: {**_WHO, "endpoint": "endpoint", "to": "name"},
    CHALLENGE: {**_WHO, "nonce": "nonce"},
    RESPONSE: {"nonce": "nonce", "digest": "digest"},
    ACK: {"digest": "digest"},
    REJECT: {"reason": "text", "auth": "bool"},
}


@dataclass(frozen=True)
class Send:
    """Send `frame` to the peer (one ZeroMQ frame)."""

    frame: bytes


@dataclass(frozen=True)
class Established:
    """The handshake succeeded: the peer proved it knows the cookie. `peer_endpoint` is from
    the peer's HELLO on the acceptor side, ``None`` on the initiator side (it dialled it).
    `session_key` (32 bytes, the same on both sides) authenticates the connection's data."""

    peer_name: str
    peer_creation: int
    peer_flags: int
    peer_endpoint: str | None
    session_key: bytes = field(default=b"", repr=False, compare=False)


@dataclass(frozen=True)
class Failed:
    """The handshake failed; the transport drops the connection."""

    error: ProtocolError


Event = Send | Established | Failed


def _nonce() -> bytes:
    return os.urandom(16)


def _frame(kind: int, body: dict[str, Any]) -> bytes:
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return _MAGIC + bytes([PROTOCOL_VERSION, kind]) + packed


def _parse(frame: object, peer: str) -> tuple[int, dict[str, Any]]:
    """Split a frame into kind and checked body; raise ProtocolError saying what is wrong."""
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"handshake frame from {peer} is a {type(frame).__name__}, not bytes")
    data = bytes(frame)
    if len(data) > MAX_HANDSHAKE_FRAME:
        raise DecodeError(
            f"handshake frame from {peer} is {len(data)} bytes, over the limit "
            f"of {MAX_HANDSHAKE_FRAME}"
        )
    if len(data) < 5 or data[:3] != _MAGIC:
        raise DecodeError(f"frame from {peer} is not an actornet handshake frame")
    if data[3] != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version mismatch: {peer} speaks {data[3]}, this node "
            f"speaks {PROTOCOL_VERSION}"
        )
    kind = data[4]
    if kind not in _KINDS:
        raise DecodeError(f"handshake frame from {peer} has unknown kind {kind}")
    bad = f"bad {_KINDS[kind]} from {peer}"
    try:
        body = msgpack.unpackb(data[5:], raw=False)
    except Exception as e:
        raise DecodeError(f"{bad}: body is not valid msgpack ({type(e).__name__})") from None
    if not isinstance(body, dict):
        raise DecodeError(f"{bad}: body is not a map")
    for key, check in _SCHEMA[kind].items():
        test, desc = _CHECKS[check]
        if not test(body.get(key)):
            raise DecodeError(f"{bad}: {key!r} must be {desc} ({_got(body, key)})")
    return kind, body


def _got(body: dict[str, Any], key: str) -> str:
    """What `body` holds under `key`, for an error message (a peer's value: bounded)."""
    if key not in body:
        return "missing"
    value = body[key]
    if isinstance(value, str):
        text = repr(value[:40])
        return text if len(value) <= 40 else f"{text[:-1]}...'"
    return type(value).__name__


def _digest(cookie: bytes, role: str, *fields: Any) -> bytes:
    """HMAC-SHA256 of the transcript (see the module docstring); `fields` follow the role."""
    transcript = [_LABEL, PROTOCOL_VERSION, role, *fields]
    return hmac.new(cookie, msgpack.packb(transcript, use_bin_type=True), hashlib.sha256).digest()


def _require(what: str, value: Any, check: str) -> None:
    test, desc = _CHECKS[check]
    if not test(value):  # never echo a cookie into an error message
        shown = type(value).__name__ if check == "cookie" else repr(value)
        raise ValueError(f"{what} must be {desc}, got {shown}")


class _Machine:
    """What both sides share: arguments, REJECT handling, failure, terminal states."""

    state: str

    def __init__(self, cookie: bytes, name: str, creation: int, flags: int) -> None:
        _require("cookie", cookie, "cookie")
        _require("name", name, "name")
        _require("creation", creation, "uint")
        _require("flags", flags, "uint")
        self._cookie, self._name, self._creation, self._flags = cookie, name, creation, flags
        self._who = {"name": name, "creation": creation, "flags": flags}  # as in HELLO, CHALLENGE
        self._peer = "peer"  # how messages name the peer

    def receive(self, frame: bytes) -> list[Event]:
        """Feed one frame from the peer; return what to send and what happened. Never raises."""
        if self.state in ("established", "failed"):
            return [Failed(ProtocolError(f"handshake already finished ({self.state})"))]
        if self.state == "idle":
            self.state = "failed"
            return [Failed(ProtocolError(f"frame from {self._peer} before start()"))]
        try:
            kind, body = _parse(frame, self._peer)
            if kind == REJECT:
                self.state = "failed"
                cls = AuthenticationError if body["auth"] else ProtocolError
                why = body["reason"] if body["reason"].isprintable() else repr(body["reason"])
                return [Failed(cls(f"{self._peer} rejected the handshake: {why}"))]
            events = self._step(kind, body)
            if events is None:
                raise ProtocolError(f"unexpected {_KINDS[kind]} from {self._peer} in {self.state}")
            return events
        except ProtocolError as e:
            return self._fail(e)
        except Exception as e:  # a bug here must not take the transport down
            return self._fail(ProtocolError(f"internal handshake error on frame from peer: {e!r}"))

    def _fail(self, error: ProtocolError) -> list[Event]:
        self.state = "failed"
        auth = isinstance(error, AuthenticationError)
        reason = "bad cookie" if auth else str(error)[:_MAX_REASON]
        return [Send(_frame(REJECT, {"reason": reason, "auth": auth})), Failed(error)]

    def _step(self, kind: int, body: dict[str, Any]) -> list[Event] | None:
        raise NotImplementedError


class Initiator(_Machine):
    """The dialling side of a handshake.

    Example:
        >>> a = Initiator(b"secret", "a@h", 1, "tcp://h:1", peer_name="b@h")
        >>> b = Acceptor(b"secret", "b@h", 7)
        >>> [challenge] = b.receive(a.start())
        >>> [response] = a.receive(challenge.frame)
        >>> ack, established = b.receive(response.frame)
        >>> a.receive(ack.frame)
        [Established(peer_name='b@h', peer_creation=7, peer_flags=0, peer_endpoint=None)]
        >>> established.peer_endpoint, a.state, b.state
        ('tcp://h:1', 'established', 'established')
    """

    def __init__(
        self, cookie: bytes, name: str, creation: int, endpoint: str, peer_name: str, flags: int = 0
    ) -> None:
        super().__init__(cookie, name, creation, flags)
        _require("endpoint", endpoint, "endpoint")
        _require("peer_name", peer_name, "name")
        self._endpoint, self._peer_name = endpoint, peer_name
        self._peer = f"peer {peer_name!r}"
        self._acceptor: tuple[str, int, int] = (peer_name, 0, 0)
        self._nonce_a = self._nonce_b = b""
        self.state = "idle"

    def start(self) -> bytes:
        """Return the HELLO frame to send; call once, before `receive`."""
        if self.state != "idle":
            raise RuntimeError(f"start() called in state {self.state!r}")
        self.state = "wait_challenge"
        return _frame(HELLO, {**self._who, "endpoint": self._endpoint, "to": self._peer_name})

    def _mac(self, role: str) -> bytes:
        me = (self._name, self._creation, self._flags, self._endpoint)
        return _digest(self._cookie, role, *me, *self._acceptor, self._nonce_b, self._nonce_a)

    def _step(self, kind: int, body: dict[str, Any]) -> list[Event] | None:
        if self.state == "wait_challenge" and kind == CHALLENGE:
            if body["name"] != self._peer_name:
                raise ProtocolError(f"dialled {self._peer_name!r} but the peer is {body['name']!r}")
            self._acceptor = (body["name"], body["creation"], body["flags"])
            self._nonce_b, self._nonce_a = body["nonce"], _nonce()
            self.state = "wait_ack"
            response = {"nonce": self._nonce_a, "digest": self._mac("initiator")}
            return [Send(_frame(RESPONSE, response))]
        if self.state == "wait_ack" and kind == ACK:
            if not hmac.compare_digest(self._mac("acceptor"), body["digest"]):
                raise AuthenticationError(f"{self._peer} failed to prove the cookie (bad ACK)")
            self.state = "established"
            return [Established(*self._acceptor, None, self._mac("session"))]
        return None


class Acceptor(_Machine):
    """The dialled side of a handshake; it only sends a digest after the initiator's checks out.

    Example:
        >>> b = Acceptor(b"secret", "b@h", 7)
        >>> a = Initiator(b"wrong", "a@h", 1, "tcp://h:1", peer_name="b@h")
        >>> [challenge] = b.receive(a.start())
        >>> [response] = a.receive(challenge.frame)
        >>> reject, failed = b.receive(response.frame)
        >>> failed.error
        AuthenticationError("peer 'a@h' failed to prove the cookie (bad RESPONSE)")
        >>> a.receive(reject.frame)[0].error
        AuthenticationError("peer 'b@h' rejected the handshake: bad cookie")
    """

    def __init__(
        self,
        cookie: bytes,
        name: str,
        creation: int,
        flags: int = 0,
        refuse: Callable[[str], str | None] | None = None,
    ) -> None:
        super().__init__(cookie, name, creation, flags)
        # Policy hook: refuse(peer_name) -> a reason to turn the peer away, or None.
        self._refuse = refuse
        self._initiator: tuple[str, int, int, str] = ("", 0, 0, "")
        self._nonce_b = b""
        self.state = "wait_hello"

    def _mac(self, role: str, nonce_a: bytes) -> bytes:
        me = (self._name, self._creation, self._flags)
        return _digest(self._cookie, role, *self._initiator, *me, self._nonce_b, nonce_a)

    def _step(self, kind: int, body: dict[str, Any]) -> list[Event] | None:
        if self.state == "wait_hello" and kind == HELLO:
            self._peer = f"peer {body['name']!r}"
            if body["to"] != self._name:
                raise ProtocolError(f"{self._peer} dialled {body['to']!r}, this is {self._name!r}")
            why = self._refuse(body["name"]) if self._refuse is not None else None
            if why:
                raise ProtocolError(f"{self._peer} refused: {why}")
            self._initiator = (body["name"], body["creation"], body["flags"], body["endpoint"])
            self._nonce_b = _nonce()
            self.state = "wait_response"
            return [Send(_frame(CHALLENGE, {**self._who, "nonce": self._nonce_b}))]
        if self.state == "wait_response" and kind == RESPONSE:
            nonce_a = body["nonce"]
            if not hmac.compare_digest(self._mac("initiator", nonce_a), body["digest"]):
                raise AuthenticationError(f"{self._peer} failed to prove the cookie (bad RESPONSE)")
            self.state = "established"
            ack = _frame(ACK, {"digest": self._mac("acceptor", nonce_a)})
            return [Send(ack), Established(*self._initiator, self._mac("session", nonce_a))]
        return None


def curve_keypair(cookie: bytes) -> tuple[bytes, bytes]:
    """Derive the (public, secret) Z85 CurveZMQ keypair every node with `cookie` shares.

    HKDF-SHA256 (RFC 5869, zero salt, info ``b"actornet curve v1"``) gives the
    32-byte secret key; zmq computes the public key from it.

    Example:
        >>> public, secret = curve_keypair(b"secret")
        >>> len(public), len(secret), curve_keypair(b"secret") == (public, secret)
        (40, 40, True)
    """
    _require("cookie", cookie, "cookie")
    prk = hmac.new(bytes(32), cookie, hashlib.sha256).digest()
    secret = z85.encode(hmac.new(prk, b"actornet curve v1\x01", hashlib.sha256).digest())
    return zmq.curve_public(secret), secret
