"""The call slot (actornet._callslot): where one pending request's answer lands.

`ThreadSlot` and `TaskSlot` are driven directly, without a node: a thread or a
task waits, another thread or the loop sets. That the *first* answer wins and
later ones are dropped is the alias table's side of the contract (a slot is set
exactly once, by whoever popped it), so that part goes through a node's public
API: a server that answers twice, and a reply for a call nobody waits for.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import actornet
from actornet._callslot import DOWN, REPLY, TaskSlot, ThreadSlot
from actornet._scheduler import TIMEOUT, scheduler_of

# -- ThreadSlot ----------------------------------------------------------------------------


def test_a_thread_slot_set_before_the_wait_is_answered_at_once() -> None:
    slot = ThreadSlot()
    slot.set(REPLY, ("ok", 1))
    assert slot.wait(0) is True
    assert (slot.kind, slot.value) == (REPLY, ("ok", 1))


def test_a_thread_slot_nobody_sets_times_out_never_early() -> None:
    slot = ThreadSlot()
    assert slot.wait(0) is False
    start = time.monotonic()
    assert slot.wait(0.05) is False
    assert time.monotonic() - start >= 0.05
    assert slot.kind == "" and slot.value is None


def test_a_thread_slot_wakes_a_waiter_blocked_without_a_timeout() -> None:
    slot = ThreadSlot()
    woke: list[tuple[bool, str, Any]] = []
    waiting = threading.Event()

    def waiter() -> None:
        waiting.set()
        ok = slot.wait(None)
        woke.append((ok, slot.kind, slot.value))

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    assert waiting.wait(5)
    slot.set(DOWN, "noproc")
    t.join(5)
    assert not t.is_alive(), "set() did not wake the waiting thread"
    assert woke == [(True, DOWN, "noproc")]


def test_a_thread_slot_answers_one_wait_only() -> None:
    # The wait is the lock's acquire: a second wait on an answered slot (a caller
    # that waits again after a timeout raced the answer) must not see it twice.
    slot = ThreadSlot()
    slot.set(REPLY, 1)
    assert slot.wait(1) is True
    assert slot.wait(0) is False


def test_a_thread_slot_set_from_another_thread_during_a_timed_wait() -> None:
    slot = ThreadSlot()
    threading.Thread(target=slot.set, args=(REPLY, "late but in time"), daemon=True).start()
    assert slot.wait(5) is True
    assert slot.value == "late but in time"


# -- TaskSlot ------------------------------------------------------------------------------


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_a_task_slot_set_before_the_wait_is_answered_without_a_future() -> None:
    async def scenario() -> tuple[bool, Any, Any]:
        slot = TaskSlot(scheduler_of(asyncio.get_running_loop()))
        slot.set(REPLY, 42)
        return await slot.wait(0), slot.arm(1.0), slot.value

    assert run(scenario()) == (True, None, 42)


def test_a_task_slot_set_on_the_loop_wakes_the_awaiting_task() -> None:
    async def scenario() -> tuple[bool, str, Any]:
        slot = TaskSlot(scheduler_of(asyncio.get_running_loop()))
        asyncio.get_running_loop().call_soon(slot.set, DOWN, "killed")
        return await slot.wait(None), slot.kind, slot.value

    assert run(scenario()) == (True, DOWN, "killed")


def test_a_task_slot_set_from_another_thread_wakes_the_awaiting_task() -> None:
    async def scenario() -> tuple[bool, Any]:
        slot = TaskSlot(scheduler_of(asyncio.get_running_loop()))
        setter = threading.Thread(target=slot.set, args=(REPLY, "from a thread"), daemon=True)
        asyncio.get_running_loop().call_soon(setter.start)
        ok = await slot.wait(5)
        setter.join(5)
        return ok, slot.value

    assert run(scenario()) == (True, "from a thread")


def test_a_task_slot_nobody_sets_times_out_never_early() -> None:
    async def scenario() -> tuple[bool, float, str]:
        loop = asyncio.get_running_loop()
        slot = TaskSlot(scheduler_of(loop))
        start = loop.time()
        ok = await slot.wait(0.05)
        return ok, loop.time() - start, slot.kind

    ok, elapsed, kind = run(scenario())
    assert ok is False and kind == ""
    assert elapsed >= 0.05


def test_a_task_slot_armed_resolves_its_future_with_the_answer_or_timeout() -> None:
    async def scenario() -> tuple[Any, Any, Any]:
        loop = asyncio.get_running_loop()
        sched = scheduler_of(loop)
        answered = TaskSlot(sched)
        armed = answered.arm(5)
        assert armed is not None
        fut, key = armed
        loop.call_soon(answered.set, REPLY, "x")
        woke = await fut
        answered.disarm(fut, key)

        silent = TaskSlot(sched)
        armed = silent.arm(0.01)
        assert armed is not None
        timed_out = await armed[0]
        silent.disarm(*armed)

        unbounded = TaskSlot(sched).arm(None)
        assert unbounded is not None
        return woke, timed_out, unbounded[1]

    woke, timed_out, key = run(scenario())
    assert woke is not TIMEOUT
    assert timed_out is TIMEOUT
    assert key is None, "a wait without a timeout files no deadline"


# -- first answer wins, later ones are dropped (the alias table) --------------------------


class TwiceReplier(actornet.GenServer):
    """Answers every call twice, then a third time by its return value."""

    def handle_call(self, request: Any, from_: Any) -> Any:
        self.gen_node.reply(from_, ("first", request))
        self.gen_node.reply(from_, ("second", request))
        return ("third", request)


def test_the_first_answer_to_a_call_wins_and_later_ones_reach_no_mailbox(
    node: actornet.Node,
) -> None:
    server = TwiceReplier.start()
    try:
        assert actornet.call(server, "q", timeout=5) == ("first", "q")
        # A second call is a round trip through the same server: the late answers
        # of the first were handed over before it, so they would be here by now.
        assert actornet.call(server, "r", timeout=5) == ("first", "r")
        with pytest.raises(TimeoutError):
            actornet.receive(timeout=0)
    finally:
        actornet.GenServer.stop(server)


def test_a_reply_to_a_request_nobody_waits_for_is_dropped(node: actornet.Node) -> None:
    me = node.current().pid
    node.reply((me, node.make_ref()), "orphan")
    with pytest.raises(TimeoutError):
        node.receive(timeout=0)
