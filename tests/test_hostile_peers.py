"""Hostile peers over real sockets: half-open handshakes, a flood of them, a replay, a relay.

The issue: a peer that connects and never completes the handshake is dropped after a
handshake timeout (its connection closed, so it cannot start over on it); a thousand of
them at once do not stop legitimate nodes from connecting; a replayed handshake fails
(fresh nonces); a program that relays a real node's handshake cannot add a message of its
own to the connection (issue 12, class 1).

Every test runs in both modes (`MODES`): "secure", the default (CurveZMQ), where the raw
ZeroMQ sockets of an attacker that stands for a cookie holder get the cluster's keys, and a
stranger speaking plain ZMTP is turned away by CurveZMQ itself; and "plain"
(``insecure=True``), where the node's own handshake and MAC are all there is.

The node under attack runs in this process (so the test can read its connection table
and set a short ``handshake_timeout``); legitimate peers are a node of this process and a
child node (``python -m actornet node``). Attackers are raw ZeroMQ DEALERs and plain TCP
sockets on loopback. Every wait has a deadline; every socket, node and child is closed or
killed at the end, pass or fail.

Closing one connection of a ROUTER relies on libzmq saying which descriptor a message
came from (ZMQ_SRCFD); where it does not, the tests that check a closure are skipped,
saying so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import resource
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
import zmq

import actornet
from actornet import _handshake as hs
from actornet import _wire as w

from . import remote
from .cluster import COOKIE, Cluster, NodeProc
from .cluster import unique as _unique
from .helpers import wait_until
from .netutil import (
    DEADLINE,
    MODES,
    InjectingRelay,
    RecordingProxy,
    as_cookie_holder,
    insecure,
    node_args,
    on,
)
from .zmtp import GREETING as ZMTP_GREETING
from .zmtp import dealer as _zmtp_dealer
from .zmtp import frame as zmtp_frame
from .zmtp import messages as zmtp_messages
from .zmtp import read_until, wait_closed

FLOOD = 1_000  # half-open peers at once


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def node() -> Iterator[None]:
    """Overrides the suite's local node: here the named nodes the tests start act."""
    yield None


@pytest.fixture
def zctx() -> Iterator[zmq.Context[Any]]:
    """A ZeroMQ context for the attackers' sockets (room for a flood of them), destroyed
    with all its sockets at the end."""
    ctx: zmq.Context[Any] = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, FLOOD + 64)  # the default, 1023, is just too few
    try:
        yield ctx
    finally:
        ctx.destroy(linger=0)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """Each test runs against a secure node and against a plain one."""
    return str(request.param)


def start(prefix: str, mode: str, **kw: Any) -> actornet.Node:
    """A node of this process in `mode`, on a free port, with the test cookie."""
    return actornet.start_node(unique(prefix), cookie=COOKIE, port=0, insecure=insecure(mode),
                               **kw)


@pytest.fixture
def dial_back(zctx: zmq.Context[Any], mode: str) -> Iterator[str]:
    """The endpoint a raw peer announces in its handshake: the node dials it back, and
    finds a ROUTER that never answers, so the node's own connection to the peer stays
    pending and only the peer's connection into the node matters."""
    silent = as_cookie_holder(zctx.socket(zmq.ROUTER), mode, COOKIE, server=True)
    silent.setsockopt(zmq.LINGER, 0)
    port = silent.bind_to_random_port("tcp://127.0.0.1")
    try:
        yield f"tcp://127.0.0.1:{port}"
    finally:
        silent.close(linger=0)


@contextlib.contextmanager
def fd_limit_at_least(need: int) -> Iterator[None]:
    """Raise this process's soft limit of open files to `need` for the block, if it is
    lower; skip the test if the hard limit does not allow it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinite = resource.RLIM_INFINITY
    if soft != infinite and soft < need:
        if hard != infinite and hard < need:
            pytest.skip(f"needs {need} open files, the hard limit (ulimit -Hn) is {hard}")
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        except (ValueError, OSError) as e:
            pytest.skip(f"needs {need} open files, the limit is {soft} and cannot be raised: {e}")
    try:
        yield
    finally:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- helpers ----------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    """A node name unlikely to clash with another test's (even one running in parallel)."""
    return _unique(prefix + uuid.uuid4().hex[:4])


def port_of(node: actornet.Node) -> int:
    """The port `node` listens on."""
    assert node.port is not None, f"{node.name} is not distributed"
    return node.port


def dist_lines(caplog: pytest.LogCaptureFixture, *parts: str) -> list[str]:
    """Messages logged on "actornet.dist" that contain every one of `parts`."""
    return [m for r in list(caplog.records)
            if r.name == "actornet.dist" and all(p in (m := r.getMessage()) for p in parts)]


def hello(to: str, name: str = "intruder@127.0.0.1") -> bytes:
    """A well-formed HELLO to the node named `to`."""
    return hs._frame(hs.HELLO, {"name": name, "creation": 1, "flags": 0,
                                "endpoint": "tcp://127.0.0.1:1", "to": to})


def kind(frame: bytes) -> str:
    """The kind of a handshake frame ("CHALLENGE", ...); fail if it is not one."""
    assert frame[:4] == hs._MAGIC + bytes([hs.PROTOCOL_VERSION]), frame[:40]
    return hs._KINDS[frame[4]]


