"""Distribution between real OS processes over loopback: every primitive across nodes."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

import actornet
from actornet import NodeDown, NoProc

from . import remote
from .cluster import COOKIE, Cluster, unique
from .helpers import wait_until


@pytest.fixture(autouse=True)
def node() -> Iterator[None]:
    """Overrides the suite's local node: here the `local` named node is the default."""
    yield None


@pytest.fixture
def local() -> Iterator[actornet.Node]:
    """A named node in the test process, with a short tick so failures show fast."""
    n = actornet.start_node(unique("t"), cookie=COOKIE, port=0, tick_time=1.5)
    try:
        yield n
    finally:
        n.stop()


def down_of(ref: actornet.Ref, timeout: float = 10) -> tuple[Any, ...]:
    return actornet.receive(lambda m: m[0] == "DOWN" and m[1] == ref, timeout=timeout)


def test_ping_nodes_and_node(local: actornet.Node, cluster: Cluster) -> None:
    b = cluster.start(unique("b"))
    assert actornet.node() == local.name
    assert actornet.ping(b.address) == "pong"
    assert actornet.nodes() == [b.name]
    assert actornet.rpc.call(b.name, actornet.nodes) == [local.name]
    assert actornet.ping("nobody@127.0.0.1:1") == "pang"


def test_send_by_pid_and_by_name_keeps_types(local: actornet.Node, cluster: Cluster) -> None:
    b = cluster.start(unique("b"))
    assert actornet.ping(b.address) == "pong"
    pid = actornet.rpc.call(b.name, remote.start_echo, "echo")
    me = actornet.self()
    payload = ("t", [1, 2], {"k": (3, frozenset({4}))}, {5}, b"x", None, 1.5, True, me)
    actornet.send(pid, (me, payload))
    tag, echoed = actornet.receive(timeout=5)
    assert (tag, echoed) == ("echo", payload)
    assert type(echoed) is tuple and type(echoed[1]) is list and type(echoed[2]["k"]) is tuple
    assert echoed[8] == me
    actornet.send(("echo", b.name), (me, "by name"))
    assert actornet.receive(timeout=5) == ("echo", "by name")


def test_unsendable_value_raises_type_error_at_send(local: actornet.Node,
                                                    cluster: Cluster) -> None:
    b = cluster.start(unique("b"))
    actornet.ping(b.address)
    pid = actornet.rpc.call(b.name, remote.start_echo, "echo")
    with pytest.raises(TypeError, match="'object'"):
        actornet.send(pid, (actornet.self(), object()))


def test_remote_gen_server_call_cast_and_errors(local: actornet.Node, cluster: Cluster) -> None:
    b = cluster.start(unique("b"))
    actornet.ping(b.address)
    pid = actornet.rpc.call(b.name, remote.start_counter, "counter", 10)
    assert pid.node == b.name
    actornet.cast(pid, "inc")
    assert actornet.call(pid, "get") == 11
    assert actornet.call(("counter", b.name), "node") == b.name
    with pytest.raises(NoProc):
        actornet.call(("no_such", b.name), "get")
    with pytest.raises(actornet.CallError, match="ValueError: remote crash"):
        actornet.call(pid, "crash")
    with pytest.raises(TimeoutError):
        actornet.call(actornet.rpc.call(b.name, remote.start_counter, "c2"), "hang", timeout=0.3)


