"""Processes, mailboxes, selective receive, names: the core primitives on one node."""

from __future__ import annotations

import math
import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import actornet
from actornet import NoProc, Pid, Timeout

from .helpers import wait_until


def test_spawn_runs_function_and_self_is_its_pid() -> None:
    me = actornet.self()
    pid = actornet.spawn(lambda: actornet.send(me, ("me", actornet.self())))
    assert actornet.receive(timeout=5) == ("me", pid)


def test_self_is_stable_in_a_plain_thread_and_distinct_per_thread() -> None:
    main = actornet.self()
    assert actornet.self() == main
    seen: list[Pid] = []
    t = threading.Thread(target=lambda: seen.append(actornet.self()))
    t.start()
    t.join(5)
    assert seen and seen[0] != main


def test_an_adopted_thread_can_receive_from_processes() -> None:
    got: list[object] = []

    def thread_main() -> None:
        me = actornet.self()
        actornet.spawn(actornet.send, me, "from a process")
        got.append(actornet.receive(timeout=5))

    t = threading.Thread(target=thread_main)
    t.start()
    t.join(10)
    assert got == ["from a process"]


def test_selective_receive_keeps_unmatched_messages_in_order() -> None:
    me = actornet.self()
    for m in [("a", 1), ("b", 2), ("a", 3), ("c", 4)]:
        actornet.send(me, m)
    assert actornet.receive(lambda m: m[0] == "c", timeout=1) == ("c", 4)
    assert actornet.receive(lambda m: m[0] == "b", timeout=1) == ("b", 2)
    assert [actornet.receive(timeout=1) for _ in range(2)] == [("a", 1), ("a", 3)]


def test_selective_receive_waits_for_a_later_match() -> None:
    me = actornet.self()
    actornet.spawn(lambda: [actornet.send(me, i) for i in range(5)])
    assert actornet.receive(lambda m: m == 4, timeout=5) == 4
    assert [actornet.receive(timeout=1) for _ in range(4)] == [0, 1, 2, 3]


def test_receive_timeout_raises_timeout_error() -> None:
    with pytest.raises(TimeoutError):
        actornet.receive(timeout=0.05)
    with pytest.raises(Timeout):
        actornet.receive(lambda m: False, timeout=0)


def test_receive_timeout_zero_returns_a_queued_message() -> None:
    actornet.send(actornet.self(), "there")
    assert actornet.receive(timeout=0) == "there"


def test_receive_rejects_bad_timeouts() -> None:
    with pytest.raises(ValueError, match="timeout"):
        actornet.receive(timeout=-1)
    with pytest.raises(TypeError, match="timeout"):
        actornet.receive(timeout="soon")  # type: ignore[arg-type]


@pytest.mark.parametrize("forever", [math.inf, 1e300, threading.TIMEOUT_MAX],
                         ids=["inf", "1e300", "TIMEOUT_MAX"])
def test_receive_with_an_unbounded_timeout_waits_like_none(forever: float) -> None:
    me = actornet.self()

    def send_once_waiting() -> None:
        # Only once the receiver is blocked, so the wait itself takes the timeout (and
        # whatever happens, so that a failed wait cannot leave the test blocked).
        try:
            wait_until(lambda: actornet.process_info(me)["status"] == "waiting", timeout=5)
        finally:
            actornet.send(me, "late")

    actornet.send(me, "early")
    assert actornet.receive(timeout=forever) == "early"  # already queued
    actornet.spawn(send_once_waiting)
    assert actornet.receive(timeout=forever) == "late"


def test_receive_rejects_nan_and_non_callable_match_before_taking_anything() -> None:
    me = actornet.self()
    actornet.send(me, "kept")
    with pytest.raises(ValueError, match=r"receive\(\): timeout .* nan"):
        actornet.receive(timeout=math.nan)
    with pytest.raises(TypeError, match=r"receive\(\): timeout"):
        actornet.receive(timeout=True)  # a bool is not a number of seconds
    with pytest.raises(TypeError, match="match must be a callable"):
        actornet.receive(42, timeout=1)  # type: ignore[arg-type]
    assert actornet.receive(timeout=0) == "kept"