def body(frame: bytes) -> dict[str, Any]:
    kind(frame)
    return msgpack.unpackb(frame[5:], raw=False)  # type: ignore[no-any-return]


def raw_dealer(ctx: zmq.Context[Any], port: int, mode: str) -> zmq.Socket[Any]:
    """A bare DEALER connected to a node's port, as an attacker with the cookie would use
    (no handshake of ours; the cluster's CurveZMQ keys in secure mode)."""
    sock = as_cookie_holder(ctx.socket(zmq.DEALER), mode, COOKIE)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RECONNECT_IVL, -1)  # one connection: a drop stays a drop
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


def recv_frames(sock: zmq.Socket[Any], timeout: float = DEADLINE) -> list[bytes]:
    """The next message on `sock`; fail after `timeout` seconds."""
    if not sock.poll(int(timeout * 1000)):
        raise AssertionError(f"no reply within {timeout} s")
    return sock.recv_multipart()  # type: ignore[no-any-return]


def states(node: actornet.Node) -> list[str]:
    """The states of the node's inbound connections ("handshake", "up", "dead"). Read from
    this thread while the I/O thread changes the table: retried if it changed meanwhile."""
    table = node.dist._inbound
    for _ in range(100):
        try:
            return [conn.state for conn in list(table.values())]
        except RuntimeError:  # "dictionary changed size during iteration"
            continue
    raise AssertionError("the inbound table never held still")


def zmtp_dealer(port: int) -> tuple[socket.socket, bytes]:
    """A hand-written ZMTP DEALER connected to `port` (`zmtp.dealer`)."""
    return _zmtp_dealer(port)


def reset_on_send(sock: socket.socket, data: bytes) -> bool:
    """Send `data` on `sock`, which the other end closed: True once that end answers with a
    reset (nothing is left there to read it), False while it has not yet."""
    try:
        sock.sendall(data)
        sock.settimeout(0)
        sock.recv(1)  # b"" (EOF) until the reset arrives
    except (BrokenPipeError, ConnectionResetError):
        return True
    except BlockingIOError:
        pass
    return False


def inbound_inodes(node: actornet.Node, state: str) -> list[int]:
    """The socket inodes of the node's inbound connections in `state` whose TCP connection
    it knows (so that it can close them). Read from this thread as `states` is."""
    table = node.dist._inbound
    for _ in range(100):
        try:
            return [tcp.inode for c in list(table.values())
                    if c.state == state and (tcp := c.tcp) is not None]
        except RuntimeError:
            continue
    raise AssertionError("the inbound table never held still")


