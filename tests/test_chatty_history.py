"""The room state machine of Chatty (examples/chatty/history.py), without any I/O."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actornet import Pid
from actornet._codec import decode, encode
from examples.chatty import storage
from examples.chatty.history import RoomState, new_eid

A, B, C = (Pid("c1@127.0.0.1", i, 1) for i in (1, 2, 3))


def replay(records: list[tuple[int, int, tuple[Any, ...]]], limit: int = 1000) -> RoomState:
    state = RoomState(limit)
    for record in records:
        state.apply(*record)
    return state


def numbered(events: list[tuple[Any, ...]], start: int = 1) -> list[tuple[int, int, tuple]]:
    return [(start + k, new_eid(), e) for k, e in enumerate(events)]


def derived(state: RoomState) -> tuple[Any, ...]:
    return (state.seq, list(state.records), state.members, state.owner,
            {e: v for e, v in state.likes.items() if v}, state.renamed)


def test_a_like_of_a_message_not_seen_yet_is_kept_until_it_arrives() -> None:
    state = replay(numbered([("join", "ann", A, "n1"), ("join", "bob", B, "n2")]))
    msg_eid = new_eid()
    state.apply(3, new_eid(), ("like", msg_eid, "bob"))  # merged in before its message
    assert state.like_count(msg_eid) == 1
    state.apply(4, msg_eid, ("msg", "ann", "hello"))
    assert state.message_eid(4) == msg_eid and state.like_count(msg_eid) == 1
    state.apply(5, new_eid(), ("unlike", msg_eid, "bob"))
    assert state.like_count(msg_eid) == 0


def test_likes_name_a_message_by_the_id_clients_see_and_keep_its_eid() -> None:
    state = replay(numbered([("join", "ann", A, "n1"), ("msg", "ann", "hi")]))
    event, error = state.prepare(("like", 2, "ann"), "r")
    assert error == "" and event == ("like", state.eid_at(2), "ann")
    assert state.prepare(("like", 1, "ann"), "r") == (None, "no message #1 in room r")
    assert state.prepare(("like", 2, "eve"), "r") == (None, "eve is not in room r")


def test_members_are_kept_by_pid_so_one_nick_on_two_clients_can_be_told_apart() -> None:
    state = replay(numbered([("join", "zed", A, "n1"), ("join", "zed", B, "n3"),
                             ("rename", "zed", "zed-2", B)]))
    assert state.members == {A: ("zed", "n1"), B: ("zed-2", "n3")}
    assert state.owner == A and state.owner_nick() == "zed"  # the first zed: owner stays
    state.apply(4, new_eid(), ("leave", "zed", A))
    assert state.members == {B: ("zed-2", "n3")}


def test_a_rename_before_the_join_it_concerns_applies_when_it_joins() -> None:
    state = replay(numbered([("join", "zed", A, "n1"), ("rename", "zed", "zed-2", B),
                             ("join", "zed", B, "n3")]))
    assert state.members == {A: ("zed", "n1"), B: ("zed-2", "n3")}
    assert state.renamed == {}


def test_a_kick_removes_by_nick_and_only_the_owner_kicks() -> None:
    state = replay(numbered([("join", "ann", A, "n1"), ("join", "bob", B, "n2")]))
    assert state.prepare(("kick", "ann", "bob", B), "r")[1] == "only the owner of r (ann) can kick"
    assert state.prepare(("kick", "bob", "ann", A), "r")[1] == ""
    gone = state.apply(3, new_eid(), ("kick", "bob", "ann", A))
    assert gone == [(B, "n2")] and list(state.members) == [A]


def test_ownership_is_the_owners_client_not_its_nickname() -> None:
    # ann owns the room and quits; cy takes the free nickname "ann" and joins
    state = replay(numbered([("join", "ann", A, "n1"), ("join", "bob", B, "n2"),
                             ("leave", "ann", A), ("join", "ann", C, "n1")]))
    assert state.owner == B and state.owner_nick() == "bob"  # passed on, not taken by name
    assert state.prepare(("kick", "bob", "ann", C), "r")[1] == "only the owner of r (bob) can kick"
    # a rename keeps ownership with the client
    state.apply(5, new_eid(), ("rename", "bob", "rob", B))
    assert state.owner_nick() == "rob"


def test_ownership_passes_to_the_member_present_longest() -> None:
    state = replay(numbered([("join", "ann", A, "n1"), ("join", "bob", B, "n2"),
                             ("join", "cy", C, "n1"), ("rename", "bob", "bo", B),
                             ("move", "bo", B, "n3", 4)]))  # neither loses bob his place
    state.apply(6, new_eid(), ("kick", "ann", "ann", A))  # the owner kicks itself out
    assert state.owner_nick() == "bo"
    state.apply(7, new_eid(), ("leave", "bo", B))
    assert state.owner_nick() == "cy"
    state.apply(8, new_eid(), ("leave", "cy", C))
    assert state.owner is None and state.owner_nick() is None
    state.apply(9, new_eid(), ("join", "bob", B, "n2"))  # an empty room: the next joiner owns it
    assert state.owner == B


def test_joining_a_room_twice_is_refused() -> None:
    state = replay(numbered([("join", "ann", A, "n1")]))
    assert state.prepare(("join", "ann", A, "n1"), "r") == (None, "you are already in room r")
    assert state.prepare(("join", "bob", B, "n2"), "r")[1] == ""


def test_the_memory_keeps_the_last_records_and_forgets_their_ids() -> None:
    records = numbered([("join", "ann", A, "n1")] + [("msg", "ann", str(k)) for k in range(9)])
    state = replay(records, limit=4)
    assert [r[0] for r in state.records] == [7, 8, 9, 10]
    assert set(state.seq_of) == {r[1] for r in records[-4:]}
    assert state.eid_at(6) is None and state.eid_at(7) == records[6][1]
    assert state.first_seq() == 7


def test_the_member_a_departure_makes_owner_is_named_and_nobody_for_an_empty_room() -> None:
    records = numbered([("join", "ann", A, "n1"), ("join", "bob", B, "n2"),
                        ("join", "cy", C, "n1"), ("leave", "bob", B), ("kick", "ann", "ann", A),
                        ("move", "cy", B, "n2", 0), ("leave", "cy", B)])
    state = replay(records)
    eid = [r[1] for r in records]
    # bob leaving changes nothing; ann's kick makes cy owner; cy's client moving (the
    # same nick on another client) is no new owner; the last leave makes nobody owner
    assert state.new_owner == {eid[4]: "cy"}
    assert state.owner is None and not state.members
    # it travels with the state, and is forgotten with the records it is about
    assert RoomState.from_wire(decode(encode(state.to_wire()))).new_owner == state.new_owner
    assert replay(records, limit=2).new_owner == {}


def test_an_owner_passed_on_by_a_move_is_named() -> None:
    # after a merge, one nick on two clients: the owner's moving client replaces the other
    records = numbered([("join", "ann", A, "n1"), ("join", "bob", B, "n2"),
                        ("join", "ann", C, "n2"), ("move", "ann", C, "n2", 0)])
    state = replay(records)
    assert state.owner == B and state.new_owner == {records[3][1]: "bob"}


def test_a_room_log_is_never_opened_outside_the_data_directory(tmp_path: Path) -> None:
    storage.configure(tmp_path / "data")
    try:
        for bad in ("../x", "a/b", "", "Upper", "x" * 31, ".hidden"):
            with pytest.raises(ValueError, match="invalid room name"):
                storage.open_room(bad)
        (tmp_path / "data" / "rooms" / "Not-A-Room.log").write_bytes(b"")
        log = storage.open_room("fine")
        assert log is not None
        log.close()
        assert storage.rooms_on_disk() == ["fine"]
    finally:
        storage.configure(None)
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "Not-A-Room.log", "data", "fine.log", "rooms"]


events = st.one_of(
    st.tuples(st.just("join"), st.sampled_from(["ann", "bob", "cy"]), st.sampled_from([A, B, C]),
              st.sampled_from(["n1", "n2"])),
    st.tuples(st.just("leave"), st.sampled_from(["ann", "bob", "cy"]), st.sampled_from([A, B, C])),
    st.tuples(st.just("msg"), st.sampled_from(["ann", "bob"]), st.text(max_size=5)),
    st.tuples(st.sampled_from(["like", "unlike"]), st.integers(0, 3),
              st.sampled_from(["ann", "bob"])),
    st.tuples(st.just("rename"), st.sampled_from(["ann", "bob"]), st.sampled_from(["x", "y"]),
              st.sampled_from([A, B, C])),
    st.tuples(st.just("kick"), st.sampled_from(["ann", "bob", "x"]),
              st.sampled_from(["ann", "bob"]), st.sampled_from([A, B, C])),
    st.tuples(st.just("move"), st.sampled_from(["ann", "bob", "x"]), st.sampled_from([A, B, C]),
              st.sampled_from(["n1", "n2", "n3"]), st.just(0)),
)


def owned_by_a_member(state: RoomState) -> bool:
    """The owner is a member's client; only an empty room has none."""
    return state.owner in state.members if state.members else state.owner is None