def test_trap_exit_needs_a_bool() -> None:
    with pytest.raises(TypeError, match="trap_exit"):
        actornet.trap_exit("no")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        actornet.trap_exit(1)  # type: ignore[arg-type]
    assert actornet.trap_exit(True) is False, "the refused calls changed nothing"
    assert actornet.trap_exit(False) is True


def test_rpc_and_node_stop_check_their_timeouts(node: actornet.Node) -> None:
    with pytest.raises(ValueError, match=r"rpc.call\(\): timeout"):
        actornet.rpc.call(node.name, os.getpid, timeout=math.nan)
    assert actornet.rpc.call(node.name, os.getpid, timeout=math.inf) == os.getpid()
    with pytest.raises(ValueError, match=r"Node.stop\(\): timeout"):
        node.stop(timeout=math.nan)
    assert node.running, "a refused stop stops nothing"
    other = actornet.Node("other@localhost")
    other.stop(timeout=math.inf)
    assert not other.running


def test_a_raising_match_function_loses_no_message() -> None:
    me = actornet.self()
    actornet.send(me, "x")

    def bad(m: object) -> bool:
        raise RuntimeError("bad pattern")

    with pytest.raises(RuntimeError):
        actornet.receive(bad, timeout=1)
    assert actornet.receive(timeout=1) == "x"


def test_send_to_a_dead_pid_is_silently_dropped() -> None:
    pid, ref = actornet.spawn_monitor(lambda: None)
    actornet.receive(lambda m: m[1] == ref, timeout=5)
    actornet.send(pid, "into the void")  # no error, as in Erlang


def test_send_to_non_destination_raises_type_error() -> None:
    with pytest.raises(TypeError, match="destination"):
        actornet.send(42, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="destination"):
        actornet.send(("a", "b", "c"), "x")  # type: ignore[arg-type]


def test_unsendable_value_raises_type_error_naming_the_type() -> None:
    class Thing:
        pass

    with pytest.raises(TypeError, match="'Thing' at msg\\[1\\]"):
        actornet.send(actornet.self(), ("x", Thing()))
    with pytest.raises(TypeError, match="'function'"):
        actornet.send(actornet.self(), {"f": lambda: 1})


def test_register_whereis_unregister_registered() -> None:
    pid = actornet.spawn(actornet.receive)
    actornet.register("worker", pid)
    assert actornet.whereis("worker") == pid
    assert "worker" in actornet.registered()
    actornet.send("worker", "go")  # by name
    wait_until(lambda: not actornet.is_alive(pid), what="worker to finish")
    assert actornet.whereis("worker") is None, "a dead process loses its name"


def test_register_errors() -> None:
    a = actornet.spawn(actornet.receive)
    b = actornet.spawn(actornet.receive)
    actornet.register("taken", a)
    with pytest.raises(actornet.AlreadyRegistered, match="taken"):
        actornet.register("taken", b)
    with pytest.raises(actornet.AlreadyRegistered, match="already registered as"):
        actornet.register("other", a)
    dead, ref = actornet.spawn_monitor(lambda: None)
    actornet.receive(lambda m: m[1] == ref, timeout=5)
    with pytest.raises(NoProc):
        actornet.register("ghost", dead)
    with pytest.raises(TypeError):
        actornet.register(42, a)  # type: ignore[arg-type]
    with pytest.raises(NoProc, match="nobody"):
        actornet.unregister("nobody")
    actornet.send(a, "x")
    actornet.send(b, "x")


def test_send_to_unregistered_name_names_it() -> None:
    with pytest.raises(NoProc, match="'nobody'"):
        actornet.send("nobody", "hello")
    with pytest.raises(KeyError):  # NoProc is KeyError-compatible
        actornet.send("nobody", "hello")


