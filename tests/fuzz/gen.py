"""Input generation for the fuzz harness: random terms, msgpack values and byte mutations.

Everything here draws from a `random.Random` passed in, so an input is a pure
function of its generator's seed (and of ``PYTHONHASHSEED``, which orders sets).
Nothing here calls the code under test except `actornet._codec.encode`, to turn
generated terms into valid encodings to mutate.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgpack

from actornet import _codec
from actornet._ids import Pid, Ref
from actornet.errors import Crash

__all__ = [
    "INTERESTING_INTS",
    "TermGen",
    "canon",
    "ext",
    "msgpack_value",
    "mutate",
    "random_bytes",
    "random_str",
    "scan_headers",
]

INTERESTING_INTS: Final[tuple[int, ...]] = (
    0, 1, -1, 2, 15, 16, 31, 32, -32, -33, 127, 128, 255, 256, -128, -129,
    2**15 - 1, 2**15, 2**16 - 1, 2**16, -(2**15), -(2**15) - 1, 2**31 - 1, 2**31, 2**32 - 1,
    2**32, -(2**31), -(2**31) - 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63),
    -(2**63) - 1, 2**100, -(2**100), 2**1000, -(2**1000) - 1,
)
INTERESTING_FLOATS: Final[tuple[float, ...]] = (
    0.0, -0.0, 1.5, -2.25, math.inf, -math.inf, math.nan, 1e308, -1e308, 5e-324, 2.0**63,
)
# Bytes that start msgpack objects with a length, or that are otherwise special.
INTERESTING_BYTES: Final[tuple[int, ...]] = (
    0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6,
    0xC7, 0xC8, 0xC9, 0xCA, 0xCB, 0xCF, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xDB,
    0xDC, 0xDD, 0xDE, 0xDF, 0xE0, 0xFF, 0x01, 0x04, 0x05, 0x07, 0x08,
)
# Chunks to insert: huge claimed lengths, odd exts, timestamps, nesting.
INTERESTING_CHUNKS: Final[tuple[bytes, ...]] = (
    b"\xdd\xff\xff\xff\xff", b"\xdd\x7f\xff\xff\xff", b"\xdc\xff\xff", b"\xdf\xff\xff\xff\xff",
    b"\xde\xff\xff", b"\xc6\xff\xff\xff\xff", b"\xc6\x7f\xff\xff\xff", b"\xdb\xff\xff\xff\xff",
    b"\xda\xff\xff", b"\xd9\xff", b"\xc9\xff\xff\xff\xff\x01", b"\xc9\x7f\xff\xff\xff\x04",
    b"\xc8\xff\xff\x02", b"\xc7\xff\x05", b"\xd4\x04\x00", b"\xd4\x01\x90", b"\xd5\x01\x91\xc0",
    b"\xd6\xff\x00\x00\x00\x01", b"\xd7\xff" + bytes(8), b"\xc7\x0c\xff" + bytes(12),
    b"\xd4\xff\x00", b"\xd4\x00\x90", b"\xd4\x08\x90", b"\xd4\x80\x90", b"\x91" * 40,
    b"\x81\xc0" * 20, b"\xc1", b"\xa1\xff", b"\xa3\xed\xa0\x80", b"\xc7\x00\x01",
)
_ALPHABETS: Final[tuple[str, ...]] = (
    "abcxyz@.:/_-0123456789",
    "\x00\x01\n\t\x7f\x80\xff",
    "é€漢字\u200b\ufeff\ufffe",
    "\U0001f600\U0010ffff\U00010000",
    "\ud800\udbff\udc00\udfff",  # lone surrogates: the codec sends them surrogatepass
)
_LENGTHS: Final[tuple[int, ...]] = (0, 1, 2, 3, 15, 16, 17, 31, 32, 33, 255, 256, 257)
# type byte -> size of its big-endian length field (0xc7-0xc9: ext 8/16/32)
_SIZED: Final[dict[int, int]] = {
    0xC4: 1, 0xC5: 2, 0xC6: 4, 0xC7: 1, 0xC8: 2, 0xC9: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4,
    0xDC: 2, 0xDD: 4, 0xDE: 2, 0xDF: 4,
}
_FIXED: Final[dict[int, int]] = {  # type byte -> bytes of data after it (numbers, fixext)
    0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,
    0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8,
}
_FIXEXT: Final[dict[int, int]] = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}


def ext(code: int, payload: bytes) -> bytes:
    """An ext of type `code` holding `payload`, in the shortest ext 8/16/32 form."""
    n = len(payload)
    if n < 256:
        head = b"\xc7" + bytes([n])
    elif n < 65536:
        head = b"\xc8" + n.to_bytes(2, "big")
    else:
        head = b"\xc9" + n.to_bytes(4, "big")
    return head + code.to_bytes(1, "big", signed=True) + payload


def random_bytes(rng: random.Random, max_size: int = 64) -> bytes:
    """Random bytes, usually short, now and then up to `max_size`."""
    n = rng.choice(_LENGTHS) if rng.random() < 0.3 else rng.randint(0, max_size)
    return rng.randbytes(min(n, max_size))


def random_str(rng: random.Random, max_size: int = 40) -> str:
    """A random str from a few alphabets (ASCII, controls, BMP, astral, lone surrogates)."""
    alphabet = rng.choice(_ALPHABETS)
    n = rng.choice(_LENGTHS) if rng.random() < 0.2 else rng.randint(0, 12)
    return "".join(rng.choice(alphabet) for _ in range(min(n, max_size)))


def random_int(rng: random.Random) -> int:
    """An int: an edge value, a small one, or one of a random bit length (up to 300)."""
    r = rng.random()
    if r < 0.4:
        return rng.choice(INTERESTING_INTS) + rng.choice((0, 0, 0, 1, -1))
    if r < 0.7:
        return rng.randint(-40, 300)
    n = rng.getrandbits(rng.choice((8, 16, 32, 63, 64, 65, 100, 300)))
    return -n if rng.random() < 0.5 else n


def random_float(rng: random.Random) -> float:
    """A float: an edge value (NaN, infinities, -0.0, ...) or a random one."""
    if rng.random() < 0.5:
        return rng.choice(INTERESTING_FLOATS)
    if rng.random() < 0.5:
        return float(struct.unpack(">d", rng.randbytes(8))[0])  # any bit pattern, NaNs too
    return rng.uniform(-1e6, 1e6)


class TermGen:
    """Random valid terms of every type the codec supports.

    Atoms: None, bool, int (native and big), float, str, bytes, Pid, Ref,
    Crash; containers: list, tuple, dict, set, frozenset, nested up to
    `max_depth` (with probability `deep`, a deep chain of lists, maps or tuples).
    """

    def __init__(self, rng: random.Random, max_depth: int = 4, deep: float = 0.03) -> None:
        self.rng = rng
        self.max_depth = max_depth
        self.deep_rate = deep  # how often `term` makes a `deep` chain instead

    def atom(self) -> Any:
        rng = self.rng
        kind = rng.randrange(11)
        if kind == 0:
            return None
        if kind == 1:
            return rng.random() < 0.5
        if kind in (2, 3):
            return random_int(rng)
        if kind == 4:
            return random_float(rng)
        if kind in (5, 6):
            return random_str(rng)
        if kind == 7:
            return random_bytes(rng)
        if kind == 8:
            return Pid(random_str(rng, 20), abs(random_int(rng)), abs(random_int(rng)))
        if kind == 9:
            return Ref(random_str(rng, 20), random_int(rng), random_int(rng))
        return Crash(random_str(rng), random_str(rng), random_str(rng, 200))

    def hashable(self, depth: int = 0) -> Any:
        """An atom, or a tuple or frozenset of hashables."""
        rng = self.rng
        if depth >= self.max_depth or rng.random() < 0.7:
            return self.atom()
        items = [self.hashable(depth + 1) for _ in range(rng.randint(0, 3))]
        return tuple(items) if rng.random() < 0.6 else frozenset(items)

    def term(self, depth: int = 0) -> Any:
        """A random term; containers get rarer with depth."""
        rng = self.rng
        if depth == 0 and rng.random() < self.deep_rate:
            return self.deep()
        if depth >= self.max_depth or rng.random() < 0.35 + 0.15 * depth:
            return self.atom()
        size = rng.randint(0, 4) if rng.random() < 0.9 else rng.choice((15, 16, 17, 40))
        kind = rng.randrange(5)
        if kind == 0:
            return [self.term(depth + 1) for _ in range(size)]
        if kind == 1:
            return tuple(self.term(depth + 1) for _ in range(size))
        if kind == 2:
            return {self.hashable(depth + 1): self.term(depth + 1) for _ in range(size)}
        items = [self.hashable(depth + 1) for _ in range(size)]
        return set(items) if kind == 3 else frozenset(items)

    def wide(self) -> Any:
        """Many arrays of 16 or more items (msgpack array 16): over 512 bytes encoded."""
        rng = self.rng
        rows = [[self.atom() for _ in range(rng.randint(16, 24))]
                for _ in range(rng.randint(17, 30))]
        if rng.random() < 0.3:
            return tuple(tuple(r) for r in rows)
        if rng.random() < 0.3:
            return {i: r for i, r in enumerate(rows)}
        return rows

    def deep(self) -> Any:
        """A chain of nested lists, dicts or tuples near the codec's limits."""
        rng = self.rng
        kind = rng.randrange(3)
        value: Any = self.atom()
        if kind == 2 and isinstance(value, (Pid, Ref, Crash)):
            value = value.node if isinstance(value, (Pid, Ref)) else value.type  # not an ext
        if kind == 0:
            for _ in range(rng.choice((100, 1000, 1023))):
                value = [value]
        elif kind == 1:
            for _ in range(rng.choice((50, 500, 1000))):
                value = {"k": value}
        else:
            for _ in range(rng.choice((_codec.MAX_DEPTH - 1, _codec.MAX_DEPTH))):
                value = (value,)
        return value


