"""GenServer: callbacks, call/cast/reply, names, failures, stop, OTP semantics."""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

import pykka
import pytest

import actornet
from actornet import CallDeadlock, CallError, GenServer, NoProc

from .helpers import wait_until


class Counter(GenServer):
    def init(self, start: int = 0) -> None:
        self.n = start

    def handle_call(self, request: Any, from_: Any) -> Any:
        if request == "get":
            return self.n
        if request == "crash":
            raise ZeroDivisionError("division by zero")
        if request == "self_call":
            return actornet.call(self.gen_pid, "get")
        if request == "slow":
            threading.Event().wait(1.0)
            return "late"
        if request == "deferred":
            actornet.spawn(lambda: actornet.reply(from_, ("deferred", self.n)))
            return actornet.NOREPLY
        if request == "whoami":
            return actornet.self()
        return ("unknown", request)

    def handle_cast(self, request: Any) -> None:
        if request == "inc":
            self.n += 1

    def handle_info(self, msg: Any) -> None:
        self.last_info = msg
        if isinstance(msg, tuple) and msg[0] == "report":
            actornet.send(msg[1], ("info_seen", self.n))


def test_start_call_cast() -> None:
    pid = Counter.start(5)
    assert isinstance(pid, actornet.Pid)
    actornet.cast(pid, "inc")
    actornet.cast(pid, "inc")
    assert actornet.call(pid, "get") == 7
    assert actornet.call(pid, "whoami") == pid, "self() in a callback is the server's pid"


def _pykka_runners() -> int:
    refs = pykka.ActorRegistry.get_all()
    return sum(1 for ref in refs if ref.actor_class.__name__ == "_PykkaRunner")


def test_a_thread_server_runs_on_a_pykka_actor_it_is_not() -> None:
    before = _pykka_runners()
    pid = Counter.start()
    assert _pykka_runners() == before + 1, "a pykka ThreadingActor runs the server"
    assert actornet.process_info(pid)["kind"] == "server"
    # ... by composition: pykka's own API cannot bypass actornet's calls and exits.
    assert not issubclass(Counter, pykka.Actor)
    for pykka_api in ("tell", "ask", "proxy", "actor_ref", "actor_inbox"):
        assert not hasattr(Counter, pykka_api), pykka_api
    GenServer.stop(pid)
    assert _pykka_runners() == before


def test_callbacks_are_plain_methods_a_unit_test_calls_without_a_node() -> None:
    class Tally(GenServer):
        def init(self, start: int) -> None:
            self.n = start

        def handle_call(self, request: Any, from_: Any) -> Any:
            match request:
                case ("add", int() as k):
                    self.n += k
                    return self.n
            return ("error", request)

    nodes_before = len(actornet._runtime.running_nodes())
    tally = Tally()  # no node, no thread, no actor: an object
    tally.init(5)
    assert tally.handle_call(("add", 2), None) == 7
    assert tally.handle_call("what", None) == ("error", "what")
    assert len(actornet._runtime.running_nodes()) == nodes_before


def test_named_server_and_name_errors() -> None:
    pid = Counter.start(1, name="counter")
    assert actornet.whereis("counter") == pid
    assert actornet.call("counter", "get") == 1
    assert actornet.call(("counter", "test@localhost"), "get") == 1
    with pytest.raises(actornet.AlreadyRegistered):
        Counter.start(2, name="counter")
    assert len([p for p in actornet.processes() if p != actornet.self()]) == 1, "nothing left"


def test_handle_info_gets_plain_messages() -> None:
    pid = Counter.start(3)
    actornet.send(pid, ("report", actornet.self()))
    assert actornet.receive(timeout=5) == ("info_seen", 3)


def test_deferred_reply_with_noreply() -> None:
    pid = Counter.start(9)
    assert actornet.call(pid, "deferred") == ("deferred", 9)


def test_call_timeout_raises_timeout_error_and_late_reply_is_dropped() -> None:
    pid = Counter.start()
    with pytest.raises(TimeoutError, match="timed out"):
        actornet.call(pid, "slow", timeout=0.1)
    assert actornet.call(pid, "get", timeout=5) == 0
    with pytest.raises(TimeoutError):
        actornet.receive(timeout=0.05)  # the late reply never reaches the mailbox


def test_call_rejects_non_positive_timeout() -> None:
    pid = Counter.start()
    with pytest.raises(ValueError, match="> 0"):
        actornet.call(pid, "get", timeout=0)
    with pytest.raises(ValueError):
        actornet.call(pid, "get", timeout=-1)


class Recorder(GenServer):
    """Replies with every request it has handled so far."""

    def init(self) -> None:
        self.seen: list[Any] = []

    def handle_call(self, request: Any, from_: Any) -> Any:
        self.seen.append(request)
        return list(self.seen)


