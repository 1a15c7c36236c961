"""Security and operation of distribution between real OS processes over loopback.

Wrong cookies, garbage and unauthenticated frames from a raw ZeroMQ socket, a
protocol version mismatch, CurveZMQ encryption (checked on the wire through a
recording TCP proxy), the port mapper, the ``python -m actornet node`` shell on
a pseudo-terminal, and the cookie file. The tests of hostile input run in both
modes (`MODES`: encrypted, the default, and ``insecure=True``). Children are real
processes killed at the end of each test; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import pty
import re
import select
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

import actornet
from actornet import _handshake as hs
from actornet import _wire as w
from actornet import epmd
from actornet.errors import ActornetError, AlreadyRegistered

from . import remote
from .cluster import COOKIE, ROOT, Cluster, NodeProc, _die_with_parent, free_port
from .cluster import unique as _unique
from .helpers import wait_until
from .netutil import DEADLINE, MODES, RecordingProxy, as_cookie_holder, insecure, node_args, on


@pytest.fixture(autouse=True)
def node() -> Iterator[None]:
    """Overrides the suite's local node: here the named nodes the tests start act."""
    yield None


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """A test of hostile input runs against secure nodes and against plain ones."""
    return str(request.param)


@pytest.fixture
def local(mode: str) -> Iterator[actornet.Node]:
    """A named node in the test process with the cluster's cookie (the module API acts on it)."""
    n = actornet.start_node(unique("t"), cookie=COOKIE, port=0, insecure=insecure(mode))
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture
def epmd_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A private port mapper port for this test and its children; its daemon is killed after."""
    port = free_port()
    monkeypatch.setenv("ACTORNET_EPMD_PORT", str(port))
    try:
        yield port
    finally:
        with contextlib.suppress(epmd.EpmdError):
            epmd.kill(epmd_port=port, timeout=2.0)
        for proc in list(epmd._spawned):  # daemons this process started for that port
            if str(port) in proc.args:  # type: ignore[operator]
                try:
                    proc.wait(DEADLINE)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(DEADLINE)
        wait_until(lambda: not _epmd_answers(port), DEADLINE, what="the port mapper to stop")


@pytest.fixture
def zctx() -> Iterator[zmq.Context[Any]]:
    """A ZeroMQ context for raw sockets, destroyed (sockets and all) at the end."""
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        yield ctx
    finally:
        ctx.destroy(linger=0)


# -- helpers ----------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    """A node name unlikely to clash with another test's (even one running in parallel)."""
    return _unique(prefix + uuid.uuid4().hex[:4])


def _epmd_answers(port: int) -> bool:
    """True if a port mapper answers on `port`."""
    try:
        epmd.names(epmd_port=port, timeout=1.0)
    except epmd.EpmdError:
        return False
    return True


def start_inbox(b: NodeProc) -> actornet.Pid:
    """A process on `b`, registered as "inbox", that reports the first message it gets to us.

    Whatever an attacker managed to deliver before our control message would be reported
    instead of it.
    """
    inbox = actornet.spawn(remote.collector, actornet.self(), 1, node=b.name)
    actornet.rpc.call(b.name, actornet.register, "inbox", inbox)
    return inbox


def assert_inbox_got_only(b: NodeProc, control: str) -> None:
    """Send `control` to b's inbox: it must be the first and only message the inbox got."""
    actornet.send(("inbox", b.name), control)
    got = actornet.receive(lambda m: m[0] == "collected", timeout=DEADLINE)[1]
    assert got == [control], f"the inbox on {b.name} got {got!r} first"


def dist_lines(caplog: pytest.LogCaptureFixture, *parts: str) -> list[str]:
    """Messages logged on "actornet.dist" that contain every one of `parts`."""
    return [r.getMessage() for r in caplog.records
            if r.name == "actornet.dist" and all(p in r.getMessage() for p in parts)]


@contextlib.contextmanager
def raw_dealer(ctx: zmq.Context[Any], port: int, mode: str) -> Iterator[zmq.Socket[Any]]:
    """A bare DEALER connected to a node's port, as an attacker with the cookie would use
    (no handshake of ours; in secure mode the cluster's CurveZMQ keys)."""
    sock = as_cookie_holder(ctx.socket(zmq.DEALER), mode, COOKIE)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RECONNECT_IVL, -1)  # one connection: a drop stays a drop
    sock.connect(f"tcp://127.0.0.1:{port}")
    try:
        yield sock
    finally:
        sock.close(linger=0)


