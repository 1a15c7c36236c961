"""Fuzz targets around a node's I/O thread: the ops an authenticated peer sends, and what a
node may be asked to dial.

* ``dispatch``: each input is the op stream of one batch (``_wire.pack_ops`` format) that
  a raw peer, authenticated with the cookie into a real node of this process (plain mode,
  over loopback), sends; a control message follows it. The node must deliver the control
  message (or, if the input ended the peer's connection, as a GOODBYE or too many
  malformed ops do, say so), and its I/O thread must neither die nor fail, nor any op
  raise while it is handled: each bad op is dropped, logged.
* ``dial``: each input is a string (UTF-8, surrogates escaped) given as an address (to
  `ping`, `send`, ``spawn(node=)``) and as an endpoint (as a peer announces it). Only
  `ValueError` may come out of `_address.parse`; whatever it accepts is a node name the
  handshake takes and an endpoint libzmq's ``connect`` takes (libzmq refusing one in the
  I/O thread used to kill it). libzmq looks a host name up after ``connect`` returns, in
  its own thread, and the lookups queue up there: only endpoints on an IPv4 address or
  ``localhost`` are dialled (``tests/test_address.py`` checks host names of each shape
  against libzmq once).

A fuzzer must not run arbitrary code on its machine or look names up on the network: the
dispatch target points every SPAWN at a few harmless functions, every peer endpoint at
loopback, and gives its node no port mapper.
"""

from __future__ import annotations

import logging
import queue
import random
import re
import time
from typing import Any, ClassVar

import zmq

from actornet import _address, _codec, _wire
from actornet import _handshake as hs
from actornet._ids import Pid
from actornet.errors import DecodeError, ProtocolError

from .base import OracleError, Target
from .gen import TermGen, mutate, random_bytes, random_str

__all__ = ["DialTarget", "DispatchTarget"]

_COOKIE = b"fuzz-cookie"
_IPV4 = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})")
_SPAWNABLE = ("add", "raise_value_error", "no_such_function")  # in tests.remote
_FAILURES = ("failed to handle", "handling it failed", "the I/O thread failed",
             "dropping ")  # lines that mean something raised in the I/O thread