def pending_call_state(node: actornet.Node) -> tuple[list[Any], int]:
    """The caller's monitors and the node's pending call slots: both empty between calls."""
    info = actornet.process_info(actornet.self())
    assert info is not None
    return info["monitors"], len(node._aliases)


@pytest.mark.parametrize("forever", [None, math.inf, 1e300, threading.TIMEOUT_MAX],
                         ids=["None", "inf", "1e300", "TIMEOUT_MAX"])
def test_call_with_an_unbounded_timeout_waits_for_the_reply(
    forever: float | None, node: actornet.Node
) -> None:
    pid = Recorder.start()
    assert actornet.call(pid, "q", timeout=forever) == ["q"]
    assert pending_call_state(node) == ([], 0), "no monitor or call slot left behind"
    GenServer.stop(pid, timeout=forever)
    assert not actornet.is_alive(pid)


@pytest.mark.parametrize("bad, error", [
    (math.nan, ValueError), (-math.inf, ValueError), ("5", TypeError), (True, TypeError),
])
def test_a_bad_call_timeout_is_refused_before_the_request_is_sent(
    bad: Any, error: type[Exception], node: actornet.Node
) -> None:
    pid = Recorder.start()
    with pytest.raises(error, match=r"call\(\): timeout"):
        actornet.call(pid, "abandoned", timeout=bad)
    with pytest.raises(error, match=r"GenServer.stop\(\): timeout"):
        GenServer.stop(pid, timeout=bad)
    assert pending_call_state(node) == ([], 0)
    assert actornet.call(pid, "next") == ["next"], "the server never saw the refused call"