def open_socket_inodes() -> set[int]:
    """The inodes of the sockets this process holds a descriptor for."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                found.add(int(target[8:-1]))
    return found


def skip_unless_it_can_close(node: actornet.Node) -> None:
    """Skip the test if `node` cannot close one inbound connection (it finds out at the first
    message of a connection: call this after one)."""
    why = node.dist._srcfd_missing
    if why is not None:
        pytest.skip(f"the node cannot close a connection that fails its handshake: {why}")


# -- 1. one half-open peer ---------------------------------------------------------------------


def test_half_open_peer_is_dropped_after_the_handshake_timeout(
    caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    """A peer that speaks ZMTP by hand (no CurveZMQ) and sends a HELLO, then nothing. Plain:
    after handshake_timeout the node says it dropped it, closes the connection, and nothing
    sent on that connection afterwards (a new HELLO) gets to the node. Secure: CurveZMQ
    turns it away at once; nothing of it reaches the node."""
    caplog.set_level(logging.INFO, logger="actornet.dist")
    timeout, tick = 1.0, 1.0
    with start("t", mode, handshake_timeout=timeout, tick_time=tick) as t:
        assert states(t) == []
        began = time.monotonic()
        if not insecure(mode):
            with socket.create_connection(("127.0.0.1", port_of(t)), DEADLINE) as raw:
                raw.sendall(ZMTP_GREETING)
                wait_closed(raw)
            assert time.monotonic() - began < timeout, "not turned away at once"
            wait_until(lambda: dist_lines(caplog, t.name, "refused an incoming connection",
                                          "insecure=True on one side only"),
                       DEADLINE, 0.05, "the refusal to be logged")
            assert states(t) == [] and t.dist.stats["bad_frames"] == 0
            with start("l", mode) as legit:
                assert on(legit, actornet.ping, f"{t.name}:{t.port}") == "pong"
                assert on(legit, actornet.rpc.call, t.name, remote.add, 2, 3) == 5
            return
        raw, got = zmtp_dealer(port_of(t))
        with raw:
            raw.sendall(zmtp_frame(hello(t.name)))
            got = read_until(raw, lambda got: len(zmtp_messages(got)) >= 1, got)
            [[challenge]] = zmtp_messages(got)
            assert kind(challenge) == "CHALLENGE"  # the handshake began ...
            assert states(t) == ["handshake"]
            skip_unless_it_can_close(t)
            # ... and never ends: the node gives up after handshake_timeout (from when it
            # accepted the connection), says so, and closes the connection
            [line] = wait_until(
                lambda: dist_lines(caplog, t.name, "dropped a connection that did not "
                                   f"finish the handshake in {timeout:.1f} s"),
                timeout + DEADLINE, what="the drop to be logged")
            waited = time.monotonic() - began
            assert waited >= timeout, f"dropped after {waited:.2f} s only"
            here = raw.getsockname()
            assert f"closed the connection from {here[0]}:{here[1]}" in line
            wait_closed(raw)
            # The connection cannot start over: a new HELLO on it meets a reset (the node's
            # end is gone), and the node never saw it.
            bad = t.dist.stats["bad_frames"]
            wait_until(lambda: reset_on_send(raw, zmtp_frame(hello(t.name))), DEADLINE, 0.05,
                       "the node's end of the connection to reset a new HELLO")
            assert t.dist.stats["bad_frames"] == bad
        # the entry goes after 3 ticks
        wait_until(lambda: states(t) == [], 3 * tick + DEADLINE, 0.05,
                   "the inbound table to forget the connection")
        assert t.dist.stats["bad_frames"] == bad
        # and the node still welcomes a real peer
        with start("l", mode) as legit:
            assert on(legit, actornet.ping, f"{t.name}:{t.port}") == "pong"
            assert on(legit, actornet.rpc.call, t.name, remote.add, 2, 3) == 5


@pytest.mark.parametrize("peer", [
    "dealer-sent-hello",  # closed by the node after handshake_timeout
    "dealer-refused",  # a bad RESPONSE: refused, and closed once the REJECT is out
    "dealer-silent",  # past ZeroMQ's handshake, then nothing: closed after handshake_timeout
    "tcp-silent",  # closed by ZeroMQ after handshake_timeout (ZMQ_HANDSHAKE_IVL)
])
def test_a_dropped_half_open_connection_is_closed(
    zctx: zmq.Context[Any], peer: str, mode: str
) -> None:
    """'Dropped' means the connection is closed: its descriptor and buffers freed on the
    node, and the peer told."""
    timeout = 1.0
    with start("t", mode, handshake_timeout=timeout, tick_time=1.0) as t:
        deadline = timeout + 3.0
        if peer.startswith("dealer"):
            sock = raw_dealer(zctx, port_of(t), mode)
            monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED)
            began = time.monotonic()
            try:
                if peer == "dealer-silent":
                    # No message ever reaches the node: only its accept says it is there.
                    assert monitor.poll(int(deadline * 1000)), (
                        f"the connection is still open {deadline} s after it was made")
                    assert time.monotonic() - began >= timeout * 0.9
                    assert states(t) == []
                    return
                sock.send(hello(t.name))
                assert kind(recv_frames(sock)[0]) == "CHALLENGE"
                skip_unless_it_can_close(t)
                [inode] = inbound_inodes(t, "handshake")
                if peer == "dealer-refused":
                    sock.send(hs._frame(hs.RESPONSE, {"nonce": bytes(16), "digest": bytes(32)}))
                    [reject] = recv_frames(sock)
                    assert kind(reject) == "REJECT" and body(reject)["auth"] is True
                assert monitor.poll(int(deadline * 1000)), (
                    f"the connection is still open {deadline} s after the handshake began")
                wait_until(lambda: inode not in open_socket_inodes(), DEADLINE, 0.05,
                           "the node to close its descriptor of the connection")
            finally:
                sock.disable_monitor()
                monitor.close(linger=0)
                sock.close(linger=0)
        else:
            with socket.create_connection(("127.0.0.1", port_of(t)), timeout=DEADLINE) as raw:
                wait_closed(raw, deadline)  # ZeroMQ's greeting arrives first; then EOF


# -- 2. a thousand half-open peers at once -----------------------------------------------------


def test_a_thousand_half_open_peers_do_not_stop_legitimate_nodes(
    caplog: pytest.LogCaptureFixture, cluster: Cluster, zctx: zmq.Context[Any], mode: str
) -> None:
    """FLOOD DEALERs that send a HELLO and then nothing, and FLOOD plain TCP connections
    that send nothing at all, all open at once; meanwhile a node of this process and a
    child node connect to the node under attack, and calls go both ways."""
    caplog.set_level(logging.WARNING, logger="actornet.dist")
    # The node holds 2 descriptors per attacker (its end of the TCP connection), this
    # process 3 more (a DEALER: its mailbox and its end; a TCP socket: its end).
    need = 5 * FLOOD + 512
    # The legitimate checks must end before the drops begin (counted from the accepts)
    timeout, tick = 10.0, 1.5
    with fd_limit_at_least(need), contextlib.ExitStack() as stack:
        t = stack.enter_context(start("t", mode, handshake_timeout=timeout, tick_time=tick))
        b: NodeProc = cluster.start(unique("b"), extra=["--tick-time", str(tick),
                                                        *node_args(mode)])
        legit = stack.enter_context(start("l", mode, tick_time=tick))
        address = f"{t.name}:{t.port}"

        # Silent TCP connections first: they are slow to open (ZeroMQ's listen backlog is
        # 100, so some SYNs wait for a retransmission), and the clock of the others has
        # not started yet.
        tcps = [stack.enter_context(socket.create_connection(("127.0.0.1", port_of(t)), DEADLINE))
                for _ in range(FLOOD)]
        # A node of this process dials the node under attack while the HELLOs pour in.
        racing: queue.Queue[tuple[str, float]] = queue.Queue()

        def race() -> None:
            t0 = time.monotonic()
            racing.put((actornet.ping(address), time.monotonic() - t0))

        flood_began = time.monotonic()
        legit.spawn(race)
        dealers = []
        for i in range(FLOOD):
            sock = raw_dealer(zctx, port_of(t), mode)
            sock.send(hello(t.name, f"intruder{i}@127.0.0.1"))
            dealers.append(sock)
        # each of them began a handshake: it got a CHALLENGE
        poller = zmq.Poller()
        for sock in dealers:
            poller.register(sock, zmq.POLLIN)
        pending = set(dealers)
        end = time.monotonic() + 2 * DEADLINE
        while pending:
            assert time.monotonic() < end, f"{len(pending)} DEALERs got no CHALLENGE"
            for sock, _ in poller.poll(100):
                assert kind(sock.recv()) == "CHALLENGE"
                poller.unregister(sock)
                pending.discard(sock)
        challenged = time.monotonic() - flood_began

        # Legitimate nodes, meanwhile. The node of this process got in; a call goes from it
        # to the node under attack and back.
        took: dict[str, float] = {}
        answer, took["ping from a node here, racing the HELLOs"] = racing.get(timeout=DEADLINE)
        assert answer == "pong"
        # Only now is every connection still in its handshake an attacker's: the racing
        # node's own handshake may still have been under way when the last CHALLENGE came.
        assert states(t).count("handshake") == FLOOD
        t0 = time.monotonic()
        assert on(legit, actornet.rpc.call, t.name, remote.add, 2, 3) == 5
        took["call from a node here"] = time.monotonic() - t0
        # The node under attack dials a child, which dials back into it; calls both ways.
        t0 = time.monotonic()
        assert actornet.ping(b.address) == "pong"
        assert actornet.rpc.call(b.name, remote.add, 20, 22) == 42
        took["ping and call to a child"] = time.monotonic() - t0
        t0 = time.monotonic()
        echo = actornet.rpc.call(b.name, remote.start_echo_on, t.name, "echo")  # b calls t
        took["call from the child"] = time.monotonic() - t0
        assert echo.node == t.name and actornet.whereis("echo") == echo
        assert sorted(actornet.nodes()) == sorted([b.name, legit.name])
        logging.getLogger(__name__).warning(
            "%d half-open DEALERs challenged in %.2f s; under the flood: %s", FLOOD,
            challenged, ", ".join(f"{k} {v:.3f} s" for k, v in took.items()))
        for what, seconds in took.items():
            assert seconds < DEADLINE / 2, f"{what} took {seconds:.1f} s under the flood"
        assert not dist_lines(caplog, "did not finish the handshake"), (
            "the legitimate checks ran after the drops began: the flood was not all open")
        assert states(t).count("handshake") == FLOOD, "an attacker got further"
        closes = t.dist._srcfd_missing is None  # else they are only ignored
        attackers = inbound_inodes(t, "handshake")
        assert len(attackers) == (FLOOD if closes else 0)

        # Then every attacker is dropped, its connection closed, and the table forgets them.
        # (The silent TCP connections may be closed by ZeroMQ first, or logged here too.)

        def drops() -> list[str]:
            return dist_lines(caplog, t.name, f"did not finish the handshake in {timeout:.1f} s")

        wait_until(lambda: states(t).count("handshake") == 0, timeout + DEADLINE, 0.05,
                   "every attacker to be dropped")
        assert len(drops()) >= FLOOD
        assert time.monotonic() - flood_began >= timeout
        if closes:
            assert all("closed the connection from 127.0.0.1:" in line for line in drops())
            wait_until(lambda: not set(attackers) & open_socket_inodes(), DEADLINE, 0.05,
                       "the node to close its descriptors of the attackers' connections")
        wait_until(lambda: states(t) == ["up", "up"], 3 * tick + DEADLINE, 0.05,
                   "only the two legitimate connections to stay in the inbound table")
        assert not any(sock.poll(0) for sock in dealers), "an attacker got past the CHALLENGE"
        # the legitimate connections lived through it all
        assert on(legit, actornet.rpc.call, t.name, remote.add, 3, 4) == 7
        assert actornet.rpc.call(b.name, remote.add, 5, 6) == 11
        assert sorted(actornet.nodes()) == sorted([b.name, legit.name])
        del tcps
        for sock in dealers:
            sock.close(linger=0)


# -- 3. a replayed handshake, a relayed one ---------------------------------------------------


def start_inbox(b: NodeProc) -> tuple[actornet.Pid, actornet.Ref]:
    """A process on `b`, registered as "inbox", that reports the first message it gets to
    us; and a monitor of it (its name is free again only once it has exited)."""
    inbox = actornet.spawn(remote.collector, actornet.self(), 1, node=b.name)
    ref = actornet.monitor(inbox)
    actornet.rpc.call(b.name, actornet.register, "inbox", inbox)
    return inbox, ref


def test_a_replayed_handshake_is_refused_and_delivers_nothing(
    cluster: Cluster, mode: str
) -> None:
    """Record what a legitimate node sends when it dials a child, then send those bytes
    again from a fresh connection. Plain: the child challenges with a fresh nonce, so the
    old RESPONSE does not prove anything; it refuses, and the data that followed is
    dropped. Secure: CurveZMQ's own handshake (fresh keys every connection) fails first,
    and nothing of the replay reaches the child's code at all."""
    b = cluster.start(unique("b"), extra=node_args(mode))
    with start("t", mode) as t, RecordingProxy(b.port) as proxy:
        assert actornet.ping(f"{b.name}:{proxy.port}") == "pong"  # our DEALER, through the proxy
        # one message over the recorded connection, to an inbox that reports what it got
        _, ref = start_inbox(b)
        actornet.send(("inbox", b.name), "recorded")
        assert actornet.receive(lambda m: m[0] == "collected", timeout=DEADLINE)[1] == ["recorded"]
        # Its name goes with it: wait for that, or registering the next one could race it.
        actornet.receive(lambda m: m[:2] == ("DOWN", ref), timeout=DEADLINE)
        [(upstream, downstream)] = proxy.connections()  # b dials back directly, not through it
        sent = zmtp_messages(upstream)
        if insecure(mode):
            answered = zmtp_messages(downstream)
            assert [kind(m[0]) for m in sent[:2]] == ["HELLO", "RESPONSE"]
            assert [kind(m[0]) for m in answered[:2]] == ["CHALLENGE", "ACK"]
            assert body(sent[0][0])["name"] == t.name and len(sent) > 2  # then data batches
        else:
            assert b"CURVE" in upstream[:64] and hs._MAGIC not in upstream  # all encrypted

        # a new inbox under the same name: a replay that got in would deliver "recorded"
        start_inbox(b)
        bad = actornet.rpc.call(b.name, actornet.node_info)["bad_frames"]

        with socket.create_connection(("127.0.0.1", b.port), DEADLINE) as raw:
            # Byte for byte, paced as the original was: the 64-byte ZMTP greeting, then the
            # rest once b's greeting is in (libzmq drops a connection that pipelines it).
            raw.sendall(upstream[:64])
            reply = read_until(raw, lambda got: len(got) >= 64)
            raw.sendall(upstream[64:])
            if not insecure(mode):
                wait_closed(raw)
            else:
                reply = read_until(raw, lambda got: len(zmtp_messages(got)) >= 2, reply)
        if insecure(mode):
            challenge, reject = (m[0] for m in zmtp_messages(reply)[:2])
            assert kind(challenge) == "CHALLENGE"
            assert body(challenge)["nonce"] != body(answered[0][0])["nonce"], "a nonce came twice"
            assert kind(reject) == "REJECT" and body(reject)["auth"] is True
            b.wait_output(rf"refused an incoming connection: peer '{re.escape(t.name)}' failed "
                          r"to prove the cookie \(bad RESPONSE\)")
            # Every frame after the RESPONSE was read and dropped (one refusal, then one per
            # batch on the dead connection) ...
            wait_until(lambda: actornet.rpc.call(b.name, actornet.node_info)["bad_frames"]
                       >= bad + len(sent) - 1, DEADLINE, 0.05, "the replayed batches to be dropped")
        else:
            assert actornet.rpc.call(b.name, actornet.node_info)["bad_frames"] == bad
        # ... so the inbox's first message is ours.
        actornet.send(("inbox", b.name), "control")
        got = actornet.receive(lambda m: m[0] == "collected", timeout=DEADLINE)[1]
        assert got == ["control"], f"the inbox on {b.name} got {got!r} first"
        # the real connection was not disturbed
        assert actornet.nodes() == [b.name]
        assert actornet.rpc.call(b.name, actornet.nodes) == [t.name]


