"""Command line of the fuzz harness: ``python -m tests.fuzz --help``.

Examples::

    python -m tests.fuzz --target all --inputs 1000000 --seed 1
    python -m tests.fuzz --target codec --inputs 50000 --atheris
    python -m tests.fuzz --replay tests/fuzz/findings/codec-0123abcd.bin --minimize
    python -m tests.fuzz --seed 1 --replay-index wire:12345

Without ``PYTHONHASHSEED`` in the environment the command runs itself again
with ``PYTHONHASHSEED=0``: generated sets are encoded in hash order, so a
seed only reproduces its inputs under one hash seed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["main", "parse_args"]

_NAMES = ("codec", "wire", "handshake", "dial", "dispatch")


def _targets(text: str) -> list[str]:
    names = list(_NAMES) if text == "all" else [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in _NAMES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown target {bad}: use {', '.join(_NAMES)}, all")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line."""
    p = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", type=_targets, default=list(_NAMES),
                   help=f"{', '.join(_NAMES)}, a comma list, or all (default)")
    p.add_argument("--inputs", type=int, default=100_000,
                   help="inputs in total, shared by the targets 4:3:3:1:1 (default 100000)")
    p.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    p.add_argument("--atheris", action="store_true",
                   help="coverage-guided fuzzing with atheris, if it is installed")
    p.add_argument("--findings-dir", type=Path, default=None,
                   help="where finding inputs are saved (default tests/fuzz/findings)")
    p.add_argument("--slow-limit", type=float, default=1.0, help="seconds per input (1)")
    p.add_argument("--hang-limit", type=float, default=60.0,
                   help="seconds after which a running input is a hang: saved, exit 3 (60)")
    p.add_argument("--max-rss-mb", type=float, default=2048.0, help="RSS bound (2048)")
    p.add_argument("--trace-every", type=int, default=250,
                   help="run every Nth input under tracemalloc for its allocation peak (250)")
    p.add_argument("--progress", type=float, default=5.0, help="seconds between progress lines")
    p.add_argument("--replay", type=Path, nargs="+", default=None, metavar="FILE",
                   help="check saved inputs (target from --target or the file name)")
    p.add_argument("--minimize", action="store_true", help="with --replay: minimise findings")
    p.add_argument("--replay-index", default=None, metavar="TARGET:INDEX",
                   help="make input INDEX of TARGET for --seed again, print and check it")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; the exit status is 1 if anything was found."""
    argv = sys.argv[1:] if argv is None else argv
    if "PYTHONHASHSEED" not in os.environ:
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        os.execve(sys.executable, [sys.executable, "-m", "tests.fuzz", *argv], env)
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    findings_dir = args.findings_dir
    if args.atheris:
        return _atheris(args, seed)
    from .harness import DEFAULT_FINDINGS, Fuzzer, split_budget

    fuzzer = Fuzzer(
        seed, findings_dir=findings_dir or DEFAULT_FINDINGS, slow_limit=args.slow_limit,
        hang_limit=args.hang_limit, hard_timeout=True, max_rss_mb=args.max_rss_mb,
        trace_every=args.trace_every, progress_every=args.progress,
    )
    if args.replay:
        return _replay(fuzzer, args)
    if args.replay_index:
        return _replay_index(fuzzer, args.replay_index)
    budget = split_budget(args.target, args.inputs)
    report = fuzzer.run(budget)
    if report.findings:
        kinds: dict[str, int] = {}
        for f in report.findings:
            kinds[f.signature] = kinds.get(f.signature, 0) + 1
        for sig, n in sorted(kinds.items(), key=lambda kv: -kv[1]):
            print(f"  {n:6d} x {sig}")
        print(f"reproduce: python -m tests.fuzz --seed {seed} --replay-index TARGET:INDEX, "
              f"or --replay FILE --minimize")
    return 1 if report.findings else 0


def _atheris(args: argparse.Namespace, seed: int) -> int:
    from . import atheris_run

    if not atheris_run.available():
        print("atheris is not installed here (pip install atheris): skipping coverage-guided "
              "fuzzing; the fast loop runs without it (drop --atheris).")
        return 0
    findings_dir = args.findings_dir or Path(__file__).resolve().parent / "findings"
    if len(args.target) > 1:  # libFuzzer runs once per process: one process per target
        from .harness import split_budget

        status = 0
        for name, n in split_budget(args.target, args.inputs).items():
            cmd = [sys.executable, "-m", "tests.fuzz", "--atheris", "--target", name,
                   "--inputs", str(n), "--seed", str(seed), "--findings-dir", str(findings_dir),
                   "--slow-limit", str(args.slow_limit), "--hang-limit", str(args.hang_limit),
                   "--max-rss-mb", str(args.max_rss_mb)]
            code = subprocess.run(cmd, check=False).returncode
            print(f"[atheris {name}] exit status {code}", flush=True)
            status = status or code
        return 1 if status else 0
    return atheris_run.fuzz(args.target[0], args.inputs, seed, findings_dir=findings_dir,
                            slow_limit=args.slow_limit, hang_limit=args.hang_limit,
                            max_rss_mb=args.max_rss_mb)


def _target_of(path: Path, targets: list[str]) -> str:
    prefix = path.name.split("-", 1)[0]
    if prefix in _NAMES:
        return prefix
    if len(targets) == 1:
        return targets[0]
    raise SystemExit(f"{path}: name the target with --target")


def _replay(fuzzer: object, args: argparse.Namespace) -> int:
    from .harness import Fuzzer, TargetStats, minimize, signature_of
    from .targets import TARGETS

    assert isinstance(fuzzer, Fuzzer)
    fuzzer.findings_dir = None  # replays do not save again
    found = 0
    for path in args.replay:
        name = _target_of(path, args.target)
        target = TARGETS[name](fuzzer.seed)
        data = path.read_bytes()
        stats = TargetStats(name)
        with target.active():
            fuzzer.check_one(target, data, -1, stats)
        print(f"{path}: {name} {len(data)} bytes -> {next(iter(stats.outcomes))} "
              f"in {stats.slowest * 1e3:.2f}ms")
        if stats.findings:
            found += 1
            print(fuzzer.findings[-1].details)
            if args.minimize:
                small = minimize(target, data, signature_of(target, data))
                out = path.with_name(f"{name}-min-{path.stem.split('-', 1)[-1]}.bin")
                out.write_bytes(small)
                print(f"minimised to {len(small)} bytes ({out}): {small!r}")
    return 1 if found else 0


def _replay_index(fuzzer: object, spec: str) -> int:
    from .harness import Fuzzer, TargetStats
    from .targets import TARGETS

    assert isinstance(fuzzer, Fuzzer)
    name, _, index = spec.partition(":")
    target = TARGETS[name](fuzzer.seed)
    data = fuzzer.input_for(target, int(index))
    stats = TargetStats(name)
    print(f"{name} input #{index} of seed {fuzzer.seed}: {len(data)} bytes {data[:400]!r}")
    with target.active():
        fuzzer.check_one(target, data, int(index), stats)
    print(f"-> {next(iter(stats.outcomes))} in {stats.slowest * 1e3:.2f}ms")
    return 1 if stats.findings else 0