def recv_frames(sock: zmq.Socket[Any], timeout: float = DEADLINE) -> list[bytes]:
    """The next message on `sock`; fail after `timeout` seconds."""
    if not sock.poll(int(timeout * 1000)):
        raise AssertionError(f"no reply within {timeout} s")
    return sock.recv_multipart()  # type: ignore[no-any-return]


def hello(version: int, to: str) -> bytes:
    """A HELLO frame as `_handshake` builds it, but with any protocol version byte."""
    body = {"name": "intruder@127.0.0.1", "creation": 1, "flags": 0,
            "endpoint": "tcp://127.0.0.1:1", "to": to}
    return hs._MAGIC + bytes([version, hs.HELLO]) + msgpack.packb(body, use_bin_type=True)


def reject_reason(frame: bytes) -> str:
    """The reason of a REJECT frame; fail if `frame` is anything else."""
    assert frame[:5] == hs._MAGIC + bytes([hs.PROTOCOL_VERSION, hs.REJECT]), frame[:40]
    return str(msgpack.unpackb(frame[5:], raw=False)["reason"])


# -- 1. wrong cookie ---------------------------------------------------------------------------


def test_wrong_cookie_is_refused_on_both_sides_and_delivers_nothing(
    epmd_port: int, local: actornet.Node, cluster: Cluster, caplog: pytest.LogCaptureFixture,
    mode: str
) -> None:
    caplog.set_level(logging.INFO, logger="actornet.dist")
    # registered with the port mapper: found by name
    b = cluster.start(unique("b"), port=None, extra=node_args(mode))
    assert actornet.ping(b.name) == "pong"
    start_inbox(b)
    with actornet.start_node(unique("w"), cookie="not-the-cookie", port=0,
                             insecure=insecure(mode)) as wrong:

        def intrude() -> list[str]:
            actornet.send(("inbox", b.name), "sent before the ping")  # starts a connection
            first = actornet.ping(b.name)
            actornet.send(("inbox", b.name), "sent after the ping")  # another connection
            # This ping ends with the connection attempt that carried the last send.
            return [first, actornet.ping(b.name), actornet.ping(b.address)]

        assert on(wrong, intrude) == ["pang", "pang", "pang"]
        assert on(wrong, actornet.nodes) == []
        if insecure(mode):
            # the other side refused it, naming it
            b.wait_output(rf"refused an incoming connection: peer '{re.escape(wrong.name)}' "
                          r"failed to prove the cookie")
            # and so did this side, naming the other node
            assert dist_lines(caplog, wrong.name, f"connection to {b.name} refused",
                              "bad cookie")
        else:
            # CurveZMQ's handshake fails before either says who it is
            b.wait_output(r"refused an incoming connection: .*the peer has another cookie")
            assert dist_lines(caplog, wrong.name, b.name, "another cookie")
        assert wrong.name not in actornet.rpc.call(b.name, actornet.nodes)
    assert_inbox_got_only(b, "control from a node with the right cookie")


# -- 2. garbage and unauthenticated frames -----------------------------------------------------


