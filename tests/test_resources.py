"""Resources come back: threads, file descriptors, memory and tables after heavy churn.

The issue: after 1,000 connect/disconnect cycles and 100,000 spawned and finished
processes, a node's thread count, open file descriptors and memory return to their
starting level (within a small bound).

Each test takes a baseline after a warm-up (the first batch fills the allocator's arenas,
the codec's id caches, the logging machinery...), churns, waits (polling, with a deadline)
for the asynchronous clean-up to finish, and compares. What is measured:

- Python threads (`threading.active_count`) and OS threads (``Threads:`` in
  ``/proc/<pid>/status``: also ZeroMQ's own I/O and reaper threads);
- open file descriptors (``/proc/<pid>/fd``);
- resident memory (``VmRSS``), with a bound justified at each test;
- the node's tables (processes, aliases, the transport's inbound connections).

Connections are real: a child node (``python -m actornet node``) on loopback, dynamic
ports, killed at the end of each test whatever happens.

Tests marked xfail show bugs found while writing these (their reasons say which); they
are to pass, unmarked, once fixed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import threading
import time
import tracemalloc
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import actornet
from actornet import _runtime, testing

from . import remote
from .cluster import COOKIE, Cluster, NodeProc
from .cluster import unique as _unique
from .helpers import wait_until
from .netutil import DEADLINE, on

# Spawning and finishing a process (a thread, a mailbox, a monitor, a message and a DOWN)
# runs at 5,200-7,100 a second here on 2 cores, so the 100,000 take 14-19 s (about
# 33 s on a machine busy with other work). That fits the budget: the count is the issue's.
PROCESSES = 100_000
BATCH = 250  # processes alive at once, at most
WARMUP_PROCESSES = 5_000
# 80 bytes a process: any per-process leak of a Python object (one dict entry is ~100 B,
# a Process with its mailbox ~1 KB) crosses it over 100,000 processes. Measured: +0 to
# +0.03 MB after 100,000 (the warm-up batch takes the allocator's one-off growth).
PROCESS_RSS_BOUND_KB = 8 * 1024

CYCLES = 1_000
WARMUP_CYCLES = 30
# Measured on 1,000 cycles: +2.3 to +3.6 MB here, +2.0 MB in the child. It is not per
# connection: the codec caches the encodings of pids and refs it has seen, up to 4,096
# entries per cache, then starts over; 5,000 cycles plateau at +4.5 MB (both nodes).
# A leak of 8 KB a connection (a closed socket's buffers, a handshake object) crosses it.
CYCLE_RSS_BOUND_KB = 8 * 1024
# tick_time of both ends of the cycles: dead inbound entries are pruned after 3 ticks;
# 1.5 s keeps that wait short yet leaves a loaded machine room to tick in time.
CYCLE_TICK = 1.5

RESTARTS = 50
FD_SLACK = 2  # a descriptor or two may be in flight at the moment of sampling


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def node() -> Iterator[None]:
    """Overrides the suite's local node: each test starts the nodes it measures."""
    yield None


def unique(prefix: str) -> str:
    """A node name unlikely to clash with another test's (even one running in parallel)."""
    return _unique(prefix + uuid.uuid4().hex[:4])


@dataclass(frozen=True)
class Usage:
    """What one OS process holds at one moment."""

    py_threads: int  # Python threads (-1 for another process)
    os_threads: int
    fds: int
    rss_kb: int

    def __str__(self) -> str:
        py = f"{self.py_threads} Python threads, " if self.py_threads >= 0 else ""
        return f"{py}{self.os_threads} OS threads, {self.fds} fds, {self.rss_kb} KB RSS"


