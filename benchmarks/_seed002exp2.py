"""Seed 002's experiment 2, the second table of `benchmarks.seed002`: thousands of subscribers.

Seed 002 published 50, 500 and 1,000 messages of 100 bytes on one Redis channel
to 1,000, 5,000 and 10,000 subscribers (Python threads; its publisher sent a
batch every 200 ms) and published the time until the subscribers had them all:
21.9 s to 827 s. Here the subscribers are lightweight processes, each a chat
client in one room (`ROOM`) through one of the 3 chat nodes, spread over
`LOAD_NODES` load nodes (one OS process each, so that the 2 cores both take
deliveries). The publisher is experiment 1's: one client that says the messages
in order with up to `seed002.WINDOW` unacknowledged. Each subscriber checks that it
got every message once, in order.

Every member of a room hears every join: filling the room with 10,000 clients
delivers 50 million join notices. The subscribers wait parked while the room
fills (`benchmarks._seed002load`), and take their backlog before a row's first
round starts, so the table times the messages and not the joins.

Redis runs the same way: the same number of subscriber connections, held by
`LOAD_NODES` `benchmarks._rawpeer` children, one ``PUBLISH`` at a time, each
subscriber checking its messages' count and order.
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any

import msgpack

import actornet
from benchmarks import _seed002load
from benchmarks._common import (
    ACTORNET,
    ActornetChild,
    Children,
    Config,
    Sample,
    connect,
    row,
)
from benchmarks.fanout import REDIS
from benchmarks.remote import RawPeer

__all__ = ["MESSAGES", "SEED002_EXP2", "SUBSCRIBERS", "experiment2"]

SEED = "seed 002 (published)"
SIZE = 100
# seed 002, experiment 2: subscribers -> seconds for 50, 500 and 1,000 messages
SEED002_EXP2: dict[int, tuple[float, float, float]] = {
    1000: (21.88, 33.97, 90.30),
    5000: (111.63, 213.99, 433.80),
    10000: (238.05, 436.49, 827.00),
}
MESSAGES = (50, 500, 1000)
SUBSCRIBERS = tuple(SEED002_EXP2)
QUICK = ((200,), (20,))  # subscribers, messages of the --quick run
ROOM = "seed002subs"
LOAD_NODES = 2
JOINING = 32  # subscribers joining at once, per load node
WAIT = 120.0  # seconds one subscriber may go without a message
PREFIX = "seed002, experiment 2"


def _picked(variable: str, full: tuple[int, ...]) -> tuple[int, ...]:
    """The cells named in environment `variable` (``1000,5000``), else all of `full`."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return full
    picked = tuple(int(x) for x in text.split(","))
    unknown = [x for x in picked if x not in full]
    if unknown:
        raise ValueError(f"{variable}={text}: not in seed 002's table {full}: {unknown}")
    return tuple(x for x in full if x in picked)