def test_links_and_monitors_across_nodes(local: actornet.Node, cluster: Cluster) -> None:
    b = cluster.start(unique("b"))
    actornet.ping(b.address)
    actornet.trap_exit(True)
    worker = actornet.spawn_link(remote.echo, node=b.name)
    ref = actornet.monitor(worker)
    actornet.exit(worker, "stop_now")
    assert down_of(ref)[4] == "stop_now"
    msg = actornet.receive(lambda m: m[0] == "EXIT", timeout=5)
    assert msg == ("EXIT", worker, "stop_now")
    # a crash's reason crosses nodes with its type and message
    crasher = actornet.spawn_link(remote.raise_value_error, "from b", node=b.name)
    reason = actornet.receive(lambda m: m[0] == "EXIT" and m[1] == crasher, timeout=5)[2]
    assert isinstance(reason, actornet.Crash)
    assert (reason.type, reason.message) == ("ValueError", "from b")
    # monitor of a dead remote pid: noproc at once
    ref2 = actornet.monitor(worker)
    assert down_of(ref2)[4] == "noproc"
    # remote process links to us; we exit -> it dies
    waiter = actornet.spawn(remote.linked_waiter, actornet.self(), node=b.name)
    ref3 = actornet.monitor(waiter)
    actornet.exit(waiter, "kill")
    assert down_of(ref3)[4] == "killed"


def test_rpc_and_remote_spawn_errors(local: actornet.Node, cluster: Cluster) -> None:
    b = cluster.start(unique("b"))
    actornet.ping(b.address)
    assert actornet.rpc.call(b.name, remote.add, 2, 3) == 5
    assert actornet.rpc.call(b.name, os.getpid) == b.proc.pid
    with pytest.raises(actornet.CallError, match="ValueError: nope"):
        actornet.rpc.call(b.name, remote.raise_value_error, "nope")
    fake = type(remote.add)(remote.add.__code__, {}, "missing_function")
    fake.__module__ = "tests.no_such_module"
    with pytest.raises(actornet.rpc.RemoteImportError, match=r"tests\.no_such_module"):
        actornet.rpc.call(b.name, fake)
    with pytest.raises(TypeError, match="lambda"):
        actornet.rpc.call(b.name, lambda: 1)
    assert actornet.is_alive(actornet.rpc.call(b.name, remote.start_echo, "e"))


def test_sigkill_fires_links_monitors_nodedown_and_pending_calls(
    local: actornet.Node, cluster: Cluster
) -> None:
    b = cluster.start(unique("b"))
    actornet.ping(b.address)
    counter = actornet.rpc.call(b.name, remote.start_counter, "counter")
    actornet.trap_exit(True)
    linked = actornet.spawn_link(remote.echo, node=b.name)
    ref = actornet.monitor(counter)
    actornet.monitor_node(b.name)
    me = actornet.self()
    caller = actornet.spawn(lambda: _call_and_report(me, counter))
    actornet.receive(lambda m: m == "calling", timeout=5)
    t0 = time.monotonic()
    os.kill(b.proc.pid, signal.SIGKILL)
    assert actornet.receive(lambda m: m[0] == "call_result", timeout=10)[1] == "NodeDown"
    assert down_of(ref) == ("DOWN", ref, "process", counter, "noconnection")
    assert actornet.receive(lambda m: m[0] == "EXIT", timeout=10) == ("EXIT", linked,
                                                                       "noconnection")
    assert actornet.receive(lambda m: m[0] == "nodedown", timeout=10) == ("nodedown", b.name)
    assert time.monotonic() - t0 < 5.0
    assert b.name not in actornet.nodes()
    # exactly once
    with pytest.raises(TimeoutError):
        actornet.receive(lambda m: m[0] in ("DOWN", "EXIT", "nodedown"), timeout=0.3)
    assert caller


def _call_and_report(me: actornet.Pid, server: actornet.Pid) -> None:
    actornet.send(me, "calling")
    try:
        actornet.call(server, "hang", timeout=30)
        actornet.send(me, ("call_result", "returned"))
    except NodeDown:
        actornet.send(me, ("call_result", "NodeDown"))


def test_sigstop_frozen_node_is_declared_down(local: actornet.Node, cluster: Cluster) -> None:
    b = cluster.start(unique("b"), extra=["--tick-time", "1.5"])
    actornet.ping(b.address)
    actornet.monitor_node(b.name)
    t0 = time.monotonic()
    b.signal(signal.SIGSTOP)
    try:
        assert actornet.receive(lambda m: m[0] == "nodedown", timeout=10) == ("nodedown", b.name)
        assert time.monotonic() - t0 < 1.5 + 2.0
    finally:
        b.signal(signal.SIGCONT)


