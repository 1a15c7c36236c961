"""Timers (actornet.timer): `send_after` and `cancel_timer`, as Erlang's.

tests/test_process.py shows a timer firing, a cancel's result, refused delays and
messages, and three timers in time order. Here: ties, a cancel racing the fire,
a cancelled timer at the head of the queue, names resolved when the timer
fires, destinations refused at the call (Erlang's badarg), lightweight
processes, and a hypothesis model of many timers and cancels. Every wait is a
bounded receive; a final timer set after the others, due after them, proves
that nothing more is coming.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import actornet
from actornet import cancel_timer, send_after

from .helpers import nothing_left


def test_timers_due_at_once_fire_in_the_order_they_were_set(node: actornet.Node) -> None:
    me = node.current().pid
    for i in range(50):
        send_after(0, me, i)
    assert [node.receive(timeout=5) for _ in range(50)] == list(range(50))


def test_cancel_after_the_fire_is_false_and_the_message_stays(node: actornet.Node) -> None:
    me = node.current().pid
    ref = send_after(0, me, "fired")
    assert node.receive(lambda m: m == "fired", timeout=5) == "fired"
    assert cancel_timer(ref) is False
    ref = send_after(0, me, "kept")
    send_after(0, me, "after it")
    assert node.receive(lambda m: m == "after it", timeout=5) == "after it"
    assert cancel_timer(ref) is False
    assert node.receive(timeout=0) == "kept", "cancelling a fired timer takes nothing back"


def test_cancel_of_a_ref_that_is_no_timer_is_false(node: actornet.Node) -> None:
    assert cancel_timer(node.make_ref()) is False


def test_a_cancelled_timer_at_the_head_holds_up_none_behind_it(node: actornet.Node) -> None:
    me = node.current().pid
    first = send_after(0.02, me, "cancelled")
    send_after(0.03, me, "kept")
    remaining = cancel_timer(first)
    assert remaining is not False and 0 <= remaining <= 0.02
    assert node.receive(timeout=5) == "kept"
    assert nothing_left(node), "the cancelled one, due earlier, would be here by now"


def test_a_name_is_looked_up_when_the_timer_fires(node: actornet.Node) -> None:
    me = node.current().pid
    node.register("inbox", me)
    send_after(0, "inbox", "by name")
    send_after(0, ("inbox", node.name), "by (name, node)")
    assert [node.receive(timeout=5), node.receive(timeout=5)] == ["by name", "by (name, node)"]
    node.unregister("inbox")
    send_after(0, "inbox", "to nobody")  # dropped when it fires, as a send to a free name
    send_after(0, me, "the timers still run")
    assert node.receive(timeout=5) == "the timers still run"
    assert nothing_left(node)


def test_a_timer_to_a_dead_pid_is_dropped(node: actornet.Node) -> None:
    me = node.current().pid
    pid, ref = node.spawn_monitor(lambda: None)
    node.receive(lambda m: m[1] == ref, timeout=5)
    send_after(0, pid, "lost")
    send_after(0, me, "after it")
    assert node.receive(timeout=5) == "after it"


@pytest.mark.parametrize("dest", [42, None, ("a", "b", "c"), ("name", 7), b"name"])
def test_a_destination_that_is_no_process_is_refused_at_the_call(
    node: actornet.Node, dest: Any,
) -> None:
    # erlang:send_after(1, 42, msg) is badarg at once, not a message lost a second later.
    with pytest.raises(TypeError, match="send_after"):
        send_after(0, dest, "x")
    send_after(0, node.current().pid, "ok")
    assert node.receive(timeout=5) == "ok"


def test_a_bool_is_no_number_of_seconds(node: actornet.Node) -> None:
    with pytest.raises(ValueError, match="send_after"):
        send_after(True, node.current().pid, "x")


def test_a_lightweight_process_sets_and_cancels_timers(node: actornet.Node) -> None:
    me = node.current().pid

    async def sleeper() -> None:
        mine = actornet.self()
        cancelled = send_after(0.01, mine, "cancelled")
        send_after(0.02, mine, "woke")
        left = cancel_timer(cancelled)
        got = await actornet.aio.receive(timeout=5)
        actornet.send(me, (left is not False, got))

    node.spawn(sleeper)
    assert node.receive(timeout=5) == (True, "woke")


# -- the model -----------------------------------------------------------------------------

plans = st.lists(
    st.tuples(st.integers(0, 20), st.booleans()),  # (delay in ms, cancel it?)
    min_size=1, max_size=12,
)


@settings(max_examples=25, deadline=None)
@given(plans)
def test_timers_deliver_what_was_not_cancelled_in_deadline_order(
    plan: list[tuple[int, bool]],
) -> None:
    # On the current node (the test's), through the module API a program uses.
    me = actornet.self()
    due: dict[int, tuple[float, float]] = {}  # i -> earliest, latest possible deadline
    refs = []
    for i, (ms, _) in enumerate(plan):
        before = time.monotonic()
        refs.append(send_after(ms / 1000, me, i))
        due[i] = (before + ms / 1000, time.monotonic() + ms / 1000)
    expected = set()
    for i, (_, cancel) in enumerate(plan):
        if not cancel or cancel_timer(refs[i]) is False:  # False: it had fired already
            expected.add(i)
    send_after(0.03, me, "end")  # due after every other: all are in once it is
    got = []
    while (msg := actornet.receive(timeout=5)) != "end":
        got.append(msg)
    assert set(got) == expected and len(got) == len(expected)
    for a, b in itertools.pairwise(got):
        assert due[a][0] <= due[b][1], f"{a} fired before {b}, though due after it"
