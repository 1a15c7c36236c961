"""The chat service's limits (issue #12, class 7): no request field kills it, no user fills it.

A chat node's service runs in this process (on the suite's local node): the chat
server and its room servers are fed random terms in every request shape (hypothesis)
and must answer each with a reply, never crash (a crash past the supervisor's
intensity stopped a node serving chat); rooms per user and per node are bounded with
a clear error; a room that is idle holds no file descriptor.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import actornet
from examples.chatty import requests, service, storage
from examples.chatty import room as rooms

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def chat_node(node: actornet.Node, tmp_path: Path) -> Iterator[Path]:
    """The chat service on this test's node (tick 1 s), room logs in a temporary dir."""
    data = tmp_path / "data"
    service.start(data_dir=str(data), tick_time=1.0, max_rooms=12, max_rooms_per_user=5)
    try:
        yield data
    finally:
        storage.configure(None)


def call(request: Any) -> Any:
    return actornet.call("chatty", request, timeout=10)


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63, max_value=2**80),
    st.floats(allow_nan=True), st.text(max_size=40), st.binary(max_size=20),
    st.sampled_from(["lobby", "fz", "ann", "", "../x", "x" * 3000, "a\x1bb", "\u202e"]))
terms = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                     st.tuples(inner, inner), st.tuples(inner),
                                     st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8)


_nicks = itertools.count()


@st.composite
def request_shapes(draw: st.DrawFn) -> Any:
    """A request of a known name with random fields (and sometimes a wrong count)."""
    name = draw(st.sampled_from(sorted(requests.SHAPES)))
    count = len(requests.SHAPES[name]) + draw(st.sampled_from([0, 0, 0, -1, 1]))
    return (name, *draw(st.lists(terms, min_size=max(count, 0), max_size=max(count, 0))))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(request_shapes(), terms), min_size=1, max_size=6))
def test_random_requests_get_replies_and_the_chat_server_keeps_serving(
        chat_node: Path, batch: list[Any]) -> None:
    server = actornet.whereis("chatty")
    call(("connect", "fz"))  # once connected, the requests reach every branch
    for request in batch:
        reply = call(request)
        assert isinstance(reply, tuple) and reply and isinstance(reply[0], str), (request, reply)
        actornet.send("chatty", request)  # as a plain message too, and as a cast
        actornet.cast("chatty", request)
    assert actornet.whereis("chatty") == server, "the chat server crashed"
    call(("connect", f"fz{next(_nicks)}"))  # the batch may have quit or detached
    assert call(("servers",)) == ("servers", [actornet.node()]), "and it still answers"


def test_a_wrong_typed_field_is_answered_with_what_is_wrong(chat_node: Path) -> None:
    assert call(("connect", "ann")) == ("ok", actornet.node())
    server = actornet.whereis("chatty")
    for request, why in [
        (("dm", ["ann"], "hi"), "invalid nickname ['ann']"),
        (("dm", "ann", {"a": 1}), "a message is text, not dict"),
        (("say", "lobby", 5), "a message is text, not int"),
        (("kick", "lobby", ("x",)), "invalid nickname ('x',)"),
        (("like", "lobby", "7"), "a message id is a number, 0 or more, not '7'"),
        (("like", "lobby", True), "a message id is a number, 0 or more, not True"),
        (("history", "lobby", 2.5), "/history N: N must be a number"),
        (("join", ["lobby"]), "invalid room name ['lobby']"),
        (("join", "lobby", "extra"), "join takes 1 argument"),
        (("nick",), "nick takes 1 argument"),
        (("frobnicate",), "unknown request 'frobnicate'"),
        ("not a tuple", "expected a tuple, its name first"),
        ((b"join", "lobby"), "expected a tuple, its name first"),
    ]:
        reply = call(request)
        assert reply[0] == "error" and why in reply[1], (request, reply)
    assert actornet.whereis("chatty") == server


