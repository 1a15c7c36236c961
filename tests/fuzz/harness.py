"""The fuzz loop: generate, check, time and measure each input; record findings.

A *finding* is an input for which the code under test raised an exception
that is not documented for it, returned something an oracle refuses
(`OracleError`), took longer than `slow_limit` seconds, hung (the watchdog),
or made memory grow past a bound. Each finding's input is saved as
``<findings_dir>/<target>-<sha>.bin`` (with a ``.txt`` saying what happened)
and printed.

Input number ``i`` of a target is generated from ``random.Random(f"{seed}:{target}:{i}")``
and the target's pools, which depend only on the seed: any input can be made
again from (seed, target, index), given the same ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import faulthandler
import hashlib
import os
import random
import sys
import threading
import time
import traceback
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from .targets import TARGETS, Target

__all__ = [
    "DEFAULT_FINDINGS",
    "WEIGHTS",
    "Finding",
    "Fuzzer",
    "Report",
    "TargetStats",
    "memory_status",
    "minimize",
    "run_fuzz",
    "signature_of",
    "split_budget",
]

DEFAULT_FINDINGS: Final = Path(__file__).resolve().parent / "findings"
# how `all` splits the inputs (dispatch goes through a real node: some 1000 inputs/s)
WEIGHTS: Final = {"codec": 4, "wire": 3, "handshake": 3, "session": 2, "dial": 1, "dispatch": 1}
_HERE: Final = str(Path(__file__).resolve().parent)
_LIB: Final = str(Path(__file__).resolve().parents[2] / "actornet")

Log = Callable[[str], None]


@dataclass
class Finding:
    """One input that broke a rule; `kind` is the exception's type, or slow/hang/memory."""

    target: str
    index: int  # input number in the run (-1: from a file or atheris)
    kind: str
    message: str
    data: bytes
    where: str = ""  # the place that raised: file:line in actornet or in the oracles
    details: str = ""  # the traceback
    path: Path | None = None

    @property
    def signature(self) -> str:
        """What tells findings apart: the target, the kind and the place."""
        return f"{self.target}:{self.kind}@{self.where}"

    def describe(self) -> str:
        """A few lines for the console: what, where, and the input."""
        shown = self.data if len(self.data) <= 200 else self.data[:200] + b"..."
        saved = f" saved {self.path}" if self.path else ""
        return (f"FINDING [{self.signature}] input #{self.index} ({len(self.data)} bytes){saved}\n"
                f"  {self.kind}: {self.message[:500]}\n  input: {shown!r}")


def _where(exc: BaseException) -> str:
    """The deepest frame of `exc`'s traceback in actornet or the fuzz oracles."""
    place = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith((_LIB, _HERE)):
            place = f"{Path(frame.filename).name}:{frame.lineno}"
    return place


def finding_from(target: str, index: int, data: bytes, exc: BaseException) -> Finding:
    """The finding for `exc`, raised while checking `data`."""
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return Finding(target, index, type(exc).__name__, str(exc), data, _where(exc), details)


@dataclass
class TargetStats:
    """What one target's run did: counts, time, the slowest input, memory."""

    name: str
    inputs: int = 0
    findings: int = 0
    seconds: float = 0.0
    slowest: float = 0.0
    slowest_index: int = -1
    slowest_input: bytes = b""
    traced_peak: int = 0  # the largest tracemalloc peak of one sampled input, bytes
    traced_peak_size: int = 0  # that input's size
    traced: int = 0  # inputs run under tracemalloc
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        """Inputs per second (generation included)."""
        return self.inputs / self.seconds if self.seconds else 0.0