def experiment2(cfg: Config, kids: Children, env: dict[str, str], names: list[str],
                first_load: ActornetChild, tick: float, redis_port: int | None,
                redis_why: str, window: int) -> dict[str, Any]:
    """Rows and notes of experiment 2, on the chat nodes `names` (and the Redis at
    `redis_port`). ``SEED002_SUBSCRIBERS`` and ``SEED002_MESSAGES`` pick cells."""
    subscribers: tuple[int, ...]
    messages: tuple[int, ...]
    if cfg.quick:
        subscribers, messages = QUICK
    else:
        subscribers = _picked("SEED002_SUBSCRIBERS", SUBSCRIBERS)
        messages = _picked("SEED002_MESSAGES", MESSAGES)
    loads = [first_load.name]
    for i in range(1, LOAD_NODES):
        node = ActornetChild(kids, f"bench_s2load{i}", env=env, tick_time=tick)
        connect(node.address)
        loads.append(node.name)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    mine: dict[tuple[int, int], float] = {}
    theirs: dict[tuple[int, int], float | str] = {}
    problems: list[str] = []
    redis_problems: list[str] = []
    raws: list[RawPeer] = []
    publisher = None
    if redis_port is not None:
        import redis

        publisher = redis.Redis(host="127.0.0.1", port=redis_port)
        raws = [RawPeer(kids) for _ in loads]
    subs: list[list[actornet.Pid]] = [[] for _ in loads]
    broken: str | None = None  # why Redis is not run again, once it failed
    try:
        for k in subscribers:
            t0 = time.monotonic()
            for i, load in enumerate(loads):  # one after another: the first makes the room
                want = k // len(loads) + (i < k % len(loads))
                subs[i] += actornet.rpc.call(
                    load, _seed002load.start_clients, names, want - len(subs[i]),
                    f"s{k}n{i}x", ROOM, JOINING, True, timeout=WAIT * 30)
            everyone = [pid for pids in subs for pid in pids]
            cfg.log(f"   {PREFIX}: {len(everyone):,} subscribers in #{ROOM} "
                    f"({time.monotonic() - t0:.1f} s)")
            why_not = broken or _redis_open(raws, publisher, redis_port, redis_why, k)
            opened = why_not is None
            for n, m in enumerate(messages):
                lost_before = len(problems)
                sample = _chat_cell(loads, names[0], everyone, k, m, n == 0, window, problems)
                mine[(k, m)] = sample["seconds"]
                results: dict[str, list[Sample]] = {ACTORNET: [sample]}
                published = _published(k, m)
                results[SEED] = [] if published is None else [{"seconds": published}]
                if why_not is None:
                    assert publisher is not None
                    r, why_not = _redis_cell(raws, publisher, k, m, redis_problems)
                    broken = why_not
                    if r is not None:
                        theirs[(k, m)] = r["seconds"]
                        results[REDIS] = [r]
                if why_not is not None:
                    theirs[(k, m)] = why_not
                redis_seconds = theirs[(k, m)]
                cfg.log(f"   {PREFIX}: {m:,} messages to {k:,} subscribers: "
                        f"{sample['seconds']:.2f} s, Redis "
                        + (f"{redis_seconds:.2f} s" if isinstance(redis_seconds, float)
                           else f"- ({redis_seconds})")
                        + "".join(f"; MESSAGES LOST: {x}" for x in problems[lost_before:]))
                rows.append(row(
                    f"seed 002, exp. 2: {m:,} messages to {k:,} subscribers", "seconds", "s",
                    results, higher_is_better=False,
                    skipped={REDIS: why_not or redis_why or "n/a",
                             SEED: "not in seed 002's table"},
                    note=f"one publisher, {m:,} messages of {SIZE} B, each acknowledged "
                         f"(replicated, fsynced on 3 nodes), up to {window} unacknowledged; "
                         f"{k:,} lightweight subscribers in {len(loads)} nodes over 3 chat "
                         "nodes; once, not repeated"))
            for load in loads:  # the next row's joins find these parked
                actornet.rpc.call(load, _seed002load.close_gate, timeout=WAIT)
            for pid in everyone:
                actornet.send(pid, "park")
            if opened and broken is None:
                for raw in raws:
                    raw.request("redis_close", timeout=WAIT)
    finally:
        # The subscribers are not told to quit: each quit would tell every other member.
        # They go with their nodes.
        if publisher is not None:
            publisher.close()
        for raw in raws:
            raw.close()
    notes.extend(_table(subscribers, messages, mine, theirs))
    if problems:
        notes.append(f"{PREFIX}: MESSAGES LOST: " + "; ".join(problems))
    else:
        notes.append(f"{PREFIX}: delivered: every subscriber got every message once, in "
                     "order, in every cell")
    if redis_problems:
        notes.append(f"{PREFIX}: Redis MESSAGES LOST: " + "; ".join(redis_problems))
    if redis_port is None:
        notes.append(f"{PREFIX}: Redis column skipped: {redis_why}")
    return {"rows": rows, "notes": notes}


def _published(k: int, m: int) -> float | None:
    """Seed 002's seconds for `m` messages to `k` subscribers (None: not in its table)."""
    if k not in SEED002_EXP2 or m not in MESSAGES:
        return None
    return SEED002_EXP2[k][MESSAGES.index(m)]


