"""Registered names (actornet._registry), on a local node, through its public API.

Erlang's rules: `register/2` fails (badarg; here `AlreadyRegistered` or `NoProc`)
for a name that is taken, a pid that already has a name, or a dead pid; a name
is freed when its process exits; `unregister/1` of a free name fails. A
hypothesis model checks that any sequence of registers, unregisters and exits
keeps `registered()` and `whereis` equal to a dict.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import actornet
from actornet import AlreadyRegistered, NoProc, Pid


def parked(node: actornet.Node) -> Pid:
    """A process that waits until told to stop (any message)."""
    return node.spawn(node.receive)


def down(node: actornet.Node, ref: actornet.Ref) -> tuple[Any, ...]:
    return node.receive(lambda m: m[0] == "DOWN" and m[1] == ref, timeout=5)  # type: ignore[no-any-return]


def test_a_registered_name_is_seen_everywhere_the_node_shows_names(node: actornet.Node) -> None:
    pid = parked(node)
    assert node.register("worker", pid) is True
    assert node.whereis("worker") == pid
    assert node.registered() == ["worker"]
    assert node.process_info(pid)["registered_name"] == "worker"  # type: ignore[index]
    assert node.node_info()["registered"] == ["worker"]
    node.send(("worker", node.name), "by (name, node)")
    node.unregister("worker")
    assert node.whereis("worker") is None
    assert node.registered() == []
    assert node.process_info(pid)["registered_name"] is None  # type: ignore[index]
    assert node.register("renamed", pid) is True, "an unregistered process may take a new name"
    node.exit(pid, "kill")


def test_refused_registrations_change_nothing(node: actornet.Node) -> None:
    a, b = parked(node), parked(node)
    node.register("taken", a)
    with pytest.raises(AlreadyRegistered, match="'taken'"):
        node.register("taken", b)
    with pytest.raises(AlreadyRegistered, match="already registered as 'taken'"):
        node.register("second", a)
    with pytest.raises(TypeError, match="non-empty str"):
        node.register("", b)
    with pytest.raises(TypeError, match="needs a Pid"):
        node.register("not a pid", "taken")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a process of test@localhost"):
        node.register("remote", Pid("other@localhost", 1, 1))
    assert node.registered() == ["taken"]
    assert node.whereis("taken") == a
    assert node.process_info(b)["registered_name"] is None  # type: ignore[index]
    node.exit(a, "kill")
    node.exit(b, "kill")


@pytest.mark.parametrize("how", ["returns", "crashes", "is killed"])
def test_a_name_is_freed_when_its_process_exits(node: actornet.Node, how: str) -> None:
    def body() -> None:
        if node.receive(timeout=5) == "crash":
            raise RuntimeError("crashed on purpose")

    pid, ref = node.spawn_monitor(body)
    node.register("mortal", pid)
    match how:
        case "returns":
            node.send("mortal", "return")
        case "crashes":
            node.send("mortal", "crash")
        case "is killed":
            node.exit(pid, "kill")
    down(node, ref)
    assert node.whereis("mortal") is None
    assert "mortal" not in node.registered()
    with pytest.raises(NoProc, match="'mortal'"):
        node.send("mortal", "anyone there?")
    with pytest.raises(NoProc, match="'mortal'"):
        node.unregister("mortal")
    with pytest.raises(NoProc):
        node.register("ghost", pid)
    heir = parked(node)
    assert node.register("mortal", heir) is True, "a freed name can be taken again"
    node.exit(heir, "kill")


def test_a_send_to_a_name_on_another_node_needs_distribution(node: actornet.Node) -> None:
    with pytest.raises(actornet.NodeDown, match="not distributed"):
        node.send(("worker", "elsewhere@localhost"), "hello")
    with pytest.raises(NoProc, match="'nobody'"):
        node.send(("nobody", node.name), "hello")


def test_only_one_of_many_racing_registrations_wins(node: actornet.Node) -> None:
    pids = [parked(node) for _ in range(8)]
    start = threading.Barrier(len(pids))
    results: dict[Pid, object] = {}

    def claim(pid: Pid) -> None:
        start.wait(5)
        try:
            results[pid] = node.register("contested", pid)
        except AlreadyRegistered as e:
            results[pid] = e

    threads = [threading.Thread(target=claim, args=(p,), daemon=True) for p in pids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    winners = [p for p, r in results.items() if r is True]
    assert len(results) == len(pids) and len(winners) == 1
    assert node.whereis("contested") == winners[0]
    for p in pids:
        node.exit(p, "kill")


def test_a_registration_racing_the_process_exit_never_leaves_a_stale_name(
    node: actornet.Node,
) -> None:
    # The process ends on its own while the test registers it: whichever wins, once
    # its DOWN has arrived the name must be gone (or never have been given).
    for i in range(40):
        pid, ref = node.spawn_monitor(lambda: None)
        name = f"racer{i}"
        with contextlib.suppress(NoProc):
            node.register(name, pid)
        down(node, ref)
        assert node.whereis(name) is None, f"round {i}: a dead process kept its name"
    assert node.registered() == []


# -- the model -----------------------------------------------------------------------------

NAMES = ["a", "b", "c"]
PROCS = 4
registry_ops = st.lists(
    st.one_of(
        st.tuples(st.just("register"), st.sampled_from(NAMES), st.integers(0, PROCS - 1)),
        st.tuples(st.just("unregister"), st.sampled_from(NAMES)),
        st.tuples(st.just("kill"), st.integers(0, PROCS - 1)),
        st.tuples(st.just("return"), st.integers(0, PROCS - 1)),
    ),
    max_size=25,
)


def outcome(fn: Any, *args: Any) -> object:
    """What `fn(*args)` returned, or the type of the actornet error it raised (the
    model compares values: a failed `pytest.raises` would stop hypothesis's search)."""
    try:
        return fn(*args)
    except (AlreadyRegistered, NoProc) as e:
        return type(e)


@settings(max_examples=100, deadline=None, report_multiple_bugs=False)
@given(registry_ops)
def test_any_sequence_keeps_the_names_equal_to_a_dict(plan: list[Any]) -> None:
    node = actornet.Node("model@localhost")
    try:
        procs = [node.spawn_monitor(node.receive) for _ in range(PROCS)]
        alive = [True] * PROCS
        names: dict[str, int] = {}  # the model: name -> index of its process

        def end(i: int) -> None:
            alive[i] = False
            for name in [n for n, j in names.items() if j == i]:
                del names[name]

        for op in plan:
            match op:
                case ("register", name, i):
                    if not alive[i]:
                        expected: object = NoProc
                    elif name in names or i in names.values():
                        expected = AlreadyRegistered
                    else:
                        expected, names[name] = True, i
                    assert outcome(node.register, name, procs[i][0]) == expected
                case ("unregister", name):
                    expected = None if names.pop(name, None) is not None else NoProc
                    assert outcome(node.unregister, name) == expected
                case ("kill", i):
                    node.exit(procs[i][0], "kill")
                    if alive[i]:
                        assert down(node, procs[i][1])[4] == "killed"
                    end(i)
                case ("return", i):
                    node.send(procs[i][0], "return now")
                    if alive[i]:
                        assert down(node, procs[i][1])[4] == "normal"
                    end(i)
            assert node.registered() == sorted(names)
            for name in NAMES:
                expected = procs[names[name]][0] if name in names else None
                assert node.whereis(name) == expected
    finally:
        node.stop()
