"""The wire codec: terms as explicit msgpack between nodes, never pickle.

`encode` turns a term into bytes; `decode` turns them back into an equal term
of the same types, and raises `DecodeError` for any input that is not exactly
one valid term. Both are pure functions, safe to call from any thread.

Wire format (a public contract)
-------------------------------
A term is ONE msgpack object (https://github.com/msgpack/msgpack/blob/master/spec.md)
with nothing after it. None, bool, float (float 64), str (UTF-8; a lone
surrogate as Python's "surrogatepass" writes it), bytes (bin), list (array),
dict (map; keys may be any hashable term) and int in ``-2**63 <= n < 2**64``
are native msgpack. Other types are exts, whose data (payload) is:

====  =========  ==============================================================
code  type       payload
====  =========  ==============================================================
1     tuple      a msgpack array of the items (each a term, exts included)
2     set        a msgpack array of the elements, in any order
3     frozenset  as for set
4     int        an int outside the native range: two's complement, big-endian,
                 in the fewest bytes that hold its sign bit
5     Pid        a msgpack array ``[node: str, id: int, creation: int]``
6     Ref        as for Pid
7     Crash      a msgpack array ``[type: str, message: str, traceback: str]``
                 (``exception`` is not sent: it decodes as None)
====  =========  ==============================================================

Any ext form (fixext 1-16, ext 8/16/32) may carry any code. Codes 0 and 8-127
are reserved; negative codes (msgpack's, such as -1 timestamp) are invalid.
Exts other than code 4 nest at most `MAX_DEPTH` deep in each other, and as in
msgpack each payload (and the top level) nests at most 1024 arrays/maps.
Repeated map keys (the last wins) and set elements are accepted.

Decoding takes time and memory in proportion to the input, whatever it holds.
The one input that would make it quadratic is a set or map whose keys share a
hash value: Python compares each new key with every earlier one of that hash.
Hashes of str and bytes are salted per process, but those of int, float and
tuple are not, so such keys are easy to craft (integers that differ by a
multiple of ``2**61 - 1``, say). So a set, frozenset or map in which more than
`MAX_SAME_HASH` keys (or elements: repeated ones included) other than str and
bytes share one hash value is refused (`DecodeError`); counting them costs one
hash and one table entry per key. Ordinary data never comes near it.

Sending: subclasses of str, int, float, bytes, tuple, list, dict, set and
frozenset go as their base type (a NamedTuple arrives as a tuple, an IntEnum as
an int); bytearray and memoryview go as bytes. Anything else raises TypeError.
(msgpack's own ``ExtType`` and ``Timestamp`` objects are not checked: they are
written raw, and a receiver only accepts them if they make a valid term.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from operator import itemgetter
from typing import Any, Final

from msgpack import ExtType, Packer, Timestamp, Unpacker, unpackb
from msgpack.exceptions import ExtraData, FormatError, OutOfData, StackError

from actornet._ids import Pid, Ref
from actornet._terms import SENDABLE
from actornet.errors import Crash, DecodeError, PayloadTooLarge

__all__ = ["encode", "decode", "MAX_DEPTH", "MAX_SAME_HASH"]

TUPLE, SET, FROZENSET, BIGINT, PID, REF, CRASH = 1, 2, 3, 4, 5, 6, 7  # ext codes
MAX_DEPTH: Final = 32  # exts nested in exts, at most
MAX_SAME_HASH: Final = 32  # keys of one set or map (not str/bytes) sharing a hash, at most

_INT_MIN: Final = -(2**63)
_UINT_MAX: Final = 2**64 - 1
_KEEP_PACKER_UNDER: Final = 256 * 1024  # a pooled Packer that wrote more is dropped
_CHECK_OVER: Final = 512  # bytes; see _check_whole
_CHECK_ARRAYS: Final = 16  # array 16/32 header bytes; see _check_whole
_TIMESTAMP_PRE: Final = frozenset({0xD6, 0xD7, 4, 8, 12})  # see _may_hold_timestamp
_first = itemgetter(0)
_new_ext = tuple.__new__  # makes an ExtType without its slow, validating __new__
_Hook = Callable[[int, bytes], Any]

# Pids and Refs are immutable and few, so their (short) encodings are cached.
_ID_EXTS: Final[dict[Pid | Ref, ExtType]] = {}
_DECODED_IDS: Final[dict[tuple[int, bytes], Pid | Ref]] = {}


class _Unsendable(TypeError):
    """Raised inside the packer for a value that cannot be sent."""

    def __init__(self, value: Any, what: str = "") -> None:
        super().__init__(what)
        self.value, self.what = value, what


class _TooDeep(ValueError):
    """Raised inside the packer when exts nest more than MAX_DEPTH deep."""


def _make_pack(unicode_errors: str | None) -> Callable[[Any, int], bytes]:
    """Build ``pack(value, level)``: msgpack `value`, a payload at nesting `level`.

    A Packer is not re-entrant, so each call takes one out of the level's pool
    and puts it back when done (list pop/append are atomic): payloads nested in
    the value, other threads and re-entrant calls all use other Packers.
    """
    pools: list[list[Packer]] = [[] for _ in range(MAX_DEPTH + 2)]
    defaults: list[Callable[[Any], Any]] = []

    def pack(value: Any, level: int) -> bytes:
        pool = pools[level]
        try:
            packer = pool.pop()
        except IndexError:
            if level > MAX_DEPTH:
                raise _TooDeep from None
            packer = Packer(
                default=defaults[level], strict_types=True, unicode_errors=unicode_errors
            )
        try:
            data: bytes = packer.pack(value)
        except BaseException:
            # A failed pack (an unsendable value, a str to retry with surrogatepass)
            # leaves the Packer reusable: keep it, or every failure allocates anew.
            pool.append(packer)
            raise
        if len(data) < _KEEP_PACKER_UNDER:
            pool.append(packer)
        return data

    defaults.extend(_make_default(pack, level + 1) for level in range(MAX_DEPTH + 1))
    return pack


def _make_default(pack: Callable[[Any, int], bytes], inner: int) -> Callable[[Any], Any]:
    """Build the msgpack ``default`` hook of a level: its exts' payloads are at `inner`."""

    def default(obj: Any) -> Any:
        cls = obj.__class__
        if cls is tuple:
            return _new_ext(ExtType, (TUPLE, pack(list(obj), inner)))
        if cls is Pid or cls is Ref:
            node, id_, creation = obj.node, obj.id, obj.creation
            if type(node) is not str or type(id_) is not int or type(creation) is not int:
                raise _Unsendable(obj, f"a {cls.__name__} whose fields are not (str, int, int)")
            ext = _ID_EXTS.get(obj)
            if ext is None or inner > MAX_DEPTH:
                payload = pack([node, id_, creation], inner)
                ext = _new_ext(ExtType, (PID if cls is Pid else REF, payload))
                _cache(_ID_EXTS, obj, ext, len(payload))
            return ext
        if isinstance(obj, int):  # outside the native range, or a subclass (IntEnum)
            n = int.__int__(obj)
            if _INT_MIN <= n <= _UINT_MAX:
                return n
            return _new_ext(ExtType, (BIGINT, n.to_bytes(_bigint_len(n), "big", signed=True)))
        for base, copy in _BASE_COPIES:  # the base's own method: no override runs
            if isinstance(obj, base):
                return copy(obj)
        if isinstance(obj, (tuple, set, frozenset)):
            code = TUPLE if isinstance(obj, tuple) else SET if isinstance(obj, set) else FROZENSET
            return _new_ext(ExtType, (code, pack(list(obj), inner)))
        if isinstance(obj, Crash):
            fields = [obj.type, obj.message, obj.traceback]
            if not all(isinstance(f, str) for f in fields):
                raise _Unsendable(obj, "a Crash whose type, message, traceback are not str")
            return _new_ext(ExtType, (CRASH, pack([str.__str__(f) for f in fields], inner)))
        raise _Unsendable(obj)

    return default


