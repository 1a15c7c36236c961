"""Cluster figures: pg join propagation, global_ registration, failure detection."""

from __future__ import annotations

import dataclasses
import signal
import time
from typing import Any

import actornet
from actornet import global_, pg
from benchmarks import _remote
from benchmarks._common import (
    ACTORNET,
    ERLANG,
    ActornetChild,
    Children,
    Config,
    Sample,
    await_msg,
    connect,
    interleave,
    latency_sample,
    local_node,
    row,
)

__all__ = ["pg_join", "global_register", "failure_detection"]


def _wait(what: str, ok: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def pg_join(cfg: Config) -> dict[str, Any]:
    """Time until N pg joins made here are all visible on another node."""
    n = cfg.n(1_000, 100)
    with Children() as kids, local_node("bench_pg"):
        far = ActornetChild(kids, "bench_pgfar")
        connect(far.address)
        members = [actornet.spawn(_remote.idle) for _ in range(n)]
        try:
            def an(rep: int) -> Sample:
                count = n if rep >= 0 else 10
                group = ("bench", rep)
                me = actornet.self()
                actornet.spawn(_remote.pg_watch, me, group, count, node=far.name)
                await_msg(lambda m: m == ("pg_watching", group), 60)
                t0 = time.perf_counter()
                for pid in members[:count]:
                    pg.join(group, pid)
                joined = time.perf_counter()
                await_msg(lambda m: m[:2] == ("pg_seen", group), 300)
                t1 = time.perf_counter()
                pg.leave(group, members[:count])
                return {"ms": (t1 - t0) * 1000, "local_ms": (joined - t0) * 1000}

            erl = None if cfg.erlang is None else (lambda rep: cfg.erlang.run("pg_join", n))
            results = interleave(cfg, {ACTORNET: an, ERLANG: erl})
        finally:
            for pid in members:
                actornet.send(pid, "stop")
    skipped = {ERLANG: cfg.erlang_note}
    return {"rows": [
        row(f"pg: {n:,} joins visible on another node", "ms", "ms", results,
            higher_is_better=False, skipped=skipped,
            note=f"{n:,} processes each pg.join one group, one call after another; "
                 "until a pg.monitor on the other node has seen all of them"),
        row(f"pg: {n:,} joins, local part", "local_ms", "ms", results,
            higher_is_better=False, skipped=skipped,
            note="time for the join calls alone (applied locally)"),
    ], "notes": []}


def global_register(cfg: Config) -> dict[str, Any]:
    """global_ registration latency in a 3-node cluster."""
    n = cfg.n(300, 30)
    with Children() as kids, local_node("bench_gl"):
        b = ActornetChild(kids, "bench_glb")
        c = ActornetChild(kids, "bench_glc")
        connect(b.address)
        connect(c.address)
        _wait("a full mesh", lambda: len(actornet.nodes()) == 2 and all(
            len(actornet.rpc.call(x, actornet.nodes)) == 2 for x in (b.name, c.name)))

        def an(rep: int) -> Sample:
            count = n if rep >= 0 else 5
            owners = [(("bench", rep, i), actornet.spawn(_remote.idle)) for i in range(count)]
            clock = time.perf_counter_ns
            lat: list[int] = []
            t0 = time.perf_counter()
            for name, pid in owners:
                t = clock()
                if global_.register_name(name, pid) != "yes":
                    raise RuntimeError(f"global name {name!r} was taken")
                lat.append(clock() - t)
            elapsed = time.perf_counter() - t0
            for name, pid in owners:
                global_.unregister_name(name)
                actornet.send(pid, "stop")
            return latency_sample(lat, elapsed)

        erl = None if cfg.erlang is None else (lambda rep: cfg.erlang.run("global_register", n))
        results = interleave(cfg, {ACTORNET: an, ERLANG: erl})
    skipped = {ERLANG: cfg.erlang_note}
    note = (f"{n:,} register_name calls per repetition, 3 connected nodes, "
            "a fresh name and process each")
    return {"rows": [
        row("global_ register, 3 nodes, p50", "p50", "µs", results, higher_is_better=False,
            skipped=skipped, note=note),
        row("global_ register, 3 nodes, p99", "p99", "µs", results, higher_is_better=False,
            skipped=skipped, note=note),
    ], "notes": []}


def failure_detection(cfg: Config) -> dict[str, Any]:
    """Seconds until ``("nodedown", ...)`` after the other node is SIGKILLed (or SIGSTOPped)."""
    tick = 1.0 if cfg.quick else 2.0
    run_cfg = dataclasses.replace(cfg, reps=1) if cfg.quick else cfg

    def detect(sig: int) -> Any:
        def run(rep: int) -> Sample:
            with Children() as kids:
                far = ActornetChild(kids, "bench_victim", tick_time=tick)
                connect(far.address, monitor=False)
                actornet.monitor_node(far.name)
                time.sleep(0.2)
                t0 = time.perf_counter()
                far.child.signal(sig)
                actornet.receive(lambda m: m == ("nodedown", far.name), timeout=10 * tick + 10)
                return {"s": time.perf_counter() - t0}
        return run

    with local_node("bench_fd", tick_time=tick):
        killed = interleave(run_cfg, {ACTORNET: detect(signal.SIGKILL)}, warmup={})
        stopped = interleave(run_cfg, {ACTORNET: detect(signal.SIGSTOP)}, warmup={})
    reps = len(killed[ACTORNET])
    killed["configured tick"] = [{"s": tick}] * reps
    stopped["1.25 x tick"] = [{"s": 1.25 * tick}] * reps
    return {"rows": [
        row("failure detection after SIGKILL", "s", "s", killed, higher_is_better=False,
            goal=("configured tick", 1.0, f"<= tick_time ({tick} s)"),
            note=f"both nodes tick_time={tick} s; the killed node's socket closes at once"),
        row("failure detection after SIGSTOP", "s", "s", stopped, higher_is_better=False,
            goal=("1.25 x tick", 1.0, f"<= 1.25 x tick_time ({1.25 * tick} s)"),
            note="a hung node: its connection stays open, only the tick can tell"),
    ], "notes": []}
