"""Lightweight processes across real OS processes: the same model as threads, over the wire."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

import actornet
from actornet import aio

from . import remote, remote_light
from .cluster import COOKIE, Cluster, unique
from .helpers import wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def node() -> Iterator[None]:
    """Overrides the suite's local node: here the `local` named node is the default."""
    yield None


@pytest.fixture
def local() -> Iterator[actornet.Node]:
    n = actornet.start_node(unique("t"), cookie=COOKIE, port=0, tick_time=1.0)
    try:
        yield n
    finally:
        n.stop()


def _kind_there(node: str, pid: actornet.Pid) -> str:
    info = actornet.rpc.call(node, actornet.process_info, pid)
    assert info is not None
    return str(info["kind"])


def test_a_remote_spawn_of_an_async_function_is_lightweight_there(
        local: actornet.Node, cluster: Cluster) -> None:
    b = cluster.start(unique("b"))
    assert actornet.ping(b.address) == "pong"
    pid = actornet.spawn(remote_light.echo, node=b.name)
    assert _kind_there(b.name, pid) == "light"
    me = actornet.self()
    for i in range(20):
        actornet.send(pid, (me, ("n", i)))
    assert [actornet.receive(timeout=5) for _ in range(20)] == [
        ("echo", ("n", i)) for i in range(20)]
    assert actornet.rpc.call(b.name, remote_light.add, 2, 3) == 5  # an async rpc


@pytest.mark.parametrize("caller", ["thread", "light"])
@pytest.mark.parametrize("server_kind", ["thread", "light"])
def test_calls_across_nodes_between_kinds(local: actornet.Node, cluster: Cluster,
                                          caller: str, server_kind: str) -> None:
    b = cluster.start(unique("b"))
    actornet.ping(b.address)
    start = remote.start_counter if server_kind == "thread" else remote_light.start_counter
    server = actornet.rpc.call(b.name, start, "counter", 41)
    actornet.cast(("counter", b.name), "inc")
    me = actornet.self()
    if caller == "thread":
        assert actornet.call(("counter", b.name), "get") == 42
        with pytest.raises(actornet.CallError):
            actornet.call(server, "crash")
    else:
        actornet.spawn(remote_light.call_and_report, ("counter", b.name), "get", me)
        assert actornet.receive(timeout=5) == ("answer", 42)
        actornet.spawn(remote_light.call_and_report, server, "crash", me)
        assert actornet.receive(timeout=5)[:2] == ("error", "CallError")


def test_a_killed_node_ends_links_and_monitors_of_lightweight_processes(
        local: actornet.Node, cluster: Cluster) -> None:
    b = cluster.start(unique("b"), extra=["--tick-time", "1.0"])
    actornet.ping(b.address)
    far = actornet.spawn(remote_light.wait_forever, node=b.name)
    me = actornet.self()
    trapper = actornet.spawn(remote_light.trap_and_forward, me, far)
    assert actornet.receive(timeout=5) == ("linked", trapper)
    watcher = actornet.spawn(remote_light.monitor_and_report, far, me)
    assert actornet.receive(timeout=5) == ("monitoring", watcher)
    # and a lightweight process there, linked to one here, dies with it
    here = actornet.spawn(remote_light.wait_forever)
    linked_there = actornet.spawn(remote_light.link_and_wait, here, me, node=b.name)
    assert actornet.receive(timeout=5) == ("linked", linked_there)
    ref = actornet.monitor(linked_there)
    actornet.exit(here, "boom")
    assert actornet.receive(lambda m: m[:2] == ("DOWN", ref), timeout=5)[4] == "boom"

    b.signal(signal.SIGKILL)
    assert actornet.receive(lambda m: m[0] == "got", timeout=10) == (
        "got", ("EXIT", far, "noconnection"))
    assert actornet.receive(lambda m: m[0] == "down", timeout=10) == ("down", "noconnection")


def test_a_lightweight_process_that_holds_its_scheduler_does_not_get_its_node_declared_down(
        local: actornet.Node, cluster: Cluster) -> None:
    # The transport ticks on its own thread: 3 x tick_time of a CPU loop on the
    # scheduler must not look like a dead node to its peers.
    b = cluster.start(unique("b"), extra=["--tick-time", "1.0"])
    actornet.ping(b.address)
    actornet.monitor_node(b.name)
    me = actornet.self()
    pid = actornet.spawn(remote_light.busy_for, 3.0, me, node=b.name)
    assert actornet.receive(timeout=10) == ("busy", pid)
    assert actornet.receive(lambda m: m[0] in ("done", "nodedown"), timeout=20)[0] == "done"
    assert actornet.rpc.call(b.name, actornet.node) == b.name
    with pytest.raises(actornet.Timeout):
        actornet.receive(lambda m: m[0] == "nodedown", timeout=0)
    assert "has been blocked" in b.wait_output("scheduler of .* has been blocked")