def test_crash_reason_carries_type_and_message_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def crash() -> None:
        raise ValueError("bad input 42")

    with caplog.at_level("ERROR", logger="actornet"):
        pid, ref = actornet.spawn_monitor(crash)
        down = actornet.receive(lambda m: m[1] == ref, timeout=5)
    reason = down[4]
    assert isinstance(reason, actornet.Crash)
    assert (reason.type, reason.message) == ("ValueError", "bad input 42")
    assert "ValueError: bad input 42" in reason.traceback
    assert any(repr(pid) in r.getMessage() for r in caplog.records), "crash log names the pid"


def test_process_exit_exception_sets_the_reason() -> None:
    def leave() -> None:
        raise actornet.ProcessExit(("shutdown", "bye"))

    _, ref = actornet.spawn_monitor(leave)
    assert actornet.receive(lambda m: m[1] == ref, timeout=5)[4] == ("shutdown", "bye")


def test_is_alive() -> None:
    pid = actornet.spawn(actornet.receive)
    assert actornet.is_alive(pid)
    actornet.exit(pid, "kill")
    wait_until(lambda: not actornet.is_alive(pid), what="killed process to be dead")


def test_processes_lists_live_ones() -> None:
    pid = actornet.spawn(actornet.receive)
    assert pid in actornet.processes()
    actornet.send(pid, "stop")


def test_pids_are_hashable_values() -> None:
    pid = actornet.spawn(actornet.receive)
    assert {pid: 1}[Pid(pid.node, pid.id, pid.creation)] == 1
    assert repr(pid).startswith("<test@localhost.")
    actornet.send(pid, "stop")


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=30), min_size=1, max_size=6))
def test_per_sender_fifo_with_many_senders(plan: list[list[int]]) -> None:
    """Messages from one process to another arrive in the order sent, whatever the interleaving."""
    me = actornet.self()
    go = threading.Event()

    def sender(index: int, pauses: list[int]) -> None:
        go.wait(5)
        for seq, pause in enumerate(pauses):
            if pause == 0:
                threading.Event().wait(0)  # yield the GIL at random points
            actornet.send(me, ("seq", index, seq))

    for i, pauses in enumerate(plan):
        actornet.spawn(sender, i, pauses)
    go.set()
    total = sum(len(p) for p in plan)
    last = {i: -1 for i in range(len(plan))}
    for _ in range(total):
        _, index, seq = actornet.receive(lambda m: m[0] == "seq", timeout=10)
        assert seq == last[index] + 1, f"sender {index}: got {seq} after {last[index]}"
        last[index] = seq
    assert all(last[i] == len(p) - 1 for i, p in enumerate(plan))


def test_send_after_and_cancel_timer() -> None:
    me = actornet.self()
    actornet.send_after(0.05, me, "later")
    cancelled = actornet.send_after(0.05, me, "never")
    assert 0 < actornet.cancel_timer(cancelled) <= 0.05
    assert actornet.cancel_timer(cancelled) is False
    assert actornet.receive(timeout=5) == "later"
    with pytest.raises(TimeoutError):
        actornet.receive(timeout=0.2)
    with pytest.raises(ValueError):
        actornet.send_after(-1, me, "x")
    with pytest.raises(TypeError):
        actornet.send_after(1, me, object())


def test_send_after_refuses_a_delay_that_is_not_finite() -> None:
    for bad in (math.inf, math.nan, 1e300, -1):
        with pytest.raises(ValueError, match="send_after"):
            actornet.send_after(bad, actornet.self(), "never")
    # the timer thread is still serving timers
    actornet.send_after(0.01, actornet.self(), "tick")
    assert actornet.receive(timeout=5) == "tick"


def test_timers_fire_in_time_order() -> None:
    me = actornet.self()
    for delay in (0.06, 0.02, 0.04):
        actornet.send_after(delay, me, delay)
    assert [actornet.receive(timeout=5) for _ in range(3)] == [0.02, 0.04, 0.06]


def test_a_thread_keeps_its_process_when_it_uses_or_stops_another_node() -> None:
    me = actornet.self()
    actornet.send(me, "kept")
    other = actornet.Node("other@localhost")
    assert other.current().pid != me  # the same thread, a process on each node
    other.stop()
    assert actornet.self() == me
    assert actornet.receive(timeout=1) == "kept"