@dataclass
class Report:
    """The result of a run over one or more targets."""

    seed: int
    stats: dict[str, TargetStats]
    findings: list[Finding]
    seconds: float = 0.0
    max_rss_kb: int = 0  # the largest VmRSS sampled during the run
    hwm_kb: int = 0  # VmHWM (peak RSS of the process) at the end
    vm_peak_kb: int = 0  # VmPeak (peak virtual size) at the end

    @property
    def inputs(self) -> int:
        """Inputs checked, all targets together."""
        return sum(s.inputs for s in self.stats.values())

    @property
    def ok(self) -> bool:
        """No findings."""
        return not self.findings

    def summary(self) -> str:
        """The one-line summary: counts per target, findings, slowest, memory, rate."""
        per = " ".join(f"{n}={s.inputs}" for n, s in self.stats.items())
        slow = max(self.stats.values(), key=lambda s: s.slowest, default=None)
        slowest = (f"{slow.slowest * 1e3:.1f}ms ({slow.name} #{slow.slowest_index}, "
                   f"{len(slow.slowest_input)} bytes)" if slow else "-")
        traced = max(self.stats.values(), key=lambda s: s.traced_peak, default=None)
        alloc = (f"{traced.traced_peak / 2**20:.1f}MB ({traced.name}, "
                 f"{traced.traced_peak_size} bytes in)" if traced else "-")
        rate = self.inputs / self.seconds if self.seconds else 0.0
        return (f"SUMMARY seed={self.seed} inputs={self.inputs} ({per}) "
                f"findings={len(self.findings)} time={self.seconds:.1f}s rate={rate:.0f}/s "
                f"slowest={slowest} peak_rss={max(self.hwm_kb, self.max_rss_kb) / 1024:.1f}MB "
                f"max_sampled_rss={self.max_rss_kb / 1024:.1f}MB "
                f"max_input_alloc={alloc}")