def _status(pid: int | str, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def usage(pid: int | str = "self") -> Usage:
    """Threads, open descriptors and resident memory of this process (or of `pid`)."""
    return Usage(
        py_threads=threading.active_count() if pid == "self" else -1,
        os_threads=_status(pid, "Threads"),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        rss_kb=_status(pid, "VmRSS"),
    )


def settled(baseline: Usage, pid: int | str = "self", timeout: float = 5.0) -> Usage:
    """Wait until the threads and descriptors of `pid` are back to `baseline` (threads end
    and ZeroMQ closes sockets asynchronously); fail, showing both, after `timeout` s."""
    last: list[Usage] = []

    def back() -> bool:
        gc.collect()
        now = usage(pid)
        last[:] = [now]
        return (now.py_threads <= baseline.py_threads
                and now.os_threads <= baseline.os_threads
                and now.fds <= baseline.fds + FD_SLACK)

    try:
        wait_until(back, timeout, 0.02, "threads and descriptors to come back")
    except AssertionError:
        raise AssertionError(f"not back after {timeout} s: started at {baseline}, "
                             f"now {last[0]}") from None
    return last[0]


class ChildLog:
    """Counts the lines a child node prints that match a pattern, consuming them as it goes
    (so 1,000 cycles of log lines do not pile up in this process's memory); fails at once
    if the child reports a crash."""

    def __init__(self, child: NodeProc, pattern: str) -> None:
        self.child = child
        self.pattern = re.compile(pattern)
        self.count = 0

    def poll(self) -> int:
        lines = self.child.lines
        n = len(lines)
        new = lines[:n]
        del lines[:n]  # the pump thread only appends: what it adds meanwhile stays
        self.count += sum(1 for line in new if self.pattern.search(line))
        crashed = [line for line in new if "crashed" in line]
        assert not crashed, f"{self.child.name}: {crashed}"
        return self.count


# -- 1. processes ------------------------------------------------------------------------------


def _trivial(parent: actornet.Pid, i: int) -> None:
    actornet.send(parent, ("done", i))


def _churn(n: actornet.Node, count: int) -> None:
    """Spawn `count` processes on `n`, at most `BATCH` alive at once; each sends one message
    and exits normally. Returns once every message and every DOWN has arrived."""
    me = n.current().pid
    for start in range(0, count, BATCH):
        size = min(BATCH, count - start)
        refs = set()
        for i in range(start, start + size):
            refs.add(n.spawn_monitor(_trivial, me, i)[1])
        done = 0
        while refs or done < size:
            msg = n.receive(timeout=DEADLINE)
            if msg[0] == "done":
                done += 1
            else:
                assert msg[0] == "DOWN" and msg[4] == "normal", msg
                refs.remove(msg[1])


# CPU-bound churn: 14-19 s idle, but 46 s with a busy loop on each core and past the
# suite's 60 s guard with two suites running at once. The guard is for a hang (each
# receive in `_churn` has its own deadline), so it is sized for this work under load.
@pytest.mark.timeout(240)
def test_100k_processes_spawned_and_finished_leave_nothing_behind() -> None:
    n = actornet.Node(unique("procs"))
    try:
        _churn(n, WARMUP_PROCESSES)
        wait_until(lambda: len(n.processes()) == 1, DEADLINE, what="the warm-up to end")
        gc.collect()
        base = settled(usage())
        base_procs = len(n.processes())  # the test thread's own process
        t0 = time.monotonic()
        _churn(n, PROCESSES)
        elapsed = time.monotonic() - t0
        # a process is gone from the table before its DOWN is sent; its thread ends soon after
        assert len(n.processes()) == base_procs
        after = settled(base)
        assert n._aliases == {} and n._names == {} and n._node_monitors == {}
        assert len(n.current().mailbox) == 0
        grew = after.rss_kb - base.rss_kb
        logging.getLogger(__name__).info(
            "%d processes in %.1f s (%.0f/s); RSS %+d KB", PROCESSES, elapsed,
            PROCESSES / elapsed, grew)
        assert grew <= PROCESS_RSS_BOUND_KB, (
            f"RSS grew by {grew} KB over {PROCESSES} processes "
            f"({grew * 1024 / PROCESSES:.0f} B each): before {base}, after {after}")
    finally:
        n.stop()


# -- 2. connect/disconnect cycles with a child node --------------------------------------------


class Cycler:
    """Connects the node of this test to child `b`, sends, disconnects, and waits until
    both sides saw the connection go down."""

    def __init__(self, here: actornet.Node, b: NodeProc) -> None:
        self.here = here
        self.b = b
        self.downs = ChildLog(b, rf"node {re.escape(here.name)} is down")
        self.reconnected = 0  # cycles that found the connection made again already
        actornet.monitor_nodes(True)
        assert actornet.ping(b.address) == "pong"
        actornet.rpc.call(b.name, remote.start_echo, "echo")

    def cycle(self, i: int) -> None:
        b = self.b
        # Often (70% of cycles here) the connection is being made again already: the pg and
        # global servers of both nodes sync on every nodeup, and a sync message still on
        # its way when the disconnect happens dials again at once (pg in OTP sends those
        # with noconnect). Either way each cycle connects, sends, and disconnects a
        # connection that was up on both sides.
        if self.here.dist._peers[b.name].state != "down":
            self.reconnected += 1
        assert actornet.ping(b.address) == "pong", f"cycle {i}: no pong"
        actornet.send(("echo", b.name), (actornet.self(), i))
        assert actornet.receive(lambda m: m[0] == "echo", timeout=DEADLINE) == ("echo", i)
        before = self.downs.poll()
        actornet.disconnect_node(b.name)
        # this side: nodeups of earlier reconnections are skipped on the way
        while actornet.receive(lambda m: m[0] in ("nodeup", "nodedown") and m[1] == b.name,
                               timeout=DEADLINE)[0] != "nodedown":
            pass
        # the other side (it logs every node it loses)
        wait_until(lambda: self.downs.poll() > before, DEADLINE, 0.001,
                   f"{b.name} to see the disconnect of cycle {i}")

    def quiet(self) -> None:
        """Stop every connection between the two for good (a late sync would reconnect
        them), and wait until this side forgot the connections it had."""
        b, transport = self.b, self.here.dist
        actornet.disconnect_node(b.name)
        testing.cut(b.name)  # this side refuses b, and never dials it
        wait_until(lambda: b.name not in actornet.nodes()
                   and transport._peers[b.name].state == "down", DEADLINE,
                   what="the connection to go")
        # Dead inbound connections are kept 3 ticks after their last frame (so whatever
        # the peer still sends on them is dropped quietly), then forgotten.
        wait_until(lambda: len(transport._inbound) == 0, 3 * CYCLE_TICK + DEADLINE, 0.05,
                   "the inbound table to empty")
        while True:  # nodeup/nodedown of the last reconnections
            try:
                actornet.receive(lambda m: m[0] in ("nodeup", "nodedown"), timeout=0)
            except actornet.Timeout:
                break
        self.downs.poll()

    def resume(self) -> None:
        testing.heal(self.b.name)


@pytest.mark.timeout(180)  # as above: 20 s idle, 29 s with a busy loop on each core
def test_1000_connect_disconnect_cycles_leave_nothing_behind(cluster: Cluster) -> None:
    b = cluster.start(unique("b"), extra=["--tick-time", str(CYCLE_TICK)])
    here = actornet.start_node(unique("t"), cookie=COOKIE, port=0, tick_time=CYCLE_TICK)
    try:
        cycler = Cycler(here, b)
        for i in range(WARMUP_CYCLES):
            cycler.cycle(i)
        cycler.quiet()
        gc.collect()
        base, b_base = usage(), usage(b.proc.pid)
        cycler.resume()

        t0 = time.monotonic()
        for i in range(CYCLES):
            cycler.cycle(i)
        elapsed = time.monotonic() - t0

        cycler.quiet()
        after = settled(base)
        b_after = settled(b_base, b.proc.pid)
        grew, b_grew = after.rss_kb - base.rss_kb, b_after.rss_kb - b_base.rss_kb
        logging.getLogger(__name__).info(
            "%d cycles in %.1f s (%.1f ms each), %d found it connected again already; "
            "RSS here %+d KB, in the child %+d KB", CYCLES, elapsed, 1000 * elapsed / CYCLES,
            cycler.reconnected, grew, b_grew)
        assert grew <= CYCLE_RSS_BOUND_KB, f"RSS grew by {grew} KB: {base} -> {after}"
        assert b_grew <= CYCLE_RSS_BOUND_KB, f"child RSS grew by {b_grew} KB: {b_base} -> {b_after}"
        # both still work together
        cycler.resume()
        assert actornet.ping(b.address) == "pong"
        assert actornet.rpc.call(b.name, remote.add, 2, 3) == 5
    finally:
        here.stop()


# -- 3. a second node of this process, started and stopped again and again ---------------------

@pytest.mark.parametrize("naming", [
    "fresh-names",
    "same-name",
])
def test_a_node_started_and_stopped_50_times_leaves_nothing_behind(
    cluster: Cluster, naming: str
) -> None:
    """Each life connects both ways to a long-lived node here and to a child, then stops;
    the next starts once both have seen it go. With "same-name", every life has the same
    name (a node restarted again and again)."""
    b = cluster.start(unique("b"))
    here = actornet.start_node(unique("t"), cookie=COOKIE, port=0)
    try:
        assert actornet.ping(b.address) == "pong"
        actornet.rpc.call(b.name, remote.start_echo, "echo")
        same = unique("s")
        b_downs = ChildLog(b, r"node s\S+ is down")

        def life(i: int) -> str:
            s = actornet.start_node(same if naming == "same-name" else unique("s"),
                                    cookie=COOKIE, port=0)
            try:
                def work() -> tuple[Any, Any]:
                    assert actornet.ping(b.address) == "pong"
                    assert actornet.ping(f"{here.name}:{here.port}") == "pong"
                    actornet.send(("echo", b.name), (actornet.self(), i))  # b answers back
                    echoed = actornet.receive(timeout=DEADLINE)
                    return echoed, actornet.rpc.call(here.name, remote.add, i, 1)  # here too

                assert on(s, work) == (("echo", i), i + 1)
            finally:
                s.stop()
            assert here.dist._thread.is_alive(), f"life {i}: {here.name} lost its I/O thread"
            # a stopping node says goodbye: both see it go at once
            wait_until(lambda: s.name not in actornet.nodes(), DEADLINE / 2,
                       what=f"{here.name} to see life {i} end")
            wait_until(lambda: b_downs.poll() >= i + 1, DEADLINE / 2,
                       what=f"{b.name} to see life {i} end")
            return s.name

        life(0)
        gc.collect()
        base, b_base = usage(), usage(b.proc.pid)
        names = [life(i) for i in range(1, RESTARTS + 1)]
        after = settled(base)
        b_after = settled(b_base, b.proc.pid)
        logging.getLogger(__name__).info(
            "%d restarts (%s): here %s -> %s; child %s -> %s", RESTARTS, naming, base, after,
            b_base, b_after)
        assert [n.name for n in _runtime.running_nodes()] == [here.name]
        assert [th.name for th in threading.enumerate()
                if any(name in th.name for name in names)] == []
        assert here.dist._thread.is_alive(), "the I/O thread of the long-lived node died"
        assert actornet.rpc.call(b.name, remote.add, 1, 1) == 2
    finally:
        here.stop()


def test_a_node_restarting_quickly_does_not_crash_its_peers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A node of one name restarting at once, again and again, each life pinging two nodes
    and stopping before they connected back. Once, one of them lost its I/O thread."""
    caplog.set_level(logging.ERROR, logger="actornet.dist")
    t = actornet.start_node(unique("t"), cookie=COOKIE, port=0)
    b = actornet.start_node(unique("b"), cookie=COOKIE, port=0)
    name = unique("s")
    try:
        for i in range(200):
            s = actornet.start_node(name, cookie=COOKIE, port=0)
            try:
                pings = on(s, lambda: [actornet.ping(f"{b.name}:{b.port}"),
                                       actornet.ping(f"{t.name}:{t.port}")])
            finally:
                s.stop()
            crashed = [r.getMessage() for r in caplog.records if "crashed" in r.getMessage()]
            assert not crashed, f"life {i}: {crashed}"
            assert pings == ["pong", "pong"], f"life {i}: {pings}"
    finally:
        b.stop()
        t.stop()


def test_a_stopped_node_is_not_kept_alive() -> None:
    refs = []
    for _ in range(20):
        n = actornet.start_node(unique("gone"), cookie=COOKIE, port=0)
        refs.append(weakref.ref(n))
        n.stop()
    del n
    gc.collect()
    kept = [r().name for r in refs if r() is not None]  # type: ignore[union-attr]
    assert kept == [], f"{len(kept)} of {len(refs)} stopped nodes are still alive"


# -- 6. lightweight processes: many started, then all killed at once ----------------------------

LIGHT_PROCESSES = 20_000  # the benchmark fills a node to a million and kills them all
# What Python allocated (tracemalloc), not RSS: freed arenas go back to the OS or not as
# fragmentation has it (+0.6 to +13 MB of RSS after a round here, run to run). After a
# warm-up round (the tables grow to that many entries once and keep their size), a round of
# 50,000 idle processes (+70-90 MB at their peak) leaves +1 tracked object, and a few KB
# allocated or +2.1 MB: a table of that size (the node's processes, asyncio's set of tasks)
# may be rebuilt at the same size when deleted entries pile up. A leaked process is a dozen
# objects and about 2 KB: 40 MB over a round of 20,000.
LIGHT_ALLOCATED_BOUND = 8 * 1024 * 1024
LIGHT_OBJECTS_BOUND = 200


async def _idle_light() -> None:
    await actornet.aio.receive()


async def _fill_then_kill(parent: actornet.Pid, count: int) -> None:
    pids = [actornet.spawn(_idle_light) for _ in range(count)]
    await asyncio.sleep(0)  # every one of them now waits in its receive
    actornet.send(parent, ("filled", len(asyncio.all_tasks())))
    for pid in pids:
        actornet.exit(pid, "kill")
    actornet.send(parent, "killed")


async def _count_tasks(parent: actornet.Pid) -> None:
    actornet.send(parent, ("tasks", len(asyncio.all_tasks())))


def _light_round(n: actornet.Node, count: int) -> None:
    me = n.current().pid
    n.spawn(_fill_then_kill, me, count)
    assert n.receive(lambda m: m[0] == "filled", timeout=DEADLINE * 6)[1] == count + 1
    n.receive(lambda m: m == "killed", timeout=DEADLINE * 6)
    wait_until(lambda: len(n.processes()) == 1, DEADLINE, what="the killed processes to go")
    n.spawn(_count_tasks, me)
    assert n.receive(lambda m: m[0] == "tasks", timeout=DEADLINE) == ("tasks", 1), (
        "every killed process's task ended (the counter's own is the one left)")


def test_20k_lightweight_processes_killed_at_once_leave_nothing_behind() -> None:
    n = actornet.Node(unique("light"))
    tracemalloc.start()
    try:
        _light_round(n, LIGHT_PROCESSES)  # warm-up: the tables grow, the scheduler starts
        gc.collect()
        base = settled(usage())
        objects = len(gc.get_objects())
        allocated = tracemalloc.get_traced_memory()[0]
        _light_round(n, LIGHT_PROCESSES)
        gc.collect()
        settled(base)
        assert n._aliases == {} and n._names == {}
        grew = len(gc.get_objects()) - objects
        assert grew <= LIGHT_OBJECTS_BOUND, f"{grew} more tracked objects after the round"
        more = tracemalloc.get_traced_memory()[0] - allocated
        assert more <= LIGHT_ALLOCATED_BOUND, f"{more} more bytes allocated after the round"
    finally:
        tracemalloc.stop()
        n.stop()