_BASE_COPIES: Final[tuple[tuple[type | tuple[type, ...], Callable[[Any], Any]], ...]] = (
    (str, str.__str__),
    (float, float.__float__),
    ((bytes, bytearray), lambda b: bytes(memoryview(b))),
    (list, list.copy),
    (dict, dict.copy),
)


def _cache(cache: dict[Any, Any], key: Any, value: Any, size: int) -> None:
    """Remember key -> value if `size` <= 256 bytes; forget all at 4096 entries."""
    if size <= 256:
        if len(cache) >= 4096:
            cache.clear()
        cache[key] = value


def _bigint_len(n: int) -> int:
    """The fewest bytes that hold `n` in two's complement, sign bit included."""
    return (n if n >= 0 else ~n).bit_length() // 8 + 1


_pack = _make_pack(None)
_pack_surrogates = _make_pack("surrogatepass")  # slower; only for strs that need it


def encode(value: Any, *, max_size: int | None = None) -> bytes:
    """Encode the term `value` to bytes, in the format described above.

    Raises `TypeError` naming the type and the place of a value that cannot be
    sent, `ValueError` if `value` nests too deeply (or is cyclic), and
    `PayloadTooLarge` if the result is longer than `max_size` bytes.

    Example:
        >>> data = encode(("msg", "alice", [1, 2.5, b"x"]))
        >>> decode(data)
        ('msg', 'alice', [1, 2.5, b'x'])
        >>> encode({"to": ("x", object())})
        Traceback (most recent call last):
        ...
        TypeError: cannot send a value of type 'object' at msg['to'][1]: ...
    """
    try:
        try:
            data = _pack(value, 0)
        except UnicodeEncodeError:  # a str with a lone surrogate
            data = _pack_surrogates(value, 0)
    except (ValueError, TypeError, BufferError) as exc:
        raise _encode_error(value, exc) from None
    if max_size is not None and len(data) > max_size:
        raise PayloadTooLarge(f"message is {len(data)} bytes encoded, over the {max_size} limit")
    return data