def test_a_relay_of_a_real_nodes_handshake_cannot_inject_a_message(
    caplog: pytest.LogCaptureFixture, cluster: Cluster, mode: str
) -> None:
    """Issue 12, class 1. A local program that can answer a port-mapper lookup sends a real
    node b, dialling node t, to itself, and relays the connection: b and t complete their
    handshake through it, and t takes the connection for b's. The relay then adds a batch
    of its own: a message to t's "inbox" (it could as well be a remote spawn). Plain: the
    batch carries no MAC made with the session key, which the relay cannot compute, so t
    refuses it and closes the connection. Secure: it is not even CurveZMQ, which breaks the
    connection. Either way nothing of it is delivered, and b and t connect again."""
    caplog.set_level(logging.INFO, logger="actornet.dist")
    b = cluster.start(unique("b"), extra=node_args(mode))
    with (start("t", mode) as t, InjectingRelay(port_of(t)) as relay,
          start("u", mode) as u):
        pid, got = recorder(t)
        t.register("inbox", pid)
        # b dials t through the relay (asked by u: had t dialled b first, b would dial
        # back directly); t dials back to b directly.
        assert on(u, actornet.ping, b.address) == "pong"
        assert on(u, actornet.rpc.call, b.name, actornet.ping, f"{t.name}:{relay.port}") == "pong"
        wait_until(lambda: b.name in t.dist.nodes(), DEADLINE, 0.05, f"{t.name} to take b in")
        # b's data goes through the relay; the next batch number due is what it counted
        on(u, actornet.rpc.call, b.name, actornet.send, pid, "from b")
        assert got.get(timeout=DEADLINE) == "from b"
        with relay.changed:
            seq = relay.messages_up - 2 if insecure(mode) else 0  # after HELLO, RESPONSE
            forged = batch(seq, [w.REG_SEND, actornet.Pid(b.name, 1, 1), "inbox", "forged"])
            relay.inject(zmtp_frame(forged[0], more=True) + zmtp_frame(forged[1]))
        # t drops the connection it came on (and b with it, until b connects again)
        wait_until(lambda: dist_lines(caplog, t.name, b.name, "is down"), DEADLINE, 0.05,
                   f"{t.name} to drop the relayed connection")
        if insecure(mode):
            assert dist_lines(caplog, t.name, f"dropped a frame from {b.name}: bad batch header")
        assert_not_delivered(t, pid, got)
        # b and t still work together, directly
        assert on(u, actornet.rpc.call, b.name, actornet.ping, f"{t.name}:{t.port}") == "pong"
        on(u, actornet.rpc.call, b.name, actornet.send, pid, "again")
        assert got.get(timeout=DEADLINE) == "again"