def test_random_messages_to_a_room_server_are_answered_or_dropped(chat_node: Path) -> None:
    assert call(("connect", "rob")) == ("ok", actornet.node())
    assert call(("join", "fuzzed"))[0] == "ok"
    room = actornet.whereis(rooms.local_name("fuzzed"))
    assert room is not None

    @settings(max_examples=200, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.one_of(terms, st.tuples(st.sampled_from(
        ["replicate", "replicated", "round_timeout", "acks", "sync", "publish", "forwarded",
         "history", "merge", "member", "info",
         "check", "expire", "verdict", "rejoin", "held", "tell_members"]), terms)))
    def feed(term: Any) -> None:
        reply = actornet.call(room, term, timeout=10)
        assert isinstance(reply, (tuple, list, dict, bool)), (term, reply)
        actornet.send(room, term)
        actornet.cast(room, term)

    feed()
    assert actornet.whereis(rooms.local_name("fuzzed")) == room, "the room server crashed"
    assert call(("say", "fuzzed", "still here"))[0] == "ok"


def test_rooms_per_user_and_per_node_are_bounded_with_a_clear_error(chat_node: Path) -> None:
    assert call(("connect", "many")) == ("ok", actornet.node())
    for k in range(5):
        assert call(("join", f"r{k}"))[0] == "ok"
    assert call(("join", "r5")) == (
        "error", "you are in 5 rooms, the most one user may be in: /leave one first")
    assert call(("join", "r0")) == ("error", "you are already in room r0")  # not a new one
    assert call(("leave", "r4"))[0] == "ok"
    assert call(("join", "r5"))[0] == "ok"  # room again for one more
    actornet.spawn(_second_user, actornet.self())
    answers = actornet.receive(lambda m: isinstance(m, tuple) and m[0] == "answers",
                               timeout=60)[1]
    assert [a[0] for a in answers[:6]] == ["ok"] * 6, answers
    assert answers[6] == ("error", "this chat node already serves 12 rooms, its limit: join "
                                   "this room through another chat node")


def _second_user(report_to: actornet.Pid) -> None:
    """Another user, who joins new rooms until the node's own limit (12 rooms) stops it."""
    assert actornet.call("chatty", ("connect", "more"), timeout=10)[0] == "ok"
    answers = []
    for k in range(7):  # r0..r5 exist (6 rooms): 6 new ones reach 12, the 7th is refused
        answers.append(actornet.call("chatty", ("join", f"s{k}"), timeout=10))
        if k == 4:  # under its own limit of 5 rooms (the rooms stay: others may join)
            for room in ("s0", "s1"):
                actornet.call("chatty", ("leave", room), timeout=10)
    actornet.send(report_to, ("answers", answers))


def test_idle_rooms_hold_no_file_descriptors(chat_node: Path) -> None:
    assert call(("connect", "idle")) == ("ok", actornet.node())
    for k in range(5):
        assert call(("join", f"quiet{k}"))[0] == "ok"
        assert call(("say", f"quiet{k}", "a message, then silence"))[0] == "ok"
    logs = str(chat_node / "rooms")
    held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")
            and os.readlink(f"/proc/self/fd/{fd}").startswith(logs)]
    assert held == [], f"room logs held open: {held}"
    assert sorted(p.name for p in (chat_node / "rooms").iterdir()) == [
        f"quiet{k}.log" for k in range(5)]


def test_a_conflict_signal_renames_even_before_this_nodes_table_has_the_decision(
        chat_node: Path) -> None:
    """global_'s decider tells the loser of a nickname (an exit signal) and the nodes (a
    message) separately: the loser's chat node may still give it the name when the loser
    asks to be renamed (after a heal, this node may not even be connected to the decider
    yet). The signal is the decision: the loser is renamed, and the old name is left to
    global_ (here it would take it from the winner on every node that has the decision)."""
    me = actornet.self()
    assert call(("connect", "zed")) == ("ok", actornet.node())
    assert actornet.global_.whereis_name(service.nick_name("zed")) == me  # no decision here
    reply = call(("nick_conflict",))
    assert reply[:2] == ("renamed", "zed-2") and "partition" in reply[2], reply
    assert actornet.global_.whereis_name(service.nick_name("zed-2")) == me
    assert actornet.global_.whereis_name(service.nick_name("zed")) == me, "left to global_"
    assert call(("nick", "zed-3"))[0] == "ok", "and the client goes on as zed-2"