def test_stop_tells_peers_at_once(local: actornet.Node, cluster: Cluster) -> None:
    b = cluster.start(unique("b"), extra=["--tick-time", "30"])
    actornet.ping(b.address)
    actornet.monitor_node(b.name)
    t0 = time.monotonic()
    assert b.terminate() == 0
    actornet.receive(lambda m: m[0] == "nodedown", timeout=10)
    assert time.monotonic() - t0 < 5.0, "goodbye, not a tick timeout"


def test_restarted_node_is_a_new_incarnation(local: actornet.Node, cluster: Cluster) -> None:
    name = unique("b")
    b1 = cluster.start(name)
    actornet.ping(b1.address)
    old = actornet.rpc.call(name, remote.start_echo, "echo")
    actornet.monitor_node(name)
    b1.kill()
    actornet.receive(lambda m: m[0] == "nodedown", timeout=10)
    b2 = cluster.start(name, port=b1.port)
    assert actornet.ping(b2.address) == "pong"
    new = actornet.rpc.call(name, remote.start_echo, "echo")
    assert new.id == old.id and new != old, "same slot, new incarnation"
    me = actornet.self()
    actornet.send(old, (me, "to the old incarnation"))
    actornet.send(new, (me, "to the new one"))
    assert actornet.receive(timeout=5) == ("echo", "to the new one")
    with pytest.raises(TimeoutError):
        actornet.receive(timeout=0.3)
    assert not actornet.is_alive(old)


def test_per_pair_fifo_across_nodes(local: actornet.Node, cluster: Cluster) -> None:
    b = cluster.start(unique("b"))
    actornet.ping(b.address)
    senders, per_sender = 4, 300
    sink = actornet.spawn(remote.collector, actornet.self(), senders * per_sender, node=b.name)

    def send_all(i: int) -> None:
        for seq in range(per_sender):
            actornet.send(sink, (i, seq))

    for i in range(senders):
        actornet.spawn(send_all, i)
    got = actornet.receive(lambda m: m[0] == "collected", timeout=30)[1]
    assert len(got) == senders * per_sender
    for i in range(senders):
        assert [seq for s, seq in got if s == i] == list(range(per_sender))


def test_slow_consumer_loses_nothing(local: actornet.Node, cluster: Cluster) -> None:
    b = cluster.start(unique("b"))
    actornet.ping(b.address)
    count = 12000  # 12 MB through an 8 MiB busy limit: senders must wait, nothing lost
    sink = actornet.spawn(remote.slow_consumer, actornet.self(), count, node=b.name)
    blob = b"x" * 1000
    for i in range(count):
        actornet.send(sink, (i, blob))
    got = actornet.receive(lambda m: m[0] == "slow_done", timeout=60)[1]
    assert [i for i, _ in got] == list(range(count))


def test_payload_size_limit(cluster: Cluster) -> None:
    with actornet.start_node(unique("t"), cookie=COOKIE, port=0,
                             max_message_size=10_000) as local:
        b = cluster.start(unique("b"))
        actornet.ping(b.address)
        pid = actornet.rpc.call(b.name, remote.start_echo, "echo")
        with pytest.raises(actornet.PayloadTooLarge, match="10000"):
            actornet.send(pid, (actornet.self(), b"x" * 20_000))
        actornet.send(pid, (actornet.self(), b"x" * 100))
        assert actornet.receive(timeout=5) == ("echo", b"x" * 100)
        assert local.running