# -- 4. a connection that takes over the routing id of an authenticated one ------------------
#
# A ROUTER accepts the routing id a peer presents (a DEALER sets ZMQ_ROUTING_ID), and libzmq
# hands it to a new connection once the connection that held it is gone. The node must not
# take what comes under that id for the peer that authenticated on the old connection.


def authenticate(sock: zmq.Socket[Any], to: str, name: str, endpoint: str, mode: str) -> bytes:
    """Run the handshake, with the cookie, on a raw DEALER: as node `name` (which says it
    listens on `endpoint`) dialling the node named `to`. Returns the key that MACs the
    connection's batches (b"" in secure mode, where CurveZMQ authenticates them)."""
    initiator = hs.Initiator(COOKIE.encode(), name, 1, endpoint, to)
    sock.send(initiator.start())
    while True:
        for event in initiator.receive(recv_frames(sock)[0]):
            if isinstance(event, hs.Send):
                sock.send(event.frame)
            elif isinstance(event, hs.Failed):
                raise AssertionError(f"the handshake failed: {event.error}")
            elif isinstance(event, hs.Established):
                return event.session_key if insecure(mode) else b""


def batch(seq: int, *ops: list[Any], key: bytes = b"") -> list[bytes]:
    """The two frames of data batch number `seq`, carrying `ops`; with a session `key`,
    its header carries the batch's MAC."""
    payload = w.pack_ops([w.encode_op(op) for op in ops])
    return [w.pack_header(seq, key, payload), payload]


