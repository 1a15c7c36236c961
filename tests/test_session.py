"""The session state machine (`actornet._session`), with no sockets: two sessions talk to
each other in memory, and time is a number the test passes in."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actornet import _wire as w
from actornet._ids import Pid
from actornet._session import (
    LOST_GRACE,
    STRIKE_WINDOW,
    STRIKES,
    Broken,
    Down,
    Dropped,
    Event,
    Mesh,
    Ops,
    Oversized,
    Refused,
    Session,
    State,
    Tick,
)
from actornet.errors import ProtocolError

KEY_AB = b"a" * 32  # MACs what a sends to b (plain connections)
KEY_BA = b"b" * 32
TICK_TIME = 4.0


def pair(*, plain: bool = True, now: float = 0.0, **options: Any) -> tuple[Session, Session]:
    """Sessions of node a (with peer b) and node b (with peer a), both connections up."""
    a = Session("b@h", tick_time=TICK_TIME, **options)
    b = Session("a@h", tick_time=TICK_TIME, **options)
    for this, other, key in ((a, b, KEY_AB), (b, a, KEY_BA)):
        this.connect(now, 5.0)
        this.established(key if plain else b"", now)
        other.inbound_up(key if plain else b"", now)
    return a, b


def batches(src: Session, now: float, limit: int | None = None) -> list[tuple[bytes, bytes]]:
    """What `src` sends (at most `limit` batches), as a socket that takes everything would."""
    out = []
    while limit is None or len(out) < limit:
        batch = src.next_batch()
        if batch is None:
            break
        out.append(batch)
        src.sent(now)
    return out


def pump(src: Session, dst: Session, now: float) -> list[Event]:
    """Everything `src` has queued, received by `dst`: the events, in order."""
    events: list[Event] = []
    for header, payload in batches(src, now):
        events.extend(dst.receive(header, payload, now))
    return events


def op(i: int, size: int = 10) -> bytes:
    return w.encode_op([w.SEND, 1, 1, (i, "x" * size)])


def delivered(events: list[Event]) -> list[Any]:
    return [o for e in events if isinstance(e, Ops) for o in e.ops]


# -- ops, batches, order -----------------------------------------------------------------------


def test_ops_arrive_in_order_across_batches_of_at_most_512() -> None:
    a, b = pair()
    for i in range(1500):
        a.queue(op(i))
    sent = batches(a, 1.0)
    assert len(sent) == 3 and a.backlog == 0 and not a.pending
    events = [e for header, payload in sent for e in b.receive(header, payload, 1.0)]
    assert [o[3][0] for o in delivered(events)] == list(range(1500))
    assert all(isinstance(e, Ops) for e in events)
    assert (a.seq, b.in_seq) == (3, 3) and a.stats["batches_out"] == b.stats["batches_in"] == 3


def test_an_op_larger_than_a_frame_spans_frames_and_comes_out_whole() -> None:
    a, b = pair()
    big = w.encode_op([w.SEND, 1, 1, b"z" * (3 * w.MAX_FRAME)])
    a.queue(op(0))
    a.queue(big)
    a.queue(op(1))
    sent = batches(a, 1.0)
    assert len(sent) >= 4 and all(len(p) <= w.MAX_FRAME for _, p in sent)
    out = delivered([e for h, p in sent for e in b.receive(h, p, 1.0)])
    assert [o[3] for o in out] == [(0, "x" * 10), b"z" * (3 * w.MAX_FRAME), (1, "x" * 10)]


def test_a_batch_is_offered_again_until_the_socket_takes_it() -> None:
    a, b = pair()
    a.queue(op(7))
    first = a.next_batch()
    assert a.next_batch() == first and a.seq == 0  # "again": nothing was consumed
    a.sent(1.0)
    assert a.next_batch() is None and a.seq == 1
    assert first is not None and delivered(b.receive(*first, 1.0))[0][3] == (7, "x" * 10)


# -- refusals: whose fault, and why ------------------------------------------------------------


def test_a_lost_batch_is_a_gap_and_the_peer_is_down() -> None:
    a, b = pair()
    for i in range(3):
        a.queue(op(i))
        a.next_batch()
        a.sent(1.0)  # three batches, of which b sees only the last
    a.queue(op(3))
    header, payload = batches(a, 1.0)[0]
    events = b.receive(header, payload, 1.0)
    assert events == [Dropped("batch 3 arrived when 0 was due: data was lost"),
                      Down("lost data on the connection")]


def test_a_replayed_batch_is_refused_as_lost_data() -> None:
    a, b = pair()
    a.queue(op(0))
    [(header, payload)] = batches(a, 1.0)
    assert delivered(b.receive(header, payload, 1.0))
    events = b.receive(header, payload, 1.1)
    assert events == [Dropped("batch 0 arrived when 1 was due: data was lost"),
                      Down("lost data on the connection")]


def test_a_batch_with_a_bad_mac_breaks_the_connection_in() -> None:
    a, b = pair()
    a.queue(op(0))
    [(header, payload)] = batches(a, 1.0)
    forged = payload.replace(b"x", b"y")
    events = b.receive(header, forged, 1.0)
    assert len(events) == 2 and isinstance(events[0], Dropped)
    assert "batch 0 failed its MAC" in events[0].why
    assert events[1] == Broken("a batch on its connection into this node failed its MAC")
    # one signed with another key (another connection's) is no better
    other = w.pack_header(0, b"c" * 32, payload)
    assert isinstance(b.receive(other, payload, 1.0)[-1], Broken)


def test_on_an_encrypted_connection_a_bad_header_is_a_strike() -> None:
    _, b = pair(plain=False)
    assert b.receive(b"junk", b"", 1.0) == [
        Dropped("bad batch header: not a data batch header (4 bytes, 10 expected)")]
    assert b.strikes == 1 and b.in_seq == 0


def test_malformed_ops_are_dropped_one_by_one_and_the_peer_refused_at_the_hundredth() -> None:
    a, b = pair()
    bad = w.encode_op([w.LINK, "not a pid", 3])
    for i in range(STRIKES - 1):
        a.queue(bad)
        a.queue(op(i))
        events = pump(a, b, 1.0 + i * 0.01)
        assert isinstance(events[0], Dropped) and "op 3: bad argument" in events[0].why
        assert delivered(events)[0][3][0] == i  # the ops around it are delivered
    a.queue(bad)
    a.queue(op(-1))
    events = pump(a, b, 2.0)
    assert events[-1] == Refused(f"it sent {STRIKES} malformed messages in 1 s")
    assert not delivered(events)  # nothing after the refusal is taken


def test_strikes_are_counted_within_a_window() -> None:
    _, b = pair()
    for i in range(STRIKES - 1):
        assert b.strike(i * 0.1) is None
    assert b.strike(STRIKE_WINDOW + 1.0) is None  # the window passed: counting starts over
    assert b.strikes == 1


# -- the oversize policy -----------------------------------------------------------------------


def test_a_message_over_max_message_size_is_skipped_alone() -> None:
    a, b = pair(max_message_size=1000)
    a.queue(op(0))
    a.queue(op(1, size=5000))
    a.queue(op(2))
    events = pump(a, b, 1.0)
    assert [o[3][0] for o in delivered(events)] == [0, 2]
    [oversized] = [e for e in events if isinstance(e, Oversized)]
    assert oversized.sizes == [len(op(1, size=5000))] and b.stats["oversized_in"] == 1
    assert not [e for e in events if isinstance(e, Down)]


def test_a_signal_over_max_message_size_takes_the_peer_down() -> None:
    a, b = pair(max_message_size=1000)
    me = Pid("a@h", 1, 1)
    a.queue(w.encode_op([w.EXIT, me, Pid("b@h", 2, 1), "x" * 5000]))
    events = pump(a, b, 1.0)
    assert events[-1] == Down("it sent 1 signal(s) or repl(ies) over max_message_size")


# -- ticks and failure detection, on a fake clock ----------------------------------------------


def test_a_tick_goes_out_after_a_quarter_tick_time_of_silence_and_keeps_the_peer_up() -> None:
    a, b = pair()
    assert a.tick(TICK_TIME / 4 - 0.01) is None and not a.pending
    assert a.tick(TICK_TIME / 4) == Tick() and a.stats["ticks_out"] == 1
    assert pump(a, b, 1.5) == []  # a TICK means nothing to the node
    assert b.last_seen == 1.5
    assert b.tick(1.5 + TICK_TIME) in (None, Tick())  # heard 4 s ago: not yet down


def test_silence_past_tick_time_is_down_with_how_long() -> None:
    a, _ = pair()
    a.last_seen = 10.0
    a.last_sent = 14.0  # it has been sending: the detector is about what it hears
    assert a.tick(14.0) is None
    assert a.tick(14.1) == Down("no tick for 4.1 s")


def test_a_peer_that_never_connects_back_is_down_after_tick_time() -> None:
    a = Session("b@h", tick_time=TICK_TIME)
    a.connect(0.0, 5.0)
    a.established(b"", 1.0)
    assert a.tick(1.0 + TICK_TIME) == Tick()  # not yet: it may still connect back
    assert a.tick(1.01 + TICK_TIME) == Down("it never connected back")


def test_a_connection_attempt_times_out_at_its_deadline() -> None:
    a = Session("b@h")
    a.connect(0.0, 5.0)
    assert a.tick(5.0) is None
    assert a.tick(5.01) == Down("connection timed out")
    assert Session("c@h").tick(100.0) is None  # never connected: nothing to detect


def test_a_lost_peer_stays_up_for_the_grace_while_its_connection_in_is_open() -> None:
    a, _ = pair()
    a.lost("connection lost", 1.0)
    a.lost("another reason", 1.05)  # the first reason stands
    assert a.losing and not a.settled(1.0 + LOST_GRACE / 2, inbound_closed=False)
    assert a.settled(1.0 + LOST_GRACE / 2, inbound_closed=True)
    assert a.settled(1.001 + LOST_GRACE, inbound_closed=False)
    assert a.take_lost() == Down("connection lost") and not a.losing


def test_a_lost_peer_that_went_down_meanwhile_is_not_down_twice() -> None:
    a, _ = pair()
    a.lost("connection lost", 1.0)
    a.down()
    assert not a.losing and a.take_lost() is None


# -- goodbye and the lifecycle -----------------------------------------------------------------


def test_goodbye_comes_after_what_was_sent_before_it_and_ends_the_batch() -> None:
    a, b = pair()
    a.queue(op(0))
    a.goodbye()
    a.queue(op(1))  # a broken peer that goes on after its GOODBYE: not taken
    assert pump(a, b, 1.0) == [Ops([w.decode_op(op(0))]), Down("it stopped")]


def test_going_down_from_up_gives_the_goodbye_batch_to_send() -> None:
    a, b = pair()
    a.queue(op(0))
    assert len(delivered(pump(a, b, 1.0))) == 1
    a.queue(op(1))  # queued, never sent: dropped with the connection
    goodbye = a.down()
    assert goodbye is not None and a.state is State.DOWN and a.backlog == 0 and not a.pending
    assert b.receive(*goodbye, 1.0) == [Down("it stopped")]  # numbered after the last sent


def test_going_down_from_connecting_sends_nothing_and_a_new_attempt_starts_afresh() -> None:
    a = Session("b@h")
    a.connect(0.0, 5.0)
    assert a.down() is None and a.state is State.DOWN
    a.connect(1.0, 5.0)
    a.established(KEY_AB, 1.0)
    a.queue(op(0))
    b = Session("a@h")
    b.inbound_up(KEY_AB, 1.0)
    assert delivered(pump(a, b, 1.0))


def test_transitions_outside_the_table_are_refused() -> None:
    a = Session("b@h")
    with pytest.raises(ProtocolError, match="no transition new -> up"):
        a.established(b"", 0.0)
    a.connect(0.0, 1.0)
    a.established(b"", 0.0)
    with pytest.raises(ProtocolError, match="no transition up -> connecting"):
        a.connect(0.0, 1.0)
    assert a.state == "up" and f"{a.state}" == "up"  # a str where a str is shown


# -- mesh --------------------------------------------------------------------------------------


def test_a_peers_list_gives_its_good_entries_and_strikes_the_others() -> None:
    a, b = pair(mesh=True)
    a.queue(w.encode_op([w.NODES, [["c@h", "tcp://127.0.0.1:5"], ["bad", "tcp://x:1"],
                                   ["d@h", "not an endpoint"], 7, ["e@h", "tcp://h:6"]]]))
    events = pump(a, b, 1.0)
    assert [e for e in events if isinstance(e, Mesh)] == [
        Mesh([("c@h", "tcp://127.0.0.1:5"), ("e@h", "tcp://h:6")])]
    assert len([e for e in events if isinstance(e, Dropped)]) == 3 and b.strikes == 3


def test_without_mesh_a_peers_list_is_ignored() -> None:
    a, b = pair(mesh=False)
    a.queue(w.encode_op([w.NODES, [["c@h", "tcp://127.0.0.1:5"]]]))
    assert pump(a, b, 1.0) == []


# -- the invariant -----------------------------------------------------------------------------

_sizes = st.one_of(st.integers(0, 200), st.integers(w.MAX_FRAME - 20, w.MAX_FRAME + 20),
                   st.sampled_from([3 * w.MAX_FRAME]))
_actions = st.lists(st.one_of(st.tuples(st.just("queue"), _sizes),
                              st.tuples(st.just("flush"), st.integers(0, 3)),
                              st.tuples(st.just("tick"), st.floats(0, 0.9))),
                    max_size=60)


@settings(max_examples=60, deadline=None)
@given(actions=_actions, plain=st.booleans())
def test_every_op_sent_comes_out_once_in_order_whatever_the_batch_boundaries(
    actions: list[tuple[str, Any]], plain: bool
) -> None:
    """Ops queued by a come out of b in the order queued, each exactly once, however they
    are cut into batches and frames, and whenever ticks fall between them."""
    a, b = pair(plain=plain)
    now, queued, out = 0.0, [], []
    for kind, arg in actions:
        if kind == "queue":
            queued.append(len(queued))
            a.queue(w.encode_op([w.SEND, 1, 1, (queued[-1], b"p" * arg)]))
        elif kind == "flush":
            for header, payload in batches(a, now, arg):
                out += delivered(b.receive(header, payload, now))
        else:
            now += arg
            b.queue(w.encode_op([w.TICK]))  # b's ticks: a hears from it while time passes
            for header, payload in batches(b, now):
                assert a.receive(header, payload, now) == []
            assert not isinstance(a.tick(now), Down)
    for header, payload in batches(a, now):
        out += delivered(b.receive(header, payload, now))
    assert [o[3][0] for o in out] == queued
    assert b.in_seq == a.seq and b.strikes == 0 and a.backlog == 0
