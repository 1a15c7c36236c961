"""Tests of the wire codec: round trips, errors at encode, and hostile input at decode."""

from __future__ import annotations

import collections
import dataclasses
import enum
import itertools
import math
import re
import threading
import time
import tracemalloc
from typing import Any, NamedTuple

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actornet._codec import MAX_DEPTH, MAX_SAME_HASH, decode, encode
from actornet._ids import Pid, Ref
from actornet.errors import Crash, DecodeError, PayloadTooLarge

# Hypothesis reprs its nested set strategies when drawing, and warns they are long.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ext(code: int, payload: bytes) -> bytes:
    """An ext of type `code` holding `payload`, as ext 8/16/32 (never fixext)."""
    n = len(payload)
    head = b"\xc7" + bytes([n]) if n < 256 else b"\xc9" + n.to_bytes(4, "big")
    return head + code.to_bytes(1, "big", signed=True) + payload


def assert_same(a: Any, b: Any) -> None:
    """`a == b`, and every part of `b` has the very type of the same part of `a`."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, float):
        assert a == b or (math.isnan(a) and math.isnan(b))
        assert math.copysign(1, a) == math.copysign(1, b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, (set, frozenset, dict)):
        assert len(a) == len(b)
        b_items = {k: k for k in b}  # find b's element equal to each of a's
        for k in a:
            assert_same(k, b_items[k])
            if isinstance(a, dict):
                assert_same(a[k], b[k])
    elif isinstance(a, Crash):
        assert (a.type, a.message, a.traceback, b.exception) == (
            b.type,
            b.message,
            b.traceback,
            None,
        )
    else:
        assert a == b


def assert_term(value: Any) -> None:
    """Raise if `value` holds anything but the types a decoded term may hold."""
    atoms = (type(None), bool, int, float, str, bytes, Pid, Ref, Crash)
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) in (list, tuple, set, frozenset):
            stack.extend(item)
        elif type(item) is dict:
            stack.extend(item)
            stack.extend(item.values())
        else:
            assert type(item) in atoms, type(item)


def round_trip(value: Any) -> Any:
    out = decode(encode(value))
    assert_same(value, out)
    return out


# -- strategies --------------------------------------------------------------

INT_EDGES = [0, -1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 2**200, -(2**200)]
ints = st.integers() | st.sampled_from(INT_EDGES) | st.integers(-(2**300), 2**300)
pids = st.builds(Pid, st.text(max_size=12), st.integers(0, 2**64 - 1), st.integers(0, 2**32))
refs = st.builds(Ref, st.text(max_size=12), st.integers(0, 2**70), st.integers(-5, 5))
crashes = st.builds(Crash, st.text(max_size=10), st.text(max_size=10), st.text(max_size=20))
atoms = (
    st.none()
    | st.booleans()
    | ints
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | pids
    | refs
    | crashes
)
hashables = st.recursive(
    atoms, lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3)
)
terms = st.recursive(
    atoms | hashables,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(hashables, inner, max_size=4)
        | st.sets(hashables, max_size=4)
        | st.frozensets(hashables, max_size=4)
    ),
    max_leaves=25,
)


# -- round trips ---------------------------------------------------------------


@FAST
@given(terms)
def test_every_term_round_trips_with_the_same_types(value: Any) -> None:
    round_trip(value)


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        [True, 1, 1.0],
        *INT_EDGES,
        0.0,
        -0.0,
        math.inf,
        -math.inf,
        "",
        "héllo ✓",
        "\ud800 lone \udcff surrogates",
        b"",
        bytes(range(256)),
        (),
        ((),),
        ([], {}, set(), frozenset()),
        {(1, "a"): frozenset({(2, Pid("n@h", 1, 2))}), Ref("r", 1, 2): {"k": [(), [()]]}},
        {frozenset({1, 2}): None, (): (), None: 1, 1.5: b"x", b"k": "v"},
        {(1, 2), (3, (4, 5)), Pid("a", 1, 1)},
        Crash("ZeroDivisionError", "division by zero", "Traceback ...\n"),
        [Pid("a@h", 2**64 - 1, 0), Pid("a@h", 2**64, 0), Ref("", 0, -1)],
    ],
    ids=repr,
)
def test_round_trip_examples(value: Any) -> None:
    round_trip(value)


def test_nan_round_trips() -> None:
    assert math.isnan(decode(encode(math.nan)))


def test_crash_loses_only_its_exception() -> None:
    crash = Crash.from_exception(ValueError("bad"))
    out = decode(encode(crash))
    assert isinstance(out, Crash) and out.exception is None
    assert (out.type, out.message, out.traceback) == ("ValueError", "bad", crash.traceback)


def test_tuple_and_list_stay_apart() -> None:
    value = decode(encode(([1, (2, [3])], [(4,)])))
    assert value == ([1, (2, [3])], [(4,)])
    assert type(value) is tuple and type(value[0]) is list and type(value[0][1]) is tuple


class Point(NamedTuple):
    x: int
    y: str


class Color(enum.IntEnum):
    RED = 1


class OldMode(str, enum.Enum):  # str(OldMode.SLOW) is "OldMode.SLOW", not its value
    SLOW = "slow"


class MyStr(str):
    def __str__(self) -> str:
        return "overridden"


class MyFloat(float):
    pass


class MyBytes(bytes):
    pass


class MyList(list):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        return iter(["overridden"])


BASE_TYPE_CASES: list[tuple[Any, Any]] = [
    (Point(1, "a"), (1, "a")),
    (Color.RED, 1),
    (OldMode.SLOW, "slow"),
    (MyStr("abc"), "abc"),
    (MyFloat(1.5), 1.5),
    (MyBytes(b"ab"), b"ab"),
    (MyList([1, 2]), [1, 2]),
    (collections.OrderedDict(a=1), {"a": 1}),
    (collections.defaultdict(list, {"a": [1]}), {"a": [1]}),
    (collections.Counter("aa"), {"a": 2}),
    (bytearray(b"xy"), b"xy"),
    (memoryview(b"xyz"), b"xyz"),
    (memoryview(b"xyz")[1:], b"yz"),
    ({Color.RED: Point(2, "b")}, {1: (2, "b")}),
    (frozenset({Point(1, "p")}), frozenset({(1, "p")})),
]
if hasattr(enum, "StrEnum"):  # Python 3.11+
    BASE_TYPE_CASES.append((enum.StrEnum("Mode", {"FAST": "fast"}).FAST, "fast"))


@pytest.mark.parametrize(("value", "expected"), BASE_TYPE_CASES, ids=repr)
def test_subclasses_and_buffers_arrive_as_their_base_type(value: Any, expected: Any) -> None:
    assert_same(expected, decode(encode(value)))


def test_exts_nest_up_to_max_depth() -> None:
    value: Any = "leaf"
    for i in range(MAX_DEPTH):  # lists and dicts between exts add no ext level
        value = ([{"k": value}],) if i % 2 else (value,)
    round_trip(value)
    with pytest.raises(ValueError, match="nested more than"):
        encode((value,))


def test_cyclic_values_raise_value_error() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="cyclic"):
        encode(cyclic)
    through_tuple: list[Any] = []
    through_tuple.append((through_tuple,))
    with pytest.raises(ValueError, match="cyclic"):
        encode(through_tuple)


def test_threads_encode_and_decode_at_once() -> None:
    values = [("msg", i, [Pid("n", i, 1), (i, {"k": (i,)})], {(i, "x"): {i}}) for i in range(50)]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                for v in values:
                    assert decode(encode(v)) == v
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_wire_format_is_stable() -> None:
    assert encode(("a", 1)) == b"\xd6\x01\x92\xa1a\x01"
    assert encode({1, 2}) == b"\xc7\x03\x02\x92\x01\x02"
    assert encode(frozenset()) == b"\xd4\x03\x90"
    assert encode(2**64) == b"\xc7\x09\x04\x01" + bytes(8)
    assert encode(-(2**63) - 1) == b"\xc7\x09\x04\xff\x7f" + b"\xff" * 7
    assert encode(Pid("n", 1, 2)) == b"\xc7\x05\x05\x93\xa1n\x01\x02"
    assert encode(Ref("n", 1, 2)) == b"\xc7\x05\x06\x93\xa1n\x01\x02"
    assert encode(Crash("E", "m", "t")) == b"\xc7\x07\x07\x93\xa1E\xa1m\xa1t"
    assert encode([1, "a", b"b", None, True, 1.5]) == msgpack.packb([1, "a", b"b", None, True, 1.5])


# -- errors at encode --------------------------------------------------------------


class Foo:
    pass


@dataclasses.dataclass(frozen=True)
class Data:
    x: int


@pytest.mark.parametrize(
    ("value", "type_name", "path"),
    [
        (Foo(), "Foo", "msg"),
        ([1, 2, {"key": Foo()}], "Foo", "msg[2]['key']"),
        (("msg", [1, (2, 3j)]), "complex", "msg[1][1][1]"),
        ({"a": {Data(1): 1}}, "Data", "msg['a'].keys()"),
        ({(1, Data(2))}, "Data", "msg[0][1]"),
        (frozenset({Foo}), "type", "msg[0]"),
        ([len], "builtin_function_or_method", "msg[0]"),
        ({"f": lambda: None}, "function", "msg['f']"),
        ([None, object()], "object", "msg[1]"),
    ],
)
def test_unsendable_values_raise_type_error_naming_type_and_path(
    value: Any, type_name: str, path: str
) -> None:
    with pytest.raises(TypeError) as info:
        encode(value)
    message = str(info.value)
    assert f"cannot send a value of type {type_name!r} at {path}: actornet sends None" in message


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ([Pid(1, 2, 3)], "a Pid whose fields are not (str, int, int) at msg[0]"),  # type: ignore[arg-type]
        ((Ref("n", True, 3),), "a Ref whose fields are not (str, int, int) at msg[0]"),
        ([Crash("E", 1, "")], "a Crash whose type, message, traceback are not str at msg[0]"),  # type: ignore[arg-type]
        ({"m": memoryview(b"abcd")[::2]}, "a non-contiguous memoryview at msg['m']"),
    ],
)
def test_malformed_ids_crashes_and_views_raise_type_error(value: Any, what: str) -> None:
    with pytest.raises(TypeError, match=re.escape(f"cannot send {what}: actornet sends None")):
        encode(value)


def test_cached_ids_do_not_hide_bad_fields() -> None:
    encode(Ref("n", 1, 3))  # cached now; the next is equal (True == 1) but malformed
    with pytest.raises(TypeError, match="a Ref whose fields are not"):
        encode(Ref("n", True, 3))


def test_payload_too_large() -> None:
    data = encode("x" * 100)
    assert encode("x" * 100, max_size=len(data)) == data
    with pytest.raises(PayloadTooLarge, match=f"{len(data)} bytes.*{len(data) - 1}"):
        encode("x" * 100, max_size=len(data) - 1)


# -- hostile input at decode -----------------------------------------------------


def test_decode_over_max_size() -> None:
    data = encode(["x" * 100])
    assert decode(data, max_size=len(data)) == ["x" * 100]
    for form in (data, bytearray(data), memoryview(data)):
        with pytest.raises(DecodeError, match="over the"):
            decode(form, max_size=len(data) - 1)


def test_decode_takes_bytearray_and_memoryview() -> None:
    data = encode(("a", [1, Pid("n", 1, 2)]))
    assert decode(bytearray(data)) == decode(memoryview(data)) == ("a", [1, Pid("n", 1, 2)])
    assert decode(memoryview(b"\x00" + data)[1:]) == ("a", [1, Pid("n", 1, 2)])


def decodes_or_rejects(data: bytes) -> None:
    """`decode(data)` returns a term or raises DecodeError: nothing else."""
    try:
        value = decode(data)
    except DecodeError:
        return
    assert_term(value)
    encode(value)  # whatever decodes can be sent again


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    decodes_or_rejects(data)


@FAST
@given(terms, st.data())
def test_fuzz_mutated_encodings(value: Any, data: st.DataObject) -> None:
    encoded = bytearray(encode(value))
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(encoded)))
        kind = data.draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        if kind == "cut":
            del encoded[where:]
        elif kind == "insert":
            encoded[where:where] = data.draw(st.binary(min_size=1, max_size=6))
        elif where < len(encoded):
            if kind == "flip":
                encoded[where] ^= 1 << data.draw(st.integers(0, 7))
            elif kind == "set":
                encoded[where] = data.draw(st.sampled_from([0x00, 0x7F, 0xC1, 0xDD, 0xFF, 0xD6]))
            else:
                del encoded[where]
    decodes_or_rejects(bytes(encoded))


def test_every_truncation_is_rejected() -> None:
    data = encode(("msg", [1, 2**70, Pid("n", 1, 2)], {"k": {(1,)}}, Crash("E", "m")))
    for end in range(len(data)):
        with pytest.raises(DecodeError):
            decode(data[:end])


PID_PAYLOAD = msgpack.packb(["n", 1, 2])
MALFORMED = {
    "empty": b"",
    "truncated array": b"\x93\x01",
    "truncated str": b"\xa5ab",
    "trailing bytes": encode(1) + b"\x00",
    "trailing bytes after ext": encode(("a",)) + b"\xc0",
    "never-used byte": b"\xc1",
    "invalid utf-8": b"\xa1\xff",
    "unknown ext code 99": ext(99, b"\x90"),
    "reserved ext code 0": ext(0, b"\x90"),
    "reserved ext code 8": ext(8, b"\x90"),
    "negative ext code": ext(-5, b"\x90"),
    "timestamp ext -1": msgpack.packb(msgpack.Timestamp(1, 0)),
    "timestamp 96-bit": msgpack.packb(msgpack.Timestamp(2**40, 5)),
    "timestamp in a tuple": ext(1, b"\x91" + msgpack.packb(msgpack.Timestamp(1, 0))),
    "timestamp as a key": b"\x81" + msgpack.packb(msgpack.Timestamp(1, 0)) + b"\x01",
    "timestamp after -1s": b"\x95\xff\xff\xff\xff" + msgpack.packb(msgpack.Timestamp(9, 9)),
    "bad timestamp length": b"\xd5\xff\x00\x00",
    "pid of 2 fields": ext(5, msgpack.packb(["n", 1])),
    "pid with str id": ext(5, msgpack.packb(["n", "1", 2])),
    "pid with bool creation": ext(5, msgpack.packb(["n", 1, True])),
    "pid with float id": ext(5, msgpack.packb(["n", 1.0, 2])),
    "pid with bytes node": ext(5, msgpack.packb([b"n", 1, 2])),
    "pid not an array": ext(5, msgpack.packb("n")),
    "pid empty payload": ext(5, b""),
    "pid trailing payload": ext(5, PID_PAYLOAD + b"\x00"),
    "pid truncated payload": ext(5, PID_PAYLOAD[:-1]),
    "ref of 4 fields": ext(6, msgpack.packb(["n", 1, 2, 3])),
    "crash with int message": ext(7, msgpack.packb(["E", 1, ""])),
    "crash of 2 fields": ext(7, msgpack.packb(["E", "m"])),
    "tuple payload not an array": ext(1, msgpack.packb(5)),
    "tuple empty payload": ext(1, b""),
    "set payload a map": ext(2, msgpack.packb({1: 2})),
    "bigint empty": ext(4, b""),
    "bigint in native range": ext(4, b"\x01"),
    "bigint not minimal": ext(4, b"\x00" + (2**64).to_bytes(9, "big")),
    "list as dict key": b"\x81\x91\x01\x02",
    "dict as dict key": b"\x81\x80\x02",
    "list in a set": ext(2, msgpack.packb([[1]])),
    "set in a frozenset": ext(3, b"\x91" + ext(2, b"\x90")),
    "huge array32": b"\xdd\xff\xff\xff\xff",
    "huge map32": b"\xdf\xff\xff\xff\xff",
    "huge bin32": b"\xc6\xff\xff\xff\xff",
    "huge str32": b"\xdb\xff\xff\xff\xff",
    "huge ext32": b"\xc9\xff\xff\xff\xff\x01",
    "huge array in a tuple": ext(1, b"\xdd\xff\xff\xff\xff"),
    "deep arrays": b"\x91" * 100_000,
    "deep maps": b"\x81\xc0" * 100_000,
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_input_raises_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError, match=r"\w"):
        decode(data)


def nested_tuples(depth: int) -> bytes:
    """Bytes of `depth` tuple exts nested in each other, built by hand."""
    data = b"\x90"
    for _ in range(depth):
        data = b"\x91" + ext(1, data)
    return data[1:]


def test_ext_nesting_over_max_depth_is_rejected() -> None:
    round_trip(decode(nested_tuples(MAX_DEPTH)))
    with pytest.raises(DecodeError, match="nested"):
        decode(nested_tuples(MAX_DEPTH + 1))
    with pytest.raises(DecodeError, match="nested"):
        decode(nested_tuples(5000))


@pytest.mark.parametrize("in_tuples", [0, 3])
def test_claimed_lengths_allocate_nothing_much(in_tuples: int) -> None:
    """Nested arrays that each claim as many items as the input has bytes."""
    size = 200_000
    data = b"".join(b"\xdd" + size.to_bytes(4, "big") for _ in range(1000))
    data += b"\xc0" * (size - len(data))
    for _ in range(in_tuples):
        data = b"\x91" + ext(1, data)
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError):
            decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * len(data)  # without the check: 1000 arrays x 8 bytes x `size`


def test_many_long_arrays_still_decode() -> None:
    value = [list(range(i, i + 20)) for i in range(100)] + [tuple(range(30))] * 3
    assert_same(value, decode(encode(value)))


# -- keys that share one hash (issue 12, class 4) ---------------------------------------------
#
# Python compares a new set element or dict key with every earlier one of its hash value, so
# n keys of one hash cost n**2 / 2 comparisons: 50,000 crafted integers stalled a node's I/O
# thread for over 20 s. int, float and tuple hashes are not salted, so such keys are easy to
# make; the decoder refuses a set or map where more than MAX_SAME_HASH of them share a hash.

_P = 2**61 - 1  # hash(n) == n % _P for n >= 0
_M64 = 2**64 - 1
_XX1, _XX2, _XX5 = 11400714785074694791, 14029467366897019727, 2870177450012600261


def colliding_ints(count: int) -> list[int]:
    """`count` distinct ints beyond the native range (so big-int exts) with one hash."""
    return [7 + i * _P for i in range(9, count + 9)]


def colliding_pairs(count: int) -> list[tuple[int, int]]:
    """`count` distinct 2-tuples of native (64-bit) ints with one hash: a tuple's hash is
    CPython's xxHash of its items' hashes, so the second item is solved for from the first.
    Skips the test if this interpreter hashes tuples otherwise."""
    rot = lambda x, r: ((x << r) | (x >> (64 - r))) & _M64  # noqa: E731

    def acc_after(acc: int, item_hash: int) -> int:
        return rot((acc + (item_hash & _M64) * _XX2) & _M64, 31) * _XX1 & _M64

    target = acc_after(acc_after(_XX5, 1), 2)  # the state after hashing (1, 2)
    need = rot(target * pow(_XX1, -1, 2**64) & _M64, 33)  # acc + hash(b) * _XX2, so:
    pairs: list[tuple[int, int]] = []
    a = 1
    while len(pairs) < count:
        h = (need - acc_after(_XX5, a)) * pow(_XX2, -1, 2**64) & _M64
        signed = h - 2**64 if h >= 2**63 else h
        if 0 <= signed < _P or -_P < signed < -1:  # a hash value some int has: itself
            pairs.append((a, signed))
        a += 1
    if len({hash(p) for p in pairs}) != 1:
        pytest.skip("this interpreter does not hash tuples with CPython's xxHash")
    return pairs


def encoded_set(items: list[Any], code: int = 2) -> bytes:
    """A set (ext 2) or frozenset (ext 3) of `items`, encoded without building it."""
    return ext(code, msgpack.packb([msgpack.unpackb(encode(x), ext_hook=msgpack.ExtType)
                                    for x in items]))


def encoded_map(keys: list[Any]) -> bytes:
    """A map from each of `keys` to None, encoded without building it."""
    body = b"".join(encode(k) + b"\xc0" for k in keys)
    return b"\xdf" + len(keys).to_bytes(4, "big") + body


@pytest.mark.parametrize("make", [colliding_ints, colliding_pairs], ids=["ints", "tuples"])
@pytest.mark.parametrize("shape", ["set", "frozenset", "map", "map in a tuple"])
def test_keys_crafted_to_share_a_hash_are_refused_fast(
    make: Any, shape: str
) -> None:
    keys = make(50_000)
    ordered = sorted(keys)  # (a set of them would take minutes to build)
    assert all(a != b for a, b in itertools.pairwise(ordered))
    assert len({hash(k) for k in keys}) == 1
    if shape in ("set", "frozenset"):
        data = encoded_set(keys, 2 if shape == "set" else 3)
    else:
        data = encoded_map(keys)
        if shape == "map in a tuple":
            data = b"\x92\x01" + ext(1, b"\x91" + data)  # [1, ({...},)]
    t0 = time.perf_counter()
    with pytest.raises(DecodeError, match=f"over {MAX_SAME_HASH} .* share one hash value"):
        decode(data)
    took = time.perf_counter() - t0
    # linear: some ms here; building the set or map would take minutes
    assert took < 2.0, f"refusing {len(data)} bytes took {took:.2f} s"


@pytest.mark.parametrize("make", [colliding_ints, colliding_pairs], ids=["ints", "tuples"])
def test_up_to_max_same_hash_keys_of_one_hash_decode(make: Any) -> None:
    keys = make(MAX_SAME_HASH)
    value = {"set": set(keys), "map": dict.fromkeys(keys, 1), "ok": frozenset(range(1000))}
    assert_same(value, decode(encode(value)))
    with pytest.raises(DecodeError):
        decode(encoded_set(make(MAX_SAME_HASH + 1)))


@given(st.dictionaries(st.integers() | st.tuples(st.integers(), st.integers()) | st.text(),
                       st.integers(), min_size=33, max_size=200))
@FAST
def test_big_maps_and_sets_of_ordinary_keys_round_trip(value: dict[Any, int]) -> None:
    """Maps over MAX_SAME_HASH keys take the checked path: it decodes them the same."""
    assert_same(value, decode(encode(value)))
    assert_same(set(value), decode(encode(set(value))))
    assert_same([value, (value,)], decode(encode([value, (value,)])))
