"""The Erlang/OTP column: the same workloads in ``benchmarks/erlang/actornet_bench.erl``.

When ``erl`` and ``erlc`` are on the PATH, `start` compiles the module into a
temporary directory, starts a private ``epmd`` on a free loopback port (so no
system-wide daemon is left behind) and one distributed ``erl`` node that runs
commands read from its stdin (peer nodes for the remote workloads are started
by that node on demand, in the same session, and killed with it). Without
Erlang, the column says "not installed".
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks._common import COOKIE, Child, Children, free_port, unique

__all__ = ["ErlangRunner", "start"]

SOURCE = Path(__file__).resolve().parent / "erlang" / "actornet_bench.erl"


class ErlangRunner:
    """One ``erl`` node that runs benchmark commands; see the module docstring."""

    def __init__(self, kids: Children, workdir: Path) -> None:
        erlc = shutil.which("erlc")
        erl = shutil.which("erl")
        epmd = shutil.which("epmd")
        if erlc is None or erl is None or epmd is None:
            raise RuntimeError("erl, erlc or epmd is missing")
        out = subprocess.run([erlc, "-o", str(workdir), str(SOURCE)], capture_output=True,
                             text=True, timeout=120, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"erlc failed:\n{out.stdout}{out.stderr}")
        port = free_port()
        env = {"ERL_EPMD_PORT": str(port)}
        self.epmd = kids.start([epmd, "-port", str(port), "-address", "127.0.0.1"], env=env)
        self._wait_epmd(port)
        name = unique("bench_erl")
        self.node: Child = kids.start(
            [erl, "-noshell", "-name", name, "-setcookie", COOKIE, "-pa", str(workdir),
             "-kernel", "start_pg", "true",
             "-kernel", "inet_dist_use_interface", "{127,0,0,1}",
             "-run", "actornet_bench", "main"],
            env=env, stdin=subprocess.PIPE)
        m = self.node.wait_line(r"^@@ ready (\S+)", 60)
        self.release = m.group(1)
        self._seen = len(self.node.lines)

    @staticmethod
    def _wait_epmd(port: int) -> None:
        import socket

        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("epmd did not start") from None
                time.sleep(0.05)

    def run(self, command: str, *args: Any, timeout: float = 600.0) -> dict[str, float]:
        """Run one command; its named results (``name=value`` pairs) as floats."""
        stdin = self.node.proc.stdin
        assert stdin is not None
        stdin.write(" ".join([command, *map(str, args)]) + "\n")
        stdin.flush()
        m = self.node.wait_line(r"^@@ (ok|error)(.*)$", timeout, start=self._seen)
        self._seen = len(self.node.lines)
        if m.group(1) == "error":
            raise RuntimeError(f"Erlang {command} failed: {m.group(2).strip()}")
        out: dict[str, float] = {}
        for pair in m.group(2).split():
            key, _, value = pair.partition("=")
            out[key] = float(value)
        return out

    def close(self) -> None:
        """Stop the node and its peers (peers run in sessions of their own: killed by pid)."""
        stdin = self.node.proc.stdin
        with contextlib.suppress(Exception):
            assert stdin is not None
            stdin.write("quit\n")
            stdin.flush()
            self.node.proc.wait(5)
        self.node.close()
        for line in self.node.lines:
            m = re.match(r"^@@ peer (\d+)$", line)
            if m and _is_our_peer(int(m.group(1))):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(m.group(1)), signal.SIGKILL)
        self.epmd.close()


def _is_our_peer(pid: int) -> bool:
    """True if `pid` still runs a peer node of this harness (and not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"beam" in cmdline and b"bench_peer" in cmdline


@contextlib.contextmanager
def start(kids: Children) -> Iterator[tuple[ErlangRunner | None, str]]:
    """``(runner, "")`` when Erlang/OTP is installed, else ``(None, why not)``."""
    if shutil.which("erl") is None or shutil.which("erlc") is None:
        yield None, "not installed"
        return
    with tempfile.TemporaryDirectory(prefix="actornet-bench-erl-") as tmp:
        try:
            runner = ErlangRunner(kids, Path(tmp))
        except Exception as e:
            yield None, f"failed to start: {e}"
            return
        try:
            yield runner, ""
        finally:
            runner.close()