def msgpack_value(rng: random.Random, depth: int = 0) -> Any:
    """A random value msgpack can pack (not a term: exts and timestamps included)."""
    kind = rng.randrange(12 if depth < 3 else 9)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        n = random_int(rng)
        return n if -(2**63) <= n < 2**64 else rng.randint(-(2**63), 2**64 - 1)
    if kind == 3:
        return random_float(rng)
    if kind in (4, 5):
        return random_str(rng, 300) if rng.random() < 0.1 else random_str(rng)
    if kind == 6:
        return rng.randbytes(rng.choice((0, 15, 16, 17, 31, 32, 33, rng.randint(0, 40))))
    if kind == 7:
        return msgpack.ExtType(rng.randint(0, 127), random_bytes(rng, 20))  # (-1: Timestamp)
    if kind == 8:
        return msgpack.Timestamp(rng.randint(0, 2**34 - 1), rng.randint(0, 999_999_999))
    if kind in (9, 10):
        return [msgpack_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {random_str(rng): msgpack_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def scan_headers(data: bytes, limit: int = 200) -> list[tuple[int, int]]:
    """Where the objects of msgpack `data` start: up to `limit` (offset, length-field size).

    A length-field size of 0 marks a fix type (its count is in the type byte).
    Ext payloads are scanned too (they hold terms). The scan stops quietly at
    the first thing it cannot parse: the result only guides mutations.
    """
    out: list[tuple[int, int]] = []
    _scan(data, 0, len(data), out, limit, 0)
    return out


def _scan(data: bytes, pos: int, end: int, out: list[tuple[int, int]], limit: int,
          depth: int) -> int:
    todo = 1
    while todo and pos < end and len(out) < limit:
        todo -= 1
        b = data[pos]
        if b <= 0x7F or b >= 0xE0:
            pos += 1
        elif b <= 0x8F or 0x90 <= b <= 0x9F:
            out.append((pos, 0))
            todo += (b & 0x0F) * (2 if b <= 0x8F else 1)
            pos += 1
        elif b <= 0xBF:
            out.append((pos, 0))
            pos += 1 + (b & 0x1F)
        elif b in _FIXED:
            pos += 1 + _FIXED[b]
        elif b in _FIXEXT:
            out.append((pos, 0))
            start = pos + 2
            pos = start + _FIXEXT[b]
            if depth < 40 and pos <= end:
                _scan(data, start, pos, out, limit, depth + 1)
        elif b in _SIZED:
            size = _SIZED[b]
            if pos + 1 + size > end:
                return end
            out.append((pos, size))
            n = int.from_bytes(data[pos + 1:pos + 1 + size], "big")
            pos += 1 + size
            if b in (0xDC, 0xDD):
                todo += n
            elif b in (0xDE, 0xDF):
                todo += 2 * n
            elif b in (0xC7, 0xC8, 0xC9):
                start = pos + 1
                pos = start + n
                if depth < 40 and pos <= end:
                    _scan(data, start, pos, out, limit, depth + 1)
            else:
                pos += n
        else:
            return end
    return pos


def _tamper_length(rng: random.Random, out: bytearray, headers: Sequence[tuple[int, int]]) -> None:
    """Rewrite the length of one object: off by one, zero, or huge."""
    pos, size = rng.choice(headers)
    if pos >= len(out):
        return
    if size == 0:  # fixmap / fixarray / fixstr / fixext: change the count in the type byte
        b = out[pos]
        if b >= 0xD4:
            out[pos] = rng.choice((0xD4, 0xD5, 0xD6, 0xD7, 0xD8))
        elif b >= 0xA0:
            out[pos] = 0xA0 | rng.randrange(32)
        else:
            out[pos] = (b & 0xF0) | rng.randrange(16)
        return
    old = int.from_bytes(out[pos + 1:pos + 1 + size], "big")
    top = 2 ** (8 * size) - 1
    new = rng.choice((0, 1, old - 1, old + 1, old + 2, old * 2, top, top // 2, top - 1))
    out[pos + 1:pos + 1 + size] = (new & top).to_bytes(size, "big")


def _wrap(rng: random.Random, data: bytes) -> bytes:
    """Nest `data` in arrays, maps or exts (once, or deeply)."""
    times = rng.choice((1, 1, 2, _codec.MAX_DEPTH, _codec.MAX_DEPTH + 1, 100, 1100))
    kind = rng.randrange(4)
    for _ in range(times):
        if kind == 0:
            data = b"\x91" + data
        elif kind == 1:
            data = b"\x81\xc0" + data
        elif kind == 2:
            data = ext(1, b"\x91" + data)
        else:
            data = ext(rng.choice((1, 2, 3, 5, 7)), b"\x91" + data)
        if len(data) > 200_000:
            break
    return data


Mutator = Callable[[random.Random, bytearray, Sequence[bytes]], None]


def mutate(rng: random.Random, data: bytes, others: Sequence[bytes], *,
           headers: Sequence[tuple[int, int]] | None = None, rounds: int = 0,
           protect: int = 0) -> bytes:
    """Apply 1 to 4 random mutations to `data` (`others`: inputs to splice from).

    Mutations: bit flips, interesting or random bytes, byte insert/delete,
    truncation, duplication, splicing with another input, length-field
    tampering (using `headers` from `scan_headers`), huge claimed lengths and
    wrapping in deep nesting. The first `protect` bytes are mostly left alone
    (a frame header, say) so that mutations reach what follows.
    """
    out = bytearray(data)
    for _ in range(rounds or rng.choice((1, 1, 1, 2, 2, 3, 4))):
        n = len(out)
        lo = protect if n > protect and rng.random() < 0.9 else 0
        op = rng.randrange(13)
        i = rng.randint(lo, n) if n >= lo else 0
        if op == 0 and i < n:
            out[i] ^= 1 << rng.randrange(8)
        elif op == 1 and i < n:
            out[i] = rng.choice(INTERESTING_BYTES)
        elif op == 2 and i < n:
            out[i] = rng.randrange(256)
        elif op == 3:
            out[i:i] = rng.randbytes(rng.randint(1, 8))
        elif op == 4:
            del out[i:i + rng.randint(1, 8)]
        elif op == 5:
            del out[i:]
        elif op == 6 and n:
            j = rng.randint(i, min(n, i + 64))
            out[j:j] = out[i:j] * rng.choice((1, 2, 10))
        elif op == 7 and others:
            other = rng.choice(others)
            j = rng.randint(0, len(other))
            out[i:] = other[j:]
        elif op == 8 and others:
            other = rng.choice(others)
            j = rng.randint(0, len(other))
            out[i:i] = other[j:j + rng.randint(1, 64)]
        elif op == 9 and headers:
            _tamper_length(rng, out, headers)
        elif op == 10:
            out[i:i] = rng.choice(INTERESTING_CHUNKS)
        elif op == 11 and rng.random() < 0.3:
            out[lo:] = _wrap(rng, bytes(out[lo:]))
        elif op == 12 and headers:
            pos, _ = rng.choice(headers)  # an ext's type byte, or the byte after a header
            if pos < n:
                b = out[pos]
                j = pos + 1 if b in _FIXEXT else pos + 1 + _SIZED.get(b, 0)
                if j < n:
                    out[j] = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, 0x63, 0x7F, 0x80, 0xFF))
        elif n:
            out[i:i] = out[: rng.randint(1, min(n, 32))]
    return bytes(out)


def canon(value: Any) -> tuple[Any, ...]:
    """A flat, comparable canonical form of a term: types kept, floats by bits, sets sorted.

    Two terms have equal `canon` if they are the same term for the codec
    (a NaN equal to a NaN of the same bits, ``-0.0`` not equal to ``0.0``,
    ``1`` not equal to ``True``). The form is a flat tuple of small tokens in
    pre-order, so deep values neither recurse here nor when compared. Raises
    `TypeError` for a value that holds anything but a term's types.
    """
    out: list[Any] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        cls = item.__class__
        if cls is list or cls is tuple:
            out.append((cls.__name__, len(item)))
            stack.extend(reversed(item))
        elif cls is dict:
            out.append(("dict", len(item)))
            for k, v in reversed(list(item.items())):
                stack.append(v)
                stack.append(k)
        elif cls is set or cls is frozenset:
            out.append((cls.__name__, len(item)))
            for part in sorted((canon(x) for x in item), key=repr):
                out.extend(part)
        elif cls is float:
            out.append(("float", struct.pack(">d", item)))
        elif cls is Pid or cls is Ref:
            out.append((cls.__name__, item.node, item.id, item.creation))
        elif cls is Crash:
            out.append(("Crash", item.type, item.message, item.traceback, item.exception is None))
        elif cls in _ATOMS:
            out.append((cls.__name__, item))
        else:
            raise TypeError(f"not a term: a {cls.__name__} ({item!r:.60})")
    return tuple(out)


_ATOMS: Final = (type(None), bool, int, str, bytes)