def test_a_message_over_the_receivers_limit_is_dropped_and_the_link_goes_on(
    local: actornet.Node, cluster: Cluster
) -> None:
    """b accepts at most 10 000 bytes, we send up to 64 MiB: our 20 000-byte message is
    dropped by b (logged with its size and our name, counted), the messages before and
    after it are delivered, and the connection stays up."""
    b = cluster.start(unique("b"), extra=["--max-message-size", "10000"])
    assert actornet.ping(b.address) == "pong"
    pid = actornet.rpc.call(b.name, remote.start_echo, "echo")
    actornet.monitor_node(b.name)
    me = actornet.self()
    for payload in ("before", b"x" * 20_000, "after"):  # one batch, most likely
        actornet.send(pid, (me, payload))
    assert actornet.receive(timeout=5) == ("echo", "before")
    assert actornet.receive(timeout=5) == ("echo", "after")
    line = b.wait_output(r"dropped a message of \d+ bytes from " + re.escape(local.name))
    assert int(re.search(r"of (\d+) bytes", line).group(1)) > 20_000  # type: ignore[union-attr]
    info = actornet.rpc.call(b.name, actornet.node_info)
    assert info["oversized_in"] == 1 and info["bad_frames"] == 0
    assert info["connections"][local.name]["state"] == "up"
    assert actornet.nodes() == [b.name]
    with pytest.raises(TimeoutError):  # no nodedown: the connection never broke
        actornet.receive(lambda m: m[0] == "nodedown", timeout=0.3)


def test_transitive_mesh(local: actornet.Node, cluster: Cluster) -> None:
    b = cluster.start(unique("b"))
    c = cluster.start(unique("c"))
    assert actornet.ping(b.address) == "pong"
    assert actornet.rpc.call(b.name, actornet.ping, c.address) == "pong"
    # we are connected to b, b to c: we connect to c by ourselves
    wait_until(lambda: c.name in actornet.nodes(), what="the mesh to reach c")
    assert sorted(actornet.nodes()) == sorted([b.name, c.name])


def test_hidden_node_stays_out_of_nodes_and_mesh(cluster: Cluster) -> None:
    b = cluster.start(unique("b"))
    c = cluster.start(unique("c"))
    with actornet.start_node(unique("h"), cookie=COOKIE, port=0, hidden=True) as hidden:
        assert actornet.ping(b.address) == "pong"
        assert actornet.rpc.call(b.name, actornet.ping, c.address) == "pong"
        assert hidden.name not in actornet.rpc.call(b.name, actornet.nodes)
        assert c.name not in actornet.nodes(), "a hidden node is not meshed"
        pid = actornet.rpc.call(b.name, remote.start_echo, "echo")
        actornet.send(pid, (actornet.self(), "from a hidden node"))
        assert actornet.receive(timeout=5) == ("echo", "from a hidden node")


def test_port_addresses_work_before_any_connection(cluster: Cluster) -> None:
    """(name, "node@host:port") reaches a node we never connected to; its monitors fire."""
    b = cluster.start(unique("b"))
    c = cluster.start(unique("c"))
    with actornet.start_node(unique("t"), cookie=COOKIE, port=0, hidden=True):
        assert actornet.ping(b.address) == "pong"
        actornet.rpc.call(b.name, actornet.ping, c.address)
        actornet.rpc.call(b.name, remote.start_echo_on, c.name, "echo")
        assert c.name not in actornet.nodes(), "never connected to c"
        actornet.send(("echo", c.address), (actornet.self(), "by address"))
        assert actornet.receive(timeout=5) == ("echo", "by address")
        ref = actornet.monitor(("echo", c.address))
        c.kill()
        assert down_of(ref)[4] == "noconnection"


def test_localhost_names_and_mesh_off(cluster: Cluster) -> None:
    """A node named name@localhost works; with mesh=False it connects only where asked."""
    b = cluster.start(unique("b"))
    c = cluster.start(unique("c"))
    name = unique("t").replace("@127.0.0.1", "@localhost")
    with actornet.start_node(name, cookie=COOKIE, port=0, mesh=False, hidden=True) as here:
        assert actornet.node() == name and here.port
        assert actornet.ping(b.address) == "pong"
        assert actornet.rpc.call(b.name, actornet.ping, c.address) == "pong"
        with pytest.raises(AssertionError, match="timed out"):  # nothing connects us to c
            wait_until(lambda: c.name in actornet.nodes(), timeout=1.0)
        assert actornet.nodes() == [b.name]