def _encode_error(value: Any, exc: Exception) -> Exception:
    """The error for `encode` to raise, for `exc` raised while packing `value`."""
    if isinstance(exc, _TooDeep) or "recursion limit" in str(exc):
        return ValueError(
            f"cannot send a value nested more than {MAX_DEPTH} tuples/sets deep, or 1024 "
            "lists/dicts deep between two, or a cyclic value"
        )
    if isinstance(exc, _Unsendable):
        bad, what = exc.value, exc.what or f"a value of type {type(exc.value).__name__!r}"
    elif isinstance(exc, BufferError):
        bad, what = None, "a non-contiguous memoryview"
    else:
        return exc
    return TypeError(f"cannot send {what} at {_path_to(value, bad)}: actornet sends {SENDABLE}")


def _path_to(value: Any, bad: Any) -> str:
    """Where `bad` (None: a non-contiguous memoryview) is in `value`, like ``msg[1]``."""
    stack: list[tuple[Any, str]] = [(value, "msg")]
    seen: set[int] = set()
    while stack:
        item, path = stack.pop()
        if item is bad if bad is not None else type(item) is memoryview and not item.contiguous:
            return path
        if id(item) not in seen and isinstance(item, (tuple, list, set, frozenset, dict)):
            seen.add(id(item))
            if isinstance(item, dict):
                for k, v in reversed(item.items()):
                    stack += [(v, f"{path}[{k!r}]"), (k, f"{path}.keys()")]
            else:
                stack += reversed([(x, f"{path}[{i}]") for i, x in enumerate(item)])
    return "msg"