def _with_eids(evs: list[tuple[Any, ...]], eids: list[int]) -> list[tuple[Any, ...]]:
    """Likes in generated events name one of a few message eids (seen or not)."""
    return [(e[0], eids[e[1]], e[2]) if e[0] in ("like", "unlike") else e for e in evs]


@settings(max_examples=200, deadline=None)
@given(st.lists(events, max_size=30), st.integers(3, 40))
def test_state_survives_the_wire_and_a_replay_gives_the_same_state(
    evs: list[tuple[Any, ...]], limit: int
) -> None:
    eids = [new_eid() for _ in range(4)]
    records = numbered(_with_eids(evs, eids))
    state = replay(records, limit)
    assert owned_by_a_member(state)
    copy = RoomState.from_wire(decode(encode(state.to_wire())), limit)
    assert derived(copy) == derived(state)
    assert list(copy.members) == list(state.members)  # the order (seniority) too
    # members, owner and likes come from every event, not only the ones kept in memory
    assert derived(replay(records, 1000))[2:] == derived(state)[2:]


@settings(max_examples=200, deadline=None)
@given(st.lists(events, max_size=15), st.lists(events, max_size=10),
       st.lists(events, max_size=10))
def test_two_sides_of_a_split_find_their_common_prefix_and_their_own_events(
    prefix: list[tuple[Any, ...]], left: list[tuple[Any, ...]], right: list[tuple[Any, ...]]
) -> None:
    eids = [new_eid() for _ in range(4)]
    common = numbered(_with_eids(prefix, eids))
    a_tail = numbered(_with_eids(left, eids), len(common) + 1)
    b_tail = numbered(_with_eids(right, eids), len(common) + 1)
    a, b = replay(common + a_tail), replay(common + b_tail)
    assert a.common_prefix(b) == b.common_prefix(a) == len(common)
    assert a.unknown_to(b) == a_tail
    assert b.unknown_to(a) == b_tail
    assert a.extends(b) == (not b_tail)
    # the merge the sequencer makes: the loser's own events after the winner's, renumbered;
    # every event of both sides survives, numbered without a gap, and the winner's
    # history is a prefix of the merged one
    merged = common + a_tail + [(len(common) + len(a_tail) + k + 1, eid, ev)
                                for k, (_, eid, ev) in enumerate(b.unknown_to(a))]
    assert replay(merged).extends(a)
    assert owned_by_a_member(replay(merged))
    assert {r[1] for r in merged} == {r[1] for r in common + a_tail + b_tail}
    assert [r[0] for r in merged] == list(range(1, len(merged) + 1))
