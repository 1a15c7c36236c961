"""``python -m benchmarks``: run every figure beside its baselines; table, JSON, chart.

Options: ``--quick`` (a smoke run in under a minute), ``--only NAME`` (repeatable),
``--out PATH`` (results JSON; default ``benchmarks/results.json``), ``--chart PATH``
(default ``docs/performance.png``), ``--no-chart``, ``--reps N``, ``--no-erlang``,
``--list``. Exits 1 if a figure failed (a skipped column is not a failure).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import (
    chat,
    cluster,
    erlang,
    fanout,
    gateway,
    light,
    local,
    remote,
    report,
    seed002,
)
from benchmarks._common import ROOT, Children, Config

FIGURES: dict[str, Callable[[Config], dict[str, Any]]] = {
    "local_send": local.local_send,
    "local_call": local.local_call,
    "remote_send": remote.remote_send,
    "remote_call": remote.remote_call,
    "fanout": fanout.fanout,
    "pg_join": cluster.pg_join,
    "global_register": cluster.global_register,
    "spawn": local.spawn,
    "light": light.light,
    "failure_detection": cluster.failure_detection,
    "chat": chat.chat,
    "seed002": seed002.seed002,
    "gateway": gateway.gateway,
}
ERLANG_FIGURES = {"local_send", "local_call", "remote_send", "remote_call", "fanout",
                  "pg_join", "global_register", "spawn", "light"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks",
                                description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: small workloads")
    p.add_argument("--only", action="append", metavar="NAME", choices=list(FIGURES),
                   help="run only this figure (repeatable)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.json",
                   help="where to write the results JSON")
    p.add_argument("--chart", type=Path, default=ROOT / "docs" / "performance.png",
                   help="where to draw the chart (PNG)")
    p.add_argument("--no-chart", action="store_true", help="do not draw the chart")
    p.add_argument("--reps", type=int, help="repetitions (default 5, quick 3)")
    p.add_argument("--max-procs", type=int, default=20_000,
                   help="processes to reach in 'most processes one node holds'")
    p.add_argument("--no-erlang", action="store_true", help="skip the Erlang/OTP column")
    p.add_argument("--list", action="store_true", help="list the figures and exit")
    return p


def _version(args: list[str]) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def _meta(cfg: Config) -> dict[str, Any]:
    from importlib.metadata import version

    import msgpack
    import zmq

    meta: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": cfg.quick,
        "reps": cfg.reps,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_start": list(os.getloadavg()),
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "msgpack": ".".join(map(str, msgpack.version)),
        "pykka": version("pykka"),
        "erlang": cfg.erlang.release if cfg.erlang is not None else cfg.erlang_note,
        "redis_server": (_version(["redis-server", "--version"])
                         if shutil.which("redis-server") else "not installed"),
    }
    try:
        import redis

        meta["redis_py"] = redis.__version__
    except ImportError:
        meta["redis_py"] = "not installed"
    if (ROOT / ".git").exists():  # read-only git queries
        meta["commit"] = _version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "actornet"],
                               capture_output=True, text=True, timeout=10, check=False)
        meta["actornet_modified"] = bool(dirty.stdout.strip())
    return meta


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        for name, fn in FIGURES.items():
            print(f"{name:20} {(fn.__doc__ or '').splitlines()[0]}")
        return 0
    reps = args.reps if args.reps is not None else (3 if args.quick else 5)
    cfg = Config(quick=args.quick, reps=max(1, reps), max_procs=args.max_procs)
    names = args.only or list(FIGURES)
    started = time.monotonic()
    failed = False
    with Children() as kids:
        want_erlang = not args.no_erlang and any(n in ERLANG_FIGURES for n in names)
        erl_ctx = erlang.start(kids) if want_erlang else None
        runner, why = erl_ctx.__enter__() if erl_ctx is not None else (None, "not run")
        try:
            cfg.erlang, cfg.erlang_note = runner, why or cfg.erlang_note
            if runner is None:
                cfg.log(f"Erlang/OTP column: {cfg.erlang_note}")
            results: dict[str, Any] = {"meta": _meta(cfg), "figures": {}}
            for name in names:
                cfg.log(f"-- {name} ...")
                t0 = time.monotonic()
                try:
                    fig = FIGURES[name](cfg)
                except Exception:
                    failed = True
                    fig = {"rows": [], "notes": [], "error": traceback.format_exc()}
                    cfg.log(f"   {name} FAILED:\n{fig['error']}")
                fig["seconds"] = round(time.monotonic() - t0, 2)
                results["figures"][name] = fig
                cfg.log(f"   {name} done in {fig['seconds']} s")
        finally:
            if erl_ctx is not None:
                erl_ctx.__exit__(None, None, None)
    results["meta"]["loadavg_end"] = list(os.getloadavg())
    results["meta"]["seconds"] = round(time.monotonic() - started, 1)
    if not args.no_chart:
        note = report.draw_chart(results, args.chart)
        results["meta"]["chart"] = note or str(args.chart)
        if note:
            cfg.log(note)
    report.write_json(results, args.out)
    print(report.render_table(results))
    print()
    for label, text, status in report.goal_summary(results):
        print(f"goal {status:7} {label}: {text}")
    print(f"\nresults: {args.out}" + ("" if args.no_chart else f"; chart: {args.chart}"))
    print(f"total {results['meta']['seconds']} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