def test_handle_call_crash_is_logged_with_the_server_pid(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pid = Counter.start()
    with caplog.at_level(logging.ERROR, logger="actornet"), pytest.raises(CallError):
        actornet.call(pid, "crash", timeout=5)
    records = [r for r in caplog.records if r.name == "actornet" and repr(pid) in r.getMessage()]
    assert records, f"no log record names {pid!r}: {[r.getMessage() for r in caplog.records]}"
    record = records[0]
    assert record.levelno == logging.ERROR
    assert "ZeroDivisionError" in record.getMessage()
    assert "'crash'" in record.getMessage(), "the record shows the last message"
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError


def test_call_to_dead_or_unknown_server_raises_noproc() -> None:
    with pytest.raises(NoProc):
        actornet.call("no_such_server", "get")
    pid = Counter.start()
    GenServer.stop(pid)
    with pytest.raises(NoProc):
        actornet.call(pid, "get", timeout=5)


def test_exception_in_handle_call_crashes_server_and_caller_gets_error() -> None:
    pid = Counter.start()
    ref = actornet.monitor(pid)
    with pytest.raises(CallError, match="ZeroDivisionError") as info:
        actornet.call(pid, "crash", timeout=5)
    assert info.value.reason.type == "ZeroDivisionError"
    assert "'crash'" in str(info.value), "the error says which call failed"
    assert actornet.receive(lambda m: m[1] == ref, timeout=5)[4].type == "ZeroDivisionError"


def test_crash_travels_along_links() -> None:
    actornet.trap_exit(True)
    pid = Counter.start_link()
    with pytest.raises(CallError):
        actornet.call(pid, "crash")
    msg = actornet.receive(lambda m: m[0] == "EXIT" and m[1] == pid, timeout=5)
    assert msg[2].type == "ZeroDivisionError"


def test_call_to_self_raises_deadlock_error() -> None:
    pid = Counter.start()
    with pytest.raises(CallError, match="CallDeadlock"):
        actornet.call(pid, "self_call")
    me = actornet.self()
    actornet.register("me", me)
    with pytest.raises(CallDeadlock, match="called itself"):
        actornet.call("me", "anything")


def test_init_failure_raises_that_error_and_leaves_no_process() -> None:
    class Broken(GenServer):
        def init(self) -> None:
            raise KeyError("missing config")

    before = set(actornet.processes())
    with pytest.raises(KeyError, match="missing config"):
        Broken.start()
    actornet.trap_exit(True)
    with pytest.raises(KeyError):
        Broken.start_link()
    wait_until(lambda: set(actornet.processes()) <= before | {actornet.self()})
    with pytest.raises(TimeoutError):
        actornet.receive(timeout=0.1)  # start_link reported by exception, not a signal


def test_stop_runs_terminate_with_reason() -> None:
    me = actornet.self()

    class Reporter(GenServer):
        def terminate(self, reason: Any) -> None:
            actornet.send(me, ("terminated", reason))

    pid = Reporter.start()
    GenServer.stop(pid, reason="shutdown")
    assert actornet.receive(timeout=5) == ("terminated", "shutdown")
    assert not actornet.is_alive(pid)
    with pytest.raises(NoProc):
        GenServer.stop(pid)


def test_server_is_a_process_linkable_monitorable_registrable() -> None:
    pid = Counter.start()
    ref = actornet.monitor(pid)
    actornet.register("srv", pid)
    actornet.exit(pid, "kill")
    assert actornet.receive(lambda m: m[1] == ref, timeout=5)[4] == "killed"
    assert actornet.whereis("srv") is None


def test_trapping_server_gets_exit_messages_in_handle_info() -> None:
    me = actornet.self()

    class Watcher(GenServer):
        def init(self) -> None:
            actornet.trap_exit(True)
            self.child = actornet.spawn_link(actornet.receive)

        def handle_call(self, request: Any, from_: Any) -> Any:
            return self.child

        def handle_info(self, msg: Any) -> None:
            actornet.send(me, msg)

    pid = Watcher.start()
    child = actornet.call(pid, "child")
    actornet.exit(child, "bye")
    assert actornet.receive(timeout=5) == ("EXIT", child, "bye")
    GenServer.stop(pid)


def test_parent_exit_stops_trapping_server_with_terminate() -> None:
    me = actornet.self()

    class Child(GenServer):
        def init(self) -> None:
            actornet.trap_exit(True)

        def terminate(self, reason: Any) -> None:
            actornet.send(me, ("child_terminated", reason))

    def parent() -> None:
        actornet.send(me, ("child", Child.start_link()))
        actornet.receive()

    p = actornet.spawn(parent)
    child = actornet.receive(lambda m: m[0] == "child", timeout=5)[1]
    actornet.exit(p, "shutdown")
    assert actornet.receive(timeout=5) == ("child_terminated", "shutdown")
    wait_until(lambda: not actornet.is_alive(child))


def test_selective_receive_inside_a_callback() -> None:
    me = actornet.self()

    class Waiter(GenServer):
        def init(self) -> None:
            self.infos: list[Any] = []

        def handle_call(self, request: Any, from_: Any) -> Any:
            if request == "infos":
                return self.infos
            actornet.send(me, "waiting")
            return actornet.receive(lambda m: m == ("token", request), timeout=5)

        def handle_info(self, msg: Any) -> None:
            self.infos.append(msg)

    pid = Waiter.start()
    actornet.spawn(lambda: actornet.send(me, ("result", actornet.call(pid, 1))))
    assert actornet.receive(lambda m: m == "waiting", timeout=5)
    actornet.send(pid, "passed over")
    actornet.send(pid, ("token", 1))
    assert actornet.receive(lambda m: m[0] == "result", timeout=5) == ("result", ("token", 1))
    assert actornet.call(pid, "infos") == ["passed over"], "skipped messages stay queued"


def test_many_concurrent_callers() -> None:
    pid = Counter.start()
    results: list[int] = []
    lock = threading.Lock()

    def caller() -> None:
        for _ in range(50):
            actornet.cast(pid, "inc")
        value = actornet.call(pid, "get")
        with lock:
            results.append(value)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 8
    assert actornet.call(pid, "get") == 400


@pytest.mark.parametrize("which", ["supervisor", "pg scope", "global name server", "user"])
def test_a_request_a_server_has_no_clause_for_raises_badarg_and_it_keeps_serving(
        which: str) -> None:
    """OTP's badarg: the caller gets a clear error, never a reply that looks like an
    answer, and the server is still there for the next request."""
    from actornet import global_, pg
    from actornet.gen_server import badarg

    class Strict(GenServer):
        def handle_call(self, request: Any, from_: Any) -> Any:
            match request:
                case "ping":
                    return "pong"
            return badarg(f"unknown request {request!r}")

    match which:
        case "supervisor":
            server = actornet.Supervisor.start([])
            good, answer = ("which_children",), []
        case "pg scope":
            server = pg.start("badarg_scope")
            good, answer = ("demonitor", actornet.make_ref()), "false"
        case "global name server":
            global_.whereis_name("nobody")  # started on first use
            server = actornet.whereis(global_.SERVER)
            good, answer = None, None
        case _:
            server = Strict.start()
            good, answer = "ping", "pong"
    try:
        with pytest.raises(actornet.BadArg, match=r"badarg: unknown .*request.*frobnicate"):
            actornet.call(server, ("frobnicate", 1))
        assert actornet.is_alive(server)
        if good is not None:
            assert actornet.call(server, good) == answer
        else:
            assert global_.register_name("badarg_name", actornet.self()) == "yes"
            assert global_.whereis_name("badarg_name") == actornet.self()
            global_.unregister_name("badarg_name")
    finally:
        if which != "global name server":
            GenServer.stop(server)