def send_op(pid: actornet.Pid, msg: Any) -> list[Any]:
    """The op that sends `msg` to `pid`."""
    return [w.SEND, pid.id, pid.creation, msg]


@contextlib.contextmanager
def authenticated_peer(
    zctx: zmq.Context[Any], name: str, dial_back: str, mode: str, tick_time: float = 30.0
) -> Iterator[tuple[actornet.Node, actornet.Pid, queue.Queue[Any], zmq.Socket[Any], bytes]]:
    """A fresh node, a `recorder` process on it, a raw DEALER that has passed the
    handshake into it as node `name` (announcing `dial_back`), and its session key
    (`authenticate`); the node stops at the end."""
    with start("t", mode, handshake_timeout=30.0, tick_time=tick_time) as t:
        pid, got = recorder(t)
        peer = raw_dealer(zctx, port_of(t), mode)
        key = authenticate(peer, t.name, name, dial_back, mode)
        # The node sends its last handshake frame, then marks the connection up: the peer
        # can be done first.
        wait_until(lambda: states(t) == ["up"] and name in t.dist.nodes(), DEADLINE, 0.01,
                   f"{t.name} to finish the handshake with {name}")
        yield t, pid, got, peer, key


def recorder(node: actornet.Node) -> tuple[actornet.Pid, queue.Queue[Any]]:
    """A process of `node` that puts every message it receives on the queue returned."""
    got: queue.Queue[Any] = queue.Queue()

    def record() -> None:
        while True:
            got.put(actornet.receive())

    return node.spawn(record), got


def inbound_of(node: actornet.Node, peer: str) -> tuple[bytes, int, bytes]:
    """The routing id of the authenticated connection `peer` has into `node`, the
    sequence number of the next batch due on it, and its session key (b"" if secure)."""
    for rid, conn in list(node.dist._inbound.items()):
        if conn.state == "up" and conn.peer is not None and conn.peer.name == peer:
            return rid, conn.peer.session.in_seq, conn.peer.session.in_key
    raise AssertionError(f"{node.name} has no authenticated connection from {peer}")


