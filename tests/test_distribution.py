"""Distribution between real OS processes over loopback: every primitive across nodes."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
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


def _call_then_report(me: actornet.Pid, server: actornet.Pid, request: Any) -> None:
    """Call `server`, tell `me` how it ended, then tell `me` the next message this process
    gets (a stray reply would be it)."""
    actornet.send(me, "calling")
    try:
        actornet.send(me, ("call_result", actornet.call(server, request, timeout=30)))
    except NodeDown:
        actornet.send(me, ("call_result", "NodeDown"))
    actornet.send(me, ("caller_then_got", actornet.receive(timeout=30)))


def test_sigstop_fires_everything_once_and_nothing_late(local: actornet.Node,
                                                        cluster: Cluster) -> None:
    """b is frozen (SIGSTOP) while a call to it is pending: nodedown, the link
    ("noconnection"), the monitor's DOWN and the call's NodeDown, each exactly once, within
    the tick bound. After SIGCONT, nothing of the old connection reaches us: not the call's
    late reply, not an EXIT or DOWN when the processes we watched die later."""
    tick = 1.5  # both sides
    b = cluster.start(unique("b"), extra=["--tick-time", str(tick)])
    assert actornet.ping(b.address) == "pong"
    counter = actornet.rpc.call(b.name, remote.start_counter, "counter")
    actornet.trap_exit(True)
    linked = actornet.spawn_link(remote.wait_forever, node=b.name)
    ref = actornet.monitor(counter)
    actornet.monitor_node(b.name)
    me = actornet.self()
    caller = actornet.spawn(_call_then_report, me, counter, ("reply_after", 1.0))
    actornet.receive(lambda m: m == "calling", timeout=5)
    t0 = time.monotonic()
    b.signal(signal.SIGSTOP)
    try:
        assert actornet.receive(lambda m: m[0] == "nodedown", timeout=10) == ("nodedown", b.name)
        assert time.monotonic() - t0 < tick * 1.125 + 1.0
        assert actornet.receive(lambda m: m[0] == "call_result", timeout=5)[1] == "NodeDown"
        assert down_of(ref, 5) == ("DOWN", ref, "process", counter, "noconnection")
        assert actornet.receive(lambda m: m[0] == "EXIT", timeout=5) == ("EXIT", linked,
                                                                          "noconnection")
        with pytest.raises(TimeoutError):  # each exactly once
            actornet.receive(lambda m: m[0] in ("DOWN", "EXIT", "nodedown", "call_result"),
                             timeout=0.3)
    finally:
        b.signal(signal.SIGCONT)
    # b runs again; a new connection. The counter answers "get" only after the late reply.
    assert actornet.ping(b.address) == "pong"
    assert actornet.call(counter, "get") == 0
    actornet.send(caller, "control")
    assert actornet.receive(lambda m: m[0] == "caller_then_got", timeout=10)[1] == "control"
    # The processes we watched die now: our link and monitor are gone, nothing fires.
    for pid in (counter, linked):
        actornet.rpc.call(b.name, actornet.exit, pid, "late")
        wait_until(lambda pid=pid: not actornet.is_alive(pid), what=f"{pid} to die")
    control = actornet.spawn(remote.wait_forever, node=b.name)
    control_ref = actornet.monitor(control)
    actornet.exit(control, "control")
    assert down_of(control_ref)[4] == "control"
    with pytest.raises(TimeoutError):
        actornet.receive(lambda m: m[0] in ("DOWN", "EXIT", "nodedown"), timeout=0.3)


def test_a_frozen_node_is_down_within_5_s_with_the_default_tick(cluster: Cluster) -> None:
    """The default tick_time (4 s) on both sides: a SIGSTOPped node is declared down
    within 5 s of freezing, even when a frame from it has just arrived."""
    b = cluster.start(unique("b"))
    with actornet.start_node(unique("t"), cookie=COOKIE, port=0) as here:
        assert here.node_info()["tick_time"] == 4.0
        assert actornet.ping(b.address) == "pong"
        actornet.monitor_node(b.name)
        actornet.rpc.call(b.name, actornet.node)  # a frame from b has just arrived
        t0 = time.monotonic()
        b.signal(signal.SIGSTOP)
        try:
            assert actornet.receive(lambda m: m[0] == "nodedown", timeout=10) == (
                "nodedown", b.name)
            assert time.monotonic() - t0 < 5.0
        finally:
            b.signal(signal.SIGCONT)


def test_stop_tells_peers_at_once(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    """b stops: we see it down at once, for the reason b gave (its goodbye), with a tick so
    long on both sides that silence cannot explain it."""
    caplog.set_level("WARNING", logger="actornet.dist")
    b = cluster.start(unique("b"), extra=["--tick-time", "30"])
    with actornet.start_node(unique("t"), cookie=COOKIE, port=0, tick_time=30) as here:
        assert actornet.ping(b.address) == "pong"
        assert actornet.rpc.call(b.name, actornet.node) == b.name  # b's connection to us is up
        actornet.monitor_node(b.name)
        t0 = time.monotonic()
        assert b.terminate() == 0
        actornet.receive(lambda m: m[0] == "nodedown", timeout=10)
        assert time.monotonic() - t0 < 5.0
        said = [r.getMessage() for r in caplog.records if r.name == "actornet.dist"
                and f"node {here.name}: node {b.name} is down" in r.getMessage()]
        assert said == [f"node {here.name}: node {b.name} is down: it stopped"]


def test_rpc_call_pending_when_the_node_is_killed_raises_node_down(
    local: actornet.Node, cluster: Cluster
) -> None:
    b = cluster.start(unique("b"))
    assert actornet.ping(b.address) == "pong"
    me = actornet.self()

    def rpc_and_report() -> None:
        try:
            actornet.rpc.call(b.name, remote.notify_then_sleep, me, 60, timeout=120)
            actornet.send(me, ("rpc_result", "returned"))
        except NodeDown:
            actornet.send(me, ("rpc_result", "NodeDown"))

    actornet.spawn(rpc_and_report)
    actornet.receive(lambda m: m == "running", timeout=10)  # the function runs on b
    t0 = time.monotonic()
    os.kill(b.proc.pid, signal.SIGKILL)
    assert actornet.receive(lambda m: m[0] == "rpc_result", timeout=10)[1] == "NodeDown"
    assert time.monotonic() - t0 < 5.0


def test_remote_spawn_of_a_function_the_node_cannot_import(local: actornet.Node,
                                                           cluster: Cluster) -> None:
    """spawn(fn, node=b) of a function b cannot import returns a pid of b, whose process
    crashes at once with a RemoteImportError Crash: a link brings it as an EXIT, and kills
    a linked process that does not trap exits (whose monitor then says why)."""
    b = cluster.start(unique("b"))
    assert actornet.ping(b.address) == "pong"
    fake = type(remote.add)(remote.add.__code__, {}, "missing_function")
    fake.__module__ = "tests.no_such_module"
    actornet.trap_exit(True)
    pid = actornet.spawn_link(fake, 1, 2, node=b.name)
    assert pid.node == b.name
    reason = actornet.receive(lambda m: m[0] == "EXIT" and m[1] == pid, timeout=10)[2]
    assert isinstance(reason, actornet.Crash) and reason.type == "RemoteImportError"
    assert "tests.no_such_module" in reason.message

    def spawn_it() -> None:
        actornet.spawn_link(fake, 1, 2, node=b.name)
        actornet.receive(lambda m: False)

    ref = actornet.monitor(actornet.spawn(spawn_it))
    reason = down_of(ref)[4]
    assert isinstance(reason, actornet.Crash) and reason.type == "RemoteImportError"


def test_node_names_with_the_machines_hostname(cluster: Cluster) -> None:
    host = socket.gethostname()
    try:
        address = socket.gethostbyname(host)
        with socket.socket() as s:
            s.bind((address, 0))
            s.listen()
            with socket.create_connection(s.getsockname(), timeout=2):
                pass
    except OSError as e:
        pytest.skip(f"the hostname {host!r} does not resolve to an address usable here: {e}")
    b = cluster.start(unique("b").replace("@127.0.0.1", f"@{host}"))
    name = unique("t").replace("@127.0.0.1", f"@{host}")
    with actornet.start_node(name, cookie=COOKIE, port=0):
        assert actornet.node() == name
        assert actornet.ping(b.address) == "pong"
        assert actornet.rpc.call(b.name, actornet.nodes) == [name]
        pid = actornet.rpc.call(b.name, remote.start_echo, "echo")
        actornet.send(pid, (actornet.self(), "by hostname"))
        assert actornet.receive(timeout=5) == ("echo", "by hostname")


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


def test_a_frozen_receiver_makes_the_sender_wait_and_loses_nothing(cluster: Cluster) -> None:
    """b is frozen (SIGSTOP, long ticks on both sides so that it is not declared down). A
    process sends 10 KiB messages to b until a send blocks: the connection is busy (node_info
    says so) and a send has waited over a second. Then b runs again (SIGCONT): every message
    arrives, in order, and the blocked send completes. The sender must block before 60 MiB:
    what is buffered for a peer (socket buffers, ZeroMQ's queue, the backlog) is bounded."""
    b = cluster.start(unique("b"), extra=["--tick-time", "60"])
    with actornet.start_node(unique("t"), cookie=COOKIE, port=0, tick_time=60) as here:
        assert actornet.ping(b.address) == "pong"
        sink = actornet.spawn(remote.ordered_sink, actornet.self(), node=b.name)
        blob, cap = b"x" * 10_240, 6_000
        stop = threading.Event()
        state: dict[str, Any] = {"sent": 0, "since": None}

        def send_until_stopped() -> None:
            i = 0
            while not stop.is_set() and i < cap:
                state["since"] = time.monotonic()
                actornet.send(sink, ("m", i, blob))
                state["since"] = None
                i = state["sent"] = i + 1
            actornet.send(sink, ("end", i))

        b.signal(signal.SIGSTOP)
        try:
            actornet.spawn(send_until_stopped)

            def blocked() -> bool:
                since = state["since"]
                assert state["sent"] < cap, f"{cap} sends and no back-pressure"
                return since is not None and time.monotonic() - since > 1.0

            wait_until(blocked, timeout=60, interval=0.02, what="a send to block")
            assert here.node_info()["connections"][b.name]["busy"]
            stop.set()
        finally:
            b.signal(signal.SIGCONT)
        _, count, in_order = actornet.receive(lambda m: m[0] == "sink", timeout=60)
        assert in_order and count == state["sent"] > 100
        assert b.name in actornet.nodes()


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
    line = b.wait_output(r"dropped an op of \d+ bytes from " + re.escape(local.name))
    assert int(re.search(r"of (\d+) bytes", line).group(1)) > 20_000  # type: ignore[union-attr]
    info = actornet.rpc.call(b.name, actornet.node_info)
    assert info["oversized_in"] == 1 and info["bad_frames"] == 0
    assert info["connections"][local.name]["state"] == "up"
    assert actornet.nodes() == [b.name]
    with pytest.raises(TimeoutError):  # no nodedown: the connection never broke
        actornet.receive(lambda m: m[0] == "nodedown", timeout=0.3)


def test_a_signal_over_the_receivers_limit_closes_the_connection(
    local: actornet.Node, cluster: Cluster
) -> None:
    """An exit signal over b's limit cannot be dropped alone: its target would never hear of
    it. b closes the connection instead, so our monitor of the target fires with
    noconnection (the target itself lives on), and b logs the size and our name."""
    b = cluster.start(unique("b"), extra=["--max-message-size", "10000"])
    assert actornet.ping(b.address) == "pong"
    pid = actornet.rpc.call(b.name, remote.start_echo, "echo")
    ref = actornet.monitor(pid)
    actornet.exit(pid, ("shutdown", "x" * 20_000))
    down = actornet.receive(lambda m: m[0] == "DOWN", timeout=10)
    assert down == ("DOWN", ref, "process", pid, "noconnection")
    b.wait_output(r"dropped an op of \d+ bytes from " + re.escape(local.name))
    assert actornet.ping(b.address) == "pong"  # a new connection: the echo never got it
    assert actornet.rpc.call(b.name, actornet.is_alive, pid) is True


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
        assert n.dist.endpoint.startswith("tcp://127.0.0.1:")
        assert any("loopback only" in r.getMessage() and n.name in r.getMessage()
                   for r in caplog.records)


def test_noconnect_sends_never_make_a_connection(local: actornet.Node) -> None:
    """send(..., noconnect=True), as pg and global_ use for their sync traffic, drops a
    message for a node that is not connected instead of connecting (Erlang's noconnect)."""
    quiet = actornet.Pid("quiet@127.0.0.1", 1, 1)
    actornet.send(quiet, "dropped", noconnect=True)
    assert "quiet@127.0.0.1" not in local.dist.peer_info() or \
        local.dist.peer_info()["quiet@127.0.0.1"]["state"] == "new"
    actornet.send(("anyone", "loud@127.0.0.1:1"), "connects")  # the control: it tries
    # (port 1: nothing listens there)
    wait_until(lambda: local.dist.peer_info().get("loud@127.0.0.1", {}).get("state")
               in ("connecting", "down"), what="an ordinary send to start a connection")
    assert local.dist.peer_info().get("quiet@127.0.0.1", {"state": "new"})["state"] == "new"


def test_a_cut_that_heals_by_itself_connects_again() -> None:
    """`testing.cut(node, heal_after=)`: both sides see the link go down, and once it heals
    this node dials the other again by itself, at the address it knew it by."""
    from actornet import testing

    with (actornet.start_node(unique("a"), cookie=COOKIE, port=0) as a,
          actornet.start_node(unique("b"), cookie=COOKIE, port=0) as b):
        assert actornet.ping(f"{b.name}:{b.port}") == "pong"
        actornet.monitor_node(b.name)
        testing.cut(b.name, heal_after=0.5)
        assert actornet.receive(timeout=10) == ("nodedown", b.name)
        wait_until(lambda: actornet.nodes() == [b.name], 10, what="the link to come back")
        assert actornet.rpc.call(b.name, remote.add, 1, 2) == 3
        assert a.name in b.dist.nodes()
