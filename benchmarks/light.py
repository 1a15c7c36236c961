"""Lightweight processes: spawn rate, memory, a million in one node, local send and call.

The actornet column is lightweight (``async def``) processes; the thread kind
of the same operation, a plain-asyncio or pykka baseline and Erlang/OTP run
beside it in the same run, interleaved.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import actornet
from actornet import aio
from benchmarks import _remote
from benchmarks._common import (
    ACTORNET,
    ERLANG,
    ROOT,
    Config,
    Sample,
    _child_setup,
    absolute_goal,
    interleave,
    latency_sample,
    row,
)
from benchmarks.local import _PykkaEcho, _sink, _spawn_worker

__all__ = ["light"]

THREADS = "actornet threads"


def _worker(mode: str, n: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks._lightworker", mode, str(n)],
        cwd=ROOT, capture_output=True, text=True, timeout=1800, preexec_fn=_child_setup,
        check=False,
    )
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)  # type: ignore[no-any-return]
    raise RuntimeError(f"light worker {mode} {n} failed:\n{out.stdout}\n{out.stderr[-3000:]}")


def _in_light(fn: Callable[..., Awaitable[Sample]], *args: Any) -> Sample:
    """Run ``await fn(*args)`` in a lightweight process of the current node."""
    me = actornet.self()
    actornet.spawn(_light_runner, me, fn, args)
    sample: Sample = actornet.receive(lambda m: m[0] == "light_sample", timeout=600)[1]
    return sample


async def _light_runner(parent: actornet.Pid, fn: Callable[..., Awaitable[Sample]],
                        args: tuple[Any, ...]) -> None:
    actornet.send(parent, ("light_sample", await fn(*args)))


async def _light_sink(parent: actornet.Pid, n: int) -> None:
    receive = aio.receive
    for _ in range(n):
        await receive()
    actornet.send(parent, "done")


async def _light_send(n: int) -> Sample:
    me = actornet.self()
    pid = actornet.spawn(_light_sink, me, n)
    send = actornet.send
    t0 = time.perf_counter()
    for i in range(n):
        send(pid, ("msg", i))
    await aio.receive(lambda m: m == "done")
    return {"rate": n / (time.perf_counter() - t0)}


async def _asyncio_queue(n: int) -> Sample:
    box: asyncio.Queue[Any] = asyncio.Queue()

    async def consume() -> None:
        get = box.get
        for _ in range(n):
            await get()

    consumer = asyncio.get_running_loop().create_task(consume())
    put = box.put_nowait
    t0 = time.perf_counter()
    for i in range(n):
        put(("msg", i))
    await consumer
    return {"rate": n / (time.perf_counter() - t0)}


class _LightEcho(actornet.GenServer):
    async def handle_call(self, request: Any, from_: Any) -> Any:
        return request


async def _light_call(n: int) -> Sample:
    pid = await aio.start(_LightEcho)
    call = aio.call
    lat: list[int] = []
    clock = time.perf_counter_ns
    t0 = time.perf_counter()
    for i in range(n):
        t = clock()
        await call(pid, ("call", i))
        lat.append(clock() - t)
    elapsed = time.perf_counter() - t0
    await aio.stop(pid)
    return latency_sample(lat, elapsed)


def _thread_send(n: int) -> Sample:
    pid = actornet.spawn(_sink, actornet.self(), n)
    send = actornet.send
    t0 = time.perf_counter()
    for i in range(n):
        send(pid, ("msg", i))
    actornet.receive(lambda m: m == "done", timeout=300)
    return {"rate": n / (time.perf_counter() - t0)}


def _thread_call(n: int) -> Sample:
    pid = _remote.Echo.start()
    call = actornet.call
    lat: list[int] = []
    clock = time.perf_counter_ns
    t0 = time.perf_counter()
    for i in range(n):
        t = clock()
        call(pid, ("call", i))
        lat.append(clock() - t)
    elapsed = time.perf_counter() - t0
    actornet.GenServer.stop(pid)
    return latency_sample(lat, elapsed)


def _pykka_ask(n: int) -> Sample:
    ref = _PykkaEcho.start()
    ask = ref.ask
    lat: list[int] = []
    clock = time.perf_counter_ns
    t0 = time.perf_counter()
    for i in range(n):
        t = clock()
        ask(("call", i))
        lat.append(clock() - t)
    elapsed = time.perf_counter() - t0
    ref.stop()
    return latency_sample(lat, elapsed)


def _erl(cfg: Config, command: str, *args: Any) -> Callable[[int], Sample] | None:
    if cfg.erlang is None:
        return None
    return lambda rep: cfg.erlang.run(command, *args)  # type: ignore[no-any-return]


def light(cfg: Config) -> dict[str, Any]:
    """Lightweight processes: spawn, memory, a million idle, local send and call."""
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    skipped = {ERLANG: cfg.erlang_note}

    # -- spawn rate and memory, each run in a fresh interpreter ---------------------------
    n = cfg.n(100_000, 5_000)
    threads_n = cfg.n(2_000, 200)
    spawned = interleave(cfg, {
        ACTORNET: lambda rep: _worker("rate", n if rep >= 0 else 1_000),
        THREADS: lambda rep: _spawn_worker("actornet", "rate", threads_n if rep >= 0 else 50),
        ERLANG: _erl(cfg, "spawn", n),
    }, warmup={})
    rate = row("spawn rate, lightweight", "rate", "procs/s", spawned, higher_is_better=True,
               skipped=skipped,
               note=f"{n:,} idle lightweight processes spawned by a lightweight process "
                    f"(threads: {threads_n:,}); the spawn calls, as Erlang's figure")
    rows.append(absolute_goal(rate, ">= 100,000 procs/s", lambda v: v >= 100_000))
    rows.append(row("spawn to idle, lightweight", "idle_rate", "procs/s",
                    {ACTORNET: spawned[ACTORNET]}, higher_is_better=True,
                    note="until every new process waits in its receive"))
    mem = row("memory per idle lightweight process", "kib", "KiB", spawned,
              higher_is_better=False, skipped=skipped,
              note="RSS growth / processes (Erlang: erlang:memory(total) growth)")
    rows.append(absolute_goal(mem, "<= 3 KiB", lambda v: v <= 3.0))

    # -- a million idle processes in one node ---------------------------------------------
    million = cfg.n(1_000_000, 20_000)
    filled = interleave(dataclasses.replace(cfg, reps=1), {
        ACTORNET: lambda rep: _worker("fill", million if rep >= 0 else 1_000)}, warmup={})
    sample = filled[ACTORNET][0]
    fill = row(f"fill a node to {million:,} lightweight processes", "fill_s", "s", filled,
               higher_is_better=False,
               note=f"reached {int(sample['reached']):,} at {sample['kib']:.2f} KiB each "
                    f"({sample['rss_kib'] / 1024:.0f} MiB resident); killing them all took "
                    f"{sample['kill_s']:.1f} s and left {int(sample['processes_left'])} "
                    f"processes, {sample['rss_after_kill_kib'] / 1024:.0f} MiB resident")
    rows.append(absolute_goal(fill, f"{million:,} reached at <= 3 KiB each",
                              lambda v: sample["reached"] == million and sample["kib"] <= 3.0))

    # -- local send and call, in one node -------------------------------------------------
    sends = cfg.n(300_000, 20_000)
    calls = cfg.n(50_000, 2_000)
    with actornet.Node("bench_light@localhost"):
        sent = interleave(cfg, {
            ACTORNET: lambda rep: _in_light(_light_send, sends if rep >= 0 else sends // 10),
            THREADS: lambda rep: _thread_send(sends if rep >= 0 else sends // 10),
            "asyncio.Queue": lambda rep: _in_light(_asyncio_queue, sends),
            ERLANG: _erl(cfg, "local_send", sends),
        })
        called = interleave(cfg, {
            ACTORNET: lambda rep: _in_light(_light_call, calls if rep >= 0 else calls // 10),
            THREADS: lambda rep: _thread_call(calls // 4 if rep >= 0 else calls // 40),
            "pykka ask": lambda rep: _pykka_ask(calls // 4 if rep >= 0 else calls // 40),
            ERLANG: _erl(cfg, "local_call", calls),
        })
    send_row = row("local send, lightweight -> lightweight", "rate", "msgs/s", sent,
                   higher_is_better=True, skipped=skipped,
                   note=f"{sends:,} messages ('msg', i); until the receiver took the last")
    rows.append(absolute_goal(send_row, ">= 1,000,000 msgs/s", lambda v: v >= 1_000_000))
    call_note = f"{calls:,} calls per repetition, one caller, an echo server of the same kind"
    call_row = row("local GenServer call, async -> async", "rate", "calls/s", called,
                   higher_is_better=True, skipped=skipped, note=call_note,
                   goal=("pykka ask", 8.0, ">= 8 x pykka ask (and >= 100,000 calls/s)"))
    rows.append(call_row)
    rows.append(row("local GenServer call p50, async -> async", "p50", "µs", called,
                    higher_is_better=False, skipped=skipped, note=call_note))
    return {"rows": rows, "notes": notes}

