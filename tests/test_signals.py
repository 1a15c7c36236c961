"""Links, exit signals and monitors (actornet._signals), on a local node, public API only.

What tests/test_links_monitors.py already shows (crash chains, trap_exit, `kill`
from `exit/2`, noproc, unlink) is not repeated; here are the rest of Erlang's
rules: `exit(self(), normal)`, a process that ends with reason `kill`, links as
a set, the bookkeeping both sides keep, demonitor's results, pids of another
incarnation, and node monitors on a node with no distribution.
"""

from __future__ import annotations

from typing import Any

import pytest

import actornet
from actornet import NodeDown, Pid, ProcessExit, Ref

from .helpers import nothing_left


def down(node: actornet.Node, ref: Ref, timeout: float = 5) -> tuple[Any, ...]:
    return node.receive(lambda m: m[0] == "DOWN" and m[1] == ref, timeout=timeout)  # type: ignore[no-any-return]


def exit_from(node: actornet.Node, pid: Pid, timeout: float = 5) -> tuple[Any, ...]:
    return node.receive(lambda m: m[0] == "EXIT" and m[1] == pid, timeout=timeout)  # type: ignore[no-any-return]


def info(node: actornet.Node, pid: Pid) -> dict[str, Any]:
    found = node.process_info(pid)
    assert found is not None, f"{pid!r} is not alive"
    return found


# -- exit signals --------------------------------------------------------------------------


def test_exit_self_normal_ends_a_process_that_does_not_trap(node: actornet.Node) -> None:
    me = node.current().pid

    def leave() -> None:
        node.exit(node.current().pid, "normal")
        node.send(me, "survived")

    _, ref = node.spawn_monitor(leave)
    assert down(node, ref)[4] == "normal"
    assert nothing_left(node), "it ran on after exit(self(), normal)"


def test_exit_self_normal_is_a_message_to_a_process_that_traps(node: actornet.Node) -> None:
    me = node.current().pid

    def trapper() -> None:
        node.trap_exit(True)
        node.exit(node.current().pid, "normal")
        node.send(me, ("got", node.receive(timeout=5)))

    pid = node.spawn(trapper)
    assert node.receive(timeout=5) == ("got", ("EXIT", pid, "normal"))


def test_exit_normal_from_another_is_a_message_to_a_trapping_process(node: actornet.Node) -> None:
    me = node.current().pid
    node.trap_exit(True)
    node.exit(me, "normal")
    assert node.receive(timeout=5) == ("EXIT", me, "normal")
    assert node.trap_exit(False) is True


def test_a_process_that_ends_with_reason_kill_sends_a_trappable_kill(node: actornet.Node) -> None:
    # Only exit(Pid, kill) is untrappable; a linked process that *ended* with reason
    # kill sends `kill` as any other reason: trapped as a message, or taken as is.
    me = node.current().pid
    node.trap_exit(True)
    bystander, bystander_ref = node.spawn_monitor(node.receive)

    def killer() -> None:
        node.link(bystander)
        node.send(me, "linked")
        node.receive(timeout=5)
        raise ProcessExit("kill")

    killer_pid = node.spawn_link(killer)
    assert node.receive(lambda m: m == "linked", timeout=5) == "linked"
    node.send(killer_pid, "go")
    assert exit_from(node, killer_pid)[2] == "kill"
    assert down(node, bystander_ref)[4] == "kill", "not 'killed': the signal was not exit/2's"


def test_exit_to_a_dead_pid_is_a_no_op(node: actornet.Node) -> None:
    pid, ref = node.spawn_monitor(lambda: None)
    down(node, ref)
    node.exit(pid, "anything")
    node.exit(pid, "kill")
    assert node.current().alive


def test_bad_arguments_are_refused_before_any_signal(node: actornet.Node) -> None:
    pid = node.spawn(node.receive)
    with pytest.raises(TypeError, match="exit needs a Pid"):
        node.exit("worker", "stop")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        node.exit(pid, object())
    with pytest.raises(TypeError, match="link needs a Pid"):
        node.link("worker")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="demonitor needs a Ref"):
        node.demonitor("ref")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="is not a process"):
        node.monitor(42)
    assert pid in node.processes()
    assert info(node, pid)["links"] == [] and info(node, pid)["monitored_by"] == []
    node.exit(pid, "kill")


# -- links: a set, kept on both sides ------------------------------------------------------


def test_links_are_a_set_and_self_links_are_nothing(node: actornet.Node) -> None:
    me = node.current().pid
    node.trap_exit(True)
    pid = node.spawn(node.receive)
    node.link(pid)
    node.link(pid)
    node.link(me)
    assert info(node, me)["links"] == [pid]
    assert info(node, pid)["links"] == [me]
    node.send(pid, "return")
    assert exit_from(node, pid)[2] == "normal"
    with pytest.raises(TimeoutError):
        exit_from(node, pid, timeout=0)  # one link, one signal


def test_a_trapped_exit_signal_ends_the_link_on_both_sides(node: actornet.Node) -> None:
    me = node.current().pid
    node.trap_exit(True)
    pid = node.spawn_link(node.receive)
    other = node.spawn_link(node.receive)
    node.exit(pid, "kill")
    assert exit_from(node, pid)[2] == "killed"
    assert info(node, me)["links"] == [other], "the dead link is gone, the live one stays"
    node.unlink(other)
    node.unlink(other)  # unlinking twice, or a pid never linked, is fine
    node.unlink(pid)
    assert info(node, me)["links"] == [] and info(node, other)["links"] == []
    node.exit(other, "kill")
    with pytest.raises(TimeoutError):
        exit_from(node, other, timeout=0.05)


