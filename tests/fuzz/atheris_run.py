"""Optional coverage-guided fuzzing of one target with atheris (libFuzzer for Python).

atheris is not a dependency: `available` says whether it imports. The target's
`check` runs as libFuzzer's TestOneInput under the same checks as the fast
loop (`Fuzzer.check_one`): a finding is saved and printed, then raised so that
libFuzzer stops and writes its own crash file too. libFuzzer enforces the time
(``-timeout``) and memory (``-rss_limit_mb``) bounds itself.

actornet must be imported inside `atheris.instrument_imports` to be
instrumented, so this module imports the harness only in `fuzz`, and the
package's ``__init__`` imports nothing.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["available", "fuzz"]


def available() -> bool:
    """Whether atheris can be imported here."""
    return importlib.util.find_spec("atheris") is not None


class AtherisFinding(Exception):
    """Raised out of TestOneInput so that libFuzzer records the input as a crash."""


def fuzz(target_name: str, inputs: int, seed: int, *, findings_dir: Path | None,
         slow_limit: float, hang_limit: float, max_rss_mb: float, max_len: int = 8192) -> int:
    """Fuzz `target_name` for `inputs` runs. libFuzzer ends the process when done."""
    import atheris  # an optional dependency: checked by `available`

    with atheris.instrument_imports(include=["actornet"]):
        from .harness import Fuzzer, TargetStats
        from .targets import TARGETS

    fuzzer = Fuzzer(seed, findings_dir=findings_dir, slow_limit=slow_limit, hang_limit=None,
                    trace_every=0)
    target = TARGETS[target_name](seed)
    stats = TargetStats(target_name)
    context = target.active()
    context.__enter__()  # libFuzzer never returns: the context stays active until exit
    began = last = time.perf_counter()

    def test_one_input(data: bytes) -> None:
        nonlocal last
        before = len(fuzzer.findings)
        fuzzer.check_one(target, data, stats.inputs, stats)
        now = time.perf_counter()
        if stats.inputs >= inputs or now - last > 5.0:
            last = now
            stats.seconds = now - began
            print(f"[atheris {target_name}] {stats.inputs} inputs {stats.rate:.0f}/s findings "
                  f"{stats.findings} slowest {stats.slowest * 1e3:.1f}ms "
                  f"(#{stats.slowest_index}, {len(stats.slowest_input)} bytes)", flush=True)
        if len(fuzzer.findings) > before:
            raise AtherisFinding(fuzzer.findings[-1].describe())

    corpus = Path(tempfile.mkdtemp(prefix=f"actornet-fuzz-{target_name}-"))
    for i, data in enumerate(target.corpus()):
        (corpus / f"seed-{i}").write_bytes(data[:max_len])
    argv: list[Any] = [
        sys.argv[0], f"-runs={inputs}", f"-seed={seed % 2**31 or 1}", f"-max_len={max_len}",
        f"-timeout={max(1, int(hang_limit))}", f"-rss_limit_mb={int(max_rss_mb)}",
        "-print_final_stats=1", str(corpus),
    ]
    if findings_dir is not None:
        findings_dir.mkdir(parents=True, exist_ok=True)
        argv.insert(1, f"-artifact_prefix={findings_dir}/{target_name}-atheris-")
    print(f"[atheris {target_name}] corpus {corpus} ({len(target.corpus())} seeds), "
          f"libFuzzer args {argv[1:]}", flush=True)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()
    return 0  # not reached: libFuzzer exits
