"""The fuzz targets: what each feeds to the code under test, and what it checks.

A target turns one fuzz input (bytes) into calls of the code under test and
checks what comes out. `check` returns a short outcome label for statistics;
it raises if the input found something:

* an exception that is not one of the target's documented errors escapes
  (it propagates out of `check` as is), or
* an `OracleError`: the calls returned something they must not (an op that
  does not have its shape, a handshake machine in the wrong state, an event
  that hides an internal error, a decoded value that does not re-encode...).

`generate` makes one input from a `random.Random`: random bytes, valid inputs
(random terms, ops, handshake conversations) and mutations of valid inputs.
The input formats are plain bytes so that atheris can drive `check` directly.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import random
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Final

import msgpack

from actornet import _codec, _wire
from actornet import _handshake as hs
from actornet._ids import Pid, Ref
from actornet.errors import DecodeError, ProtocolError

from .base import OracleError, Target
from .gen import (
    INTERESTING_INTS,
    TermGen,
    canon,
    ext,
    msgpack_value,
    mutate,
    random_bytes,
    random_int,
    random_str,
    scan_headers,
)

__all__ = ["TARGETS", "CodecTarget", "DialTarget", "DispatchTarget", "HandshakeTarget",
           "OracleError", "SessionTarget", "Target", "WireTarget"]


# -- codec -------------------------------------------------------------------------------


def _crafted_codec_inputs() -> list[bytes]:
    """Hand-made valid and nearly valid encodings: every ext code, limits, big arrays."""
    pid = msgpack.packb(["n@h", 1, 2])
    out = [
        ext(1, b"\x90"), ext(2, b"\x92\x01\x02"), ext(3, b"\x91\xa1x"), ext(4, b"\x01" + bytes(8)),
        ext(4, b"\xff" + bytes(8)), ext(5, pid), ext(6, pid),
        ext(7, msgpack.packb(["E", "m", ""])), ext(0, b"\x90"), ext(8, b"\x90"), ext(-1, bytes(4)),
        ext(-5, b"\x90"), msgpack.packb(msgpack.Timestamp(1, 0)),
        b"\x92\x01" + msgpack.packb(msgpack.Timestamp(2, 3)),
        b"\x91" * 1024 + b"\xc0", b"\x91" * 1025 + b"\xc0", b"\x81\xc0" * 600 + b"\xc0",
        b"\x81\x91\x01\x02", b"\x81\x80\x02", b"\xa3\xed\xa0\x80", b"\xdd\xff\xff\xff\xff",
    ]
    nested = b"\x90"
    for _ in range(_codec.MAX_DEPTH + 1):
        nested = b"\x91" + ext(1, nested)
        out.append(nested[1:])
    # Over 512 bytes with over 16 array 16/32 headers: decode checks these first.
    out.append(b"".join(b"\xdd" + (700).to_bytes(4, "big") for _ in range(20)) + b"\xc0" * 600)
    out.append(b"\xdc\x00\x14" + b"\xdc\x00\x10" + b"\x01" * 16 + b"".join(
        b"\xdc\x00\x11" + b"\xc3" * 17 for _ in range(19)) + b"\x00" * 400)
    out.append(ext(1, out[-1]))
    return out


class CodecTarget(Target):
    """`actornet._codec.decode` on any bytes: a term, or `DecodeError` and nothing else.

    A decoded value must hold only term types and re-encode to bytes that
    decode to the same term.
    """

    name = "codec"
    documented = "DecodeError"

    def __init__(self, seed: int = 0, pool_size: int = 400) -> None:
        super().__init__(seed)
        rng = random.Random(f"{seed}:codec:pool")
        gen = TermGen(rng)
        self.pool: list[bytes] = _crafted_codec_inputs()
        while len(self.pool) < pool_size:
            value = gen.wide() if rng.random() < 0.1 else gen.term()
            self.pool.append(_codec.encode(value))
        self._headers: dict[int, list[tuple[int, int]]] = {}
        # encode keeps a pool of Packers (256 KB each) per ext depth, made on first use:
        # make them now, so an input's allocation peak measures decode, not that one-off.
        deepest: Any = "\ud800"  # a lone surrogate: the second pool too
        for _ in range(_codec.MAX_DEPTH):
            deepest = (deepest,)
        _codec.encode(deepest)
        _codec.encode(deepest[0][0] + ("x",))

    def corpus(self) -> list[bytes]:
        return [p for p in self.pool if len(p) < 4096]

    def headers(self, index: int) -> list[tuple[int, int]]:
        """The object headers of pool entry `index` (cached)."""
        found = self._headers.get(index)
        if found is None:
            found = self._headers[index] = scan_headers(self.pool[index])
        return found

    def generate(self, rng: random.Random) -> bytes:
        r = rng.random()
        if r < 0.08:
            return random_bytes(rng, 2048 if rng.random() < 0.1 else 64)
        if r < 0.22:
            return _codec.encode(TermGen(rng).term())
        if r < 0.9:
            i = rng.randrange(len(self.pool))
            return mutate(rng, self.pool[i], self.pool, headers=self.headers(i))
        if r < 0.95:  # splice or concatenate two valid encodings
            a, b = rng.choice(self.pool), rng.choice(self.pool)
            return a[: rng.randint(0, len(a))] + b[rng.randint(0, len(b)):]
        return self._crafted_ext(rng)

    def _crafted_ext(self, rng: random.Random) -> bytes:
        """An ext of a random code around a payload that may or may not be right."""
        code = rng.choice((-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 99, 127, -128))
        r = rng.random()
        if r < 0.3:
            payload = _codec.encode(TermGen(rng).term())
        elif r < 0.5:  # fields of a Pid, Ref or Crash, right or wrong
            some: tuple[Any, ...] = ("n", "", "\ud800", 0, 1, -1, 2**64 - 1, b"n", None, 1.5,
                                     True, [])
            fields = [rng.choice(some) for _ in range(rng.choice((2, 3, 3, 3, 4)))]
            payload = msgpack.packb(fields, use_bin_type=True, unicode_errors="surrogatepass")
        elif r < 0.7:  # big ints: minimal or not, in the native range or not
            n = random_int(rng)
            size = (n if n >= 0 else ~n).bit_length() // 8 + 1 + rng.choice((0, 0, 0, 1, 2))
            payload = n.to_bytes(size, "big", signed=True)
        else:
            i = rng.randrange(len(self.pool))
            payload = mutate(rng, self.pool[i], self.pool, headers=self.headers(i))
        data = ext(code, payload)
        if rng.random() < 0.3:
            data = b"\x92" + data + _codec.encode(TermGen(rng).term())
        return data

    def check(self, data: bytes) -> str:
        try:
            value = _codec.decode(data)
        except DecodeError:
            return "rejected"
        finally:
            if tracemalloc.is_tracing():  # the oracle's encode below allocates Packers
                self.alloc_peak = tracemalloc.get_traced_memory()[1]
        try:
            key = canon(value)
        except TypeError as e:
            raise OracleError(f"decode returned a non-term: {e}") from None
        try:
            again = _codec.encode(value)
        except Exception as e:
            raise OracleError(f"a decoded value does not re-encode: {e!r:.300}") from None
        try:
            back = _codec.decode(again)
        except DecodeError as e:
            raise OracleError(f"a re-encoded value does not decode: {e}") from None
        if canon(back) != key:
            raise OracleError(f"decode(encode(v)) is not v for v={value!r:.200}")
        if data:
            try:
                _codec.decode(data, max_size=len(data) - 1)
            except DecodeError:
                pass
            else:
                raise OracleError("decode accepted data over max_size")
        return "accepted"


# -- wire --------------------------------------------------------------------------------

_PROTOCOL: Final = (ProtocolError,)  # DecodeError is a ProtocolError


def _wire_input(header: bytes, payload: bytes, limit: int = 0, chunks: int = 0) -> bytes:
    """A wire fuzz input: control byte (header length | OpStream chunks << 4), limit, frames."""
    header = header[:15]
    return bytes([len(header) | (chunks & 15) << 4]) + limit.to_bytes(2, "big") + header + payload


def parse_wire_input(data: bytes) -> tuple[bytes, bytes, int | None, int]:
    """(header frame, ops frame, max_size or None, OpStream chunk count) of a wire input."""
    ctl = data[0] if data else 0
    limit = int.from_bytes(data[1:3], "big")
    hl = ctl & 15
    return data[3:3 + hl], data[3 + hl:], limit or None, ctl >> 4


def _encode_op(op: Any) -> bytes:
    """`op` encoded (an op that cannot be sent, too deep say, is a TICK instead)."""
    try:
        return _codec.encode(op)
    except (ValueError, TypeError):
        return _codec.encode([_wire.TICK])


class WireTarget(Target):
    """`_wire.unpack_header`, `split_ops` (and `OpStream` if present), `decode_op`.

    Only `ProtocolError` (`DecodeError` included) may come out. An accepted
    header must be the one `pack_header` writes; split ops must tile the frame;
    `OpStream` must agree with `split_ops`; a decoded op must have its shape.
    """

    name = "wire"
    documented = "ProtocolError (DecodeError included)"

    def __init__(self, seed: int = 0, pool_size: int = 300) -> None:
        super().__init__(seed)
        rng = random.Random(f"{seed}:wire:pool")
        self.shapes: dict[Any, tuple[Any, ...]] = dict(getattr(_wire, "_SHAPES", {}))
        self.op_pool = [_encode_op(self.random_op(rng)) for _ in range(pool_size)]
        self.pool: list[bytes] = [
            _wire.pack_ops(rng.sample(self.op_pool, rng.randint(1, 6))) for _ in range(pool_size)
        ]
        self._stream_ok = hasattr(_wire, "OpStream")

    def corpus(self) -> list[bytes]:
        rng = random.Random(f"{self.seed}:wire:corpus")
        return [_wire_input(_wire.pack_header(rng.choice((0, 1, 2**63))), p, 0,
                            rng.choice((0, 1, 3))) for p in self.pool[:100]]

    def random_op(self, rng: random.Random, wrong: bool = False) -> Any:
        """A valid op of a random code (`wrong`: then made malformed on purpose)."""
        gen = TermGen(rng, max_depth=3, deep=0.0)
        code = rng.choice(list(self.shapes) or [_wire.SEND])
        op: list[Any] = [code]
        for want in self.shapes.get(code, (int, int, object)):
            op.append(self._arg(rng, gen, want))
        if wrong:
            r = rng.randrange(6)
            if r == 0:
                op[0] = rng.choice((0, 16, -1, 2**64, True, False, 1.0, "1", None, (1,)))
            elif r == 1 and len(op) > 1:
                op[rng.randrange(1, len(op))] = gen.term()
            elif r == 2:
                op.pop()
            elif r == 3:
                op.append(gen.term())
            elif r == 4:
                return rng.choice(([], (1, 2), {1: 2}, "op", 1, None, [[1]]))
            else:
                op = [code, *[gen.atom() for _ in op[1:]]]
        return op

    @staticmethod
    def _arg(rng: random.Random, gen: TermGen, want: Any) -> Any:
        if isinstance(want, tuple):
            want = rng.choice(want)
        if want is Pid:  # a node name mostly (decode_op refuses a pid of none), else anything
            node = (rng.choice(("n@h", "a@127.0.0.1", "x_1@host-2.lan")) if rng.random() < 0.8
                    else random_str(rng, 30) or "n@h")
            return Pid(node, abs(random_int(rng)), abs(random_int(rng)))
        if want is Ref:
            return Ref(random_str(rng, 30) or "n@h", random_int(rng), random_int(rng))
        if want is str:
            return random_str(rng)
        if want is int:
            return random_int(rng)
        if want is tuple:
            return tuple(gen.term() for _ in range(rng.randint(0, 3)))
        if want is list:
            return [[random_str(rng), random_str(rng)] for _ in range(rng.randint(0, 3))]
        return gen.term()

    def generate(self, rng: random.Random) -> bytes:
        if rng.random() < 0.9:
            header = _wire.pack_header(rng.choice(INTERESTING_INTS) % 2**64)
            if rng.random() < 0.05:
                header = mutate(rng, header, (b"AD",))
        else:
            header = random_bytes(rng, 15)
        limit = 0 if rng.random() < 0.7 else rng.choice((1, 4, 16, 64, 255, 1000, 65535))
        chunks = rng.choice((0, 0, 0, 1, 2, 3, 7, 15))
        r = rng.random()
        if r < 0.3:
            ops = [_encode_op(self.random_op(rng)) for _ in range(rng.randint(1, 5))]
            payload = _wire.pack_ops(ops)
        elif r < 0.5:  # one op mutated, lengths kept right: the codec and decode_op see it
            ops = rng.sample(self.op_pool, rng.randint(1, 4))
            k = rng.randrange(len(ops))
            ops[k] = mutate(rng, ops[k], self.op_pool, headers=scan_headers(ops[k]))
            payload = _wire.pack_ops(ops)
        elif r < 0.7:  # the frame mutated: op lengths too
            payload = self._tamper_lengths(rng, rng.choice(self.pool))
        elif r < 0.82:
            ops = [_encode_op(self.random_op(rng, wrong=True)) for _ in range(rng.randint(1, 3))]
            payload = _wire.pack_ops(ops)
        elif r < 0.98:
            payload = random_bytes(rng, 300 if rng.random() < 0.2 else 40)
        else:  # many tiny ops
            unit = rng.choice((b"\x00\x00\x00\x00", b"\x00\x00\x00\x01\xc0",
                               b"\x00\x00\x00\x02\x91\x0d", b"\x00\x00\x00\x01\x90"))
            payload = unit * rng.choice((10, 100, 1000, 3000))
        return _wire_input(header, payload, limit, chunks)

    @staticmethod
    def _tamper_lengths(rng: random.Random, frame: bytes) -> bytes:
        """Mutate a batch frame: its op length fields (off by one, zero, huge) or anywhere."""
        starts, offset = [], 0
        while offset + 4 <= len(frame):
            starts.append(offset)
            offset += 4 + int.from_bytes(frame[offset:offset + 4], "big")
        out = bytearray(frame)
        if starts and rng.random() < 0.6:
            at = rng.choice(starts)
            old = int.from_bytes(out[at:at + 4], "big")
            new = rng.choice((0, 1, old - 1, old + 1, old + 4, 2**31, 2**32 - 1, 2**24))
            out[at:at + 4] = (new % 2**32).to_bytes(4, "big")
            return bytes(out)
        return mutate(rng, frame, ())

    def check(self, data: bytes) -> str:
        header, payload, max_size, chunks = parse_wire_input(data)
        try:
            seq = _wire.unpack_header(header)
        except _PROTOCOL:
            head = "bad"
        else:
            if type(seq) is not int or not 0 <= seq < 2**64 or _wire.pack_header(seq) != header:
                raise OracleError(f"unpack_header accepted {header!r} as {seq!r}")
            head = "ok"
        ops: list[memoryview] | None
        try:
            found = _wire.split_ops(payload)
        except _PROTOCOL:
            ops = None
        else:
            if sum(4 + len(op) for op in found) != len(payload):
                raise OracleError("split_ops' ops do not tile the frame")
            ops = found
        decoded = 0
        for op in ops or ():
            decoded += self._decode_op(op, max_size)
        streamed = self._stream(payload, max_size, chunks, ops)
        if ops is None and streamed is not None:
            for piece in streamed:
                decoded += self._decode_op(piece, max_size)
        split = "cut" if ops is None else f"{min(len(ops), 3)}ops"
        return f"header-{head} {split} decoded-{min(decoded, 3)}"

    def _decode_op(self, op: bytes | memoryview, max_size: int | None) -> int:
        try:
            value = _wire.decode_op(op, max_size)
        except _PROTOCOL:
            return 0
        if value.__class__ is not list or not value:
            raise OracleError(f"decode_op returned {value!r:.100}")
        # decode_op's fast path takes [SEND, ...] by ==, so True and 1.0 pass as SEND (1):
        # tolerated here (harmless: the transport dispatches by == too), and reported.
        code: Any = value[0]
        shape = self.shapes.get(code) if code.__class__ in (int, bool, float) else None
        if shape is None or len(value) != len(shape) + 1:
            raise OracleError(f"decode_op accepted an op of no known shape: {value!r:.100}")
        for arg, want in zip(value[1:], shape, strict=True):
            if want is not object and not isinstance(arg, want):
                raise OracleError(f"decode_op accepted a bad argument: {value!r:.100}")
        if max_size is not None and len(op) > max_size:
            raise OracleError(f"decode_op accepted {len(op)} bytes over max_size={max_size}")
        return 1

    def _stream(self, payload: bytes, max_size: int | None, chunks: int,
                ops: list[memoryview] | None) -> list[bytes] | None:
        """Feed `payload` to an `OpStream` in `chunks` + 1 pieces; None if it raised."""
        if not self._stream_ok:
            return None
        limit = max_size if max_size is not None else 2**32
        try:
            stream = _wire.OpStream(limit)
        except TypeError:  # the API changed under us: fuzz the rest
            self._stream_ok = False
            return None
        pieces = chunks + 1
        step = max(1, -(-len(payload) // pieces))
        got: list[bytes] = []
        try:
            for start in range(0, max(len(payload), 1), step):
                got.extend(bytes(op) for op in stream.feed(payload[start:start + step]))
        except _PROTOCOL:
            raise OracleError("OpStream raised: it skips an op over the limit instead") from None
        want, skipped, signals, end = _walk_ops(payload, limit)
        rest = max(0, len(payload) - end)
        if (got != want or stream.skipped != skipped or stream.pending != rest
                or getattr(stream, "signals_skipped", signals) != signals):
            raise OracleError("OpStream disagrees with the frame's own op lengths")
        if ops is not None:
            if (want != [bytes(op) for op in ops if len(op) <= limit]
                    or skipped != [len(op) for op in ops if len(op) > limit] or rest):
                raise OracleError("OpStream and split_ops disagree on a whole frame")
        elif end == len(payload):
            raise OracleError("the frame's op lengths tile it, yet split_ops calls it cut")
        return got


def _walk_ops(payload: bytes, limit: int) -> tuple[list[bytes], list[int], int, int]:
    """What an `OpStream` fed `payload` must give: the ops within `limit`, the sizes of
    those over it (skipped, even when cut, once their first two bytes are in), how many of
    those are not plain messages (not a msgpack array whose first item is SEND, REG_SEND
    or SEND_MANY),
    and where the walk ended (past the end while skipping a cut op; before it, at a cut op
    the stream must hold)."""
    ops: list[bytes] = []
    skipped: list[int] = []
    signals = 0
    offset = 0
    while len(payload) - offset >= 4:
        n = int.from_bytes(payload[offset:offset + 4], "big")
        start = offset + 4
        if n > limit:
            if len(payload) - start < min(n, 2):
                break
            skipped.append(n)
            head = payload[start:start + 2]
            plain = (_wire.SEND, _wire.REG_SEND, _wire.SEND_MANY)
            if n < 2 or head[0] & 0xF0 != 0x90 or head[1] not in plain:
                signals += 1
        elif len(payload) - start < n:
            break
        else:
            ops.append(payload[start:start + n])
        offset = start + n
    return ops, skipped, signals, offset


# -- handshake ---------------------------------------------------------------------------

COOKIE: Final = b"fuzz-cookie-0123456789"
NONCE_A: Final = hashlib.sha256(b"fuzz nonce a").digest()[:16]
NONCE_B: Final = hashlib.sha256(b"fuzz nonce b").digest()[:16]
_I_ARGS: Final[dict[str, Any]] = {"name": "a@host", "creation": 11, "endpoint": "tcp://127.0.0.1:5555",
                  "peer_name": "b@host", "flags": 1}
_A_ARGS: Final[dict[str, Any]] = {"name": "b@host", "creation": 22, "flags": 3}
_FRAME_TYPES: Final[tuple[Callable[[bytes], Any], ...]] = (
    bytes, bytearray, memoryview, lambda b: b.decode("latin-1"),  # the last is not bytes
)
MAX_FRAMES: Final = 6
_HEADER: Final = b"ACN" + bytes([hs.PROTOCOL_VERSION])
_FIELDS: Final = ("name", "creation", "flags", "endpoint", "to", "nonce", "digest", "reason",
                  "auth")


def _pack(body: Any, bin_type: bool = True) -> bytes:
    """`body` as msgpack, as a peer might write it (lone surrogates passed through)."""
    return msgpack.packb(body, use_bin_type=bin_type, unicode_errors="surrogatepass")  # type: ignore[no-any-return]


def handshake_input(state: int, frames: Sequence[bytes], flags: int = 0) -> bytes:
    """A handshake fuzz input: state, flags, then each frame as u16 length + bytes."""
    out = bytearray([state, flags])
    for f in frames:
        f = f[:65535]
        out += len(f).to_bytes(2, "big") + f
    return bytes(out)


def parse_handshake_input(data: bytes) -> tuple[int, int, list[bytes]]:
    """(state, flags, frames) of a handshake input (the last frame takes what is left)."""
    state = data[0] if data else 0
    flags = data[1] if len(data) > 1 else 0
    frames: list[bytes] = []
    pos = 2
    while pos < len(data) and len(frames) < MAX_FRAMES:
        n = int.from_bytes(data[pos:pos + 2], "big")
        frames.append(data[pos + 2:pos + 2 + n])
        pos += 2 + n
    return state, flags, frames or [b""]


class HandshakeTarget(Target):
    """`Initiator.receive` / `Acceptor.receive` in every state: never raises.

    Each input picks a machine state (fresh acceptor; initiator before and
    after start(); acceptor after a valid HELLO; initiator after a valid
    CHALLENGE; established and failed machines; an acceptor with a refuse
    hook) and feeds it up to `MAX_FRAMES` frames. Events must be well-formed,
    only `Send`/`Established`/`Failed`, no `Failed` may wrap an internal
    error (an undocumented exception the machine caught), the state must
    follow the events, and `Established` needs the one valid digest.

    Nonces are fixed inside `active()` (``_handshake._nonce`` patched; the
    acceptor's is always NONCE_B, the initiator's NONCE_A), so the valid
    RESPONSE and ACK of a conversation are known in advance and inputs replay.
    """

    name = "handshake"
    documented = "no exception (events Send/Established/Failed only)"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self._nonce = NONCE_B
        with self.active():
            good = self._conversation(COOKIE)
            forged = self._conversation(b"another cookie")
            self.hello, self.challenge, self.response, self.ack = good
            junk = hs.Acceptor(COOKIE, **_A_ARGS).receive(b"junk")
            b = self._acceptor(hello=self.hello)
            auth = b.receive(forged[2])
            assert isinstance(junk[0], hs.Send) and isinstance(auth[0], hs.Send)
            self.pool = [*good, *forged, junk[0].frame, auth[0].frame]
            self.templates = self._templates()
        # per state: the frames a peer would send it next, in order
        g = (self.hello, self.challenge, self.response, self.ack)
        self.next_frames = [[g[0], g[2]], [g[1]], [g[1], g[3]], [g[2]], [g[3]], [g[3]], [g[2]],
                            [g[1]], [g[0]], [g[0], g[2]]]

    @staticmethod
    def spec_digest(role: str, nonce_a: bytes = NONCE_A) -> bytes:
        """The digest the module docstring specifies for `role` in the standard handshake.

        HMAC-SHA256(cookie, msgpack([label, version, role, i_name, i_creation,
        i_flags, i_endpoint, a_name, a_creation, a_flags, nonce_b, nonce_a])),
        computed here independently of `_handshake`.
        """
        i, a = _I_ARGS, _A_ARGS
        transcript = [b"actornet handshake", hs.PROTOCOL_VERSION, role, i["name"],
                      i["creation"], i["flags"], i["endpoint"], a["name"], a["creation"],
                      a["flags"], NONCE_B, nonce_a]
        return hmac.new(COOKIE, _pack(transcript), hashlib.sha256).digest()

    def _next_nonce(self) -> bytes:
        return self._nonce

    @contextmanager
    def active(self) -> Iterator[None]:
        saved = hs._nonce
        hs._nonce = self._next_nonce
        try:
            yield
        finally:
            hs._nonce = saved

    def _acceptor(self, hello: bytes | None = None, **kw: Any) -> hs.Acceptor:
        b = hs.Acceptor(COOKIE, **_A_ARGS, **kw)
        if hello is not None:
            self._nonce = NONCE_B
            assert isinstance(b.receive(hello)[0], hs.Send)
        return b

    def _initiator(self, start: bool = True, challenge: bytes | None = None) -> hs.Initiator:
        a = hs.Initiator(COOKIE, **_I_ARGS)
        if start:
            a.start()
        if challenge is not None:
            self._nonce = NONCE_A
            assert isinstance(a.receive(challenge)[0], hs.Send)
        return a

    def _conversation(self, cookie: bytes) -> list[bytes]:
        """HELLO, CHALLENGE, RESPONSE, ACK of a successful handshake with `cookie`."""
        a = hs.Initiator(cookie, **_I_ARGS)
        b = hs.Acceptor(cookie, **_A_ARGS)
        hello = a.start()
        self._nonce = NONCE_B
        [challenge] = b.receive(hello)
        self._nonce = NONCE_A
        [response] = a.receive(challenge.frame)  # type: ignore[union-attr]
        ack, done = b.receive(response.frame)  # type: ignore[union-attr]
        [done2] = a.receive(ack.frame)  # type: ignore[union-attr]
        assert isinstance(done, hs.Established) and isinstance(done2, hs.Established)
        return [hello, challenge.frame, response.frame, ack.frame]  # type: ignore[union-attr]

    def _templates(self) -> list[hs.Initiator | hs.Acceptor]:
        established_a = self._initiator(challenge=self.challenge)
        established_a.receive(self.ack)
        established_b = self._acceptor(hello=self.hello)
        established_b.receive(self.response)
        failed_a, failed_b = self._initiator(), self._acceptor()
        failed_a.receive(b"junk")
        failed_b.receive(b"junk")
        out: list[hs.Initiator | hs.Acceptor] = [
            self._acceptor(),
            self._initiator(start=False),
            self._initiator(),
            self._acceptor(hello=self.hello),
            self._initiator(challenge=self.challenge),
            established_a,
            established_b,
            failed_a,
            failed_b,
            self._acceptor(refuse=lambda name: None if name == "a@host" else "not on the list"),
        ]
        states = [m.state for m in out]
        want = ["wait_hello", "idle", "wait_challenge", "wait_response", "wait_ack",
                "established", "established", "failed", "failed", "wait_hello"]
        assert states == want, states
        return out

    def corpus(self) -> list[bytes]:
        return [handshake_input(s, frames) for s, frames in enumerate(self.next_frames)]

    # how often each state is picked: the live ones more
    STATE_WEIGHTS: ClassVar[tuple[int, ...]] = (4, 1, 3, 4, 4, 1, 1, 1, 1, 2)

    def generate(self, rng: random.Random) -> bytes:
        state = rng.choices(range(len(self.templates)), self.STATE_WEIGHTS)[0]
        flags = 0 if rng.random() < 0.85 else rng.randrange(4)
        expected = self.next_frames[state]
        frames = []
        for k in range(rng.choice((1, 1, 2, 2, 3, 4))):
            use_next = k < len(expected) and rng.random() < 0.7
            base = expected[k] if use_next else rng.choice(self.pool)
            r = rng.random()
            if r < 0.15:
                frames.append(base)
            elif r < 0.5:
                headers = [(p + 5, s) for p, s in scan_headers(base[5:])]
                frames.append(mutate(rng, base, self.pool, headers=headers,
                                     protect=5 if rng.random() < 0.8 else 0))
            elif r < 0.75:
                frames.append(self._tamper_body(rng, base))
            elif r < 0.88:
                frames.append(self._well_framed(rng))
            elif r < 0.95:
                prefix = _HEADER + bytes([rng.randint(0, 6)]) if rng.random() < 0.5 else b""
                frames.append(prefix + random_bytes(rng, 80))
            else:
                frames.append(self._oversize(rng, base))
        return handshake_input(state, frames, flags)

    def _tamper_body(self, rng: random.Random, base: bytes) -> bytes:
        """Change the body's fields (values, keys, types), kind or version, and re-pack."""
        body: dict[Any, Any] = dict(msgpack.unpackb(base[5:]))
        kind, version = base[4], base[3]
        for _ in range(rng.randint(1, 3)):
            r = rng.randrange(8)
            key = rng.choice(list(body) or ["name"])
            if r == 0:
                body[key] = msgpack_value(rng)
            elif r == 1:
                body.pop(key, None)
            elif r == 2:
                body[rng.choice(_FIELDS)] = self._field_value(rng)
            elif r == 3:
                body[rng.choice((random_str(rng), 1, b"name", -1, 1.5))] = msgpack_value(rng)
            elif r == 4:
                kind = rng.choice((0, 1, 2, 3, 4, 5, 6, 255))
            elif r == 5:
                version = rng.choice((0, 2, 255))
            elif r == 6:
                body[key] = self._field_value(rng)
            else:
                body = rng.choice(([body], list(body.values()), "body", None, 1))  # type: ignore[arg-type]
                break
        return b"ACN" + bytes([version, kind]) + _pack(body, bin_type=rng.random() < 0.9)

    @staticmethod
    def _field_value(rng: random.Random) -> Any:
        """A value near what a field accepts: names at the 255 limit, 15/16/17 bytes..."""
        r = rng.randrange(9)
        if r == 0:
            return rng.choice(("", "a@host", "b@host", "x" * 255, "x" * 256, "\U0001f600" * 255,
                               "\x00\n\x1b[2J", "\ud800" * 3))
        if r == 1:
            return rng.randbytes(rng.choice((0, 15, 16, 17, 31, 32, 33)))
        if r == 2:
            return rng.choice((0, 1, -1, 2**64 - 1, 2**63, True, False, 1.0))
        if r == 3:
            return rng.choice(("tcp://h:1", "", "x" * 1024, "x" * 1025, "\U0001f600" * 1024))
        if r == 4:
            return random_str(rng, 300)
        if r == 5:
            return rng.choice((True, False, 0, 1, None, "yes"))
        return msgpack_value(rng)

    @staticmethod
    def _well_framed(rng: random.Random) -> bytes:
        """The magic, a version, a kind and a random msgpack body."""
        version = hs.PROTOCOL_VERSION if rng.random() < 0.9 else rng.randrange(256)
        kind = rng.randint(0, 7) if rng.random() < 0.9 else rng.randrange(256)
        if rng.random() < 0.7:
            body: Any = {rng.choice(_FIELDS): HandshakeTarget._field_value(rng)
                         for _ in range(rng.randint(0, 6))}
        else:
            body = msgpack_value(rng)
        return b"ACN" + bytes([version, kind]) + _pack(body)

    @staticmethod
    def _oversize(rng: random.Random, base: bytes) -> bytes:
        """A frame at, just over, or far over `MAX_HANDSHAKE_FRAME` bytes."""
        size = hs.MAX_HANDSHAKE_FRAME + rng.choice((-1, 0, 1, 2, 100, 6000))
        body = dict(msgpack.unpackb(base[5:]))
        body["pad"] = ""
        body["pad"] = "p" * max(0, size - 5 - len(_pack(body)) - 3)
        return (base[:5] + _pack(body))[:size]

    def check(self, data: bytes) -> str:
        state, flags, frames = parse_handshake_input(data)
        machine = copy.copy(self.templates[state % len(self.templates)])
        self._nonce = NONCE_B if isinstance(machine, hs.Acceptor) else NONCE_A
        to_frame = _FRAME_TYPES[flags & 3]
        start = f"{type(machine).__name__}:{machine.state}"
        for frame in frames:
            before = machine.state
            events = machine.receive(to_frame(frame))
            self._check_events(machine, before, frame, events)
        return f"{start}->{machine.state}"

    def _check_events(self, machine: hs.Initiator | hs.Acceptor, before: str, frame: bytes,
                      events: Any) -> None:
        if not isinstance(events, list) or not events:
            raise OracleError(f"receive returned {events!r:.100}, not a non-empty list")
        if not all(type(e) in (hs.Send, hs.Established, hs.Failed) for e in events):
            raise OracleError(f"receive returned an undocumented event: {events!r:.200}")
        finals = [e for e in events if not isinstance(e, hs.Send)]
        if len(finals) > 1 or (finals and events[-1] is not finals[0]):
            raise OracleError(f"events after the final one: {events!r:.200}")
        for e in events:
            if isinstance(e, hs.Failed):
                if not isinstance(e.error, ProtocolError):
                    raise OracleError(f"Failed with a {type(e.error).__name__}: {e.error!r:.200}")
                if "internal handshake error" in str(e.error):
                    raise OracleError(f"an undocumented exception inside receive: {e.error}")
            elif isinstance(e, hs.Send):
                self._check_sent(e.frame, events)
        role = "acceptor" if isinstance(machine, hs.Acceptor) else "initiator"
        last = events[-1]
        if before in ("established", "failed"):
            if len(events) != 1 or not isinstance(last, hs.Failed) or machine.state != before:
                raise OracleError(f"a finished machine ({before}) answered {events!r:.200}")
        elif isinstance(last, hs.Failed):
            if machine.state != "failed":
                raise OracleError(f"Failed but the state is {machine.state}")
        elif isinstance(last, hs.Established):
            self._check_established(machine, role, frame, events)
        else:
            want = {"wait_hello": ("wait_response", hs.CHALLENGE),
                    "wait_challenge": ("wait_ack", hs.RESPONSE)}.get(before)
            if want is None or machine.state != want[0] or len(events) != 1 \
                    or events[0].frame[4] != want[1]:
                raise OracleError(f"{role} in {before} went to {machine.state} sending "
                                  f"{events!r:.200}")

    def _check_established(self, machine: hs.Initiator | hs.Acceptor, role: str, frame: bytes,
                           events: list[Any]) -> None:
        """Established: the standard peer, proved by the digest the protocol specifies."""
        event = events[-1]
        if machine.state != "established":
            raise OracleError(f"Established but the state is {machine.state}")
        want = (hs.Established("a@host", 11, 1, "tcp://127.0.0.1:5555") if role == "acceptor"
                else hs.Established("b@host", 22, 3, None))
        if event != want:
            raise OracleError(f"{role} established with {event!r}, not {want!r}")
        try:
            body = msgpack.unpackb(bytes(frame)[5:], raw=False)
            digest, nonce_a = body["digest"], body.get("nonce", NONCE_A)
        except Exception as e:
            raise OracleError(f"{role} established on a frame without a digest ({e!r})") from None
        if role == "initiator":
            if digest != self.spec_digest("acceptor"):
                raise OracleError("the initiator accepted an ACK digest that is not the HMAC "
                                  "the protocol specifies")
            return
        if digest != self.spec_digest("initiator", nonce_a):
            raise OracleError("the acceptor accepted a RESPONSE digest that is not the HMAC "
                              "the protocol specifies")
        ack = msgpack.unpackb(events[0].frame[5:], raw=False)
        if events[0].frame[4] != hs.ACK or ack.get("digest") != self.spec_digest("acceptor",
                                                                                  nonce_a):
            raise OracleError("the acceptor's ACK does not carry the digest the protocol "
                              "specifies")

    @staticmethod
    def _check_sent(data: Any, events: list[Any]) -> None:
        if not isinstance(data, bytes) or data[:4] != _HEADER or len(data) < 6:
            raise OracleError(f"sent a frame that is not a handshake frame: {data!r:.100}")
        if len(data) > hs.MAX_HANDSHAKE_FRAME:
            raise OracleError(f"sent a frame of {len(data)} bytes, over MAX_HANDSHAKE_FRAME: "
                              f"the peer refuses it")
        try:
            body = msgpack.unpackb(data[5:], raw=False)
        except Exception as e:
            raise OracleError(f"sent a frame whose body does not unpack: {e!r}") from None
        if not isinstance(body, dict):
            raise OracleError("sent a frame whose body is not a map")
        if data[4] == hs.REJECT:
            if not isinstance(body.get("reason"), str) or not isinstance(body.get("auth"), bool):
                raise OracleError(f"sent a malformed REJECT: {body!r:.200}")
            if len(body["reason"]) > 1024:
                raise OracleError("sent a REJECT reason over 1024 characters")
            if not isinstance(events[-1], hs.Failed):
                raise OracleError("sent a REJECT without failing")


from .io_targets import DialTarget, DispatchTarget  # noqa: E402 - they build on the above
from .session_target import SessionTarget  # noqa: E402

TARGETS: Final[dict[str, type[Target]]] = {
    t.name: t for t in (CodecTarget, WireTarget, HandshakeTarget, SessionTarget, DispatchTarget,
                        DialTarget)
}
