"""Supervisor: strategies, restart types, intensity, child management, shutdown order."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
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


def quits(reason: Any) -> None:
    """A function child that exits with `reason` on its first message."""
    actornet.receive()
    raise actornet.ProcessExit(reason)


class Quits(GenServer):
    """A GenServer child that exits with `reason` on its first plain message."""

    def init(self, reason: Any) -> None:
        self.reason = reason

    def handle_info(self, msg: Any) -> None:
        raise actornet.ProcessExit(self.reason)


def dies() -> None:
    raise RuntimeError("always")


class Dies(GenServer):
    """Starts fine, then crashes on the message it sent itself."""

    def init(self) -> None:
        actornet.send(actornet.self(), "die")

    def handle_info(self, msg: Any) -> None:
        raise RuntimeError("always")


@pytest.fixture(params=["function", "gen_server"])
def kind(request: pytest.FixtureRequest) -> str:
    """Restart rules must hold for both kinds of child spec."""
    return str(request.param)


def quitter(kind: str) -> Callable[..., Any]:
    return {"function": quits, "gen_server": Quits}[kind]


def test_restart_types(kind: str) -> None:
    target = quitter(kind)
    sup = Supervisor.start_link([
        child_spec("perm", target, "normal", restart="permanent"),
        child_spec("trans_ok", target, "normal", restart="transient"),
        child_spec("trans_bad", target, "oops", restart="transient"),
        child_spec("temp", target, "oops", restart="temporary"),
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


def test_restart_intensity_exceeded_stops_the_supervisor(kind: str) -> None:
    target = {"function": dies, "gen_server": Dies}[kind]
    actornet.trap_exit(True)
    sup = Supervisor.start_link([child_spec("bad", target)], max_restarts=3, max_seconds=10)
    msg = actornet.receive(lambda m: m[0] == "EXIT" and m[1] == sup, timeout=10)
    assert msg[2] == "shutdown"


def test_exactly_max_restarts_are_allowed_and_one_more_shuts_down(kind: str) -> None:
    actornet.trap_exit(True)
    sup = Supervisor.start_link([child_spec("c", quitter(kind), "oops")],
                                max_restarts=2, max_seconds=60)
    pid = children_pids(sup)["c"]
    for n in (1, 2):
        old = pid
        assert old is not None
        actornet.send(old, "go")
        pid = wait_until(lambda old=old: children_pids(sup)["c"] not in (None, old)
                         and children_pids(sup)["c"], what=f"restart {n} of 2")
    assert actornet.is_alive(sup), "max_restarts restarts within the period are allowed"
    assert pid is not None
    actornet.send(pid, "go")
    msg = actornet.receive(lambda m: m[0] == "EXIT" and m[1] == sup, timeout=10)
    assert msg[2] == "shutdown", "one restart more than max_restarts ends the supervisor"


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


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
def test_exit_from_a_replaced_child_is_dropped_quietly(
    strategy: str, caplog: pytest.LogCaptureFixture
) -> None:
    def idle() -> None:
        actornet.receive()

    sup = Supervisor.start_link([child_spec("a", idle), child_spec("b", idle)],
                                strategy=strategy, max_restarts=10)
    a, b = children_pids(sup)["a"], children_pids(sup)["b"]
    assert a is not None and b is not None
    entered, gate = threading.Event(), threading.Event()

    def gated_start() -> actornet.Pid:
        entered.set()
        gate.wait(10)
        return actornet.spawn_link(idle)

    me = actornet.self()
    actornet.spawn(lambda: actornet.send(
        me, ("added", Supervisor.start_child(sup, ChildSpec("c", gated_start)))))
    # The supervisor is busy in gated_start: both EXITs queue behind it, so
    # restarting for a's EXIT replaces b, whose EXIT then comes from an old pid.
    assert entered.wait(10)
    with caplog.at_level(logging.DEBUG, logger="actornet"):
        actornet.exit(a, "kill")
        actornet.exit(b, "kill")
        gate.set()
        actornet.receive(lambda m: m[0] == "added", timeout=10)
        now = children_pids(sup)  # a call: answered after both EXITs were handled
    assert now["a"] not in (None, a) and now["b"] not in (None, b)
    assert actornet.is_alive(sup)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
                and "unexpected" in r.getMessage()]
    assert not warnings, f"an EXIT from an old child was treated as unexpected: {warnings}"
    assert any("no longer a child" in r.getMessage() for r in caplog.records
               if r.levelno == logging.DEBUG), "the old child's EXIT did reach the supervisor"
