"""Tests of the port mapper (`actornet.epmd`), each on its own free port."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from actornet import _epmd_server, epmd
from actornet.errors import ActornetError, AlreadyRegistered

ROOT = Path(__file__).resolve().parent.parent
LINUX = sys.platform.startswith("linux")


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `cond` with a short backoff until it is truthy; fail after `timeout`."""
    deadline, delay = time.monotonic() + timeout, 0.005
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def child_env(port: int) -> dict[str, str]:
    env = dict(os.environ, ACTORNET_EPMD_PORT=str(port))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def run_cli(*args: str, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actornet.epmd", *args],
        env=child_env(port),
        capture_output=True,
        text=True,
        timeout=20,
    )


def daemon_pids(port: int) -> list[int]:
    """Pids of live `python -m actornet.epmd --port <port>` processes (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if (
                entry.name.isdigit()
                and b"actornet.epmd" in argv
                and str(port).encode() in argv
                and not {b"--names", b"--kill"} & set(argv)
            ):
                pids.append(int(entry.name))
    return pids


@pytest.fixture
def port() -> Iterator[int]:
    """A free port; any daemon still running on it afterwards is SIGKILLed."""
    p = free_port()
    try:
        yield p
    finally:
        with contextlib.suppress(epmd.EpmdError):
            epmd.kill(epmd_port=p, timeout=1.0)
        if LINUX:
            for pid in daemon_pids(p):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


def stop_server(port: int, thread: threading.Thread) -> None:
    """Send ``kill`` until the in-process daemon on `port` accepts it, then join it."""

    def killed() -> bool:
        with contextlib.suppress(epmd.EpmdError):
            epmd.kill(epmd_port=port, timeout=2.0)
            return True
        return not thread.is_alive()

    wait_until(killed, 10.0, "the port mapper to accept kill")
    thread.join(10.0)
    assert not thread.is_alive(), "serve() did not return after kill"


@pytest.fixture
def server(port: int) -> Iterator[int]:
    """A port mapper served by a thread of this process; yields its port."""
    ready = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            epmd.serve(port, "127.0.0.1", ready)
        except BaseException as e:
            errors.append(e)
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert ready.wait(5.0) and not errors, errors
        yield port
    finally:
        stop_server(port, thread)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Child processes to SIGKILL and reap at the end of the test."""
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for p in started:
            with contextlib.suppress(OSError):
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5.0)
            for stream in (p.stdin, p.stdout, p.stderr):
                if stream is not None:
                    stream.close()