def decode(data: bytes | bytearray | memoryview, *, max_size: int | None = None) -> Any:
    """Decode the one term that `data` holds, as written by `encode`.

    Raises `DecodeError` (and nothing else) if `data` is longer than
    `max_size` bytes or is not exactly one valid term, or if a set or map in it
    has more than `MAX_SAME_HASH` keys that share a hash (see the module docstring).

    Example:
        >>> decode(encode({("a", 1): {Pid("n@h", 1, 2)}}))
        {('a', 1): {<n@h.1.2>}}
        >>> decode(b"\\x92\\x01")
        Traceback (most recent call last):
        ...
        actornet.errors.DecodeError: invalid term: truncated data
    """
    if data.__class__ is not bytes and data.__class__ is not bytearray:
        size = memoryview(data).nbytes
        data = memoryview(data).tobytes() if max_size is None or size <= max_size else b""
    else:
        size = len(data)
    if max_size is not None and size > max_size:
        raise DecodeError(f"message is {size} bytes, over the {max_size} limit")
    try:
        checked = len(data) > _CHECK_OVER and data.count(0xDC) + data.count(0xDD) > _CHECK_ARRAYS
        if checked:
            _check_whole(data)
        try:
            # Maps of up to MAX_SAME_HASH keys are built by msgpack; one of more stops this
            # pass, and the input is decoded again, each map checked (`_dict_of`).
            value = _unpack(data, _CHECKED_HOOK if checked else _HOOK, False)
        except ValueError as exc:
            if "max_map_len" not in str(exc):
                raise
            value = _unpack(data, _CHECKED_PAIRS_HOOK if checked else _PAIRS_HOOK, True)
    except DecodeError:
        raise
    except MemoryError:
        raise DecodeError("invalid term: out of memory while decoding it") from None
    except Exception as exc:
        raise DecodeError(f"invalid term: {_explain(exc)}") from exc
    if 255 in data and _may_hold_timestamp(data):
        _reject_timestamps(value)
    return value


def _unpack(data: bytes | bytearray, ext_hook: _Hook, pairs: bool) -> Any:
    """Unpack `data`. Without `pairs`, a map of over MAX_SAME_HASH keys raises ValueError
    (before anything is built for it); with `pairs`, each map is built by `_dict_of`,
    which checks its keys' hashes first."""
    if pairs:
        return unpackb(data, ext_hook=ext_hook, object_pairs_hook=_dict_of,
                       strict_map_key=False, unicode_errors="surrogatepass")
    return unpackb(data, ext_hook=ext_hook, max_map_len=MAX_SAME_HASH, strict_map_key=False,
                   unicode_errors="surrogatepass")