class Presenter:
    """A raw DEALER that presents a chosen routing id, and a monitor socket that reports
    when its connection is closed (`closed`)."""

    def __init__(self, ctx: zmq.Context[Any], port: int, rid: bytes, mode: str) -> None:
        self.sock = as_cookie_holder(ctx.socket(zmq.DEALER), mode, COOKIE)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RECONNECT_IVL, -1)
        self.sock.setsockopt(zmq.ROUTING_ID, rid)
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED)
        self.sock.connect(f"tcp://127.0.0.1:{port}")

    def closed(self, timeout: float = DEADLINE) -> bool:
        """Whether the connection is closed within `timeout` seconds."""
        return bool(self.monitor.poll(int(timeout * 1000)))

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        self.sock.close(linger=0)


def present(ctx: zmq.Context[Any], port: int, rid: bytes, frames: list[bytes],
            arrived: Callable[[zmq.Socket[Any]], bool], mode: str) -> Presenter:
    """A `Presenter` of routing id `rid` to the node on `port` that sent `frames`, once
    `arrived(sock)` says the node read them. libzmq ignores, for good, a connection that
    presents a routing id still held by another (the node may not have reaped the old
    connection yet): such a DEALER is closed and a new one tried, within 2 * DEADLINE."""
    end = time.monotonic() + 2 * DEADLINE
    while True:
        presenter = Presenter(ctx, port, rid, mode)
        presenter.sock.send_multipart(frames)
        attempt = min(end, time.monotonic() + 1.0)
        while time.monotonic() < attempt:
            if arrived(presenter.sock):
                return presenter
            time.sleep(0.005)  # polling a condition, with a deadline
        presenter.close()
        assert time.monotonic() < end, f"the node never read what came under {rid!r}"


def assert_not_delivered(node: actornet.Node, pid: actornet.Pid, got: queue.Queue[Any]) -> None:
    """`pid` (a `recorder`) received nothing since it was last read: a control message sent
    now is the next thing it gets."""
    node.send(pid, "control")
    first = got.get(timeout=DEADLINE)
    assert first == "control", f"the recorder got {first!r}"


def test_a_new_connection_cannot_take_over_an_authenticated_routing_id(
    caplog: pytest.LogCaptureFixture, zctx: zmq.Context[Any], dial_back: str, mode: str
) -> None:
    """A raw peer authenticates with the cookie, and its data is delivered; its connection
    drops; a DEALER presenting its routing id sends the next batch (in plain mode with the
    right MAC, as if it knew the key): refused (not delivered), with a log line saying why,
    and its connection closed. The routing id has to handshake again, and can."""
    caplog.set_level(logging.INFO, logger="actornet.dist")
    name = unique("peer")
    with authenticated_peer(zctx, name, dial_back, mode) as (t, pid, got, peer, key):
        peer.send_multipart(batch(0, send_op(pid, "legit"), key=key))
        assert got.get(timeout=DEADLINE) == "legit"
        rid, seq, _ = inbound_of(t, name)
        assert seq == 1
        peer.close(linger=0)  # its connection drops; the node's entry for it was "up"

        lines = lambda: dist_lines(caplog, t.name, name, "another connection")  # noqa: E731
        intruder = present(zctx, port_of(t), rid, batch(seq, send_op(pid, "intruder"), key=key),
                           lambda _: bool(lines()) or not got.empty(), mode)
        try:
            assert_not_delivered(t, pid, got)
            assert all("refused to take a message" in line for line in lines()), lines()
            wait_until(lambda: name not in t.dist.nodes(), DEADLINE, 0.05,
                       f"{t.name} to drop {name}")
            skip_unless_it_can_close(t)
            assert intruder.closed(), "the intruder's connection stays open"
        finally:
            intruder.close()
        # The routing id is free again, for a connection that authenticates: a HELLO under
        # it gets a CHALLENGE.
        again = present(zctx, port_of(t), rid, [hello(t.name, name)], lambda s: bool(s.poll(0)),
                        mode)
        try:
            assert kind(recv_frames(again.sock)[0]) == "CHALLENGE"
        finally:
            again.close()


def test_an_authenticated_connection_that_closes_is_dropped_at_once(
    zctx: zmq.Context[Any], dial_back: str, mode: str
) -> None:
    """When the connection an authenticated peer came in on closes, the node drops it (and
    the peer with it) within a tick, without waiting for anything else to time out; what
    the peer sent just before closing is still delivered."""
    name = unique("peer")
    tick = 1.0
    with authenticated_peer(zctx, name, dial_back, mode, tick_time=tick) as (
            t, pid, got, peer, key):
        peer.send_multipart(batch(0, send_op(pid, "last words"), key=key))
        peer.close(linger=1000)  # the batch goes out, then the connection closes
        assert got.get(timeout=DEADLINE) == "last words"
        wait_until(lambda: states(t) == ["dead"], 2 * tick + DEADLINE / 2, 0.05,
                   "the node to drop the closed connection")
        assert name not in t.dist.nodes()
        assert t.dist.stats["bad_frames"] == 0


