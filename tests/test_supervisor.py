"""Supervisor: strategies, restart types, intensity, child management, shutdown order."""

from __future__ import annotations

from typing import Any

import pytest

import actornet
from actornet import ChildSpec, GenServer, Supervisor, child_spec

from .helpers import wait_until


class Worker(GenServer):
    def init(self, tag: str, log_to: actornet.Pid | None = None) -> None:
        self.tag = tag
        self.log_to = log_to
        actornet.trap_exit(True)
        if log_to is not None:
            actornet.send(log_to, ("started", tag, actornet.self()))

    def handle_call(self, request: Any, from_: Any) -> Any:
        if request == "crash":
            raise RuntimeError(f"{self.tag} crashed")
        return self.tag

    def terminate(self, reason: Any) -> None:
        if self.log_to is not None:
            actornet.send(self.log_to, ("stopped", self.tag, reason))


def children_pids(sup: actornet.Pid) -> dict[Any, actornet.Pid | None]:
    return {cid: pid for cid, pid, _ in Supervisor.which_children(sup)}


def started(tag: str) -> actornet.Pid:
    return actornet.receive(lambda m: m[0] == "started" and m[1] == tag, timeout=5)[2]


def test_one_for_one_restarts_only_the_failed_child() -> None:
    sup = Supervisor.start_link(
        [child_spec("a", Worker, "a", name="wa"), child_spec("b", Worker, "b", name="wb")]
    )
    before = children_pids(sup)
    with pytest.raises(actornet.CallError):
        actornet.call("wa", "crash")
    wait_until(lambda: children_pids(sup)["a"] not in (None, before["a"]), what="restart of a")
    after = children_pids(sup)
    assert after["b"] == before["b"]
    assert actornet.call("wa", "who") == "a", "the restarted child got its name back"


def test_one_for_all_restarts_every_child() -> None:
    me = actornet.self()
    sup = Supervisor.start_link(
        [child_spec("a", Worker, "a", me), child_spec("b", Worker, "b", me)],
        strategy="one_for_all",
    )
    a, b = started("a"), started("b")
    with pytest.raises(actornet.CallError):
        actornet.call(a, "crash")
    stopped_a = actornet.receive(lambda m: m[:2] == ("stopped", "a"), timeout=5)
    assert stopped_a[2].type == "RuntimeError"
    assert actornet.receive(lambda m: m[:2] == ("stopped", "b"), timeout=5)[2] == "shutdown"
    a2, b2 = started("a"), started("b")
    assert a2 != a and b2 != b
    assert set(children_pids(sup).values()) == {a2, b2}


def test_rest_for_one_restarts_later_children() -> None:
    me = actornet.self()
    sup = Supervisor.start_link(
        [child_spec(t, Worker, t, me) for t in ("a", "b", "c")], strategy="rest_for_one"
    )
    a, b, _ = started("a"), started("b"), started("c")
    with pytest.raises(actornet.CallError):
        actornet.call(b, "crash")
    b2, c2 = started("b"), started("c")
    pids = children_pids(sup)
    assert pids["a"] == a and pids["b"] == b2 and pids["c"] == c2


def test_restart_types() -> None:
    def quits(reason: Any) -> None:
        actornet.receive()
        raise actornet.ProcessExit(reason)

    sup = Supervisor.start_link([
        child_spec("perm", quits, "normal", restart="permanent"),
        child_spec("trans_ok", quits, "normal", restart="transient"),
        child_spec("trans_bad", quits, "oops", restart="transient"),
        child_spec("temp", quits, "oops", restart="temporary"),
    ], max_restarts=10)
    first = children_pids(sup)
    for pid in first.values():
        actornet.send(pid, "go")

    def settled() -> bool:
        now = children_pids(sup)
        return (
            "temp" not in now
            and now["trans_ok"] is None
            and now["perm"] not in (None, first["perm"])
            and now["trans_bad"] not in (None, first["trans_bad"])
        )

    wait_until(settled, what="restarts by restart type")


def test_restart_intensity_exceeded_stops_the_supervisor() -> None:
    def dies() -> None:
        raise RuntimeError("always")

    actornet.trap_exit(True)
    sup = Supervisor.start_link([child_spec("bad", dies)], max_restarts=3, max_seconds=10)
    msg = actornet.receive(lambda m: m[0] == "EXIT" and m[1] == sup, timeout=10)
    assert msg[2] == "shutdown"


def test_children_stop_in_reverse_order_on_shutdown() -> None:
    me = actornet.self()
    sup = Supervisor.start_link([child_spec(t, Worker, t, me) for t in ("a", "b", "c")])
    for t in ("a", "b", "c"):
        started(t)
    GenServer.stop(sup)
    order = [actornet.receive(lambda m: m[0] == "stopped", timeout=5)[1] for _ in range(3)]
    assert order == ["c", "b", "a"]


def test_brutal_kill_and_shutdown_timeout_kill_a_stubborn_child() -> None:
    def stubborn() -> None:
        actornet.trap_exit(True)
        while True:
            actornet.receive()

    sup = Supervisor.start_link([ChildSpec("s", lambda: actornet.spawn_link(stubborn),
                                           shutdown=0.2)])
    pid = children_pids(sup)["s"]
    assert pid is not None
    ref = actornet.monitor(pid)
    Supervisor.terminate_child(sup, "s")
    assert actornet.receive(lambda m: m[1] == ref, timeout=5)[4] == "killed"


def test_dynamic_children() -> None:
    sup = Supervisor.start_link([])
    pid = Supervisor.start_child(sup, child_spec("w", Worker, "w"))
    assert actornet.call(pid, "who") == "w"
    with pytest.raises(actornet.ActornetError, match="already exists"):
        Supervisor.start_child(sup, child_spec("w", Worker, "w"))
    assert Supervisor.count_children(sup) == {
        "specs": 1, "active": 1, "workers": 1, "supervisors": 0}
    Supervisor.terminate_child(sup, "w")
    assert children_pids(sup) == {"w": None}
    with pytest.raises(actornet.ActornetError, match="no child"):
        Supervisor.terminate_child(sup, "nope")
    pid2 = Supervisor.restart_child(sup, "w")
    assert actornet.call(pid2, "who") == "w"
    Supervisor.terminate_child(sup, "w")
    Supervisor.delete_child(sup, "w")
    assert children_pids(sup) == {}


def test_nested_supervisors() -> None:
    inner = child_spec("inner", Supervisor, [child_spec("w", Worker, "deep", name="deep")])
    sup = Supervisor.start_link([inner])
    assert Supervisor.which_children(sup)[0][2] == "supervisor"
    assert actornet.call("deep", "x") == "deep"
    GenServer.stop(sup)
    assert actornet.whereis("deep") is None


def test_bad_child_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="restart"):
        child_spec("x", Worker, restart="sometimes")
    with pytest.raises(ValueError, match="strategy"):
        Supervisor.start([], strategy="all_for_none")
    with pytest.raises(TypeError):
        ChildSpec("x", "not callable")  # type: ignore[arg-type]


def test_failing_child_start_fails_supervisor_start() -> None:
    class Broken(GenServer):
        def init(self) -> None:
            raise RuntimeError("cannot start")

    with pytest.raises(RuntimeError, match="cannot start"):
        Supervisor.start([child_spec("ok", Worker, "ok", name="okw"), child_spec("b", Broken)])
    assert actornet.whereis("okw") is None, "already started children are stopped"
