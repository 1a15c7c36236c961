"""Figures inside one node: local send, local GenServer call, spawn rate and memory."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pykka

import actornet
from benchmarks import _remote
from benchmarks._common import (
    ACTORNET,
    ERLANG,
    Config,
    Runner,
    Sample,
    absolute_goal,
    interleave,
    latency_sample,
    row,
)

__all__ = ["local_send", "local_call", "spawn"]


class _Counter(pykka.ThreadingActor):
    """A pykka actor that sets `done` after its `expected`-th message."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.seen = 0
        self.done = threading.Event()

    def on_receive(self, message: Any) -> None:
        self.seen += 1
        if self.seen == self.expected:
            self.done.set()


class _PykkaEcho(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        return message


class _Idle(pykka.ThreadingActor):
    pass


def _sink(parent: actornet.Pid, n: int) -> None:
    receive = actornet.receive
    for _ in range(n):
        receive()
    actornet.send(parent, "done")


def _erlang_runner(cfg: Config, command: str, *args: Any) -> Runner | None:
    if cfg.erlang is None:
        return None
    return lambda rep: cfg.erlang.run(command, *args)  # type: ignore[no-any-return]


def local_send(cfg: Config) -> dict[str, Any]:
    """1 sender -> 1 receiver in one node, msgs/s, beside queue.Queue and pykka tell."""
    n = cfg.n(200_000, 20_000)

    def an(rep: int) -> Sample:
        count = n if rep >= 0 else n // 10
        send = actornet.send
        pid = actornet.spawn(_sink, actornet.self(), count)
        t0 = time.perf_counter()
        for i in range(count):
            send(pid, ("msg", i))
        actornet.receive(lambda m: m == "done", timeout=120)
        return {"rate": count / (time.perf_counter() - t0)}

    def q(rep: int) -> Sample:
        count = n if rep >= 0 else n // 10
        box: queue.Queue[Any] = queue.Queue()
        done = threading.Event()

        def consume() -> None:
            get = box.get
            for _ in range(count):
                get()
            done.set()

        threading.Thread(target=consume, daemon=True).start()
        put = box.put
        t0 = time.perf_counter()
        for i in range(count):
            put(("msg", i))
        if not done.wait(120):
            raise TimeoutError("queue consumer did not finish")
        return {"rate": count / (time.perf_counter() - t0)}

    def tell(rep: int) -> Sample:
        count = n if rep >= 0 else n // 10
        ref = _Counter.start(count)
        done = ref.proxy().done.get()
        t0 = time.perf_counter()
        tell_ = ref.tell
        for i in range(count):
            tell_(("msg", i))
        if not done.wait(120):
            raise TimeoutError("pykka actor did not finish")
        rate = count / (time.perf_counter() - t0)
        ref.stop()
        return {"rate": rate}

    with actornet.Node("bench_local@localhost"):
        results = interleave(cfg, {
            ACTORNET: an, "queue.Queue": q, "pykka tell": tell,
            ERLANG: _erlang_runner(cfg, "local_send", n),
        })
    return {"rows": [row(
        "local send, 1 -> 1", "rate", "msgs/s", results, higher_is_better=True,
        skipped={ERLANG: cfg.erlang_note},
        goal=("pykka tell", 1.0, ">= pykka tell"),
        note=f"{n:,} messages ('msg', i) per repetition, unbounded mailbox; "
             "time from the first send until the receiver has taken the last",
    )], "notes": []}


def local_call(cfg: Config) -> dict[str, Any]:
    """Local GenServer call round trips/s and p50/p99, beside pykka ask."""
    n = cfg.n(20_000, 2_000)

    def an(rep: int) -> Sample:
        count = n if rep >= 0 else n // 10
        pid = _remote.Echo.start()
        call = actornet.call
        lat: list[int] = []
        clock = time.perf_counter_ns
        t0 = time.perf_counter()
        for i in range(count):
            t = clock()
            call(pid, ("call", i))
            lat.append(clock() - t)
        elapsed = time.perf_counter() - t0
        actornet.GenServer.stop(pid)
        return latency_sample(lat, elapsed)

    def ask(rep: int) -> Sample:
        count = n if rep >= 0 else n // 10
        ref = _PykkaEcho.start()
        ask_ = ref.ask
        lat: list[int] = []
        clock = time.perf_counter_ns
        t0 = time.perf_counter()
        for i in range(count):
            t = clock()
            ask_(("call", i))
            lat.append(clock() - t)
        elapsed = time.perf_counter() - t0
        ref.stop()
        return latency_sample(lat, elapsed)

    with actornet.Node("bench_local@localhost"):
        results = interleave(cfg, {
            ACTORNET: an, "pykka ask": ask, ERLANG: _erlang_runner(cfg, "local_call", n),
        })
    skipped = {ERLANG: cfg.erlang_note}
    note = f"{n:,} calls per repetition, one caller, echo server"
    return {"rows": [
        row("local GenServer call", "rate", "calls/s", results, higher_is_better=True,
            skipped=skipped, goal=("pykka ask", 0.8, ">= 0.8 x pykka ask"), note=note),
        row("local GenServer call p50", "p50", "µs", results, higher_is_better=False,
            skipped=skipped, note=note),
        row("local GenServer call p99", "p99", "µs", results, higher_is_better=False,
            skipped=skipped, note=note),
    ], "notes": []}


# -- spawn ---------------------------------------------------------------------------------


def _spawn_worker(kind: str, mode: str, n: int) -> dict[str, Any]:
    """Run `benchmarks._spawnworker` in a fresh interpreter; its JSON answer."""
    import subprocess

    from benchmarks._common import ROOT, _child_setup

    out = subprocess.run(
        [sys.executable, "-m", "benchmarks._spawnworker", kind, mode, str(n)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=_child_setup,
        check=False,
    )
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)  # type: ignore[no-any-return]
    raise RuntimeError(f"spawn worker {kind} {mode} {n} failed:\n{out.stdout}\n{out.stderr}")


def thread_room() -> tuple[int, str]:
    """How many more threads this machine can safely start now, and what limits it."""
    try:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
        threads_max = int(Path("/proc/sys/kernel/threads-max").read_text())
        maps = int(Path("/proc/sys/vm/max_map_count").read_text())
    except OSError:
        return 1 << 30, ""
    used = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                used += len(os.listdir(f"/proc/{entry}/task"))
    limits = {"kernel.pid_max": pid_max - used, "kernel.threads-max": threads_max - used,
              # each thread's stack is two memory maps (stack and guard page)
              "vm.max_map_count": maps // 2 - 500}
    what = min(limits, key=lambda k: limits[k])
    return limits[what], f"{what} (leaving room for the rest of the machine)"


def spawn(cfg: Config) -> dict[str, Any]:
    """Spawn rate, memory per idle process, and the most processes one node holds."""
    n = cfg.n(2_000, 200)
    notes: list[str] = []

    def worker(kind: str) -> Runner:
        return lambda rep: _spawn_worker(kind, "rate", n if rep >= 0 else 50)

    # Each run is a fresh interpreter (or Erlang's own loop): nothing to warm up.
    results = interleave(cfg, {
        ACTORNET: worker("actornet"), "pykka actors": worker("pykka"),
        ERLANG: _erlang_runner(cfg, "spawn", n),
    }, warmup={})
    skipped = {ERLANG: cfg.erlang_note}
    rate = row("spawn rate", "rate", "procs/s", results, higher_is_better=True,
               skipped=skipped, note=f"{n:,} idle processes spawned, each in a fresh interpreter")
    mem = row("memory per idle process", "kib", "KiB", results, higher_is_better=False,
              skipped=skipped,
              note="RSS growth / processes (Erlang: erlang:memory(total) growth)")

    room, limit = thread_room()
    cap = min(cfg.n(cfg.max_procs, 1_000), room - 4_000)
    if cap < cfg.n(cfg.max_procs, 1_000):
        notes.append(f"most processes: capped at {cap:,} by {limit}")
    erl_cap = cfg.n(200_000, 10_000)
    held = interleave(dataclasses.replace(cfg, reps=min(cfg.reps, 3)), {
        ACTORNET: lambda rep: _spawn_worker("actornet", "max", cap if rep >= 0 else 10),
        ERLANG: (None if cfg.erlang is None
                 else lambda rep: cfg.erlang.run("max_procs", erl_cap if rep >= 0 else 10)),
    }, warmup={})
    errors = {str(s["error"]) for s in held[ACTORNET] if s.get("error")}
    most = row("most processes one node holds", "reached", "processes", held,
               higher_is_better=True, skipped=skipped, no_ratio=(ERLANG,),
               note=f"spawn idle processes until {cap:,} (Erlang: {erl_cap:,}) or failure"
                    + (f"; failed with {sorted(errors)}" if errors else ""))
    goal = cfg.n(cfg.max_procs, 1_000)
    absolute_goal(most, f">= {goal:,} per node", lambda v: v >= goal)
    if cap < goal:
        most["goal"]["met"] = None
        most["goal"]["text"] += f" (not testable here: machine room {cap:,})"
    fill = row(f"spawn rate, filling a node to {cap:,}", "rate", "procs/s", held,
               higher_is_better=True, skipped=skipped, no_ratio=(ERLANG,),
               note=f"the same runs as 'most processes' (Erlang: to {erl_cap:,}); "
                    "thread creation slows down as threads pile up")
    return {"rows": [rate, mem, most, fill], "notes": notes}