def test_garbage_and_unauthenticated_frames_are_dropped(
    local: actornet.Node, cluster: Cluster, zctx: zmq.Context[Any], mode: str
) -> None:
    """From a raw socket past ZeroMQ's handshake (in secure mode, one with the cluster's
    keys: a stranger does not get that far, as the end of this test checks)."""
    b = cluster.start(unique("b"), extra=node_args(mode))
    assert actornet.ping(b.address) == "pong"
    inbox = start_inbox(b)

    # random bytes: refused with a REJECT, logged
    with raw_dealer(zctx, b.port, mode) as sock:
        sock.send(b"\xff" + os.urandom(200))
        [reply] = recv_frames(sock)
        assert "not an actornet handshake frame" in reject_reason(reply)
    b.wait_output(r"refused an incoming connection: .*not an actornet handshake frame")

    # a frame over the size a handshake frame may have
    with raw_dealer(zctx, b.port, mode) as sock:
        sock.send(hello(hs.PROTOCOL_VERSION, b.name) + b"x" * hs.MAX_HANDSHAKE_FRAME)
        [reply] = recv_frames(sock)
        assert f"over the limit of {hs.MAX_HANDSHAKE_FRAME}" in reject_reason(reply)
    b.wait_output(rf"refused an incoming connection: .*over the limit of {hs.MAX_HANDSHAKE_FRAME}")

    # a multi-frame message
    with raw_dealer(zctx, b.port, mode) as sock:
        sock.send_multipart([hello(hs.PROTOCOL_VERSION, b.name), b"second", b"third"])
        b.wait_output(r"dropped a 3-frame message from an unauthenticated peer")

    # a well-formed data batch that SENDs to a real process, without any handshake
    with raw_dealer(zctx, b.port, mode) as sock:
        op = w.encode_op([w.SEND, inbox.id, inbox.creation, "forged by an intruder"])
        sock.send_multipart([w.pack_header(0), op])
        b.wait_output(r"dropped a 2-frame message from an unauthenticated peer")

    # a frame over the node's message size limit: ZeroMQ drops the connection when it reads
    # the frame's length, before any of our code sees it (so b logs nothing); our end of the
    # connection sees it dropped
    limit = inspect.signature(actornet.start_node).parameters["max_message_size"].default
    with raw_dealer(zctx, b.port, mode) as sock:
        monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        try:
            sock.send(bytes(limit + 8192), copy=False)
            events = []
            while zmq.EVENT_DISCONNECTED not in events:
                event = int.from_bytes(recv_frames(monitor)[0][:2], "little")
                events.append(event)
        finally:
            sock.disable_monitor()
            monitor.close(linger=0)

    if not insecure(mode):
        # a stranger's socket, without the keys: turned away in CurveZMQ's handshake
        stranger = zctx.socket(zmq.DEALER)
        stranger.curve_serverkey = hs.curve_keypair(COOKIE.encode())[0]
        stranger.curve_publickey, stranger.curve_secretkey = zmq.curve_keypair()
        with contextlib.closing(stranger):
            stranger.setsockopt(zmq.LINGER, 0)
            stranger.connect(f"tcp://127.0.0.1:{b.port}")
            stranger.send(hello(hs.PROTOCOL_VERSION, b.name))
            assert not stranger.poll(500), "a stranger got an answer"
        b.wait_output(r"refused an incoming connection: not a key of this cluster, from "
                      r"127\.0\.0\.1")

    # b survived, delivered none of it, and still serves old and new peers
    assert b.proc.poll() is None
    assert actornet.ping(b.address) == "pong"
    assert actornet.rpc.call(b.name, remote.add, 2, 3) == 5
    counter = actornet.rpc.call(b.name, remote.start_counter, "counter", 41)
    actornet.cast(counter, "inc")
    assert actornet.call(counter, "get") == 42
    c = cluster.start(unique("c"), extra=["--connect", b.address, *node_args(mode)])
    c.wait_output(rf"{re.escape(b.address)}: pong")
    assert_inbox_got_only(b, "control after the garbage")


def test_node_keeps_serving_while_peers_come_and_go(cluster: Cluster, mode: str) -> None:
    """Each peer that stops makes b close its connection back (and that connection's
    monitor); ZeroMQ once froze b's whole network thread on one of those closes."""
    b = cluster.start(unique("b"), extra=node_args(mode))
    for i in range(60):
        with actornet.start_node(unique("t"), cookie=COOKIE, port=0, insecure=insecure(mode)):
            assert actornet.ping(b.address) == "pong", f"b stopped answering after {i} peers"
    with actornet.start_node(unique("t"), cookie=COOKIE, port=0, insecure=insecure(mode)):
        assert actornet.ping(b.address) == "pong"
        assert actornet.rpc.call(b.name, remote.add, 1, 2) == 3


def test_a_late_wake_up_after_stop_writes_nowhere() -> None:
    """A thread that saw the I/O thread asleep just before it stopped and closed its eventfd
    (whose number the OS may already have reused) must not write to that fd."""
    n = actornet.start_node(unique("t"), cookie=COOKIE, port=0)
    transport = n.dist
    n.stop()
    transport.sendq.sleeping = True  # as that thread saw it
    transport._wake()


# -- 3. protocol version mismatch --------------------------------------------------------------


