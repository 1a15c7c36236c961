"""Real nodes in child OS processes for multi-node tests, and their clean-up.

Each child is ``python -m actornet node --no-shell`` (the real program), on
loopback, on a dynamic port. Children get SIGKILL when the test ends, pass or
fail, and die with the test runner (PR_SET_PDEATHSIG) if it dies first.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COOKIE = "test-cookie"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Looked up here, once: loading a library in a child forked from a multithreaded process
# can deadlock on a lock some other thread held at the fork.
_PR_SET_PDEATHSIG = 1
_SIGKILL = int(signal.SIGKILL)
_prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl


def _die_with(parent: int) -> Callable[[], None]:
    """The child's `preexec_fn`: get SIGKILL when the thread that forked it ends, and exit
    at once if `parent` died before that was set (the child is then someone else's)."""

    def preexec() -> None:
        _prctl(_PR_SET_PDEATHSIG, _SIGKILL)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


# For children of this process (the test runner), which imports this module.
_die_with_parent = _die_with(os.getpid())


class NodeProc:
    """One node in a child process."""

    def __init__(self, name: str, *, cookie: str = COOKIE, port: int | None = 0,
                 extra: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        self.name = name
        args = [sys.executable, "-m", "actornet", "node", "--name", name, "--cookie", cookie,
                "--no-shell", "-v", *(extra or [])]
        if port is not None:
            args += ["--port", str(port)]
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})},
            preexec_fn=_die_with_parent,
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.port = 0
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            m = re.search(r"listening on tcp://[^:]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 20.0) -> NodeProc:
        if not self._ready.wait(timeout) or not self.port:
            self.kill()
            raise AssertionError(f"node {self.name} did not start:\n" + "\n".join(self.lines))
        return self

    @property
    def address(self) -> str:
        """``name@host:port``: reachable without the port mapper."""
        return f"{self.name}:{self.port}"

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_output(self, pattern: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if re.search(pattern, line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"{self.name} never printed {pattern!r}:\n{self.output()}")

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 10.0) -> int:
        self.signal(signal.SIGTERM)
        return self.proc.wait(timeout)


class Cluster:
    """Starts child nodes and kills them all at the end."""

    def __init__(self) -> None:
        self.procs: list[NodeProc] = []

    def start(self, name: str, **kw: object) -> NodeProc:
        proc = NodeProc(name, **kw)  # type: ignore[arg-type]
        self.procs.append(proc)
        return proc.wait_ready()

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(Exception):  # best effort: kill every child
                proc.kill()


def unique(prefix: str) -> str:
    """A node name unlikely to clash with another test's."""
    return f"{prefix}{os.getpid() % 10000}x{time.monotonic_ns() % 100000}@127.0.0.1"


def cluster_fixture() -> Iterator[Cluster]:
    c = Cluster()
    try:
        yield c
    finally:
        c.close()