def memory_status() -> dict[str, int]:
    """VmRSS, VmHWM and VmPeak of this process in kB (empty where /proc is missing)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "VmPeak"):
                    out[key] = int(rest.split()[0])
    except OSError:
        pass
    return out


def split_budget(targets: Iterable[str], total: int) -> dict[str, int]:
    """Share `total` inputs among `targets` by `WEIGHTS` (each gets at least one)."""
    names = list(targets)
    weights = {n: WEIGHTS.get(n, 1) for n in names}
    whole = sum(weights.values())
    budget = {n: max(1, total * weights[n] // whole) for n in names}
    budget[names[0]] += max(0, total - sum(budget.values()))
    return budget


class Fuzzer:
    """Runs targets for a number of inputs each, checking every input.

    `slow_limit`: seconds one input may take. `hang_limit`: seconds after
    which a watchdog thread saves the running input as a hang and ends the
    process (None: no watchdog); with `hard_timeout` faulthandler also ends it
    (with tracebacks) if the watchdog cannot run (C code holding the GIL).
    Memory: RSS is sampled every `mem_every` inputs (over `max_rss_mb`: a
    finding), and every `trace_every`-th input runs under tracemalloc (a peak
    over `alloc_limit(size)` bytes is a finding).
    """

    def __init__(
        self,
        seed: int,
        *,
        findings_dir: Path | None = DEFAULT_FINDINGS,
        log: Log | None = print,
        slow_limit: float = 1.0,
        hang_limit: float | None = 60.0,
        hard_timeout: bool = False,
        max_rss_mb: float = 2048.0,
        mem_every: int = 1000,
        trace_every: int = 1000,
        max_saved: int = 3,
        progress_every: float = 5.0,
    ) -> None:
        self.seed = seed
        self.findings_dir = findings_dir
        self.log = log
        self.slow_limit = slow_limit
        self.hang_limit = hang_limit
        self.hard_timeout = hard_timeout
        self.max_rss_kb = int(max_rss_mb * 1024)
        self.mem_every = max(1, mem_every)
        self.trace_every = trace_every
        self.max_saved = max_saved
        self.progress_every = progress_every
        self.findings: list[Finding] = []
        self.saved: Counter[str] = Counter()
        self.max_rss_seen = 0
        self._current: tuple[str, int, bytes, float] | None = None
        self._watchdog: threading.Thread | None = None
        self._stop = threading.Event()
        self._armed_at = 0.0

    @staticmethod
    def alloc_limit(size: int) -> int:
        """Bytes one input of `size` bytes may allocate at its peak."""
        return 64 * 2**20 + 64 * size

    def _say(self, text: str) -> None:
        if self.log is not None:
            self.log(text)

    # -- findings ----------------------------------------------------------------------

    def record(self, finding: Finding) -> Finding:
        """Count `finding`, save its input (a few per signature) and print it."""
        self.findings.append(finding)
        if self.findings_dir is not None and self.saved[finding.signature] < self.max_saved:
            self.saved[finding.signature] += 1
            self.findings_dir.mkdir(parents=True, exist_ok=True)
            sha = hashlib.sha256(finding.data).hexdigest()[:16]
            path = self.findings_dir / f"{finding.target}-{sha}.bin"
            path.write_bytes(finding.data)
            path.with_suffix(".txt").write_text(
                f"{finding.signature}\nseed {self.seed} input #{finding.index}\n"
                f"{finding.kind}: {finding.message}\n\n{finding.details}",
                encoding="utf-8", errors="backslashreplace",
            )
            finding.path = path
        if self.saved[finding.signature] <= self.max_saved:
            self._say(finding.describe())
        return finding

    # -- one input ---------------------------------------------------------------------

    def check_one(self, target: Target, data: bytes, index: int, stats: TargetStats) -> None:
        """Check one input: exceptions, time and (sampled) memory; update `stats`."""
        traced = self.trace_every > 0 and index % self.trace_every == 0
        if traced:
            tracemalloc.start()
        self._current = (target.name, index, data, time.perf_counter())
        start = time.perf_counter()
        try:
            outcome = target.check(data)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # anything at all that comes out is a finding
            outcome = "FINDING"
            self.record(finding_from(target.name, index, data, exc))
            stats.findings += 1
        elapsed = time.perf_counter() - start
        self._current = None
        if traced:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            if target.alloc_peak is not None:  # the code under test's own peak
                peak, target.alloc_peak = target.alloc_peak, None
            stats.traced += 1
            if peak > stats.traced_peak:
                stats.traced_peak, stats.traced_peak_size = peak, len(data)
            if peak > self.alloc_limit(len(data)):
                stats.findings += 1
                self.record(Finding(target.name, index, "memory",
                                    f"one input allocated {peak} bytes at its peak", data))
        stats.inputs += 1
        stats.outcomes[outcome] += 1
        if elapsed > stats.slowest:
            stats.slowest, stats.slowest_index, stats.slowest_input = elapsed, index, data
        if elapsed > self.slow_limit:
            stats.findings += 1
            self.record(Finding(target.name, index, "slow",
                                f"took {elapsed:.3f}s (limit {self.slow_limit}s)", data))

    def sample_memory(self, target: Target, index: int, data: bytes, stats: TargetStats) -> None:
        """Sample RSS; a finding (once per target) if it is over the bound."""
        rss = memory_status().get("VmRSS", 0)
        self.max_rss_seen = max(self.max_rss_seen, rss)
        if rss > self.max_rss_kb and not any(
            f.kind == "memory" and f.target == target.name and f.index < 0 for f in self.findings
        ):
            stats.findings += 1
            self.record(Finding(target.name, -1, "memory",
                                f"RSS {rss} kB over {self.max_rss_kb} kB at input #{index}", data))

    # -- a run ---------------------------------------------------------------------------

    def input_for(self, target: Target, index: int) -> bytes:
        """Input number `index` of `target` in this seed's run."""
        return target.generate(random.Random(f"{self.seed}:{target.name}:{index}"))

    def run_target(self, target: Target, inputs: int, start: int = 0) -> TargetStats:
        """Check inputs number `start` to `start + inputs` of `target`."""
        stats = TargetStats(target.name)
        rng = random.Random()
        began = last = time.perf_counter()
        data = b""
        self._arm()
        with target.active():
            for index in range(start, start + inputs):
                rng.seed(f"{self.seed}:{target.name}:{index}")
                try:
                    data = target.generate(rng)
                except Exception as exc:  # a bug in the generator (or in encode)
                    stats.findings += 1
                    bad = finding_from(target.name, index, b"", exc)
                    bad.kind = f"generator-{bad.kind}"
                    self.record(bad)
                    continue
                self.check_one(target, data, index, stats)
                if index % self.mem_every == 0:
                    self.sample_memory(target, index, data, stats)
                if index & 255 == 0:
                    now = time.perf_counter()
                    self._arm(now)
                    if now - last >= self.progress_every:
                        last = now
                        self._progress(stats, index - start + 1, inputs, now - began)
        stats.seconds = time.perf_counter() - began
        self.sample_memory(target, start + inputs, data, stats)
        return stats

    def _progress(self, stats: TargetStats, done: int, total: int, seconds: float) -> None:
        mem = memory_status()
        self._say(f"[{stats.name}] {done}/{total} inputs {done / seconds:.0f}/s "
                  f"findings {stats.findings} slowest {stats.slowest * 1e3:.1f}ms "
                  f"rss {mem.get('VmRSS', 0) / 1024:.0f}MB")

    def run(self, budget: Mapping[str, int], targets: Mapping[str, Target] | None = None,
            ) -> Report:
        """Run each target of `budget` for its number of inputs; return the report."""
        began = time.perf_counter()
        self._say(f"fuzz seed={self.seed} PYTHONHASHSEED={os.environ.get('PYTHONHASHSEED', '?')}"
                  f" budget={dict(budget)}")
        self._start_watchdog()
        stats: dict[str, TargetStats] = {}
        try:
            for name, n in budget.items():
                given = targets is not None and name in targets
                target = targets[name] if targets and given else TARGETS[name](self.seed)
                self._say(f"[{name}] {n} inputs; documented errors: {target.documented}")
                try:
                    stats[name] = s = self.run_target(target, n)
                finally:
                    if not given:
                        target.close()
                top = ", ".join(f"{k} {v}" for k, v in s.outcomes.most_common(6))
                self._say(f"[{name}] done: {s.inputs} inputs in {s.seconds:.1f}s "
                          f"({s.rate:.0f}/s), findings {s.findings}, slowest "
                          f"{s.slowest * 1e3:.1f}ms (#{s.slowest_index}), max input alloc "
                          f"{s.traced_peak / 2**20:.2f}MB over {s.traced} traced; outcomes: {top}")
        finally:
            self._stop_watchdog()
        mem = memory_status()
        report = Report(self.seed, stats, self.findings, time.perf_counter() - began,
                        max(self.max_rss_seen, mem.get("VmRSS", 0)), mem.get("VmHWM", 0),
                        mem.get("VmPeak", 0))
        self._say(report.summary())
        return report

    # -- hangs ---------------------------------------------------------------------------

    def _arm(self, now: float | None = None) -> None:
        """(Re-)arm faulthandler's last-resort timeout, at most every hang_limit / 4 s."""
        if not self.hard_timeout or self.hang_limit is None:
            return
        now = time.perf_counter() if now is None else now
        if now - self._armed_at > self.hang_limit / 4:
            self._armed_at = now
            faulthandler.dump_traceback_later(self.hang_limit * 2, exit=True)

    def _start_watchdog(self) -> None:
        if self.hang_limit is None:
            return
        self._stop.clear()
        self._watchdog = threading.Thread(target=self._watch, name="fuzz-watchdog", daemon=True)
        self._watchdog.start()

    def _stop_watchdog(self) -> None:
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join()
            self._watchdog = None
        if self.hard_timeout:
            faulthandler.cancel_dump_traceback_later()

    def _watch(self) -> None:
        assert self.hang_limit is not None
        while not self._stop.wait(0.25):
            current = self._current
            if current is not None and time.perf_counter() - current[3] > self.hang_limit:
                name, index, data, _ = current
                self.record(Finding(name, index, "hang",
                                    f"still running after {self.hang_limit}s", data))
                faulthandler.dump_traceback(all_threads=True)
                sys.stdout.flush()
                os._exit(3)