@pytest.mark.parametrize("no_mesh", ["abc", "c"], ids=["all-off", "only-c-off"])
def test_mesh_off_is_per_node(cluster: Cluster, no_mesh: str) -> None:
    """Three nodes, none hidden; a connects to b, b to c. With mesh=False on all three, a
    never connects to c. With it off on c only, a and b still mesh: a connects to c (mesh
    is per node, like Erlang's -connect_all false, which every node must set)."""
    flags = {n: ["--no-mesh"] if n in no_mesh else [] for n in "abc"}
    c = cluster.start(unique("c"), extra=flags["c"])
    b = cluster.start(unique("b"), extra=flags["b"])
    a = cluster.start(unique("a"), extra=flags["a"])
    with actornet.start_node(unique("t"), cookie=COOKIE, port=0, hidden=True):  # a driver
        for n in (a, b, c):
            assert actornet.ping(n.address) == "pong"
        assert actornet.rpc.call(a.name, actornet.ping, b.address) == "pong"
        assert actornet.rpc.call(b.name, actornet.ping, c.address) == "pong"
        a_meets_c = lambda: c.name in actornet.rpc.call(a.name, actornet.nodes)  # noqa: E731
        if no_mesh == "c":
            wait_until(a_meets_c, what="a and b to mesh a to c")
            assert a.name in actornet.rpc.call(c.name, actornet.nodes)
        else:
            with pytest.raises(AssertionError, match="timed out"):  # nothing connects a to c
                wait_until(a_meets_c, timeout=1.5, interval=0.05)
            assert actornet.rpc.call(a.name, actornet.nodes) == [b.name]
            assert actornet.rpc.call(c.name, actornet.nodes) == [b.name]
            assert actornet.rpc.call(b.name, actornet.nodes) == sorted([a.name, c.name])


def test_a_message_larger_than_a_frame_crosses_whole(local: actornet.Node,
                                                     cluster: Cluster) -> None:
    b = cluster.start(unique("b"))
    assert actornet.ping(b.address) == "pong"
    pid = actornet.rpc.call(b.name, remote.start_echo, "echo")
    big = bytes(range(256)) * (3 * 4096)  # 3 MiB: twelve 256 KiB frames
    actornet.send(pid, (actornet.self(), big))
    actornet.send(pid, (actornet.self(), "small, after"))
    assert actornet.receive(timeout=20) == ("echo", big)
    assert actornet.receive(timeout=5) == ("echo", "small, after")


def test_a_node_listens_on_its_host_address_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="actornet.dist")
    with actornet.start_node(unique("l"), cookie=COOKIE, port=0) as n:
        assert n._dist.endpoint.startswith("tcp://127.0.0.1:")
        assert any("loopback only" in r.getMessage() and n.name in r.getMessage()
                   for r in caplog.records)


def test_noconnect_sends_never_make_a_connection(local: actornet.Node) -> None:
    """send(..., noconnect=True), as pg and global_ use for their sync traffic, drops a
    message for a node that is not connected instead of connecting (Erlang's noconnect)."""
    quiet = actornet.Pid("quiet@127.0.0.1", 1, 1)
    actornet.send(quiet, "dropped", noconnect=True)
    assert "quiet@127.0.0.1" not in local._dist.peer_info() or \
        local._dist.peer_info()["quiet@127.0.0.1"]["state"] == "new"
    actornet.send(("anyone", "loud@127.0.0.1:1"), "connects")  # the control: it tries
    # (port 1: nothing listens there)
    wait_until(lambda: local._dist.peer_info().get("loud@127.0.0.1", {}).get("state")
               in ("connecting", "down"), what="an ordinary send to start a connection")
    assert local._dist.peer_info().get("quiet@127.0.0.1", {"state": "new"})["state"] == "new"
