"""Fan-out: one sender, K receivers on another node, beside Redis and pyzmq pub/sub.

Every receiver gets every message and decodes it. actornet sends each message
to each of the K pids, or, in the pg.broadcast row, once to the receivers' node
(which hands it to each of them); Redis fans out in the server
(a real ``redis-server`` on loopback, started here when Debian's package is
installed); pyzmq PUB fans out in ZeroMQ's I/O thread. The K receivers of the
baselines are K connections (K SUB sockets, K Redis connections) in one child
process, as the K actornet processes live in one child node.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import zmq

import actornet
from actornet import pg
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
    free_port,
    interleave,
    local_node,
    row,
)
from benchmarks.remote import RawPeer

__all__ = ["fanout", "redis_server", "REDIS"]

packb = msgpack.packb
REDIS = "Redis pub/sub"
PUBSUB = "pyzmq PUB/SUB"
LIGHT = "actornet, lightweight receivers"
BCAST = "actornet, pg.broadcast"


@contextlib.contextmanager
def redis_server(kids: Children, maxclients: int = 4096) -> Iterator[tuple[int | None, str]]:
    """A real redis-server on a free loopback port: ``(port, "")``, or ``(None, why not)``.

    It takes up to `maxclients` connections, fewer if its descriptor limit is lower (it
    says so: ``CONFIG GET maxclients``)."""
    exe = shutil.which("redis-server")
    if exe is None:
        yield None, "redis-server not installed"
        return
    try:
        import redis
    except ImportError:
        yield None, "redis-py not installed"
        return
    port = free_port()
    child = kids.start([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no", "--maxclients", str(maxclients), "--daemonize", "no"])
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or child.proc.poll() is not None:
                child.close()
                raise RuntimeError("redis-server did not start:\n"
                                   + "\n".join(child.lines)) from None
            time.sleep(0.05)
    try:
        yield port, ""
    finally:
        client.close()
        child.close()


def fanout(cfg: Config) -> dict[str, Any]:
    """Deliveries/s from 1 sender to K = 10/100/1000 receivers on another node."""
    total = cfg.n(50_000, 5_000)
    payload = bytes(range(100))
    rows = []
    notes: list[str] = []
    with Children() as kids, local_node("bench_fan") as _node, \
            redis_server(kids) as (redis_port, redis_why):
        far = ActornetChild(kids, "bench_fanout")
        connect(far.address)
        raw = RawPeer(kids)
        publisher = None
        if redis_port is not None:
            import redis

            publisher = redis.Redis(host="127.0.0.1", port=redis_port)
        else:
            notes.append(f"Redis column skipped: {redis_why}")
        try:
            for k in (10, 100, 1000):
                m = max(1, total // k)
                sinks: list[actornet.Pid] = []
                light_sinks: list[actornet.Pid] = []
                group_sinks: list[actornet.Pid] = []
                pub: zmq.Socket[Any] | None = None
                redis_open = False

                def an(rep: int, k: int = k, m: int = m, sinks: list[actornet.Pid] = sinks,
                       start: Any = _remote.fanout_sinks) -> Sample:
                    count = m if rep >= 0 else max(1, m // 10)
                    me = actornet.self()
                    if not sinks:
                        collector, pids = actornet.rpc.call(far.name, start, me, k,
                                                            timeout=120)
                        sinks.extend([collector, *pids])
                    tag = ("fan", k, rep, start.__name__)
                    send = actornet.send
                    for pid in sinks[1:]:
                        send(pid, ("round", count, tag))
                    t0 = time.perf_counter()
                    for i in range(count):
                        msg = ("msg", i, payload)
                        for pid in sinks[1:]:
                            send(pid, msg)
                    await_msg(lambda x: x == ("fanout_done", tag), 600)
                    return {"rate": k * count / (time.perf_counter() - t0)}

                def an_light(rep: int, k: int = k, m: int = m,
                             sinks: list[actornet.Pid] = light_sinks) -> Sample:
                    return an(rep, k, m, sinks, _remote.fanout_sinks_light)

                def an_broadcast(rep: int, k: int = k, m: int = m,
                                 sinks: list[actornet.Pid] = group_sinks) -> Sample:
                    count = m if rep >= 0 else max(1, m // 10)
                    me = actornet.self()
                    group = ("bench_fanout", k)
                    if not sinks:
                        collector, pids = actornet.rpc.call(
                            far.name, _remote.fanout_sinks_group, me, k, group, timeout=120)
                        sinks.extend([collector, *pids])
                        deadline = time.monotonic() + 120
                        while len(pg.get_members(group)) < k:  # pg's sync is asynchronous
                            if time.monotonic() > deadline:
                                raise TimeoutError("the group's members never showed here")
                            time.sleep(0.01)
                    tag = ("fan", k, rep, "broadcast")
                    for pid in sinks[1:]:
                        actornet.send(pid, ("round", count, tag))
                    broadcast = pg.broadcast
                    t0 = time.perf_counter()
                    for i in range(count):
                        broadcast(group, ("msg", i, payload))
                    await_msg(lambda x: x == ("fanout_done", tag), 600)
                    return {"rate": k * count / (time.perf_counter() - t0)}

                def pubsub(rep: int, k: int = k, m: int = m) -> Sample:
                    nonlocal pub
                    count = m if rep >= 0 else max(1, m // 10)
                    if pub is None:
                        pub = raw.ctx.socket(zmq.PUB)
                        pub.setsockopt(zmq.LINGER, 0)
                        pub.setsockopt(zmq.SNDHWM, 0)
                        port = pub.bind_to_random_port("tcp://127.0.0.1")
                        raw.request("sub_open", f"tcp://127.0.0.1:{port}", k)
                        raw.ctl.send(packb(["ready?"]))
                        deadline = time.monotonic() + 120
                        while not raw.ctl.poll(10):  # hellos until every subscriber joined
                            pub.send(b"h")
                            if time.monotonic() > deadline:
                                raise TimeoutError("subscribers did not join")
                        raw.ctl.recv()
                    raw.request("sub_count", count)
                    send = pub.send
                    t0 = time.perf_counter()
                    for i in range(count):
                        send(packb(("msg", i, payload)))
                    raw.request("wait", timeout=600)
                    return {"rate": k * count / (time.perf_counter() - t0)}

                def redis_(rep: int, k: int = k, m: int = m) -> Sample:
                    nonlocal redis_open
                    assert publisher is not None
                    count = m if rep >= 0 else max(1, m // 10)
                    channel = f"bench-{k}"
                    if not redis_open:
                        raw.request("redis_open", redis_port, channel, k, timeout=300)
                        redis_open = True
                    raw.request("redis_count", count)
                    pipe = publisher.pipeline(transaction=False)
                    t0 = time.perf_counter()
                    for i in range(count):
                        pipe.publish(channel, packb(("msg", i, payload)))
                        if i % 100 == 99:
                            pipe.execute()
                    pipe.execute()
                    raw.request("wait", timeout=600)
                    return {"rate": k * count / (time.perf_counter() - t0)}

                erl = None if cfg.erlang is None else (
                    lambda rep, k=k, m=m: cfg.erlang.run("fanout", k, m, len(payload)))
                try:
                    results = interleave(cfg, {
                        ACTORNET: an,
                        LIGHT: an_light,
                        BCAST: an_broadcast,
                        REDIS: redis_ if publisher is not None else None,
                        PUBSUB: pubsub,
                        ERLANG: erl,
                    })
                finally:
                    for pid in sinks + light_sinks + group_sinks:
                        actornet.send(pid, "stop")
                    if pub is not None:
                        raw.request("sub_close")
                        pub.close()
                    if redis_open:
                        raw.request("redis_close")
                light_results = {ACTORNET: results.pop(LIGHT), REDIS: results[REDIS],
                                 ERLANG: results[ERLANG]}
                bcast_results = {ACTORNET: results.pop(BCAST), REDIS: results[REDIS],
                                 ERLANG: results[ERLANG]}
                rows.append(row(
                    f"fan-out K={k}", "rate", "deliveries/s", results, higher_is_better=True,
                    skipped={ERLANG: cfg.erlang_note, REDIS: redis_why},
                    goal=(REDIS, 5.0, ">= 5 x Redis") if k == 1000 and publisher else None,
                    note=f"{m:,} messages ('msg', i, <100 bytes>) to each of {k} receivers",
                ))
                if k == 1000 and publisher is None:
                    rows[-1]["goal"] = {"text": ">= 5 x Redis", "baseline": REDIS,
                                        "factor": 5.0, "ratio": None, "met": None}
                if k == 1000:
                    rows.append(row(
                        f"fan-out K={k}, lightweight receivers", "rate", "deliveries/s",
                        light_results, higher_is_better=True,
                        skipped={ERLANG: cfg.erlang_note, REDIS: redis_why},
                        note=f"the same, each receiver an async def process: {m:,} messages "
                             f"to each of {k}"))
                    rows.append(row(
                        f"fan-out K={k} through pg.broadcast", "rate", "deliveries/s",
                        bcast_results, higher_is_better=True,
                        skipped={ERLANG: cfg.erlang_note, REDIS: redis_why},
                        goal=(REDIS, 5.0, ">= 5 x Redis") if publisher else None,
                        note=f"the lightweight receivers, members of one pg group: one "
                             f"pg.broadcast per message, one copy per node ({m:,} messages)"))
        finally:
            if publisher is not None:
                publisher.close()
            raw.close()
    return {"rows": rows, "notes": notes}

