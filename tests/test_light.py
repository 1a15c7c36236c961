"""Lightweight processes on one node: the same process model as threads, as asyncio tasks.

A lightweight process is spawned from an ``async def`` function; a GenServer
whose callbacks are ``async def`` is one too. The matrix tests check that the
two kinds link, monitor, send to and call each other with the same message
shapes and exit reasons, in all four pairings.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import actornet
from actornet import aio

from . import remote, remote_light
from .helpers import wait_until

pytestmark = pytest.mark.timeout(30)

KINDS = ["thread", "light"]


def _kind_of(pid: actornet.Pid) -> str:
    info = actornet.process_info(pid)
    assert info is not None
    return info["kind"]


def test_an_async_function_is_a_lightweight_process() -> None:
    async def hello(parent: actornet.Pid) -> None:
        actornet.send(parent, ("hello", actornet.self(), actornet.node()))
        await aio.receive(lambda m: m == "bye")

    me = actornet.self()
    pid = actornet.spawn(hello, me)
    assert actornet.receive(timeout=5) == ("hello", pid, actornet.node())
    assert _kind_of(pid) == "light"
    info = actornet.process_info(pid)
    assert info is not None and info["current_function"].endswith("hello")
    ref = actornet.monitor(pid)
    actornet.send(pid, "bye")
    assert actornet.receive(lambda m: m[:2] == ("DOWN", ref), timeout=5)[4] == "normal"


def test_selective_receive_keeps_the_rest_in_order() -> None:
    async def picky(parent: actornet.Pid) -> None:
        first = await aio.receive(lambda m: m[0] == "b")
        rest = [await aio.receive(timeout=1) for _ in range(3)]
        actornet.send(parent, (first, rest))

    pid = actornet.spawn(picky, actornet.self())
    for m in [("a", 1), ("c", 3), ("b", 2), ("a", 4)]:
        actornet.send(pid, m)
    assert actornet.receive(timeout=5) == (("b", 2), [("a", 1), ("c", 3), ("a", 4)])


def test_receive_times_out_with_timeout_error() -> None:
    async def waits(parent: actornet.Pid) -> None:
        started = time.monotonic()
        try:
            await aio.receive(lambda m: m == "never", timeout=0.05)
        except TimeoutError as e:
            actornet.send(parent, ("timeout", type(e).__name__, time.monotonic() - started))

    actornet.spawn(waits, actornet.self())
    tag, name, took = actornet.receive(timeout=5)
    assert (tag, name) == ("timeout", "Timeout") and took >= 0.05


# -- the four pairings ------------------------------------------------------------------


def _spawner(kind: str) -> Callable[..., actornet.Pid]:
    """Spawn a process of `kind` running the same behaviour."""
    return {"thread": _spawn_thread, "light": _spawn_light}[kind]


def _spawn_thread(behaviour: str, *args: Any) -> actornet.Pid:
    return actornet.spawn(getattr(_ThreadBehaviours, behaviour), *args)


def _spawn_light(behaviour: str, *args: Any) -> actornet.Pid:
    return actornet.spawn(getattr(_LightBehaviours, behaviour), *args)


class _ThreadBehaviours:
    @staticmethod
    def echo_to(report_to: actornet.Pid) -> None:
        while True:
            actornet.send(report_to, ("echo", actornet.receive()))

    @staticmethod
    def link_to(peer: actornet.Pid, report_to: actornet.Pid, trap: bool) -> None:
        actornet.trap_exit(trap)
        actornet.link(peer)
        actornet.send(report_to, ("ready", actornet.self()))
        while True:
            actornet.send(report_to, ("got", actornet.receive()))

    @staticmethod
    def monitor(target: actornet.Pid, report_to: actornet.Pid) -> None:
        ref = actornet.monitor(target)
        actornet.send(report_to, ("ready", actornet.self()))
        down = actornet.receive(lambda m: m[:2] == ("DOWN", ref))
        actornet.send(report_to, ("down", down[2], down[3], down[4]))

    @staticmethod
    def call(server: actornet.Pid, request: Any, report_to: actornet.Pid) -> None:
        try:
            actornet.send(report_to, ("answer", actornet.call(server, request)))
        except Exception as e:
            actornet.send(report_to, ("error", type(e).__name__))

    @staticmethod
    def crash(text: str) -> None:
        actornet.receive(lambda m: m == "go")
        raise ValueError(text)


class _LightBehaviours:
    @staticmethod
    async def echo_to(report_to: actornet.Pid) -> None:
        while True:
            actornet.send(report_to, ("echo", await aio.receive()))

    @staticmethod
    async def link_to(peer: actornet.Pid, report_to: actornet.Pid, trap: bool) -> None:
        actornet.trap_exit(trap)
        actornet.link(peer)
        actornet.send(report_to, ("ready", actornet.self()))
        while True:
            actornet.send(report_to, ("got", await aio.receive()))

    @staticmethod
    async def monitor(target: actornet.Pid, report_to: actornet.Pid) -> None:
        ref = actornet.monitor(target)
        actornet.send(report_to, ("ready", actornet.self()))
        down = await aio.receive(lambda m: m[:2] == ("DOWN", ref))
        actornet.send(report_to, ("down", down[2], down[3], down[4]))

    @staticmethod
    async def call(server: actornet.Pid, request: Any, report_to: actornet.Pid) -> None:
        try:
            actornet.send(report_to, ("answer", await aio.call(server, request)))
        except Exception as e:
            actornet.send(report_to, ("error", type(e).__name__))

    @staticmethod
    async def crash(text: str) -> None:
        await aio.receive(lambda m: m == "go")
        raise ValueError(text)


def _servers() -> dict[str, type[actornet.GenServer]]:
    return {"thread": remote.Counter, "light": remote_light.Counter}


@pytest.mark.parametrize("sender", KINDS)
@pytest.mark.parametrize("receiver", KINDS)
def test_messages_arrive_in_order_between_kinds(sender: str, receiver: str) -> None:
    me = actornet.self()
    echo = _spawner(receiver)("echo_to", me)
    payloads = [("n", i, [i, {"k": i}]) for i in range(50)]

    if sender == "thread":
        def send_all() -> None:
            for p in payloads:
                actornet.send(echo, p)
        actornet.spawn(send_all)
    else:
        async def send_all_light() -> None:
            for p in payloads:
                actornet.send(echo, p)
        actornet.spawn(send_all_light)
    assert [actornet.receive(timeout=5)[1] for _ in payloads] == payloads
    actornet.exit(echo, "kill")


@pytest.mark.parametrize("crasher", KINDS)
@pytest.mark.parametrize("linked", KINDS)
def test_a_crash_travels_along_a_link_with_the_same_reason(crasher: str, linked: str) -> None:
    me = actornet.self()
    victim = _spawner(crasher)("crash", "boom")
    trapper = _spawner(linked)("link_to", victim, me, True)
    assert actornet.receive(timeout=5) == ("ready", trapper)
    # ... and an untrapped linked process of the other kind dies with it.
    bystander = _spawner(linked)("link_to", victim, me, False)
    assert actornet.receive(timeout=5) == ("ready", bystander)
    ref = actornet.monitor(bystander)
    actornet.send(victim, "go")
    _, (exit_tag, pid, reason) = actornet.receive(lambda m: m[0] == "got", timeout=5)
    assert (exit_tag, pid) == ("EXIT", victim)
    assert isinstance(reason, actornet.Crash) and (reason.type, reason.message) == (
        "ValueError", "boom")
    down = actornet.receive(lambda m: m[:2] == ("DOWN", ref), timeout=5)
    assert down[4] == reason
    actornet.exit(trapper, "kill")


@pytest.mark.parametrize("target", KINDS)
@pytest.mark.parametrize("watcher", KINDS)
@pytest.mark.parametrize("reason", ["normal", "stop", "kill"])
def test_monitors_fire_once_with_erlangs_reasons(target: str, watcher: str,
                                                 reason: str) -> None:
    me = actornet.self()
    pid = _spawner(target)("echo_to", me)
    w = _spawner(watcher)("monitor", pid, me)
    assert actornet.receive(timeout=5) == ("ready", w)
    actornet.exit(pid, reason)
    if reason == "normal":  # exit(pid, normal) from another process does nothing
        actornet.send(pid, "still alive?")
        assert actornet.receive(timeout=5) == ("echo", "still alive?")
        actornet.exit(pid, "kill")
        reason = "kill"
    expected = "killed" if reason == "kill" else reason
    assert actornet.receive(timeout=5) == ("down", "process", pid, expected)
    with pytest.raises(actornet.Timeout):
        actornet.receive(lambda m: m[0] == "down", timeout=0.05)


@pytest.mark.parametrize("server_kind", KINDS)
@pytest.mark.parametrize("caller", KINDS)
def test_calls_between_kinds(server_kind: str, caller: str) -> None:
    me = actornet.self()
    server = _servers()[server_kind].start(41)
    actornet.cast(server, "inc")
    _spawner(caller)("call", server, "get", me)
    assert actornet.receive(timeout=5) == ("answer", 42)
    _spawner(caller)("call", server, "crash", me)
    assert actornet.receive(timeout=5) == ("error", "CallError")
    assert not actornet.is_alive(server)
    _spawner(caller)("call", server, "get", me)
    assert actornet.receive(timeout=5) == ("error", "NoProc")


# -- GenServers with async callbacks ------------------------------------------------------


def test_an_async_genserver_is_a_lightweight_process_callers_cannot_tell_apart() -> None:
    pid = remote_light.Counter.start(1, name="light_counter")
    assert _kind_of(pid) == "light_server"
    assert actornet.call("light_counter", "kind") == "light_server"
    actornet.cast("light_counter", "inc")
    assert actornet.call(pid, "get") == 2
    assert actornet.call(pid, ("sleep", 0.01)) == "slept"  # its callbacks may await
    assert actornet.call(pid, ("later", "deferred")) == "deferred"  # NOREPLY + reply
    with pytest.raises(actornet.Timeout):
        actornet.call(pid, ("sleep", 1.0), timeout=0.05)
    actornet.GenServer.stop(pid, "done")
    assert not actornet.is_alive(pid)
    with pytest.raises(actornet.NoProc):
        actornet.call("light_counter", "get")


def test_a_raising_async_init_fails_the_start() -> None:
    class Refuses(actornet.GenServer):
        async def init(self) -> None:
            await asyncio.sleep(0)
            raise RuntimeError("not today")

    with pytest.raises(RuntimeError, match="not today"):
        Refuses.start(name="refuses")
    assert actornet.whereis("refuses") is None


def test_supervisor_restarts_lightweight_children() -> None:
    sup = actornet.Supervisor.start([
        actornet.child_spec("counter", remote_light.Counter, 0, name="sup_light"),
        actornet.child_spec("waiter", remote_light.wait_forever),
    ])
    first = actornet.whereis("sup_light")
    assert first is not None and _kind_of(first) == "light_server"
    with pytest.raises(actornet.CallError):
        actornet.call("sup_light", "crash")
    wait_until(lambda: actornet.whereis("sup_light") not in (None, first))
    assert actornet.call("sup_light", "get") == 0
    def waiter_pid() -> actornet.Pid | None:
        return {cid: pid for cid, pid, _ in actornet.Supervisor.which_children(sup)}["waiter"]

    waiter = waiter_pid()
    assert waiter is not None and _kind_of(waiter) == "light"
    actornet.exit(waiter, "kill")
    wait_until(lambda: waiter_pid() not in (None, waiter))
    actornet.GenServer.stop(sup)


# -- the async API from plain asyncio code --------------------------------------------------


def test_an_asyncio_task_is_adopted_as_a_process_for_as_long_as_it_runs() -> None:
    server = remote.Counter.start(7)

    async def handler() -> tuple[Any, actornet.Pid]:
        return await aio.call(server, "get"), actornet.self()

    answer, pid = asyncio.run(handler())
    assert answer == 7
    assert not actornet.is_alive(pid), "the adopted task's process ended with the task"
    actornet.GenServer.stop(server)


def test_concurrent_calls_from_tasks_of_one_process_are_kept_apart() -> None:
    server = remote_light.Counter.start(3)

    async def main() -> list[Any]:
        return list(await asyncio.gather(*[aio.call(server, ("later", i)) for i in range(20)]))

    assert asyncio.run(main()) == list(range(20))
    actornet.GenServer.stop(server)


# -- errors: the wrong kind of function, blocking calls on a loop ---------------------------


def test_what_cannot_be_a_process_is_refused_with_the_reason() -> None:
    async def coro_fn() -> None:
        pass

    def gen_fn() -> Any:
        yield 1

    async def agen_fn() -> Any:
        yield 1

    with pytest.raises(TypeError, match="coroutine object"):
        actornet.spawn(coro_fn())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generator function"):
        actornet.spawn(gen_fn)
    with pytest.raises(TypeError, match="generator function"):
        actornet.spawn(agen_fn)
    with pytest.raises(TypeError, match="callable"):
        actornet.spawn(42)  # type: ignore[arg-type]


BLOCKING: list[tuple[str, Callable[[], Any], str]] = [
    ("receive", lambda: actornet.receive(timeout=0), "aio.receive"),
    ("receiving", lambda: actornet.receiving(timeout=0), "aio.receiving"),
    ("call", lambda: actornet.call("nobody", "x"), "aio.call"),
    ("stop", lambda: actornet.GenServer.stop("nobody"), "aio.stop"),
    ("start", lambda: remote.Counter.start(), "aio.start"),
    ("pg.join", lambda: actornet.pg.join("g", actornet.self()), "aio.pg.join"),
    ("global_", lambda: actornet.global_.register_name("n", actornet.self()),
     "aio.global_.register_name"),
    ("rpc", lambda: actornet.rpc.call("x@y", max, 1), "aio.rpc.call"),
]


@pytest.mark.parametrize(("what", "fn", "twin"), BLOCKING, ids=[b[0] for b in BLOCKING])
def test_a_blocking_function_in_a_lightweight_process_names_its_aio_twin(
        what: str, fn: Callable[[], Any], twin: str) -> None:
    async def tries(parent: actornet.Pid) -> None:
        try:
            fn()
        except actornet.ActornetError as e:
            actornet.send(parent, ("refused", str(e)))
        else:
            actornet.send(parent, ("allowed", what))

    actornet.spawn(tries, actornet.self())
    tag, text = actornet.receive(timeout=5)
    assert tag == "refused" and twin in text, text


def test_an_aio_function_outside_a_loop_names_its_blocking_twin() -> None:
    with pytest.raises(actornet.ActornetError, match=r"actornet\.receive\(\)"):
        aio.receive(timeout=0)  # on a thread that runs no event loop


# -- exits and kills ------------------------------------------------------------------------


def test_a_process_killed_while_awaiting_ends_at_once() -> None:
    pid, ref = actornet.spawn_monitor(remote_light.wait_forever)
    wait_until(lambda: (actornet.process_info(pid) or {}).get("status") == "waiting")
    actornet.exit(pid, "kill")
    assert actornet.receive(lambda m: m[:2] == ("DOWN", ref), timeout=5)[4] == "killed"


def test_trap_exit_turns_exit_signals_into_messages() -> None:
    me = actornet.self()
    victim = actornet.spawn(remote_light.wait_forever)
    trapper = actornet.spawn(remote_light.trap_and_forward, me, victim)
    assert actornet.receive(timeout=5) == ("linked", trapper)
    actornet.exit(trapper, "please")  # trapped: a message, not a death
    assert actornet.receive(timeout=5) == ("got", ("EXIT", me, "please"))
    actornet.exit(victim, "gone")
    assert actornet.receive(timeout=5) == ("got", ("EXIT", victim, "gone"))
    assert actornet.is_alive(trapper)
    actornet.exit(trapper, "kill")


def test_an_async_function_that_raises_at_once_crashes_with_its_exception() -> None:
    _, ref = actornet.spawn_monitor(remote_light.crash_with, "at once")
    reason = actornet.receive(lambda m: m[:2] == ("DOWN", ref), timeout=5)[4]
    assert (reason.type, reason.message) == ("ValueError", "at once")


def test_a_killed_process_that_never_awaits_is_dead_at_once_and_its_task_ends_later() -> None:
    me = actornet.self()
    pid, ref = actornet.spawn_monitor(remote_light.busy_for, 0.3, me)
    assert actornet.receive(timeout=5) == ("busy", pid)
    actornet.exit(pid, "kill")  # it holds the scheduler: cooperative, so it runs on ...
    assert actornet.receive(lambda m: m[:2] == ("DOWN", ref), timeout=5)[4] == "killed"
    assert not actornet.is_alive(pid)  # ... but is dead for everyone else at once
    # Its last send happens after the kill, as Erlang's would not: documented.
    actornet.receive(lambda m: m[0] == "done", timeout=5)


# -- the scheduler's watchdog --------------------------------------------------------------


def test_a_process_that_blocks_the_scheduler_is_reported_with_its_pid(
        caplog: pytest.LogCaptureFixture) -> None:
    me = actornet.self()
    with caplog.at_level(logging.WARNING, logger="actornet"):
        pid = actornet.spawn(remote_light.busy_for, 0.6, me)
        assert actornet.receive(timeout=5) == ("busy", pid)
        actornet.receive(lambda m: m[0] == "done", timeout=5)
        wait_until(lambda: "runs again" in caplog.text)
    assert f"lightweight process {pid!r} running" in caplog.text
    assert "busy_for" in caplog.text


def test_sends_to_the_scheduler_from_many_threads_all_arrive() -> None:
    me = actornet.self()
    sink = actornet.spawn(_LightBehaviours.echo_to, me)

    def blast(k: int) -> None:
        for i in range(500):
            actornet.send(sink, (k, i))

    threads = [threading.Thread(target=blast, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = [actornet.receive(timeout=5)[1] for _ in range(2000)]
    for k in range(4):
        assert [i for kk, i in got if kk == k] == list(range(500)), "per-sender FIFO"
    actornet.exit(sink, "kill")
