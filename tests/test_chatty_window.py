"""The sequencer's replication window (examples/chatty/window.py), against a model.

Whatever order the replicas' answers, deaths and timeouts come in, the rounds
leave the window in the order they were opened, each once, and a round leaves
only when every replica it went to has answered or was given up.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.chatty.window import Window

REPLICAS = ("a", "b", "c")

# One step: open a round (to a subset of the replicas), an answer of a replica for
# the k-th round opened, a replica going down, a round's timer firing.
steps = st.lists(st.one_of(
    st.tuples(st.just("open"), st.sets(st.sampled_from(REPLICAS))),
    st.tuples(st.just("answer"), st.integers(0, 30), st.sampled_from(REPLICAS)),
    st.tuples(st.just("down"), st.sampled_from(REPLICAS)),
    st.tuples(st.just("timeout"), st.integers(0, 30)),
), max_size=80)


@settings(max_examples=300, deadline=None)
@given(size=st.integers(1, 5), script=steps)
def test_rounds_leave_in_the_order_opened_each_once_and_only_when_answered(
        size: int, script: list[tuple]) -> None:
    w = Window(size)
    opened: list[int] = []  # round numbers, in the order opened
    sent_to: dict[int, set[str]] = {}
    heard: dict[int, set[str]] = {}  # replicas that answered, went down or timed out
    down: set[str] = set()
    released: list[int] = []
    for step in script:
        match step:
            case ("open", replicas):
                if w.full():
                    with pytest.raises(RuntimeError):
                        w.open([], 0, 0, replicas)
                    continue
                r = w.open([f"item{len(opened)}"], len(opened), len(opened), replicas - down)
                opened.append(r.number)
                sent_to[r.number], heard[r.number] = set(replicas - down), set()
            case ("answer", k, replica) if k < len(opened):
                w.answered(opened[k], replica)
                heard[opened[k]].add(replica)
            case ("down", replica):
                w.gone(replica)
                down.add(replica)
                for n in heard:
                    heard[n].add(replica)
            case ("timeout", k) if k < len(opened):
                late = w.expire(opened[k])
                assert late <= sent_to[opened[k]] - heard[opened[k]]
                heard[opened[k]] |= sent_to[opened[k]]
        for r in w.done():
            assert sent_to[r.number] <= heard[r.number], "released before every answer"
            assert r.items == [f"item{opened.index(r.number)}"]
            released.append(r.number)
        assert len(w) <= size
    assert released == opened[:len(released)], "released in the order opened, each once"
    # every round not released waits for someone, or is behind one that does
    pending = opened[len(released):]
    if pending:
        assert not (sent_to[pending[0]] <= heard[pending[0]]), "a done round was held back"
    # and once everyone answers everything, the rest leaves, in order
    for n in pending:
        for replica in REPLICAS:
            w.answered(n, replica)
    assert [r.number for r in w.done()] == pending
    assert w.empty()


def test_a_window_of_no_rounds_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one round"):
        Window(0)


def test_a_late_answer_does_not_count_for_a_newer_round() -> None:
    w = Window(2)
    first = w.open(["m1"], 1, 1, ["a"])
    w.answered(first.number, "a")
    assert [r.number for r in w.done()] == [first.number]
    second = w.open(["m2"], 2, 2, ["a"])
    w.answered(first.number, "a")  # the old round's answer, repeated
    assert w.done() == [] and second.waiting == {"a"}