class _Failures(logging.Handler):
    """Collects the lines that say something raised in the node's I/O thread."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if any(f in text for f in _FAILURES):
            self.lines.append(text)


class DispatchTarget(Target):
    """A real node's handling of the ops of an authenticated peer (see the module docstring).
    The node starts at the first input and stops with `close`."""

    name: ClassVar[str] = "dispatch"
    documented: ClassVar[str] = "nothing: every bad op is dropped and logged by the node"

    def __init__(self, seed: int = 0, pool_size: int = 200) -> None:
        from .targets import WireTarget  # (targets imports this module)

        super().__init__(seed)
        self._wire = WireTarget(seed, pool_size)
        self._node: Any = None
        self._peer: zmq.Socket[Any] | None = None
        self._silent: zmq.Socket[Any] | None = None
        self._back = 0
        self._ctx: zmq.Context[Any] | None = None
        self._key = b""
        self._seq = 0
        self._peers = 0
        self._failures = _Failures()

    # -- inputs ----------------------------------------------------------------------------

    def corpus(self) -> list[bytes]:
        return self._wire.pool[:100]

    def generate(self, rng: random.Random) -> bytes:
        r = rng.random()
        if r < 0.45:
            ops = [_encode(self._wire.random_op(rng)) for _ in range(rng.randint(1, 4))]
        elif r < 0.65:
            ops = [_encode(self._wire.random_op(rng, wrong=True)) for _ in range(rng.randint(1, 3))]
        elif r < 0.85:  # one op of the pool mutated, lengths kept right
            ops = rng.sample(self._wire.op_pool, rng.randint(1, 3))
            k = rng.randrange(len(ops))
            ops[k] = mutate(rng, ops[k], self._wire.op_pool)
        elif r < 0.95:  # messages for the node's system servers
            gen = TermGen(rng, max_depth=3, deep=0.0)
            name = rng.choice(("global_name_server", "pg", "kernel_sup", random_str(rng, 8)))
            msg = gen.term() if rng.random() < 0.5 else (
                rng.choice(("table", "dead", "conflict", "sync", "join", "discover", "$gen_cast",
                            "$gen_call", "nodeup", "DOWN")),
                *[gen.term() for _ in range(rng.randint(0, 5))])
            ops = [_encode([_wire.REG_SEND, Pid("f@127.0.0.1", 1, 1), name, msg])]
        else:
            ops = [random_bytes(rng, 60)]
        return _wire.pack_ops(ops)

    # -- the node --------------------------------------------------------------------------

    def _start(self) -> None:
        import actornet

        node = actornet.start_node(f"fuzz{id(self) % 100000}@127.0.0.1", cookie=_COOKIE,
                                   port=0, insecure=True, handshake_timeout=30.0,
                                   tick_time=60.0)
        node.dist._resolve = lambda name: None  # no port mapper, no DNS: nothing is looked up
        self._node = node
        got: queue.Queue[Any] = queue.Queue()

        def record() -> None:
            while True:
                got.put(actornet.receive())

        self._recorder = node.spawn(record)
        self._got = got
        self._ctx = zmq.Context()
        logging.getLogger("actornet").addHandler(self._failures)
        self._connect()

    def _connect(self) -> None:
        """A fresh raw peer, authenticated into the node. It announces a ROUTER that never
        answers, so the node's connection back stays pending (one that failed would take
        the peer down with it)."""
        if self._peer is not None:
            self._peer.close(linger=0)
        assert self._ctx is not None
        if self._silent is None:
            self._silent = self._ctx.socket(zmq.ROUTER)
            self._silent.setsockopt(zmq.LINGER, 0)
            self._back = self._silent.bind_to_random_port("tcp://127.0.0.1")
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{self._node.port}")
        self._peers += 1
        # A few names in turn: a node keeps an entry for every peer name it has seen
        self._name = f"peer{self._peers % 4}@127.0.0.1"
        initiator = hs.Initiator(_COOKIE, self._name, 1, f"tcp://127.0.0.1:{self._back}",
                                 self._node.name)
        sock.send(initiator.start())
        while initiator.state != "established":
            if not sock.poll(10_000):
                raise OracleError("the node stopped answering handshakes")
            for event in initiator.receive(sock.recv()):
                if isinstance(event, hs.Send):
                    sock.send(event.frame)
                elif isinstance(event, hs.Established):
                    self._key = event.session_key
                elif isinstance(event, hs.Failed):
                    raise OracleError(f"the node refused a handshake: {event.error}")
        self._peer, self._seq = sock, 0

    def close(self) -> None:
        if self._node is not None:
            logging.getLogger("actornet").removeHandler(self._failures)
            self._node.stop()
            self._node = None
        for sock in (self._peer, self._silent):
            if sock is not None:
                sock.close(linger=0)
        self._peer = self._silent = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def _send(self, payload: bytes) -> None:
        assert self._peer is not None
        self._peer.send_multipart([_wire.pack_header(self._seq, self._key, payload), payload])
        self._seq += 1

    # -- one input -------------------------------------------------------------------------

    def check(self, data: bytes) -> str:
        try:
            ops = _wire.split_ops(data)
        except ProtocolError:
            return "not-whole-ops"  # framing is the wire target's: a cut op would stay buffered
        if self._node is None:
            self._start()
        payload = _wire.pack_ops([_harmless(bytes(op)) for op in ops])
        dist = self._node.dist
        before = (len(self._failures.lines), len(dist._crashes))
        token = ("control", self._peers, self._seq)
        self._send(payload)
        self._send(_wire.pack_ops([_codec.encode([_wire.SEND, self._recorder.id,
                                                  self._recorder.creation, token])]))
        outcome = self._await(token)
        if not dist._thread.is_alive():
            raise OracleError("the node's I/O thread died")
        lines = self._failures.lines[before[0]:]
        if len(dist._crashes) != before[1] or lines:
            raise OracleError(f"something raised in the I/O thread: {lines[:3]}")
        return outcome

    def _await(self, token: Any) -> str:
        """Wait for `token` to reach the recorder (what the input sent may come first)."""
        delivered, end = 0, time.monotonic() + 5.0
        while time.monotonic() < end:
            try:
                got = self._got.get(timeout=0.02)
            except queue.Empty:
                # The input may have ended the connection (a GOODBYE, too many malformed
                # ops, a signal over max_message_size): then the node says so, and a new
                # peer goes on.
                if self._name not in self._node.dist.nodes():
                    self._connect()
                    return "peer-dropped"
                continue
            if got == token:
                return f"delivered-{min(delivered, 2)}"
            delivered += 1
        raise OracleError("the node stopped delivering the peer's messages")


def _harmless(op: bytes) -> bytes:
    """`op`, unless it would run code or dial off this host: a SPAWN then names a harmless
    function of tests.remote; a list of peers points at loopback."""
    try:
        value = _codec.decode(op)
    except DecodeError:
        return op
    if value.__class__ is not list or not value or value[0].__class__ is not int:
        return op
    if value[0] == _wire.SPAWN and len(value) == 7:
        value[3] = "tests.remote"
        if value[4] not in _SPAWNABLE:
            value[4] = _SPAWNABLE[len(str(value[4])) % len(_SPAWNABLE)]
        return _encode(value)
    if value[0] == _wire.NODES and len(value) == 2 and isinstance(value[1], list):
        value[1] = [[e[0], re.sub(r"^tcp://[^:]*", "tcp://127.0.0.1", e[1])]
                    if isinstance(e, list) and len(e) == 2 and isinstance(e[1], str) else e
                    for e in value[1]]
        return _encode(value)
    return op


def _encode(op: Any) -> bytes:
    try:
        return _codec.encode(op)
    except (ValueError, TypeError):
        return _codec.encode([_wire.TICK])


class DialTarget(Target):
    """Addresses and endpoints (see the module docstring)."""

    name: ClassVar[str] = "dial"
    documented: ClassVar[str] = "ValueError"

    _PIECES: ClassVar[tuple[str, ...]] = (
        "a", "b@", "@", ":", "::", "tcp://", "127.0.0.1", "localhost", "h", "-", ".", "_", "*",
        ";", " ", "[", "]", "::1", "%", "0", "1", "65535", "65536", "99999", "0x10", "é",
        "\ud800", "\x00", "/", "+", "\n", "a" * 300, "1" * 6,
    )

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self._ctx: zmq.Context[Any] | None = None

    def corpus(self) -> list[bytes]:
        return [s.encode() for s in ("a@127.0.0.1", "a@127.0.0.1:5555", "a@h:1",
                                     "tcp://127.0.0.1:5555", "x-y.z_1@host-2.lan:65535")]

    def generate(self, rng: random.Random) -> bytes:
        r = rng.random()
        if r < 0.5:
            text = "".join(rng.choice(self._PIECES) for _ in range(rng.randint(1, 6)))
        elif r < 0.85:
            text = rng.choice(("a@127.0.0.1", "a@h:1", "tcp://h:1", "n.1@host:5555",
                               "tcp://127.0.0.1:5555", "b@127.0.0.1:1"))
            for _ in range(rng.randint(1, 3)):
                i = rng.randint(0, len(text))
                text = text[:i] + rng.choice(self._PIECES) + text[i + rng.randint(0, 2):]
        else:
            return random_bytes(rng, 40)
        return text.encode("utf-8", "surrogatepass")

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def check(self, data: bytes) -> str:
        text = data.decode("utf-8", "surrogateescape")
        outcomes = []
        try:
            name, endpoint = _address.parse(text)
        except ValueError:
            outcomes.append("refused")
        else:
            if not _address.is_name(name) or not hs._CHECKS["name"][0](name):
                raise OracleError(f"parse gave {name!r}, which is not a node name")
            if endpoint is not None:
                self._dials(endpoint)
            outcomes.append("address" if endpoint is None else "address-port")
        if _address.is_endpoint(text):
            self._dials(text)
            outcomes.append("endpoint")
        return " ".join(outcomes)

    def _dials(self, endpoint: str) -> None:
        """libzmq's connect must take an endpoint `_address` accepts."""
        if not _address.is_endpoint(endpoint):
            raise OracleError(f"parse gave the endpoint {endpoint!r}, which is_endpoint refuses")
        host = endpoint[6:].rpartition(":")[0]
        if host != "localhost" and not _IPV4.fullmatch(host):
            return  # libzmq would look it up (see the module docstring)
        if self._ctx is None:
            self._ctx = zmq.Context()
        sock = self._ctx.socket(zmq.DEALER)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RECONNECT_IVL, -1)
            sock.setsockopt(zmq.IMMEDIATE, 1)
            try:
                sock.connect(endpoint)
            except zmq.ZMQError as e:
                raise OracleError(f"libzmq refuses an endpoint that is_endpoint accepts: "
                                  f"{endpoint!r}: {e}") from None
        finally:
            sock.close(linger=0)
