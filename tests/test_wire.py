"""Batch framing and operations between nodes (no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actornet import _wire as w
from actornet._ids import Pid
from actornet.errors import DecodeError, ProtocolError


@given(st.lists(st.binary(max_size=300), max_size=50))
def test_ops_round_trip_through_one_frame(ops: list[bytes]) -> None:
    assert [bytes(v) for v in w.split_ops(w.pack_ops(ops))] == ops


@given(st.binary(max_size=200))
def test_split_ops_of_any_bytes_gives_ops_or_a_protocol_error(data: bytes) -> None:
    try:
        ops = w.split_ops(data)
    except ProtocolError:
        return
    assert sum(len(v) + w.OP_OVERHEAD for v in ops) == len(data)


def test_cut_batches_are_refused() -> None:
    frame = w.pack_ops([b"abc", b"defg"])
    with pytest.raises(ProtocolError, match="runs past"):
        w.split_ops(frame[:-1])
    with pytest.raises(ProtocolError, match="inside"):
        w.split_ops(frame + b"\x00")


def test_header_round_trip_and_garbage() -> None:
    assert w.unpack_header(w.pack_header(12345)) == 12345
    with pytest.raises(ProtocolError):
        w.unpack_header(b"XX" + bytes(8))


def test_ops_are_validated() -> None:
    pid = Pid("a@h", 1, 2)
    assert w.decode_op(w.encode_op([w.SEND, 1, 2, ("hi", pid)])) == [w.SEND, 1, 2, ("hi", pid)]
    with pytest.raises(ProtocolError, match="unknown op"):
        w.decode_op(w.encode_op([99, 1]))
    with pytest.raises(ProtocolError, match="takes"):
        w.decode_op(w.encode_op([w.LINK, pid]))
    with pytest.raises(ProtocolError, match="bad argument"):
        w.decode_op(w.encode_op([w.LINK, "not a pid", pid]))
    with pytest.raises(DecodeError):
        w.decode_op(b"\xc1")


def test_send_fast_path_still_checks_its_shape() -> None:
    with pytest.raises(ProtocolError):
        w.decode_op(w.encode_op([w.SEND, "1", 2, "x"]))
    with pytest.raises(ProtocolError):
        w.decode_op(w.encode_op([w.SEND, 1, 2]))
    assert w.decode_op(w.encode_op([w.SEND, 1, 2, None])) == [w.SEND, 1, 2, None]


@given(st.lists(st.binary(max_size=2000), max_size=30), st.integers(1, 700))
def test_a_stream_cut_anywhere_reassembles_to_the_same_ops(ops: list[bytes], limit: int) -> None:
    stream = w.OpStream(max_size=10_000)
    got: list[bytes] = []
    for frame in w.cut_stream(ops, limit):
        assert len(frame) <= limit
        got.extend(bytes(op) for op in stream.feed(frame))
    assert got == ops
    assert stream.pending == 0


@given(st.lists(st.binary(max_size=2000), max_size=30), st.integers(1, 700),
       st.integers(0, 2000))
def test_ops_over_the_limit_are_skipped_and_the_others_delivered(
    ops: list[bytes], limit: int, max_size: int
) -> None:
    """However the stream is cut, an op over the limit is skipped (its size noted) and every
    other op comes out whole and in order: the stream stays in step."""
    stream = w.OpStream(max_size=max_size)
    got: list[bytes] = []
    for frame in w.cut_stream(ops, limit):
        got.extend(bytes(op) for op in stream.feed(frame))
    assert got == [op for op in ops if len(op) <= max_size]
    assert stream.skipped == [len(op) for op in ops if len(op) > max_size]
    assert stream.pending == 0


def test_an_op_over_the_limit_is_never_buffered() -> None:
    stream = w.OpStream(max_size=100)
    frame = w.pack_ops([b"before", b"x" * 10_000, b"after"])
    assert [bytes(op) for op in stream.feed(frame[:50])] == [b"before"]
    assert stream.pending == 0 and stream.skipped == [10_000]
    for i in range(50, len(frame) - 20, 1000):  # the rest of the big op: consumed, not held
        assert stream.feed(frame[i:min(i + 1000, len(frame) - 20)]) == []
        assert stream.pending == 0
    assert [bytes(op) for op in stream.feed(frame[len(frame) - 20:])] == [b"after"]
    assert stream.skipped == [10_000]
    assert w.OpStream(max_size=100).feed(w.pack_ops([b"x" * 100])) != []


def test_a_skipped_op_is_told_apart_as_a_plain_message_or_a_signal() -> None:
    """Only SEND and REG_SEND are plain messages; any other op skipped for its size is
    counted in `signals_skipped`, even when its first two bytes come in a later frame."""
    me, other = Pid("a@h", 1, 1), Pid("b@h", 1, 2)
    big = "x" * 500
    ops = [w.encode_op([w.SEND, 2, 1, big]), w.encode_op([w.REG_SEND, me, "n", big]),
           w.encode_op([w.EXIT, me, other, big]), w.encode_op([w.ALIAS, other, 7, big])]
    stream = w.OpStream(max_size=100)
    assert stream.feed(w.pack_ops(ops[:2])) == []
    assert len(stream.skipped) == 2 and stream.signals_skipped == 0
    frame = w.pack_ops(ops[2:])
    for cut in (4, 5, 6):  # the length, then one byte, then the op code: known at 6
        stream = w.OpStream(max_size=100)
        assert stream.feed(frame[:cut]) == []
        assert stream.signals_skipped == (cut >= 6) and stream.pending == (cut if cut < 6 else 0)
        stream.feed(frame[cut:])
        assert len(stream.skipped) == 2 and stream.signals_skipped == 2