# -- monitors ------------------------------------------------------------------------------


def test_each_monitor_fires_once_with_its_own_ref(node: actornet.Node) -> None:
    pid = node.spawn(node.receive)
    node.register("watched", pid)
    refs = [node.monitor(pid), node.monitor(pid), node.monitor("watched"),
            node.monitor(("watched", node.name))]
    assert len(set(refs)) == 4
    assert sorted(info(node, pid)["monitored_by"]) == [node.current().pid]
    node.send(pid, "return")
    # By name as by pid, the DOWN carries the pid (docs/porting-guide.md: Erlang
    # gives {Name, Node} there).
    assert [down(node, r)[3:] for r in refs] == [(pid, "normal")] * 4
    assert nothing_left(node)


def test_a_monitor_of_a_free_name_names_it_in_its_noproc(node: actornet.Node) -> None:
    ref = node.monitor(("nobody", node.name))
    assert down(node, ref, timeout=0)[3:] == (("nobody", node.name), "noproc")
    assert node.demonitor(ref) is False, "a fired monitor is no longer active"


def test_demonitor_says_whether_the_monitor_was_active(node: actornet.Node) -> None:
    me = node.current().pid
    pid = node.spawn(node.receive)
    ref = node.monitor(pid)
    assert info(node, me)["monitors"] == [pid]
    assert node.demonitor(ref) is True
    assert info(node, me)["monitors"] == []
    assert info(node, pid)["monitored_by"] == [], "the target forgot the watcher too"
    assert node.demonitor(ref) is False
    assert node.demonitor(node.make_ref()) is False, "a ref that never was a monitor"
    fired = node.monitor(pid)
    node.send(pid, "return")
    down(node, fired)
    assert node.demonitor(fired) is False


def test_a_watcher_that_dies_is_forgotten_by_what_it_watched(node: actornet.Node) -> None:
    me = node.current().pid
    target = node.spawn(node.receive)

    def watcher() -> None:
        node.monitor(target)
        node.send(me, "watching")
        node.receive(timeout=5)

    pid, ref = node.spawn_monitor(watcher)
    assert node.receive(lambda m: m == "watching", timeout=5) == "watching"
    assert info(node, target)["monitored_by"] == [pid]
    node.send(pid, "done")
    down(node, ref)
    assert info(node, target)["monitored_by"] == []
    node.exit(target, "kill")


# -- pids of another incarnation of this node ----------------------------------------------


def stale(node: actornet.Node) -> Pid:
    """A pid of this node's name from an earlier incarnation (another creation)."""
    pid, ref = node.spawn_monitor(lambda: None)
    down(node, ref)
    return Pid(node.name, pid.id, node.creation + 1)


def test_a_pid_of_an_earlier_incarnation_is_a_dead_process(node: actornet.Node) -> None:
    # As on the BEAM: such a pid names no process, here or anywhere; it is not a remote
    # one (this node is not distributed, and a distributed one must not dial itself).
    old = stale(node)
    me = node.current().pid
    ref = node.monitor(old)
    assert down(node, ref, timeout=0)[3:] == (old, "noproc")
    node.trap_exit(True)
    node.link(old)
    assert exit_from(node, old, timeout=0)[2] == "noproc"
    node.exit(old, "stop")
    node.send(old, "dropped")
    assert info(node, me)["links"] == [] and info(node, me)["monitors"] == []
    assert nothing_left(node)


def test_a_remote_pid_on_a_node_without_distribution_is_refused_leaving_nothing(
    node: actornet.Node,
) -> None:
    me = node.current().pid
    remote = Pid("elsewhere@localhost", 1, 1)
    with pytest.raises(NodeDown, match="not distributed"):
        node.link(remote)
    with pytest.raises(NodeDown, match="not distributed"):
        node.monitor(remote)
    with pytest.raises(NodeDown, match="not distributed"):
        node.monitor(("worker", "elsewhere@localhost"))
    assert info(node, me)["links"] == [], "a refused link was kept"
    assert info(node, me)["monitors"] == [], "a refused monitor was kept"


# -- node monitors without distribution ----------------------------------------------------


def test_monitor_node_of_an_unreachable_node_says_nodedown_once_per_call(
    node: actornet.Node,
) -> None:
    node.monitor_node("b@localhost")
    node.monitor_node("b@localhost")
    node.monitor_node("c@localhost:4370")  # an address: the node is named without its port
    got = [node.receive(timeout=0) for _ in range(3)]
    assert got == [("nodedown", "b@localhost")] * 2 + [("nodedown", "c@localhost")]
    node.monitor_node("b@localhost", False)  # nothing to turn off: no message either
    node.monitor_node(node.name)  # this node is up: nothing to say
    assert nothing_left(node)


def test_monitor_nodes_on_a_node_without_distribution_stays_silent(node: actornet.Node) -> None:
    node.monitor_nodes(True)
    node.monitor_node("b@localhost")
    assert node.receive(timeout=0) == ("nodedown", "b@localhost"), "monitor_node's own"
    node.monitor_nodes(False)
    assert nothing_left(node)