def _redis_open(raws: list[RawPeer], publisher: Any, port: int | None, why: str,
                k: int) -> str | None:
    """Subscribe `k` Redis connections, spread over `raws`; None, or why not."""
    if port is None or publisher is None:
        return why or "no Redis"
    limit = int(publisher.config_get("maxclients")["maxclients"])
    if limit < k + 2:
        return (f"Redis takes {limit} clients here (its descriptor limit), "
                f"{k + 1} needed")
    fds = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if fds != resource.RLIM_INFINITY and fds < k // len(raws) + 64:
        return f"the descriptor limit ({fds}) is below {k // len(raws) + 64} connections"
    for i, raw in enumerate(raws):
        share = k // len(raws) + (i < k % len(raws))
        raw.request("redis_open", port, ROOM, share, timeout=WAIT * 5)
    return None


def _chat_cell(loads: list[str], server: str, subs: list[actornet.Pid], k: int, m: int,
               first: bool, window: int, problems: list[str]) -> Sample:
    tag = f"x{k}x{m}."
    me = actornet.self()
    for pid in subs:
        actornet.send(pid, ("round", tag, {"": m}, me))
    if first:  # the subscribers take the row's join notices, then answer
        for load in loads:
            actornet.rpc.call(load, _seed002load.open_gate, timeout=WAIT)
    for _ in subs:
        actornet.receive(lambda x: x == ("round_ok", tag), timeout=WAIT * 5)
    out = actornet.rpc.call(loads[0], _seed002load.publish, server, f"q{k}x{m}", tag, m, SIZE,
                            window, ROOM, timeout=WAIT * 10)
    # the deliveries may lag well behind the acknowledgements: a hang guard only
    ends, lost, disorder = _seed002load.reports(tag, k, m, WAIT * 15)
    if lost or disorder or not out["ordered"]:
        problems.append(f"{m} messages to {k} subscribers: {lost} deliveries missing, "
                        f"{disorder} subscribers out of order")
    return {"seconds": (max(ends) if ends else time.time()) - out["started"],
            "publish_seconds": out["seconds"]}


def _redis_cell(raws: list[RawPeer], publisher: Any, k: int, m: int,
                problems: list[str]) -> tuple[Sample | None, str | None]:
    """One cell: its sample, or why there is none (then Redis is not run again)."""
    for raw in raws:
        raw.request("redis_count", m)
    payload = bytes(range(SIZE))
    t0 = time.perf_counter()
    for i in range(m):  # one at a time, each answered, like ours
        publisher.publish(ROOM, msgpack.packb(("msg", i, payload)))
    total = disorder = 0
    errors: list[str] = []
    for raw in raws:
        try:
            _, got, bad, why = raw.request("wait", timeout=WAIT * 10)
        except TimeoutError:
            return None, (f"its subscribers did not have every message within "
                          f"{WAIT * 10:.0f} s (a subscriber process died?)")
        total, disorder, errors = total + got, disorder + bad, errors + why
    seconds = time.perf_counter() - t0
    if total != k * m or disorder:
        problems.append(f"{m} messages to {k} subscribers: {k * m - total} deliveries "
                        f"missing, {disorder} subscribers out of order"
                        + (f" ({'; '.join(errors)})" if errors else ""))
        return None, f"Redis dropped subscribers: {'; '.join(errors) or 'no error said'}"
    return {"seconds": seconds}, None


def _table(subscribers: tuple[int, ...], messages: tuple[int, ...],
           mine: dict[tuple[int, int], float],
           theirs: dict[tuple[int, int], float | str]) -> list[str]:
    """The table in seed 002's layout: ours / Redis's / seed 002's seconds per cell."""
    lines = [f"{PREFIX}: subscribers | " + " | ".join(
        f"{m:,} messages: actornet / Redis / seed 002" for m in messages)]
    whys: dict[str, None] = {}
    for k in subscribers:
        cells = []
        for m in messages:
            ours, redis_ = mine.get((k, m)), theirs.get((k, m))
            cell = f"{ours:.2f} s / " if ours is not None else "- / "
            if isinstance(redis_, float):
                cell += f"{redis_:.2f} s / "
            else:
                cell += "- / "
                if redis_:
                    whys[redis_] = None
            published = _published(k, m)
            cells.append(cell + ("-" if published is None else f"{published:.2f} s"))
        lines.append(f"{PREFIX}: {k:>6,} | " + " | ".join(cells))
    lines.extend(f"{PREFIX}: Redis -: {why}" for why in whys)
    return lines