def test_global_names_and_groups_of_lightweight_processes(local: actornet.Node,
                                                          cluster: Cluster) -> None:
    b = cluster.start(unique("b"))
    actornet.ping(b.address)
    me = actornet.self()
    reg = actornet.spawn(remote_light.register_global, "light_name", me, node=b.name)
    assert actornet.receive(timeout=10) == ("registered", "yes", reg)
    wait_until(lambda: actornet.global_.whereis_name("light_name") == reg)
    member = actornet.spawn(remote_light.join_group, "light_group", me, node=b.name)
    assert actornet.receive(timeout=10) == ("joined", member)
    wait_until(lambda: actornet.pg.get_members("light_group") == [member])
    actornet.send(member, "stop")
    wait_until(lambda: actornet.pg.get_members("light_group") == [])
    actornet.send(reg, "stop")
    wait_until(lambda: actornet.global_.whereis_name("light_name") is None)


def test_a_node_on_an_application_loop_awaits_a_server_on_another_node(
        cluster: Cluster) -> None:
    b = cluster.start(unique("b"))

    async def app() -> tuple[Any, ...]:
        async with aio.start_node(unique("web"), cookie=COOKIE, port=0) as web:
            assert await aio.ping(b.address) == "pong"
            await aio.rpc.call(b.name, remote_light.start_counter, "counter", 6)
            # many handler tasks at once, each its own (adopted) process
            answers = await asyncio.gather(*[aio.call(("counter", b.name), "get")
                                             for _ in range(50)])
            loop_is_mine = web.scheduler().loop is asyncio.get_running_loop()
            far = await aio.spawn(remote_light.add, 1, 2, node=b.name)
            return tuple(set(answers)), loop_is_mine, isinstance(far, actornet.Pid)

    assert asyncio.run(app()) == ((6,), True, True)


def test_a_lightweight_sender_to_a_frozen_node_owes_the_wait_and_its_loop_runs_on(
        cluster: Cluster) -> None:
    """b is frozen (SIGSTOP; long ticks so that it is not declared down). A lightweight
    process sends 10 KiB messages to b, and once the connection is busy awaits an aio
    function after each send. No send waits (that would stop every process on the loop):
    one of those awaits waits for b instead, while another process on the same loop goes
    on. Once b runs again, that await returns, and every message arrives in order."""
    b = cluster.start(unique("b"), extra=["--tick-time", "60"])
    with actornet.start_node(unique("t"), cookie=COOKIE, port=0, tick_time=60) as here:
        assert actornet.ping(b.address) == "pong"
        me = actornet.self()
        sink = actornet.spawn(remote.ordered_sink, me, node=b.name)
        state: dict[str, Any] = {"sent": 0, "longest_send": 0.0, "awaiting_since": None,
                                 "paid": False, "ticks": 0}

        def busy() -> bool:
            return bool(here.node_info()["connections"][b.name]["busy"])

        async def sender() -> None:
            loop = asyncio.get_running_loop()
            blob, i = b"x" * 10_240, 0
            while True:
                assert i < 6_000, "60 MiB sent and no await waited for b"
                began = loop.time()
                actornet.send(sink, ("m", i, blob))
                state["longest_send"] = max(state["longest_send"], loop.time() - began)
                i = state["sent"] = i + 1
                if busy():
                    state["awaiting_since"] = time.monotonic()
                    with pytest.raises(actornet.Timeout):
                        await aio.receive(timeout=0)  # waits here if this task owes b
                    if time.monotonic() - state["awaiting_since"] > 1.0:
                        break  # it waited: b has run again since
                    state["awaiting_since"] = None
            state["paid"] = True
            actornet.send(sink, ("end", i))

        def waiting_for_b() -> bool:
            since = state["awaiting_since"]
            return since is not None and time.monotonic() - since > 1.0

        b.signal(signal.SIGSTOP)
        try:
            actornet.spawn(sender)
            wait_until(waiting_for_b, timeout=60, interval=0.02,
                       what="the sender to wait in an await for the frozen node")
            tick = actornet.spawn(_count_ticks, state)
            wait_until(lambda: state["ticks"] >= 20, timeout=10,
                       what="a process on the sender's loop to run while the sender waits")
            assert not state["paid"]  # b is still frozen: the sender still waits
            actornet.exit(tick, "kill")
        finally:
            b.signal(signal.SIGCONT)
        _, count, in_order = actornet.receive(lambda m: m[0] == "sink", timeout=60)
        assert state["paid"] and in_order and count == state["sent"] > 100
        assert state["longest_send"] < 0.5  # no send waited for b


async def _count_ticks(state: dict[str, Any]) -> None:
    while True:
        with pytest.raises(actornet.Timeout):
            await aio.receive(timeout=0.005)
        state["ticks"] += 1
