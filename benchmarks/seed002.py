"""Seed 002's experiments 1 and 2 against the chat service, beside seed 002's tables and Redis.

Seed 002 pushed 100 to 10,000 messages of 100 bytes through one chat server to
10, 50 and 100 clients, and published the time until the clients had them all
(2.17 s to 220 s). Here: three ``python -m examples.chatty node`` processes
(fsync before every acknowledgement, the default) on a private port mapper; the
clients are lightweight processes in one more node (`benchmarks._seed002load`),
spread over the three chat nodes, all in one room; one publisher says the
messages in order, with up to `WINDOW` of them not acknowledged yet (seed 002's
publisher did not wait at all: it published a batch every 200 ms), and checks
that the acknowledgements number them in order. A cell's time runs from the
first message said to the last client having every message; each client checks
that it got every message once, in order ("MESSAGES LOST" in the notes
otherwise). ``SEED002_WINDOW=1`` makes the publisher wait for each
acknowledgement before the next, as a user typing would.

Redis runs the same shape: one publisher, one ``PUBLISH`` at a time, the same
number of subscriber connections (one `benchmarks._rawpeer` child), the time
until every subscriber has every message. Each cell runs once (the table is
long); seed 002's own figures are printed beside ours, as published.

Experiment 2 (`benchmarks._seed002exp2`), on the same chat nodes: 50 to 1,000
messages to 1,000 to 10,000 subscribers. ``SEED002_EXPERIMENTS=2`` runs only
that one; ``SEED002_SUBSCRIBERS`` and ``SEED002_MESSAGES`` (``1000,5000``) pick
its cells.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import msgpack

import actornet
from benchmarks import _seed002exp2, _seed002load
from benchmarks._common import (
    ACTORNET,
    ActornetChild,
    Children,
    Config,
    Sample,
    connect,
    local_node,
    row,
)
from benchmarks.chat import start_chat_nodes
from benchmarks.fanout import REDIS, redis_server
from benchmarks.remote import RawPeer

__all__ = ["seed002", "SEED002"]

SEED = "seed 002 (published)"
CLIENTS = (10, 50, 100)
SIZE = 100
# seed 002, experiment 1: messages -> seconds for 10, 50 and 100 clients
SEED002: dict[int, tuple[float, float, float]] = {
    100: (2.17, 2.17, 2.22),
    500: (11.05, 11.07, 11.20),
    1000: (22.33, 22.15, 22.25),
    5000: (110.57, 111.04, 110.14),
    10000: (220.91, 221.55, 220.32),
}
WAIT = 120.0
# Every node here, the chat nodes too, ticks at Erlang's default net_ticktime (60 s): a
# load node whose loop wakes thousands of subscribers per message can starve its I/O
# thread for more than the default 4 s, and the connection declared down loses the cell.
# No node here is a chat client's CLI (those tick at 4 s, see benchmarks.chat).
CHAT_TICK = 60.0
# messages the publisher has said and not seen acknowledged, at most
WINDOW = int(os.environ.get("SEED002_WINDOW", "64"))


def seed002(cfg: Config) -> dict[str, Any]:
    """Seconds until 10..100 chat clients have 100..10,000 messages of one publisher, and
    1,000..10,000 subscribers 50..1,000 (seed 002's experiments 1 and 2)."""
    experiments = os.environ.get("SEED002_EXPERIMENTS", "1,2").split(",")
    most = max(_seed002exp2.SUBSCRIBERS) if "2" in experiments else 0
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-seed002-") as data, Children() as kids, \
            redis_server(kids, maxclients=max(4096, most + 64)) as (redis_port, redis_why), \
            local_node("bench_s2", tick_time=CHAT_TICK):
        env, names, _ = start_chat_nodes(kids, data, cfg.log, tick_time=CHAT_TICK)
        load = ActornetChild(kids, "bench_s2load", env=env, tick_time=CHAT_TICK)
        connect(load.address)
        if "1" in experiments:
            one = _experiment1(cfg, kids, load, names, redis_port, redis_why)
            rows += one["rows"]
            notes += one["notes"]
        if "2" in experiments:
            two = _seed002exp2.experiment2(cfg, kids, env, names, load, CHAT_TICK, redis_port,
                                           redis_why, WINDOW)
            rows += two["rows"]
            notes += two["notes"]
    return {"rows": rows, "notes": notes}


def _experiment1(cfg: Config, kids: Children, load: ActornetChild, names: list[str],
                 redis_port: int | None, redis_why: str) -> dict[str, Any]:
    counts = (100,) if cfg.quick else tuple(SEED002)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    mine: dict[tuple[int, int], float] = {}
    theirs: dict[tuple[int, int], float] = {}
    raw = RawPeer(kids) if redis_port is not None else None
    publisher = None
    if raw is not None and redis_port is not None:
        import redis

        publisher = redis.Redis(host="127.0.0.1", port=redis_port)
    else:
        notes.append(f"seed002: Redis column skipped: {redis_why}")
    clients: list[actornet.Pid] = []
    problems: list[str] = []
    try:
        for k in CLIENTS:
            clients += actornet.rpc.call(load.name, _seed002load.start_clients, names,
                                         k - len(clients), f"c{k}n", timeout=WAIT * 5)
            cfg.log(f"   seed002: {k} clients in #{_seed002load.ROOM}")
            if raw is not None:
                raw.request("redis_open", redis_port, f"seed002-{k}", k, timeout=WAIT)
            for m in counts:
                sample = _chat_cell(load.name, names[0], clients, k, m, problems)
                mine[(m, k)] = sample["seconds"]
                results: dict[str, list[Sample]] = {
                    ACTORNET: [sample],
                    SEED: [{"seconds": SEED002[m][CLIENTS.index(k)]}]}
                if raw is not None and publisher is not None:
                    r = _redis_cell(raw, publisher, f"seed002-{k}", m)
                    theirs[(m, k)] = r["seconds"]
                    results[REDIS] = [r]
                hardest = m == max(SEED002) and k == max(CLIENTS)
                rows.append(row(
                    f"seed 002: {m:,} messages to {k} clients", "seconds", "s", results,
                    higher_is_better=False, skipped={REDIS: redis_why},
                    goal=(SEED, 110.0, "<= 2 s (seed 002: 220 s)") if hardest else None,
                    note=f"one publisher, {m:,} messages of {SIZE} B, each acknowledged "
                         f"(replicated, fsynced on 3 nodes), up to {WINDOW} unacknowledged; "
                         f"{k} lightweight clients over 3 chat nodes; once, not repeated"))
            if raw is not None:
                raw.request("redis_close")
    finally:
        actornet.rpc.call(load.name, _seed002load.stop_clients, clients, timeout=WAIT)
        if publisher is not None:
            publisher.close()
        if raw is not None:
            raw.close()
    notes.extend(_table(counts, mine, theirs))
    if problems:
        notes.append("seed002: MESSAGES LOST: " + "; ".join(problems))
    else:
        notes.append("seed002: delivered: every client got every message once, in order, "
                     "in every cell")
    return {"rows": rows, "notes": notes}


def _chat_cell(load: str, server: str, clients: list[actornet.Pid], k: int, m: int,
               problems: list[str]) -> Sample:
    tag = f"r{k}x{m}."
    me = actornet.self()
    for pid in clients[:k]:
        actornet.send(pid, ("round", tag, {"": m}, me))
    for _ in range(k):  # each is counting before the first message is said
        actornet.receive(lambda x: x == ("round_ok", tag), timeout=WAIT)
    out = actornet.rpc.call(load, _seed002load.publish, server, f"p{k}x{m}", tag, m, SIZE,
                            WINDOW, timeout=WAIT * 10)
    ends, lost, disorder = _seed002load.reports(tag, k, m, WAIT)
    if lost or disorder or not out["ordered"]:
        problems.append(f"{m} messages to {k} clients: {lost} deliveries missing, "
                        f"{disorder} clients out of order")
    return {"seconds": (max(ends) if ends else time.time()) - out["started"],
            "publish_seconds": out["seconds"]}


def _redis_cell(raw: RawPeer, publisher: Any, channel: str, m: int) -> Sample:
    raw.request("redis_count", m)
    payload = bytes(range(SIZE))
    t0 = time.perf_counter()
    for i in range(m):  # one at a time, each answered, like ours
        publisher.publish(channel, msgpack.packb(("msg", i, payload)))
    raw.request("wait", timeout=WAIT)
    return {"seconds": time.perf_counter() - t0}


def _table(counts: tuple[int, ...], mine: dict[tuple[int, int], float],
           theirs: dict[tuple[int, int], float]) -> list[str]:
    """The table in seed 002's layout: ours / Redis's / seed 002's seconds per cell."""
    head = "seed002: messages | " + " | ".join(f"{k} clients: actornet / Redis / seed 002"
                                               for k in CLIENTS)
    lines = [head]
    for m in counts:
        cells = []
        for i, k in enumerate(CLIENTS):
            ours = mine.get((m, k))
            redis_ = theirs.get((m, k))
            cells.append(f"{ours:.2f} s / " if ours is not None else "- / ")
            cells[-1] += f"{redis_:.2f} s / " if redis_ is not None else "- / "
            cells[-1] += f"{SEED002[m][i]:.2f} s"
        lines.append(f"seed002: {m:>8,} | " + " | ".join(cells))
    return lines
