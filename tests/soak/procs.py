"""Child OS processes of the soak: a port mapper, workload nodes, chat nodes and clients,
and where they run (`Place`: all on loopback, or each on a test host of `tests.netns`).

Every child gets PR_SET_PDEATHSIG (SIGKILL when the thread that started it ends), so
children are started from the soak's main thread only, which lives until the end.
Their output is kept in memory and copied to a log file of the run's directory.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from tests.cluster import ROOT, _die_with_parent
from tests.netns import Net

HOST = "127.0.0.1"
# The hosts of a run on test hosts: the controller (and the chat clients), the three
# workload nodes, the three chat nodes.
HOSTS = ["ctl", "w1", "w2", "w3", "c1", "c2", "c3"]


class Place:
    """Where a soak's nodes run: `net` None, all on loopback (127.0.0.1) beside one
    private port mapper; else each role (one of `HOSTS`) on its own test host, with that
    host's port mapper on the standard port."""

    def __init__(self, net: Net | None = None) -> None:
        self.net = net

    def host(self, role: str) -> str:
        """The host part of the names of the nodes that play `role`."""
        return HOST if self.net is None else role

    def python(self, role: str, *args: str) -> list[str]:
        """The command line of ``python *args`` on the host of `role`."""
        if self.net is None:
            return python(*args)
        return ["ip", "netns", "exec", self.net[role].ns, *python(*args)]


class Proc:
    """One child process whose output lines we watch."""

    def __init__(self, label: str, args: list[str], env: dict[str, str], log: Path, *,
                 stdin: bool = False, on_line: Callable[[str], None] | None = None) -> None:
        self.label = label
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.on_line = on_line
        self._log: IO[str] = log.open("a", encoding="utf-8", buffering=1)
        self._log.write(f"--- {time.monotonic():.3f} start {' '.join(args)}\n")
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            preexec_fn=_die_with_parent,
        )
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.rstrip("\n")
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
            with contextlib.suppress(ValueError):  # the log is closed at the very end
                self._log.write(f"{time.monotonic():.3f} {line}\n")
            if self.on_line is not None:
                self.on_line(line)
        with self.cond:
            self.cond.notify_all()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def mark(self) -> int:
        with self.cond:
            return len(self.lines)

    def expect(self, pattern: str, timeout: float, since: int = 0) -> re.Match[str] | None:
        """The first line from `since` on matching `pattern`, or None after `timeout` s."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[since:]:
                    m = rx.search(line)
                    if m:
                        return m
                since = max(since, len(self.lines))
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.alive:
                    return None
                self.cond.wait(min(remaining, 0.25))

    def write(self, line: str) -> bool:
        """Type `line` into the child; False if it is gone."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def signal(self, sig: int) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL (after SIGCONT: a stopped process must not linger) and reap."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._pump_thread.join(2)

    def close(self) -> None:
        self.kill()
        with contextlib.suppress(Exception):
            self._log.close()


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def start_epmd(port: int, env: dict[str, str], log: Path) -> Proc:
    """A private port mapper on loopback (the chat nodes and clients register there)."""
    from actornet import epmd

    proc = Proc("epmd", python("-m", "actornet.epmd", "--port", str(port),
                               "--address", HOST), env, log)
    deadline = time.monotonic() + 15
    while True:
        try:
            epmd.names(epmd_port=port, timeout=0.5)
            return proc
        except epmd.EpmdError:
            if time.monotonic() > deadline or not proc.alive:
                proc.close()
                raise RuntimeError(f"the port mapper did not start:\n{proc.lines}") from None
            time.sleep(0.05)


class WorkNode:
    """A workload node: ``python -m actornet node`` on a fixed port (or, with `port`
    None, registered with its host's port mapper), restartable."""

    def __init__(self, name: str, port: int | None, cookie: str, tick_time: float,
                 env: dict[str, str], log: Path, place: Place | None = None,
                 role: str = "") -> None:
        self.name = name
        self.place = place or Place()
        self.role = role
        self.port = port
        self.cookie = cookie
        self.tick_time = tick_time
        self.env = env
        self.log = log
        self.proc: Proc | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return self.name if self.port is None else f"{self.name}:{self.port}"

    def launch(self) -> None:
        """Start the node (do not wait): see `wait_ready`."""
        if self.proc is not None:
            self.proc.close()  # the previous incarnation, killed by now
        self.starts += 1
        port = [] if self.port is None else ["--port", str(self.port)]
        self.proc = Proc(self.name, self.place.python(
            self.role, "-m", "actornet", "node", "--name", self.name, "--cookie", self.cookie,
            *port, "--no-shell", "--tick-time", str(self.tick_time)),
            self.env, self.log)

    def wait_ready(self, timeout: float = 30.0) -> bool:
        assert self.proc is not None
        return self.proc.expect(r"listening on tcp://", timeout) is not None

    def signal(self, sig: int) -> None:
        if self.proc is not None:
            self.proc.signal(sig)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def close(self) -> None:
        if self.proc is not None:
            self.proc.close()