def run_fuzz(budget: Mapping[str, int], seed: int, **options: object) -> Report:
    """Run the harness in-process: `budget` maps target names to input counts."""
    return Fuzzer(seed, **options).run(budget)  # type: ignore[arg-type]


def signature_of(target: Target, data: bytes) -> str | None:
    """The signature of the finding `data` makes on `target` (None: no finding)."""
    try:
        with target.active():
            target.check(data)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        return finding_from(target.name, -1, data, exc).signature
    return None


def minimize(target: Target, data: bytes, signature: str | None = None,
             budget: int = 20_000) -> bytes:
    """The shortest input found (chunk deletion, then byte simplification) with the same signature.

    `signature`: that of `data`'s finding (found by checking `data` if None).
    Returns `data` itself if it does not raise.
    """
    signature = signature or signature_of(target, data)
    if signature is None:
        return data
    tries = 0
    chunk = max(1, len(data) // 2)
    while chunk >= 1 and tries < budget:
        i = 0
        while i < len(data) and tries < budget:
            candidate = data[:i] + data[i + chunk:]
            tries += 1
            if signature_of(target, candidate) == signature:
                data = candidate
            else:
                i += chunk
        chunk //= 2
    for i in range(len(data)):  # make bytes plain where that changes nothing
        for plain in (0x00, 0x30):
            if tries >= budget or data[i] == plain:
                break
            candidate = data[:i] + bytes([plain]) + data[i + 1:]
            tries += 1
            if signature_of(target, candidate) == signature:
                data = candidate
                break
    return data

