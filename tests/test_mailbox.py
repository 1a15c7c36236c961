"""The mailboxes (actornet._mailbox, actornet._light_mailbox), driven without a node.

A `Mailbox` is received from by the test's thread; a `LightMailbox` by a task on
a loop of the test's own (its owner is a `Process` record, for the checks the
mailbox makes when it wakes). Both are checked against a list model: for any
sequence of puts and selective receives, what is taken and what is left are
what the list says, in the order it says.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import actornet
from actornet._ids import Pid
from actornet._light_mailbox import LightMailbox
from actornet._mailbox import Mailbox
from actornet._process import LIGHT, Killed, Process
from actornet._scheduler import scheduler_of

from .helpers import wait_until

Match = Callable[[Any], object] | None

# -- the list model ------------------------------------------------------------------------

# A message is (seq, tag): seq makes each one unique, tag is what the matches look at.
# A match is None (any message) or (k, r): the tag is r modulo k.
matches = st.one_of(st.none(), st.tuples(st.integers(2, 4), st.integers(0, 3)))
ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 7)),
        st.tuples(st.just("burst"), st.integers(1, 300)),
        st.tuples(st.just("receive"), matches),
        st.tuples(st.just("offer"), matches, st.booleans()),
    ),
    max_size=60,
)


def match_of(spec: tuple[int, int] | None) -> Match:
    if spec is None:
        return None
    k, r = spec
    return lambda m: m[1] % k == r


def model_take(model: list[Any], match: Match) -> Any:
    """What a selective receive takes from `model` (removed), or None."""
    for i, msg in enumerate(model):
        if match is None or match(msg):
            return model.pop(i)
    return None


class Feed:
    """The messages of one example, numbered as they are put."""

    def __init__(self) -> None:
        self.seq = 0

    def next(self, tag: int) -> tuple[int, int]:
        self.seq += 1
        return (self.seq, tag)

    def put(self, op: Any, box: Any, model: list[Any]) -> bool:
        """Carry out a ``put`` or ``burst`` op on `box` and `model` alike; False for others."""
        match op:
            case ("put", tag):
                tags = [tag]
            case ("burst", n):
                tags = list(range(n))
            case _:
                return False
        for tag in tags:
            msg = self.next(tag)
            box.put(msg)
            model.append(msg)
        return True


# -- Mailbox (a thread process's) ----------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(ops)
def test_a_thread_mailbox_takes_and_keeps_what_a_list_says(plan: list[Any]) -> None:
    box = Mailbox()
    model: list[Any] = []
    feed = Feed()
    for op in plan:
        feed.put(op, box, model)
        match op:
            case ("receive", spec):
                expected = model_take(model, match_of(spec))
                if expected is None:
                    with pytest.raises(queue.Empty):
                        box.receive(match_of(spec), 0)
                else:
                    assert box.receive(match_of(spec), 0) == expected
            case ("offer", spec, _):
                expected = model_take(model, match_of(spec))
                taken = None
                fits = match_of(spec)
                for msg in box.offer(0):
                    if fits is None or fits(msg):
                        taken = msg
                        break
                assert taken == expected
        assert len(box) == len(model)
        assert box.empty() == (not model)
    assert [box.receive(None, 0) for _ in range(len(model))] == model
    with pytest.raises(queue.Empty):
        box.receive(None, 0)


def test_the_pykka_side_reads_skipped_messages_first_in_their_order() -> None:
    box = Mailbox()
    for msg in ("a", "b", "c", "d"):
        box.put(msg)
    assert box.receive(lambda m: m == "c", 0) == "c"  # a and b are skipped, then saved
    box.put("e")
    assert [box.get().message for _ in range(4)] == ["a", "b", "d", "e"]
    assert box.empty()
    box.put("f")
    box.closed = True
    assert box.empty(), "a closed mailbox stops pykka's teardown drain"


def test_timeout_zero_takes_what_is_there_and_never_waits() -> None:
    box = Mailbox()
    box.put(("x", 1))
    box.put(("y", 2))
    assert box.receive(lambda m: m[0] == "y", 0) == ("y", 2)
    start = time.monotonic()
    with pytest.raises(queue.Empty):
        box.receive(lambda m: m[0] == "z", 0)
    assert time.monotonic() - start < 1.0
    assert box.receive(None, 0) == ("x", 1)


def test_a_positive_timeout_ends_no_earlier_than_asked_and_keeps_the_skipped() -> None:
    box = Mailbox()
    box.put("skipped")
    start = time.monotonic()
    with pytest.raises(queue.Empty):
        box.receive(lambda m: m == "never", 0.05)
    assert time.monotonic() - start >= 0.05
    assert box.receive(None, 0) == "skipped"


def test_a_positive_timeout_is_not_extended_by_messages_that_do_not_match() -> None:
    # A mailbox that restarted its clock on every arrival would never time out under
    # a steady trickle; the putter gives up after 5 s, so the failure is bounded.
    box = Mailbox()
    stop = threading.Event()
    give_up = time.monotonic() + 5

    def trickle() -> None:
        while not stop.wait(0.002) and time.monotonic() < give_up:
            box.put("noise")

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    start = time.monotonic()
    try:
        with pytest.raises(queue.Empty):
            box.receive(lambda m: m == "signal", 0.1)
        elapsed = time.monotonic() - start
    finally:
        stop.set()
        t.join(5)
    assert 0.1 <= elapsed < 2.0
    assert len(box) > 0 and box.receive(None, 0) == "noise"


def test_a_positive_timeout_ends_with_the_match_that_comes_during_the_wait() -> None:
    box = Mailbox()
    box.put("early, skipped")
    threading.Thread(target=lambda: (box.put("noise"), box.put("wanted")), daemon=True).start()
    assert box.receive(lambda m: m == "wanted", 5) == "wanted"
    assert [box.receive(None, 0), box.receive(None, 0)] == ["early, skipped", "noise"]


def test_no_timeout_waits_as_long_as_it_takes_and_marks_the_box_blocked() -> None:
    box = Mailbox()
    got: list[Any] = []
    receiver = threading.Thread(target=lambda: got.append(box.receive(None, None)), daemon=True)
    receiver.start()
    wait_until(lambda: box.blocked, timeout=5, what="the receiver to block")
    box.put("at last")
    receiver.join(5)
    assert got == ["at last"]
    assert not box.blocked


def test_a_wake_is_never_a_message_and_its_check_may_end_the_receive() -> None:
    box = Mailbox()
    checks: list[str] = []
    box.check = lambda: checks.append("checked")
    box.put_wake()
    box.put("real")
    assert box.receive(None, 0) == "real"
    assert checks == ["checked"]

    class Ended(Exception):
        pass

    def killed() -> None:
        raise Ended

    box.check = killed
    box.put("kept")
    box.put_wake()
    with pytest.raises(Ended):
        box.receive(lambda m: m == "never", 5)
    assert box.receive(None, 0) == "kept", "the receive the check ended took nothing"


def test_each_senders_messages_keep_their_order_through_selective_receives() -> None:
    box = Mailbox()
    senders, count = 4, 200
    go = threading.Event()

    def send(sender: int) -> None:
        go.wait(5)
        for seq in range(count):
            box.put((sender, seq))

    threads = [threading.Thread(target=send, args=(s,), daemon=True) for s in range(senders)]
    for t in threads:
        t.start()
    go.set()
    nxt = [0] * senders
    # Take the senders' messages in a rotating selective order: each receive skips
    # whatever the other senders put, and must still find this sender's next one.
    for i in range(senders * count):
        want = i % senders
        if nxt[want] == count:
            want = nxt.index(min(nxt))
        sender, seq = box.receive(lambda m, w=want: m[0] == w, 5)
        assert (sender, seq) == (want, nxt[want])
        nxt[want] += 1
    for t in threads:
        t.join(5)
    assert len(box) == 0


# -- LightMailbox (a lightweight process's) ------------------------------------------------


def light_box(node: actornet.Node) -> tuple[LightMailbox, Process]:
    """A mailbox on the running loop, owned by a process record that no node table holds."""
    box = LightMailbox(scheduler_of(asyncio.get_running_loop()))
    owner = Process(Pid(node.name, 10**9, node.creation), node, LIGHT, box)
    return box, owner


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


@settings(max_examples=150, deadline=None)
@given(ops)
def test_a_light_mailbox_takes_and_keeps_what_a_list_says(plan: list[Any]) -> None:
    node = actornet.Node("light@localhost")

    async def scenario() -> None:
        box, _ = light_box(node)
        model: list[Any] = []
        feed = Feed()
        for op in plan:
            feed.put(op, box, model)
            match op:
                case ("receive", spec):
                    expected = model_take(model, match_of(spec))
                    if expected is None:
                        with pytest.raises(actornet.Timeout):
                            await box.receive(match_of(spec), 0)
                    else:
                        assert await box.receive(match_of(spec), 0) == expected
                case ("offer", spec, close):
                    expected = model_take(model, match_of(spec))
                    taken = None
                    fits = match_of(spec)
                    offered = box.offer(0)
                    async for msg in offered:
                        if fits is None or fits(msg):
                            taken = msg
                            break
                    if close:
                        await offered.aclose()
                    # else abandoned mid-offer, as a `break` leaves it: its message is taken
                    assert taken == expected
            assert len(box) == len(model)
        assert [await box.receive(None, 0) for _ in range(len(model))] == model
        with pytest.raises(actornet.Timeout):
            await box.receive(None, 0)

    try:
        run(scenario())
    finally:
        node.stop()


def test_a_long_light_mailbox_compacts_and_keeps_its_order(node: actornet.Node) -> None:
    async def scenario() -> None:
        box, _ = light_box(node)
        for i in range(2000):
            box.put(i)
        taken = [await box.receive(None, 0) for _ in range(700)]  # past the compaction point
        odd = [await box.receive(lambda m: m % 2, 0) for _ in range(100)]
        for i in range(2000, 2100):
            box.put(i)
        rest = [await box.receive(None, 0) for _ in range(len(box))]
        assert taken == list(range(700))
        assert odd == list(range(701, 901, 2))
        assert rest == [i for i in range(700, 2100) if not (i % 2 and i < 901)]

    run(scenario())


def test_a_light_receive_with_timeout_zero_or_positive_times_out_never_early(
    node: actornet.Node,
) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        box, owner = light_box(node)
        box.put("skipped")
        with pytest.raises(actornet.Timeout):
            await box.receive(lambda m: m == "never", 0)
        start = loop.time()
        with pytest.raises(actornet.Timeout):
            await box.receive(lambda m: m == "never", 0.05)
        assert loop.time() - start >= 0.05
        assert not owner.waiting, "a receive that ended leaves its owner not waiting"
        assert await box.receive(None, 0) == "skipped"

    run(scenario())


def test_a_light_receive_is_woken_by_a_put_on_the_loop_and_from_a_thread(
    node: actornet.Node,
) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        box, _ = light_box(node)
        loop.call_soon(box.put, "noise")
        loop.call_soon(box.put, "on the loop")
        assert await box.receive(lambda m: m != "noise", None) == "on the loop"
        putter = threading.Thread(target=box.put, args=("from a thread",), daemon=True)
        loop.call_soon(putter.start)
        assert await box.receive(lambda m: m != "noise", 5) == "from a thread"
        putter.join(5)
        loop.call_soon(box.put, "for get")
        assert await box.get() == "noise"
        assert await box.get() == "for get"

    run(scenario())


def test_a_light_receive_of_a_killed_owner_ends_at_its_wake(node: actornet.Node) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        box, owner = light_box(node)
        box.put("kept")

        def kill() -> None:
            owner.alive = False
            owner.exit_reason = "killed"
            box.put_wake()

        loop.call_soon(kill)
        with pytest.raises(Killed):
            await box.receive(lambda m: m == "never", 5)
        assert len(box) == 1

    run(scenario())
