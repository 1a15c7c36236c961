"""Links, exit signals, trap_exit and monitors, with Erlang's semantics."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import actornet
from actornet import Crash, ProcessExit

from .helpers import wait_until


def down_of(ref: actornet.Ref, timeout: float = 5) -> tuple[Any, ...]:
    return actornet.receive(lambda m: m[0] == "DOWN" and m[1] == ref, timeout=timeout)


def exit_from(pid: actornet.Pid, timeout: float = 5) -> tuple[Any, ...]:
    return actornet.receive(lambda m: m[0] == "EXIT" and m[1] == pid, timeout=timeout)


def crash() -> None:
    raise RuntimeError("boom")


def wait_forever() -> None:
    actornet.receive(lambda m: False)


def test_crash_propagates_along_a_chain_of_links() -> None:
    me = actornet.self()

    def middle() -> None:
        actornet.spawn_link(lambda: (actornet.receive(), crash()))
        actornet.send(me, ("middle", actornet.self()))
        wait_forever()

    actornet.trap_exit(True)
    top = actornet.spawn_link(middle)
    mid = actornet.receive(lambda m: m[0] == "middle", timeout=5)[1]
    ref = actornet.monitor(mid)
    # find the leaf: the only process besides us, top and middle linked to middle
    leaf = next(p for p in actornet.processes() if p not in (me, top, mid))
    actornet.send(leaf, "go")
    reason = down_of(ref)[4]
    assert isinstance(reason, Crash) and reason.type == "RuntimeError"
    assert exit_from(top)[2] == reason


def test_normal_exit_does_not_kill_linked_processes() -> None:
    survivor = actornet.spawn(wait_forever)
    survivor_ref = actornet.monitor(survivor)

    def linked_then_return() -> None:
        actornet.link(survivor)

    _linker, ref = actornet.spawn_monitor(linked_then_return)
    # The linker's exit signals go out along its links before its DOWN reaches us,
    # so by now the survivor has had its "normal" signal.
    assert down_of(ref)[4] == "normal", "the linker linked and returned"
    assert actornet.is_alive(survivor)
    with pytest.raises(TimeoutError):
        down_of(survivor_ref, timeout=0)
    actornet.exit(survivor, "kill")


def test_trap_exit_turns_signals_into_messages() -> None:
    assert actornet.trap_exit(True) is False
    pid = actornet.spawn_link(crash)
    msg = exit_from(pid)
    assert msg[0] == "EXIT" and msg[2].type == "RuntimeError"
    normal = actornet.spawn_link(lambda: None)
    assert exit_from(normal)[2] == "normal"


def test_exit_with_reason_kills_a_non_trapping_process() -> None:
    pid, ref = actornet.spawn_monitor(wait_forever)
    actornet.exit(pid, "custom")
    assert down_of(ref)[4] == "custom"


def test_exit_normal_is_ignored_by_a_non_trapping_process() -> None:
    pid, ref = actornet.spawn_monitor(wait_forever)
    actornet.exit(pid, "normal")
    with pytest.raises(TimeoutError):
        down_of(ref, timeout=0.2)
    actornet.exit(pid, "kill")
    assert down_of(ref)[4] == "killed"


def test_kill_is_untrappable_and_links_see_killed() -> None:
    me = actornet.self()

    def trapper() -> None:
        actornet.trap_exit(True)
        actornet.send(me, "trapping")
        wait_forever()

    actornet.trap_exit(True)
    pid = actornet.spawn_link(trapper)
    assert actornet.receive(timeout=5) == "trapping"
    actornet.exit(pid, "kill")
    assert exit_from(pid)[2] == "killed"


def test_trapped_exit_signal_arrives_as_message_with_sender() -> None:
    me = actornet.self()

    def trapper() -> None:
        actornet.trap_exit(True)
        actornet.send(me, "ready")
        actornet.send(me, ("got", actornet.receive(timeout=5)))

    pid = actornet.spawn(trapper)
    assert actornet.receive(timeout=5) == "ready"
    actornet.exit(pid, "please")
    assert actornet.receive(timeout=5) == ("got", ("EXIT", me, "please"))


def test_kill_stops_a_busy_process_that_never_receives() -> None:
    spinning = threading.Event()

    def busy() -> None:
        spinning.set()
        n = 0
        while True:
            n += 1

    pid, ref = actornet.spawn_monitor(busy)
    assert spinning.wait(5)
    actornet.exit(pid, "kill")
    assert down_of(ref)[4] == "killed"
    assert not actornet.is_alive(pid)


def test_link_to_a_dead_pid_gives_noproc() -> None:
    dead, ref = actornet.spawn_monitor(lambda: None)
    down_of(ref)
    actornet.trap_exit(True)
    actornet.link(dead)
    assert exit_from(dead)[2] == "noproc"
    actornet.trap_exit(False)

    def links_dead() -> None:
        actornet.link(dead)
        wait_forever()

    _, ref2 = actornet.spawn_monitor(links_dead)
    assert down_of(ref2)[4] == "noproc", "a non-trapping process dies of noproc"


def test_link_to_dead_pid_in_plain_thread_raises_process_exit() -> None:
    dead, ref = actornet.spawn_monitor(lambda: None)
    down_of(ref)
    with pytest.raises(ProcessExit) as info:
        actornet.link(dead)
    assert info.value.reason == "noproc"


def test_unlink_stops_propagation() -> None:
    actornet.trap_exit(True)
    pid = actornet.spawn_link(lambda: (actornet.receive(), crash()))
    actornet.unlink(pid)
    ref = actornet.monitor(pid)
    actornet.send(pid, "go")
    down_of(ref)
    with pytest.raises(TimeoutError):
        exit_from(pid, timeout=0.2)


def test_monitor_fires_exactly_once_with_reason() -> None:
    pid = actornet.spawn(lambda: actornet.receive())
    ref = actornet.monitor(pid)
    ref2 = actornet.monitor(pid)
    actornet.send(pid, "go")
    assert down_of(ref) == ("DOWN", ref, "process", pid, "normal")
    assert down_of(ref2)[1] == ref2
    with pytest.raises(TimeoutError):
        actornet.receive(lambda m: m[0] == "DOWN", timeout=0.2)


def test_monitor_dead_pid_fires_at_once_with_noproc() -> None:
    dead, ref = actornet.spawn_monitor(lambda: None)
    down_of(ref)
    ref2 = actornet.monitor(dead)
    assert down_of(ref2, timeout=0) == ("DOWN", ref2, "process", dead, "noproc")


def test_monitor_unregistered_name_gives_noproc() -> None:
    ref = actornet.monitor("nobody")
    msg = down_of(ref, timeout=0)
    assert msg[3] == ("nobody", "test@localhost") and msg[4] == "noproc"


def test_demonitor_stops_delivery_and_flushes_nothing(node: actornet.Node) -> None:
    pid = actornet.spawn(lambda: actornet.receive())
    ref = actornet.monitor(pid)
    assert actornet.demonitor(ref) is True
    assert actornet.demonitor(ref) is False
    dref = actornet.monitor(pid)
    actornet.send(pid, "go")
    down_of(dref)  # the second monitor fires...
    with pytest.raises(TimeoutError):
        down_of(ref, timeout=0.2)  # ...the demonitored one never does

    # a DOWN already delivered stays in the mailbox after demonitor
    pid2, ref3 = actornet.spawn_monitor(lambda: None)
    wait_until(lambda: not actornet.is_alive(pid2))
    wait_until(lambda: len(node.current().mailbox) > 0)
    actornet.demonitor(ref3)
    assert down_of(ref3, timeout=0)[4] == "normal"


def test_spawn_monitor_reports_crash() -> None:
    pid, ref = actornet.spawn_monitor(crash)
    msg = down_of(ref)
    assert msg[3] == pid and msg[4].message == "boom"


def test_processes_linked_to_a_killed_supervisor_like_parent_die() -> None:
    me = actornet.self()

    def parent() -> None:
        for _ in range(3):
            actornet.spawn_link(wait_forever)
        actornet.send(me, ("kids", actornet.self()))
        wait_forever()

    p = actornet.spawn(parent)
    actornet.receive(lambda m: m[0] == "kids", timeout=5)
    kids = [x for x in actornet.processes() if x not in (me, p)]
    refs = [actornet.monitor(k) for k in kids]
    actornet.exit(p, "kill")
    assert {down_of(r)[4] for r in refs} == {"killed"}
