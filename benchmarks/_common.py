"""What every figure shares: the run's settings, statistics, interleaving, child processes.

A *figure* is a function ``fig(cfg) -> dict`` returning ``{"rows": [...], "notes": [...]}``.
Each row is one measured quantity with a *series* per contender (actornet, each
baseline, Erlang/OTP), built by `row`. Contenders run interleaved, one
repetition of each in turn (A B A B ...), so a ratio compares numbers taken
under the same load: `row` computes the ratio of each repetition's pair and
reports the median and min-max of those ratios.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COOKIE = "bench-cookie"
# Nodes of the throughput figures tick slowly: on a loaded 2-core machine a node
# with a thousand busy processes can miss the default 4 s tick (see
# docs/performance.md), and a connection declared down loses the measurement.
BENCH_TICK = 15.0
ACTORNET = "actornet"
ERLANG = "Erlang/OTP"

Sample = dict[str, float]
Runner = Callable[[int], Sample]


@dataclass
class Config:
    """Settings of one benchmark run."""

    quick: bool = False
    reps: int = 5
    erlang: Any = None  # an `erlang.ErlangRunner`, or None
    erlang_note: str = "not installed"
    max_procs: int = 20_000
    log: Callable[[str], None] = field(default=lambda s: print(s, file=sys.stderr, flush=True))

    def n(self, full: int, quick: int) -> int:
        """The workload size: `full` normally, `quick` with ``--quick``."""
        return quick if self.quick else full


# -- statistics -----------------------------------------------------------------------


def stats(samples: list[float]) -> dict[str, Any]:
    """Median, min and max of `samples` (and the samples themselves)."""
    if not samples:
        return {"skipped": "no samples"}
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": list(samples),
    }


def percentile(values: list[float], q: float) -> float:
    """The `q`-th percentile (0-100) of `values`, nearest-rank."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def latency_sample(latencies_ns: list[int], elapsed_s: float) -> Sample:
    """Rate (per second), p50 and p99 (µs) of round trips timed in nanoseconds."""
    us = [x / 1000 for x in latencies_ns]
    return {
        "rate": len(latencies_ns) / elapsed_s,
        "p50": percentile(us, 50),
        "p99": percentile(us, 99),
    }


def interleave(cfg: Config, runners: dict[str, Runner | None],
               warmup: dict[str, Runner | None] | None = None) -> dict[str, list[Sample]]:
    """Run each contender once per repetition, in turn (A B A B ...).

    A runner takes the repetition number and returns named measurements.
    `warmup` runners (default: the runners themselves) run once first, unmeasured.
    A None runner is skipped (its contender is not available).
    """
    results: dict[str, list[Sample]] = {name: [] for name in runners}
    for fn in (warmup if warmup is not None else runners).values():
        if fn is not None:
            fn(-1)
    for rep in range(cfg.reps):
        for name, fn in runners.items():
            if fn is not None:
                results[name].append(fn(rep))
    return results