def test_protocol_version_mismatch_is_rejected_naming_both_versions(
    local: actornet.Node, cluster: Cluster, zctx: zmq.Context[Any], mode: str
) -> None:
    b = cluster.start(unique("b"), extra=node_args(mode))
    other = hs.PROTOCOL_VERSION + 1
    with raw_dealer(zctx, b.port, mode) as sock:
        sock.send(hello(other, b.name))
        [reply] = recv_frames(sock)
    reason = reject_reason(reply)
    assert "version" in reason
    assert f"speaks {other}" in reason and f"speaks {hs.PROTOCOL_VERSION}" in reason
    b.wait_output(rf"refused an incoming connection: protocol version mismatch: .*{other}")
    # a HELLO for another node name is refused too (what a misdirected proxy would send)
    with raw_dealer(zctx, b.port, mode) as sock:
        sock.send(hello(hs.PROTOCOL_VERSION, "someone-else@127.0.0.1"))
        [reply] = recv_frames(sock)
    assert "someone-else@127.0.0.1" in reject_reason(reply)
    # b keeps working for a legitimate peer
    assert actornet.ping(b.address) == "pong"
    assert actornet.rpc.call(b.name, remote.add, 20, 22) == 42


# -- 4. encryption -----------------------------------------------------------------------------


def test_secure_nodes_encrypt_what_goes_on_the_wire(cluster: Cluster, mode: str) -> None:
    secure = not insecure(mode)
    b = cluster.start(unique("b"), extra=node_args(mode))
    canary = f"canary-{uuid.uuid4().hex}"
    with (actornet.start_node(unique("t"), cookie=COOKIE, port=0, insecure=not secure) as here,
          RecordingProxy(b.port) as proxy):
        # Our DEALER dials b through the proxy; the HELLO still names b itself.
        assert actornet.ping(f"{b.name}:{proxy.port}") == "pong"
        assert here.dist.peer_info()[b.name]["endpoint"] == f"tcp://127.0.0.1:{proxy.port}"
        echo = actornet.rpc.call(b.name, remote.start_echo, "echo")
        actornet.send(echo, (actornet.self(), canary))
        # b got it (through the proxy, which records before forwarding) and echoed it back
        assert actornet.receive(timeout=DEADLINE) == ("echo", canary)
        upstream, _ = proxy.recorded()
    assert len(upstream) > 0
    handshake = hs._MAGIC + bytes([hs.PROTOCOL_VERSION])
    if secure:
        assert b"CURVE" in upstream  # the ZMTP greeting names the mechanism in clear
        assert canary.encode() not in upstream
        assert handshake not in upstream, "the handshake itself is encrypted too"
    else:
        assert b"NULL" in upstream
        assert canary.encode() in upstream, "a plain connection shows the message"
        assert handshake in upstream


def pang_until_logged(ping: Callable[[], str], dialled: NodeProc, pattern: str) -> None:
    """Ping (always "pang") until `dialled` logs `pattern`, 20 times at most.

    Both ends of a ZeroMQ connection whose mode differs race to see the mismatch; the
    loser (about one time in six) only sees the connection close, and logs nothing.
    """
    for _ in range(20):
        assert ping() == "pang"
        if any(re.search(pattern, line) for line in list(dialled.lines)):
            return
    dialled.wait_output(pattern)


def test_secure_nodes_refuse_plain_nodes_and_other_cookies(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="actornet.dist")
    secure_b = cluster.start(unique("sb"))
    plain_b = cluster.start(unique("pb"), extra=["--insecure"])
    mismatch = r"refused an incoming connection: .*insecure=True on one side only"
    with actornet.start_node(unique("p"), cookie=COOKIE, port=0, insecure=True) as plain:
        t0 = time.monotonic()
        assert actornet.ping(secure_b.address) == "pang"
        assert time.monotonic() - t0 < DEADLINE
        pang_until_logged(lambda: actornet.ping(secure_b.address), secure_b, mismatch)
        with actornet.start_node(unique("s"), cookie=COOKIE, port=0) as secure:
            t0 = time.monotonic()
            assert on(secure, actornet.ping, plain_b.address) == "pang"
            assert time.monotonic() - t0 < DEADLINE
            pang_until_logged(lambda: on(secure, actornet.ping, plain_b.address), plain_b,
                              mismatch)
            # A connection that fails this fast once crashed the dialling node's I/O thread
            # (its pipe was gone before the first frame was sent); try it a few more times.
            pangs = on(secure, lambda: {actornet.ping(plain_b.address) for _ in range(20)})
            assert pangs == {"pang"}
            # the failed attempts did not harm the node: the control works
            assert on(secure, actornet.ping, secure_b.address) == "pong"
            assert on(secure, actornet.nodes) == [secure_b.name]
        with actornet.start_node(unique("o"), cookie="another", port=0) as other:
            assert on(other, actornet.ping, secure_b.address) == "pang"
        assert actornet.nodes() == []
    # a clear line on the dialling side, naming the peer ...
    for here, there in ((plain, secure_b), (secure, plain_b)):
        assert dist_lines(caplog, here.name, there.name, "insecure=True on one side only"), (
            f"{here.name} said nothing clear")
    assert dist_lines(caplog, other.name, secure_b.name, "another cookie")
    # ... and on the side dialled (ZeroMQ fails before anyone says who they are)
    secure_b.wait_output(r"refused an incoming connection: .*the peer has another cookie")