def test_a_dropped_node_connection_cannot_be_taken_over(
    caplog: pytest.LogCaptureFixture, cluster: Cluster, zctx: zmq.Context[Any], mode: str
) -> None:
    """A real node's connection into the node under test drops (a proxy on it closes) while
    the link is up; a DEALER presenting that connection's routing id sends the next batch
    (with the right MAC in plain mode): refused (not delivered), with a log line naming the
    node, and the node is declared down instead of waiting for its ticks to stop."""
    caplog.set_level(logging.INFO, logger="actornet.dist")
    b = cluster.start(unique("b"), extra=["--tick-time", "60", *node_args(mode)])  # no ticks
    with (start("t", mode, tick_time=30.0) as t,
          RecordingProxy(port_of(t)) as proxy,
          start("u", mode) as u):
        # b dials t through the proxy (asked by u: had t dialled b first, b would dial back
        # directly); t dials back to b directly.
        assert on(u, actornet.ping, b.address) == "pong"
        assert on(u, actornet.rpc.call, b.name, actornet.ping, f"{t.name}:{proxy.port}") == "pong"
        wait_until(lambda: t.dist.peer_info().get(b.name, {}).get("state") == "up", DEADLINE,
                   0.05, f"{t.name} to connect back to {b.name}")
        pid, got = recorder(t)
        on(u, actornet.rpc.call, b.name, actornet.send, pid, "legit")
        assert got.get(timeout=DEADLINE) == "legit"
        rid, seq, key = inbound_of(t, b.name)  # b sends nothing more: seq is the next batch's
        proxy.close()  # b's connection into t drops; t's connection to b stays

        lines = lambda: dist_lines(caplog, t.name, b.name, "another connection")  # noqa: E731
        intruder = present(zctx, port_of(t), rid, batch(seq, send_op(pid, "intruder"), key=key),
                           lambda _: bool(lines()) or not got.empty(), mode)
        try:
            assert_not_delivered(t, pid, got)
            assert all("refused to take a message" in line for line in lines()), lines()
            wait_until(lambda: b.name not in t.dist.nodes(), DEADLINE, 0.05,
                       f"{t.name} to see {b.name} down")
            skip_unless_it_can_close(t)
            assert intruder.closed(), "the intruder's connection stays open"
        finally:
            intruder.close()


def test_a_refused_peer_that_comes_back_under_its_routing_id_is_closed_again(
    caplog: pytest.LogCaptureFixture, zctx: zmq.Context[Any], mode: str
) -> None:
    """A peer that fails the handshake is refused and its connection closed; a new connection
    under the same routing id that sends a data batch is not taken for the old one: it is
    refused as an unauthenticated peer, and closed too."""
    caplog.set_level(logging.INFO, logger="actornet.dist")
    rid = b"intruder-" + uuid.uuid4().bytes
    with start("t", mode, tick_time=30.0) as t:
        pid, got = recorder(t)
        first = present(zctx, port_of(t), rid, [hello(t.name)], lambda s: bool(s.poll(0)), mode)
        try:
            assert kind(recv_frames(first.sock)[0]) == "CHALLENGE"
            skip_unless_it_can_close(t)
            first.sock.send(hs._frame(hs.RESPONSE, {"nonce": bytes(16), "digest": bytes(32)}))
            assert kind(recv_frames(first.sock)[0]) == "REJECT"
            assert first.closed(), "the refused connection stays open"
        finally:
            first.close()
        assert states(t) == ["dead"]  # kept a while, to ignore what still comes on it

        bad = t.dist.stats["bad_frames"]
        lines = lambda: dist_lines(caplog, t.name, "dropped a 2-frame message")  # noqa: E731
        again = present(zctx, port_of(t), rid, batch(0, send_op(pid, "intruder")),
                        lambda _: bool(lines()) or t.dist.stats["bad_frames"] > bad, mode)
        try:
            wait_until(lines, DEADLINE, 0.05, "the new connection to be refused")
            assert again.closed(), "the new connection stays open"
            assert_not_delivered(t, pid, got)
        finally:
            again.close()


# -- 5. an authenticated peer that sends malformed ops ------------------------------------------


def test_a_malformed_op_from_an_authenticated_peer_is_dropped_and_the_rest_delivered(
    caplog: pytest.LogCaptureFixture, zctx: zmq.Context[Any], dial_back: str, mode: str
) -> None:
    """A raw peer passes the handshake with the cookie, then sends one batch holding bytes
    that do not decode, an unknown op code, an op of the wrong shape and a valid SEND: each
    bad op is dropped with a log line naming the peer, the SEND is delivered, and the peer
    stays connected (its next batch is delivered too)."""
    caplog.set_level(logging.INFO, logger="actornet.dist")
    name = unique("peer")
    with authenticated_peer(zctx, name, dial_back, mode) as (t, pid, got, peer, key):
        garbage = [b"\xc1", w.encode_op([99, 1]), w.encode_op([w.LINK, "not a pid", pid])]
        payload = w.pack_ops([*garbage, w.encode_op(send_op(pid, "valid"))])
        peer.send_multipart([w.pack_header(0, key, payload), payload])
        assert got.get(timeout=DEADLINE) == "valid"
        lines = dist_lines(caplog, t.name, f"dropped a frame from {name}")
        assert len(lines) == 3, lines
        assert t.dist.stats["bad_frames"] == 3
        peer.send_multipart(batch(1, send_op(pid, "next batch"), key=key))
        assert got.get(timeout=DEADLINE) == "next batch"
        assert name in t.dist.nodes()
        assert not dist_lines(caplog, t.name, "is down")
        peer.close(linger=0)