def spawn(procs: list[subprocess.Popen[str]], code: str, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=child_env(port),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    procs.append(proc)
    return proc


def raw(port: int, data: bytes, sock: socket.socket | None = None) -> dict[str, Any]:
    """Send raw bytes to the daemon and return its one-line reply."""
    own = sock is None
    sock = sock or socket.create_connection(("127.0.0.1", port), timeout=5.0)
    try:
        sock.sendall(data)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(4096)
            assert chunk, "daemon closed the connection without replying"
            buf += chunk
        return dict(json.loads(buf))
    finally:
        if own:
            sock.close()


# --------------------------------------------------------------------------- basics


def test_register_lookup_names(server: int) -> None:
    assert epmd.names(epmd_port=server) == []
    with (
        epmd.register("a", 40123, epmd_port=server) as a,
        epmd.register("b", 40124, epmd_port=server),
    ):
        assert epmd.lookup("a", "127.0.0.1", epmd_port=server) == 40123
        assert epmd.lookup("b", "localhost", epmd_port=server) == 40124
        assert epmd.lookup("zz", "127.0.0.1", epmd_port=server) is None
        assert epmd.names(epmd_port=server) == [("a", 40123), ("b", 40124)]
        assert not a.closed
    assert a.closed
    assert epmd.names(epmd_port=server) == []


def test_epmd_port_from_env(monkeypatch: pytest.MonkeyPatch, server: int) -> None:
    monkeypatch.delenv("ACTORNET_EPMD_PORT", raising=False)
    assert epmd.epmd_port() == epmd.DEFAULT_PORT == 4370
    monkeypatch.setenv("ACTORNET_EPMD_PORT", str(server))
    assert epmd.epmd_port() == server
    with epmd.register("envnode", 1234):
        assert epmd.lookup("envnode", "127.0.0.1") == 1234


def test_invalid_env_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTORNET_EPMD_PORT", "nope")
    with pytest.raises(ValueError, match="ACTORNET_EPMD_PORT must be a TCP port number"):
        epmd.epmd_port()


def test_only_loopback_peers_may_register() -> None:
    for host in ("127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"):
        assert _epmd_server._is_loopback(host), host
    for host in ("10.0.0.1", "192.168.1.2", "::ffff:10.0.0.1", "fe80::1%eth0", "bogus"):
        assert not _epmd_server._is_loopback(host), host


def test_duplicate_name_refused(server: int) -> None:
    with epmd.register("a", 40123, epmd_port=server):
        with pytest.raises(epmd.NameInUse) as info:
            epmd.register("a", 50000, epmd_port=server)
        assert str(info.value) == "name 'a' is already in use on this host (port 40123)"
        assert isinstance(info.value, AlreadyRegistered)
        assert epmd.lookup("a", "127.0.0.1", epmd_port=server) == 40123
    # the name is free again at once after close(): re-registering must work
    epmd.register("a", 50000, epmd_port=server).close()


def test_close_unregisters(server: int) -> None:
    reg = epmd.register("a", 40123, epmd_port=server)
    reg.close()
    reg.close()  # idempotent
    assert epmd.lookup("a", "127.0.0.1", epmd_port=server) is None


def test_dropped_connection_unregisters(server: int) -> None:
    sock = socket.create_connection(("127.0.0.1", server), timeout=5.0)
    assert raw(server, b'{"op":"register","name":"a","port":1}\n', sock) == {"ok": True}
    sock.close()  # no unregister: just the connection going away
    wait_until(lambda: epmd.lookup("a", "127.0.0.1", epmd_port=server) is None, 5.0, "unregister")


def test_sigkilled_process_unregisters(server: int, procs: list[subprocess.Popen[str]]) -> None:
    code = (
        "import sys\nfrom actornet import epmd\n"
        "reg = epmd.register('victim', 4242)\nsys.stdin.read()\n"
    )
    proc = spawn(procs, code, server)
    wait_until(
        lambda: epmd.lookup("victim", "127.0.0.1", epmd_port=server) == 4242, 10.0, "register"
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait(5.0)
    wait_until(
        lambda: epmd.lookup("victim", "127.0.0.1", epmd_port=server) is None, 5.0, "unregister"
    )


def test_lookup_without_port_mapper_raises(port: int) -> None:
    with pytest.raises(
        epmd.EpmdError, match=f"no actornet port mapper answers on 127.0.0.1:{port}"
    ):
        epmd.lookup("a", "127.0.0.1", epmd_port=port, timeout=2.0)
    with pytest.raises(ConnectionError):
        epmd.register("a", 1, epmd_port=port, timeout=2.0)
    assert issubclass(epmd.EpmdError, ActornetError)


# --------------------------------------------------------------------------- robustness


def test_malformed_requests_get_errors(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=5.0) as sock:
        for line in (
            b"garbage\n",
            b"[1, 2]\n",
            b'{"op": "frobnicate"}\n',
            b'{"op": "register", "name": 5, "port": 1}\n',
            b'{"op": "register", "name": "x", "port": "80"}\n',
            b'{"op": "register", "name": "x", "port": 70000}\n',
            b'{"op": "lookup", "name": "a@b"}\n',
            b"\xff\xfe\n",
            b"[" * 4000 + b"\n",
        ):
            reply = raw(server, line, sock)
            assert reply["ok"] is False and reply["error"], (line, reply)
        # the same connection still works after errors
        assert raw(server, b'{"op": "names"}\n', sock) == {"ok": True, "names": []}
    with socket.create_connection(("127.0.0.1", server), timeout=5.0) as sock:
        reply = raw(server, b"x" * 5000 + b"\n", sock)
        assert reply["ok"] is False and "line over 4096 bytes" in reply["error"]
        assert sock.recv(1) == b""  # connection closed after an over-long line
    assert epmd.names(epmd_port=server) == []


def test_slow_client_does_not_block_others(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=5.0) as slow:
        slow.sendall(b'{"op": "loo')  # half a request, never finished
        with epmd.register("a", 7, epmd_port=server, timeout=2.0):
            assert epmd.lookup("a", "127.0.0.1", epmd_port=server, timeout=2.0) == 7


def test_connection_limit(port: int) -> None:
    ready = threading.Event()
    thread = threading.Thread(
        target=epmd.serve,
        args=(port, "127.0.0.1", ready),
        kwargs={"max_connections": 2},
        daemon=True,
    )
    thread.start()
    try:
        assert ready.wait(5.0)
        with (
            epmd.register("a", 1, epmd_port=port),
            epmd.register("b", 2, epmd_port=port),
            pytest.raises(epmd.EpmdError, match="refused to list names: too many connections"),
        ):
            epmd.names(epmd_port=port, timeout=2.0)
        wait_until(lambda: epmd.names(epmd_port=port, timeout=2.0) == [], 5.0, "free slots")
    finally:
        stop_server(port, thread)


class SlowFlood:
    """`count` connections to the port mapper on `port`, each sending one byte of a request
    that never ends every `every` seconds; one the daemon closes (or answers: refuses) is
    opened again at once."""

    def __init__(self, port: int, count: int, every: float) -> None:
        self.port, self.count, self.every = port, count, every
        self.closed = 0  # connections the daemon closed or refused
        self.socks: list[socket.socket] = []
        self.stop = threading.Event()
        self.opened = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.opened.wait(30.0), "could not open the flood's connections"

    def _run(self) -> None:
        while len(self.socks) < self.count:
            self.socks.append(self._open())
        self.opened.set()
        while not self.stop.wait(self.every):  # the pace of a slow client, not a wait for
            for i, sock in enumerate(self.socks):
                try:
                    sock.send(b" ")
                    sock.recv(4096, socket.MSG_DONTWAIT)  # b"" (closed) or a refusal
                    raise ConnectionResetError
                except BlockingIOError:
                    pass
                except OSError:
                    self.closed += 1
                    sock.close()
                    with contextlib.suppress(OSError):
                        self.socks[i] = self._open()

    def _open(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5.0)
        sock.send(b'{"op": ')
        sock.setblocking(False)
        return sock

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10.0)
        for sock in self.socks:
            sock.close()


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.monotonic()
    return fn(), time.monotonic() - t0


def test_slow_connections_cannot_fill_the_port_mapper(server: int) -> None:
    """More slow connections than the port mapper takes (1024), each sending a byte now and
    then, opened again as soon as closed: registrations and lookups still get through at
    once. (Before: 512 such connections refused every request, for as long as they lasted.)"""
    flood = SlowFlood(server, 1100, every=0.3)
    try:
        wait_until(lambda: flood.closed >= 1100 - _epmd_server.MAX_CONNECTIONS, 10.0,
                   "the flood to fill the port mapper")
        for i in range(5):
            with epmd.register(f"n{i}", 4000 + i, epmd_port=server, timeout=2.0) as reg:
                port, took = timed(lambda i=i: epmd.lookup(f"n{i}", "127.0.0.1",
                                                           epmd_port=server, timeout=2.0))
                assert port == 4000 + i and took < 1.0, took
                assert not reg.closed
    finally:
        flood.close()


@pytest.mark.skipif(not LINUX, reason="sets the daemon's descriptor limit with setrlimit")
def test_a_port_mapper_with_few_descriptors_serves_within_them(
    port: int, procs: list[subprocess.Popen[str]]
) -> None:
    """With 80 descriptors, it takes at most 16 connections (saying so) and makes room
    for newcomers instead of running out: 100 slow connections do not stop it."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (80, 80))

    daemon = subprocess.Popen([sys.executable, "-m", "actornet.epmd", "--port", str(port),
                               "--address", "127.0.0.1"], env=child_env(port),
                              stderr=subprocess.PIPE, text=True, preexec_fn=limit)
    procs.append(daemon)
    wait_until(lambda: _answers(port), 10.0, "the port mapper")
    flood = SlowFlood(port, 100, every=0.3)
    try:
        wait_until(lambda: flood.closed >= 100 - 16, 10.0, "the flood to fill it")
        with epmd.register("few", 77, epmd_port=port, timeout=2.0):
            assert epmd.lookup("few", "127.0.0.1", epmd_port=port, timeout=2.0) == 77
    finally:
        flood.close()
    assert daemon.poll() is None
    epmd.kill(epmd_port=port)
    assert daemon.wait(10.0) == 0
    log = daemon.stderr.read() if daemon.stderr else ""
    assert "only 80 descriptors: serving at most 16 connections" in log, log


@pytest.fixture
def quick(port: int) -> Iterator[int]:
    """A port mapper (in a thread of this process) with a 1 s deadline per request."""
    ready = threading.Event()
    thread = threading.Thread(target=epmd.serve, args=(port, "127.0.0.1", ready),
                              kwargs={"request_timeout": 1.0}, daemon=True)
    thread.start()
    try:
        assert ready.wait(5.0)
        yield port
    finally:
        stop_server(port, thread)


def test_a_whole_request_has_a_deadline_not_each_read(quick: int) -> None:
    with socket.create_connection(("127.0.0.1", quick), timeout=5.0) as slow:
        t0 = time.monotonic()
        slow.sendall(b'{"op": ')
        closed_after = None
        while closed_after is None and time.monotonic() - t0 < 5.0:
            try:
                slow.sendall(b" ")  # a byte every 0.1 s: each read is quick, the request never ends
                slow.settimeout(0.1)
                if slow.recv(4096) == b"":
                    closed_after = time.monotonic() - t0
            except TimeoutError:
                pass
            except OSError:
                closed_after = time.monotonic() - t0
        assert closed_after is not None and 0.9 <= closed_after < 2.0, closed_after
    # An idle connection gets the same deadline; a quick one is served and kept.
    with socket.create_connection(("127.0.0.1", quick), timeout=5.0) as idle:
        assert raw(quick, b'{"op": "names"}\n', idle) == {"ok": True, "names": []}
        assert idle.recv(1) == b""  # closed once its next request did not come in time


def test_registered_connections_may_stay_idle(quick: int) -> None:
    with epmd.register("idle", 1234, epmd_port=quick) as reg:
        wait_until(lambda: epmd.names(epmd_port=quick) == [("idle", 1234)], 5.0, "register")
        other = socket.create_connection(("127.0.0.1", quick), timeout=5.0)
        assert other.recv(1) == b""  # an unregistered idle connection is gone after 1 s...
        other.close()
        assert epmd.lookup("idle", "127.0.0.1", epmd_port=quick) == 1234  # ...this one stays
        assert not reg.closed


def test_kill_is_refused_while_nodes_are_registered(
    server: int, procs: list[subprocess.Popen[str]]
) -> None:
    with epmd.register("a", 1, epmd_port=server):
        with pytest.raises(epmd.EpmdError,
                           match=r"refused to stop: 1 node\(s\) registered \(a\): stop them"):
            epmd.kill(epmd_port=server)
        result = run_cli("--kill", port=server)
        assert result.returncode == 1 and "stop them first" in result.stderr
        assert epmd.lookup("a", "127.0.0.1", epmd_port=server) == 1
    # A node killed the moment before: its registration does not hold the kill up.
    code = ("import sys\nfrom actornet import epmd\nreg = epmd.register('victim', 7)\n"
            "print('up', flush=True)\nsys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env=child_env(server),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    procs.append(proc)
    assert proc.stdout is not None and proc.stdout.readline() == "up\n"
    proc.kill()
    proc.wait(5.0)
    epmd.kill(epmd_port=server)  # accepted: the fixture's stop finds it stopped


@pytest.mark.skipif(not LINUX, reason="finds the daemon's pid through /proc")
def test_a_watched_registration_comes_back_with_its_port_mapper(
    port: int, procs: list[subprocess.Popen[str]], caplog: pytest.LogCaptureFixture
) -> None:
    """The port mapper is SIGKILLed: the watcher says so (a warning naming the label),
    starts a new one (as start_node would) and registers again; closing it then
    unregisters at once, with the watcher gone."""
    daemon = subprocess.Popen([sys.executable, "-m", "actornet.epmd", "--port", str(port)],
                              env=child_env(port), stderr=subprocess.DEVNULL, text=True)
    procs.append(daemon)
    wait_until(lambda: _answers(port), 10.0, "the port mapper")
    reg = epmd.register("w", 4242, epmd_port=port)
    reg.watch("node w@test")
    daemon.kill()
    daemon.wait(5.0)
    wait_until(lambda: _answers(port) and epmd.lookup("w", "127.0.0.1", epmd_port=port) == 4242,
               10.0, "the registration to come back")
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(m.startswith("node w@test: lost its registration as 'w'") for m in said), said
    assert any(m.startswith("node w@test: registered again as 'w'") for m in said), said
    reg.close()
    assert epmd.lookup("w", "127.0.0.1", epmd_port=port) is None
    assert reg._watcher is not None and not reg._watcher.is_alive()


# --------------------------------------------------------------------------- daemon


@pytest.mark.skipif(not LINUX, reason="finds the daemon's pid through /proc")
def test_ensure_running_daemon_outlives_starter(
    port: int, procs: list[subprocess.Popen[str]]
) -> None:
    code = "import sys\nfrom actornet import epmd\nepmd.ensure_running()\nsys.stdin.read()\n"
    starter = spawn(procs, code, port)
    wait_until(lambda: daemon_pids(port), 10.0, "the daemon process")
    wait_until(lambda: _answers(port), 10.0, "the daemon to answer")
    starter.send_signal(signal.SIGKILL)
    starter.wait(5.0)
    assert epmd.names(epmd_port=port, timeout=2.0) == []  # still up
    (pid,) = daemon_pids(port)
    assert os.getsid(pid) == pid  # detached: leader of its own session
    epmd.ensure_running(epmd_port=port, timeout=5.0)  # already running: a no-op
    assert daemon_pids(port) == [pid]
    result = run_cli("--kill", port=port)
    assert result.returncode == 0, result.stderr
    wait_until(lambda: not daemon_pids(port), 10.0, "the daemon to exit")
    assert not _answers(port)


@pytest.mark.skipif(not LINUX, reason="finds the daemon's pid through /proc")
def test_concurrent_ensure_running(port: int) -> None:
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait(5.0)
            epmd.ensure_running(epmd_port=port, timeout=10.0)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20.0)
    assert not errors and not any(t.is_alive() for t in threads), errors
    with epmd.register("a", 1, epmd_port=port):
        assert epmd.names(epmd_port=port) == [("a", 1)]
    wait_until(lambda: len(daemon_pids(port)) == 1, 10.0, "a single daemon")


def test_cli_names(server: int, port: int) -> None:
    with epmd.register("a", 40123, epmd_port=server), epmd.register("b", 40124, epmd_port=server):
        result = run_cli("--names", port=server)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"actornet epmd: up and running on port {server} with data:",
        "name a at port 40123",
        "name b at port 40124",
    ]


def test_cli_without_daemon(port: int) -> None:
    for mode in ("--names", "--kill"):
        result = run_cli(mode, "--port", str(port), port=free_port())
        assert result.returncode == 1
        assert f"no actornet port mapper answers on 127.0.0.1:{port}" in result.stderr


def test_cli_serve_foreground_and_bind_failure(
    port: int, procs: list[subprocess.Popen[str]]
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "actornet.epmd", "--port", str(port), "--address", "127.0.0.1"],
        env=child_env(port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs.append(proc)
    wait_until(lambda: _answers(port), 10.0, "the foreground daemon")
    second = run_cli(port=port)  # same port: cannot bind, exits quietly with status 1
    assert second.returncode == 1 and "cannot listen" in second.stderr
    assert "Traceback" not in second.stderr
    with epmd.register("a", 9, epmd_port=port):
        pass
    epmd.kill(epmd_port=port)
    assert proc.wait(10.0) == 0
    log = proc.stderr.read() if proc.stderr else ""
    assert "registered 'a' at port 9" in log and "unregistered 'a'" in log


def _answers(port: int) -> bool:
    try:
        epmd.names(epmd_port=port, timeout=1.0)
    except epmd.EpmdError:
        return False
    return True


def test_a_lookup_whose_connection_is_closed_unanswered_asks_again() -> None:
    """The port mapper closes the oldest connections of an address that holds too many, so
    a client beside a flood of idle connections from its own host can lose a fresh one
    before the answer: the lookup asks again on a new connection (a bounded number of
    times) instead of reporting the node missing."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    served: list[str] = []

    def serve() -> None:
        for n in range(3):
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(5)
                conn.recv(4096)
                if n < 2:
                    served.append("closed")  # evicted: closed with no answer
                else:
                    served.append("answered")
                    conn.sendall(json.dumps({"ok": True, "port": 4242}).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert epmd.lookup("a", "127.0.0.1", epmd_port=port, timeout=5) == 4242
        assert served == ["closed", "closed", "answered"]
    finally:
        thread.join(5)
        listener.close()


def test_a_lookup_gives_up_after_its_attempts() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(epmd._ATTEMPTS):
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(5)
                conn.recv(4096)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with pytest.raises(epmd.EpmdError, match="without a full reply"):
            epmd.lookup("a", "127.0.0.1", epmd_port=port, timeout=5)
    finally:
        thread.join(5)
        listener.close()