# -- 5. port mapper ----------------------------------------------------------------------------


def test_port_mapper_registers_finds_refuses_duplicates_and_forgets(
    epmd_port: int, cluster: Cluster
) -> None:
    assert not _epmd_answers(epmd_port), "the private port mapper port is taken"
    x = actornet.start_node(unique("x"), cookie=COOKIE)  # no port: uses the port mapper
    try:
        x_short = x.name.partition("@")[0]
        # the first node on the host started a port mapper, and registered with it
        assert (x_short, x.dist.port) in epmd.names()
        b = cluster.start(unique("b"), port=None)
        b_short = b.name.partition("@")[0]
        assert actornet.ping(b.name) == "pong"  # found by name alone
        assert actornet.rpc.call(b.name, actornet.ping, x.name) == "pong"
        # a second node with a taken name: refused in-process ...
        with pytest.raises(AlreadyRegistered, match="already running on this host"):
            actornet.start_node(x.name, cookie=COOKIE)
        # ... and as a program
        dup = NodeProc(b.name, port=None)
        cluster.procs.append(dup)
        assert dup.proc.wait(2 * DEADLINE) != 0
        dup.wait_output(rf"cannot start node {re.escape(b.name)}: .*already running on this host")
        # the command line lists both
        listing = subprocess.run(
            [sys.executable, "-m", "actornet.epmd", "--names"], cwd=ROOT, capture_output=True,
            text=True, timeout=2 * DEADLINE, env=dict(os.environ),
        )
        assert listing.returncode == 0, listing.stderr
        assert f"name {x_short} at port {x.dist.port}" in listing.stdout
        assert f"name {b_short} at port {b.port}" in listing.stdout
        # SIGKILL: the kernel closes b's registration connection, the entry goes
        b.kill()
        wait_until(lambda: b_short not in dict(epmd.names()), DEADLINE,
                   what="the killed node's entry to disappear")
    finally:
        x.stop()
    # the port mapper outlives the node that started it
    wait_until(lambda: x_short not in dict(epmd.names()), DEADLINE, what="x to unregister")
    assert _epmd_answers(epmd_port)


