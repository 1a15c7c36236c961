"""`actornet.receiving`: a `match` statement as Erlang's selective receive."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import actornet


def _drain() -> list[Any]:
    left = []
    while True:
        try:
            left.append(actornet.receive(timeout=0))
        except actornet.Timeout:
            return left


def _take_with_match_statement(wanted: int) -> Any:
    """Take the first ("n", wanted) or ("stop",) message, as a `receiving` loop."""
    for msg in actornet.receiving(timeout=0):
        match msg:
            case ("n", n) if n == wanted:
                return msg
            case ("stop",):
                return msg
    return None


def _take_with_match_function(wanted: int) -> Any:
    def match(m: Any) -> bool:
        return m == ("n", wanted) or m == ("stop",)

    try:
        return actornet.receive(match, timeout=0)
    except actornet.Timeout:
        return None


_messages = st.lists(
    st.one_of(st.tuples(st.just("n"), st.integers(0, 5)), st.just(("stop",)),
              st.integers(), st.text(max_size=3)),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(_messages, st.lists(st.integers(0, 5), max_size=8))
def test_it_takes_what_receive_with_match_takes_and_keeps_the_rest_in_order(
    messages: list[Any], wanted: list[int]
) -> None:
    me = actornet.self()
    results = {}
    for take in (_take_with_match_statement, _take_with_match_function):
        for m in messages:
            actornet.send(me, m)
        taken = [take(w) for w in wanted]
        results[take.__name__] = (taken, _drain())
    assert results["_take_with_match_statement"] == results["_take_with_match_function"]


def test_the_else_runs_after_the_timeout_and_nothing_is_taken() -> None:
    me = actornet.self()
    actornet.send(me, "unwanted")
    started = time.monotonic()
    for msg in actornet.receiving(timeout=0.1):
        match msg:
            case ("wanted", _):
                break
    else:
        msg = "after"
    assert msg == "after"
    assert time.monotonic() - started >= 0.1
    assert _drain() == ["unwanted"]


def test_it_waits_for_a_message_that_arrives_later() -> None:
    me = actornet.self()
    actornet.spawn(lambda: (actornet.send(me, "noise"), actornet.send(me, ("late", 1))))
    for msg in actornet.receiving(timeout=5):
        match msg:
            case ("late", n):
                break
    else:
        pytest.fail("the late message never came")
    assert n == 1
    assert _drain() == ["noise"]


def test_the_offered_message_is_out_of_the_mailbox_while_its_clause_runs() -> None:
    me = actornet.self()
    for m in ["first", "second"]:
        actornet.send(me, m)
    for msg in actornet.receiving(timeout=1):
        match msg:
            case "first":
                inner = actornet.receive(timeout=1)  # a receive inside the clause
                break
    assert (msg, inner) == ("first", "second")
    assert _drain() == []


def test_a_clause_that_raises_has_taken_its_message() -> None:
    me = actornet.self()
    for m in [1, 2]:
        actornet.send(me, m)
    with pytest.raises(ZeroDivisionError):
        for msg in actornet.receiving(timeout=1):
            match msg:
                case 2:
                    _ = 1 / 0
    assert _drain() == [1]


def test_bad_timeouts_are_refused_at_the_call() -> None:
    with pytest.raises(ValueError, match="receiving"):
        actornet.receiving(timeout=-1)
    with pytest.raises(TypeError, match="receiving"):
        actornet.receiving(timeout="soon")  # type: ignore[arg-type]


def test_an_exit_signal_ends_a_process_waiting_in_the_loop() -> None:
    def waiter() -> None:
        for msg in actornet.receiving():
            match msg:
                case "never":
                    break

    pid, ref = actornet.spawn_monitor(waiter)
    actornet.exit(pid, "stop")
    down = actornet.receive(lambda m: m[:2] == ("DOWN", ref), timeout=5)
    assert down[4] == "stop"