def row(
    label: str,
    metric: str,
    unit: str,
    results: dict[str, list[Sample]],
    *,
    higher_is_better: bool,
    skipped: dict[str, str] | None = None,
    goal: tuple[str, float, str] | None = None,
    note: str = "",
    no_ratio: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One table row: `metric` of every contender in `results`, with ratios.

    `goal` is ``(baseline, factor, text)``: met when actornet's *speed ratio*
    against `baseline` (its value over the baseline's, inverted when lower is
    better, so above 1 always means actornet is faster) is at least `factor`.
    Contenders in `no_ratio` get no ratio (their numbers are not comparable).
    """
    series: dict[str, Any] = {}
    for name, samples in results.items():
        values = [s[metric] for s in samples if metric in s]
        series[name] = stats(values) if values else {"skipped": (skipped or {}).get(name, "n/a")}
    for name, why in (skipped or {}).items():
        series.setdefault(name, {"skipped": why})
        if "median" not in series[name]:
            series[name] = {"skipped": why}
    ratios: dict[str, Any] = {}
    mine = [s.get(metric) for s in results.get(ACTORNET, [])]
    for name, samples in results.items():
        if name == ACTORNET or name in no_ratio:
            continue
        theirs = [s.get(metric) for s in samples]
        pairs = [(a, b) for a, b in zip(mine, theirs, strict=False)
                 if a is not None and b is not None and a > 0 and b > 0]
        if not pairs:
            continue
        r = [a / b if higher_is_better else b / a for a, b in pairs]
        ratios[name] = stats(r)
        del ratios[name]["samples"]
    out: dict[str, Any] = {
        "label": label,
        "metric": metric,
        "unit": unit,
        "higher_is_better": higher_is_better,
        "series": series,
        "speed_ratios": ratios,
        "note": note,
    }
    if goal is not None:
        baseline, factor, text = goal
        got = ratios.get(baseline)
        out["goal"] = {
            "text": text,
            "baseline": baseline,
            "factor": factor,
            "ratio": got["median"] if got else None,
            "met": None if got is None else got["median"] >= factor,
        }
    return out


def absolute_goal(r: dict[str, Any], text: str, ok: Callable[[float], bool]) -> dict[str, Any]:
    """Attach a goal on actornet's own median (not a ratio) to row `r`."""
    mine = r["series"].get(ACTORNET, {})
    value = mine.get("median")
    r["goal"] = {"text": text, "baseline": None, "factor": None, "ratio": None,
                 "met": None if value is None else bool(ok(value))}
    return r


# -- child processes ---------------------------------------------------------------------


def _child_setup() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the harness
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Child:
    """A child OS process whose output is collected line by line; killed on `close`.

    It dies with the harness (PR_SET_PDEATHSIG) and runs in its own session, so
    `close` kills whatever it started too.
    """

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None,
                 stdin: Any = subprocess.DEVNULL, cwd: Path = ROOT,
                 changed: threading.Condition | None = None) -> None:
        """`changed` (default: one of its own) is notified at every output line.

        Children sharing one let a single thread wait for news from any of them.
        """
        self.args = args
        self.proc = subprocess.Popen(
            args, cwd=cwd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env={**os.environ, **(env or {})}, preexec_fn=_child_setup,
            start_new_session=True, bufsize=1,
        )
        self.lines: list[str] = []
        self._changed = changed if changed is not None else threading.Condition()
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_line(self, pattern: str, timeout: float, start: int = 0) -> re.Match[str]:
        """The first output line from index `start` on that matches `pattern`."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        with self._changed:
            i = start
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._pump.is_alive()):
                    break
                self._changed.wait(min(left, 0.2))
        self.close()
        tail = "\n".join(self.lines[-30:])
        raise RuntimeError(f"{self.args[:4]} never printed {pattern!r}:\n{tail}")

    def write_line(self, line: str) -> None:
        """Write `line` to the child's stdin (started with ``stdin=subprocess.PIPE``)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def close(self) -> None:
        """SIGKILL the child's whole session, then reap it."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGCONT)
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # grandchildren of an exited child
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


class Children:
    """Every child started through it is killed on exit (`with Children() as kids:`)."""

    def __init__(self) -> None:
        self.all: list[Child] = []

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, args: list[str], **kw: Any) -> Child:
        child = Child(args, **kw)
        self.all.append(child)
        return child

    def close(self) -> None:
        for child in reversed(self.all):
            with contextlib.suppress(Exception):
                child.close()
        self.all.clear()


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique(prefix: str) -> str:
    """A node name unlikely to clash with another run's."""
    return f"{prefix}{os.getpid() % 100000}x{time.monotonic_ns() % 1000000}@127.0.0.1"


class ActornetChild:
    """A real actornet node in a child process (``python -m actornet node``)."""

    def __init__(self, kids: Children, prefix: str, *, tick_time: float = BENCH_TICK,
                 extra: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        self.name = unique(prefix)
        args = [sys.executable, "-m", "actornet", "node", "--name", self.name,
                "--cookie", COOKIE, "--port", "0", "--no-shell", "--tick-time", str(tick_time),
                *(extra or [])]
        self.child = kids.start(args, env=env)
        m = self.child.wait_line(r"listening on tcp://[^:]+:(\d+)", 30)
        self.port = int(m.group(1))

    @property
    def address(self) -> str:
        """``name@host:port``, reachable without the port mapper."""
        return f"{self.name}:{self.port}"


@contextlib.contextmanager
def local_node(prefix: str, *, tick_time: float = BENCH_TICK,
               insecure: bool = False) -> Iterator[Any]:
    """A named, distributed actornet node in this process, stopped at the end."""
    import actornet

    node = actornet.start_node(unique(prefix), cookie=COOKIE, port=0, tick_time=tick_time,
                               insecure=insecure)
    try:
        yield node
    finally:
        node.stop(timeout=5.0)


def on(node: Any, fn: Callable[[], Any]) -> Any:
    """Run `fn()` in a new process of `node` (so the module API acts on that node, when
    several run in this process); its result, or its exception raised here."""
    import queue

    box: queue.Queue[tuple[bool, Any]] = queue.Queue()

    def run() -> None:
        try:
            box.put((True, fn()))
        except BaseException as e:  # handed to the caller
            box.put((False, e))

    node.spawn(run)
    ok, value = box.get()
    if not ok:
        raise value
    return value


def connect(address: str, *, monitor: bool = True) -> None:
    """Connect the current node to `address`, or raise.

    With `monitor`, the calling process gets ``("nodedown", name)`` if the
    connection is lost, which `await_msg` turns into an error.
    """
    import actornet

    for _ in range(3):
        if actornet.ping(address, 10) == "pong":
            if monitor:
                actornet.monitor_node(address)
            return
        time.sleep(0.2)
    raise RuntimeError(f"cannot connect to {address}")


def await_msg(match: Callable[[Any], bool], timeout: float) -> Any:
    """Receive the first message `match` accepts; raise if a monitored node goes down first."""
    import actornet

    def pick(m: Any) -> bool:
        return bool(match(m)) or (m.__class__ is tuple and len(m) == 2 and m[0] == "nodedown")

    msg = actornet.receive(pick, timeout=timeout)
    if not match(msg):
        raise RuntimeError(f"node {msg[1]} went down during the measurement: the "
                           "connection was lost (a missed tick?), its messages with it")
    return msg


def python_child(kids: Children, module: str, *args: str) -> Child:
    """``python -m module args`` as a child."""
    return kids.start([sys.executable, "-m", module, *args])