def test_a_node_says_it_listens_only_once_it_can_be_found_by_name(epmd_port: int) -> None:
    """Scripts (and our own test harness) wait for the "listening on" line, then dial by name."""
    found_when_said: list[int | None] = []

    class AtTheLine(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "listening on" in record.getMessage():
                found_when_said.append(epmd.lookup(short, "127.0.0.1"))

    name = unique("l")
    short = name.partition("@")[0]
    handler = AtTheLine(logging.INFO)
    dist_log = logging.getLogger("actornet.dist")
    dist_log.addHandler(handler)
    old_level = dist_log.level
    dist_log.setLevel(logging.INFO)
    try:
        with actornet.start_node(name, cookie=COOKIE) as n:
            assert found_when_said == [n.port]
    finally:
        dist_log.removeHandler(handler)
        dist_log.setLevel(old_level)


# -- 6. the node program and its shell ---------------------------------------------------------


class PtyProgram:
    """A program whose stdin, stdout and stderr are a pseudo-terminal, as if run by a user."""

    def __init__(self, args: list[str]) -> None:
        master, slave = pty.openpty()
        self.master = master
        try:
            self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT,
                                         close_fds=True, preexec_fn=_die_with_parent)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self.output = bytearray()
        self.pos = 0  # `expect` looks after its previous match

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], max(0.0, timeout))
        if not ready:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the program closed the terminal
            data = b""
        self.output.extend(data)
        return bool(data)

    def expect(self, text: str, timeout: float = DEADLINE) -> None:
        """Wait until `text` appears after the previous match; fail after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.output.find(text.encode(), self.pos)
            if found >= 0:
                self.pos = found + len(text)
                return
            if not self._read(deadline - time.monotonic()):
                raise AssertionError(f"the program never printed {text!r}:\n"
                                     + self.output.decode(errors="replace"))

    def type(self, line: str) -> None:
        """Type `line` and Enter."""
        os.write(self.master, line.encode() + b"\n")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(DEADLINE)
        os.close(self.master)


@pytest.mark.parametrize("mode", ["secure"])  # the shell's default; the mode is not its topic
def test_node_program_shell_on_a_terminal(local: actornet.Node, cluster: Cluster) -> None:
    b = cluster.start(unique("b"))
    assert actornet.ping(b.address) == "pong"
    actornet.rpc.call(b.name, remote.start_echo, "echo")
    name = unique("sh")
    shell = PtyProgram([sys.executable, "-m", "actornet", "node", "--name", name,
                        "--cookie", COOKIE, "--port", "0"])
    try:
        prompt = f"({name})"
        shell.expect(f"{prompt}1> ")
        shell.type(f'ping("{b.address}")')
        shell.expect("'pong'")
        shell.expect(f"{prompt}2> ")
        shell.type("nodes()")
        shell.expect(f"'{b.name}'")
        shell.type(f'send(("echo", "{b.name}"), (self(), "hi"))')
        # The echo answers in order, so once "sync" is back, "hi" waits in the mailbox.
        shell.type(f'send(("echo", "{b.name}"), (self(), "sync"))')
        shell.type('receive(lambda m: m == ("echo", "sync"), timeout=10)')
        shell.expect("('echo', 'sync')")
        shell.type("flush()")
        shell.expect("Shell got ('echo', 'hi')")
        shell.type('whereis("nobody")')
        shell.type('print("whereis:", whereis("nobody"))')
        shell.expect("whereis: None")
        os.write(shell.master, b"\x04")  # Ctrl-D on an empty line: end of input
        assert shell.proc.wait(2 * DEADLINE) == 0
        while shell._read(0.0):  # whatever is left
            pass
        assert b"Traceback" not in shell.output, shell.output.decode(errors="replace")
    finally:
        shell.close()


def test_node_program_refuses_a_bad_name(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "actornet", "node", "--name", "bad", "--no-shell"], cwd=ROOT,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=2 * DEADLINE,
        env={**os.environ, "HOME": str(tmp_path), "ACTORNET_COOKIE": "c"},
    )
    assert result.returncode != 0
    assert "cannot start node bad" in result.stderr and "name@host" in result.stderr
    assert "Traceback" not in result.stderr


# -- 7. the cookie file ------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME without a cookie, and no ACTORNET_COOKIE."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("ACTORNET_COOKIE", raising=False)
    return tmp_path


def test_cookie_file_is_created_private_refused_when_open_and_env_wins(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = home / ".actornet.cookie"
    assert not path.exists()
    with actornet.start_node(unique("c"), cookie=None, port=0) as n:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        cookie = path.read_bytes().strip()
        assert len(cookie) >= 16
        assert n.dist.cookie == cookie
    assert actornet.net_kernel.load_cookie(None) == cookie, "the file is reused, not rewritten"
    path.chmod(0o644)
    with pytest.raises(ActornetError, match="chmod 600"):
        actornet.start_node(unique("c"), cookie=None, port=0)
    monkeypatch.setenv("ACTORNET_COOKIE", "from-the-environment")
    with actornet.start_node(unique("c"), cookie=None, port=0) as n:
        assert n.dist.cookie == b"from-the-environment"


def _first_use(barrier: threading.Barrier, results: list[object]) -> None:
    """Load the default cookie as soon as every thread is ready; record the result."""
    barrier.wait(DEADLINE)
    try:
        results.append(actornet.net_kernel.load_cookie(None))
    except Exception as e:
        results.append(e)


def test_cookie_file_created_once_by_concurrent_first_users(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for attempt in range(10):
        fresh = home / str(attempt)
        fresh.mkdir()
        monkeypatch.setenv("HOME", str(fresh))
        barrier = threading.Barrier(6)
        results: list[object] = []
        threads = [threading.Thread(target=_first_use, args=(barrier, results))
                   for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE)
        assert len(results) == 6 and len(set(map(repr, results))) == 1, results
        assert isinstance(results[0], bytes) and results[0]
        assert os.listdir(fresh) == [".actornet.cookie"], "no temporary file is left"