def _dict_of(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    if len(pairs) > MAX_SAME_HASH:
        _check_hashes(list(map(_first, pairs)), "map keys")
    return dict(pairs)


def _check_hashes(keys: list[Any], what: str) -> None:
    """Raise DecodeError if more than MAX_SAME_HASH of `keys` share a hash value.

    One hash per key, then a set of the hash values: distinct ints whose own hashes
    are themselves, so that set never collides. Only if some hash repeats are they
    counted. (Keys of str and bytes are counted too: their hashes are salted, so they
    repeat only for equal keys, which a real set or map never holds twice.)
    """
    hashes = list(map(hash, keys))
    if len(set(hashes)) == len(hashes):
        return
    if max(Counter(hashes).values()) > MAX_SAME_HASH:
        raise DecodeError(f"invalid term: over {MAX_SAME_HASH} {what} share one hash value "
                          "(a set or map crafted to decode in quadratic time)")


def _check_whole(data: bytes | bytearray) -> None:
    """Check that `data` is one complete msgpack object, building nothing.

    msgpack may allocate for an array's claimed length (up to the input's
    size) before it reads the items, and only array 16/32 (bytes 0xdc, 0xdd)
    claim over 15. So inputs over 512 bytes with over 16 such bytes are checked
    first, and then so are their payloads over 512 bytes with one: all claimed
    items exist but for 512 bytes' worth, and waste stays a few pointers a byte.
    """
    unpacker = Unpacker(max_buffer_size=len(data))
    unpacker.feed(data)
    unpacker.skip()
    if unpacker.tell() != len(data):
        raise ExtraData(None, b"")


def _make_ext_hook(level: int, checked: bool, pairs: bool) -> _Hook:
    """Build the msgpack ``ext_hook`` of exts at `level`; `checked`: see _check_whole;
    `pairs`: see _unpack."""
    inner = _make_ext_hook(level + 1, checked, pairs) if level < MAX_DEPTH else None

    def ext_hook(code: int, data: bytes) -> Any:
        if code == TUPLE and inner is not None and not checked:  # the fast path
            items = _unpack(data, inner, pairs)
            if items.__class__ is list:
                return tuple(items)
        return _decode_ext(code, data, inner, checked, pairs)

    return ext_hook


def _decode_ext(code: int, data: bytes, inner: _Hook | None, checked: bool,
                pairs: bool) -> Any:
    """Decode an ext; `inner` is the hook for its payload (None: too deep)."""
    if code == BIGINT:
        n = int.from_bytes(data, "big", signed=True)
        if _INT_MIN <= n <= _UINT_MAX or len(data) != _bigint_len(n):
            raise DecodeError("invalid term: a big int in the native range, or not minimal")
        return n
    if not TUPLE <= code <= CRASH:
        raise DecodeError(f"invalid term: unknown ext type {code}")
    if inner is None:
        raise DecodeError(f"invalid term: exts nested more than {MAX_DEPTH} deep")
    if code in (PID, REF):
        found = _DECODED_IDS.get((code, data))
        if found is not None:
            return found
    if checked and len(data) > _CHECK_OVER and (0xDC in data or 0xDD in data):
        _check_whole(data)
    items = _unpack(data, inner, pairs)
    if items.__class__ is not list:
        raise DecodeError(f"invalid term: the payload of ext type {code} is not an array")
    if code == TUPLE:
        return tuple(items)
    if code <= FROZENSET:
        if len(items) > MAX_SAME_HASH:
            _check_hashes(items, "set elements")
        return set(items) if code == SET else frozenset(items)
    types = [type(x) for x in items]
    if code == CRASH and types == [str, str, str]:
        return Crash(*items)
    if code != CRASH and types == [str, int, int]:
        pid = Pid(*items) if code == PID else Ref(*items)
        _cache(_DECODED_IDS, (code, data), pid, len(data))
        return pid
    want = "[str, str, str]" if code == CRASH else "[str, int, int]"
    raise DecodeError(f"invalid term: ext type {code} holds {types}, not {want}")


# the top-level ext hooks (checked: see _check_whole; pairs: see _unpack)
_HOOK: Final = _make_ext_hook(0, checked=False, pairs=False)
_PAIRS_HOOK: Final = _make_ext_hook(0, checked=False, pairs=True)
_CHECKED_HOOK: Final = _make_ext_hook(0, checked=True, pairs=False)
_CHECKED_PAIRS_HOOK: Final = _make_ext_hook(0, checked=True, pairs=True)


def _may_hold_timestamp(data: bytes | bytearray) -> bool:
    """Whether `data` may hold a msgpack timestamp (false positives cost only time).

    msgpack decodes an ext of type -1 (a timestamp, of length 4, 8 or 12)
    itself, not with the hook: its 0xff type byte follows 0xd6 or 0xd7
    (fixext 4/8) or a length byte 4, 8 or 12 (ext 8/16/32).
    """
    i = data.find(255, 1)
    for _ in range(8):
        if i < 0:
            return False
        if data[i - 1] in _TIMESTAMP_PRE:
            return True
        i = data.find(255, i + 1)
    return True


def _reject_timestamps(value: Any) -> None:
    """Raise DecodeError if the decoded `value` holds a msgpack `Timestamp`."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple, set, frozenset, dict)):
            stack.extend(item)
            if isinstance(item, dict):
                stack.extend(item.values())
        elif isinstance(item, Timestamp):
            raise DecodeError("invalid term: msgpack timestamps (ext type -1) are not terms")


def _explain(exc: Exception) -> str:
    """A short reason for a failed unpack."""
    if isinstance(exc, OutOfData) or "incomplete input" in str(exc):
        return "truncated data"
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return reason
    return f"{type(exc).__name__}: {exc}"  # a length over the input's, unhashable keys...


_REASONS: Final[tuple[tuple[type[Exception] | tuple[type[Exception], ...], str], ...]] = (
    (ExtraData, "trailing bytes after the term"),
    ((StackError, RecursionError), "nested too deeply"),
    (FormatError, "a byte that starts no msgpack object"),
    (UnicodeDecodeError, "a str that is not UTF-8"),
)
