"""Chat: messages/s one room of `examples.chatty` sustains across 3 nodes, beside Redis.

The chat side is the real service, started as a user starts it: a private port
mapper, then three ``python -m examples.chatty node`` processes on loopback
(room logs in a private temporary directory, fsync before every
acknowledgement: the default), and six ``python -m examples.chatty client
--plain`` processes, a *sender* and a *receiver* on each node, all joined to
one room. Each client is its own hidden node, as `examples.chatty.client`
makes it; the harness types lines into the senders' stdin and reads what every
client prints (the plain protocol of `examples.chatty.client`).

A repetition runs for a fixed window. Each sender always has its next lines
typed ahead (`DEPTH`), so its one call in flight (a client waits for the
acknowledgement of a message before it sends the next, like a user) is never
held up by the harness. At the end of the window no more lines are typed; the
messages already typed are acknowledged, then every one of the six members
must print every acknowledged message, with the sequence number its sender's
acknowledgement gave and the sender's text. The figure is the messages
acknowledged *and* shown to all six members per second, from the first line
typed to the last member showing the last message. A message never shown, or
shown with another text, is counted and reported loudly in the notes.

A second row measures what one room sustains with many publishers, each with
several messages in flight (as a gateway multiplexing many users would have):
`PUBLISHERS` lightweight clients in one more node (`benchmarks._seed002load`),
spread over the 3 chat nodes, each saying messages in order with up to
`PUB_WINDOW` unacknowledged, for the same window, in a room of their own with
one lightweight receiver per chat node. Every receiver must get every
acknowledged message of every publisher, once and in that publisher's order.
Its figure is messages acknowledged and delivered to every member per second;
its Redis column is the same Redis figure as the first row's, run again.

Redis runs the same shape: 3 publishers (each a `benchmarks._rawpeer` child
process with one connection and one ``PUBLISH`` in flight) and 6 subscriber
connections (in one more `benchmarks._rawpeer` child), one channel, the same
window and the same 100-byte payload; its figure is messages published and
received by all 6 subscribers per second. Redis gives less: at most once (a
slow or reconnecting subscriber misses messages), no order across publishers,
nothing on disk.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack

import actornet
from benchmarks import _seed002load
from benchmarks._common import (
    ACTORNET,
    COOKIE,
    ERLANG,
    ActornetChild,
    Child,
    Children,
    Config,
    Sample,
    connect,
    free_port,
    interleave,
    local_node,
    row,
)
from benchmarks.fanout import REDIS, redis_server
from benchmarks.remote import RawPeer

__all__ = ["chat", "ChatCluster"]

HOST = "127.0.0.1"
ROOM = "bench"
TEXT_LEN = 100  # characters of a chat message; Redis gets a 100-byte payload
DEPTH = 2  # lines typed ahead into each sender, besides the one being sent
NODES = 3
WAIT = 30.0  # seconds any one step of the setup may take
DELIVERY_WAIT = 10.0  # seconds the last deliveries may take once every message is acknowledged
PUBLISHERS = 6  # the many-publishers row: lightweight publishers, 2 per chat node
PUB_WINDOW = 32  # messages each of them has in flight at most
MANY_ROOM = "benchmany"
MANY_GOAL = 5000.0  # messages/s the many-publishers row must reach (and 0.25x Redis)
CHAT_TICK = 4.0  # the chat nodes' tick (the default); the harness's nodes tick alike


@dataclass
class Member:
    """One plain-mode chat client: what it printed, parsed as it arrives."""

    nick: str
    child: Child
    pos: int = 0  # lines parsed so far
    answers: list[int | None] = field(default_factory=list)  # per line typed: seq, None: ERROR
    errors: list[str] = field(default_factory=list)
    seen: dict[int, tuple[str, str]] = field(default_factory=dict)  # seq -> (nick, text)
    pending: set[int] = field(default_factory=set)  # acknowledged, not shown yet
    typed: list[str] = field(default_factory=list)  # texts typed this repetition

    def mark(self) -> None:
        """Forget what was parsed: a repetition starts (call under the lock)."""
        self.pos = len(self.child.lines)
        self.answers, self.errors, self.seen, self.typed = [], [], {}, []
        self.pending = set()

    def scan(self) -> None:
        """Parse the lines printed since the last scan (call under the lock)."""
        lines = self.child.lines
        while self.pos < len(lines):
            line = lines[self.pos]
            self.pos += 1
            if line.startswith("MSG "):
                # MSG <room> <id> <nick> <likes> <text>
                parts = line.split(" ", 5)
                if len(parts) == 6 and parts[1] == ROOM:
                    seq = int(parts[2])
                    self.seen[seq] = (parts[3], parts[5])
                    self.pending.discard(seq)
            elif line.startswith("OK sent "):
                self.answers.append(int(line.rsplit(" ", 1)[1]))
            elif line.startswith("ERROR "):
                self.answers.append(None)
                self.errors.append(line)

    def outstanding(self) -> int:
        """Lines typed and not answered yet (a client answers its lines in order)."""
        return len(self.typed) - len(self.answers)


def start_chat_nodes(kids: Children, data_dir: str, log: Callable[[str], None],
                     tick_time: float = 4.0) -> tuple[dict[str, str], list[str], list[Child]]:
    """A private port mapper and `NODES` chat nodes meshed on it, ticking every
    `tick_time`: the environment that reaches them (port mapper, cookie), their names,
    their children."""
    tag = f"{os.getpid() % 100000}x{time.monotonic_ns() % 100000}"
    epmd_port = free_port()
    epmd = kids.start([sys.executable, "-m", "actornet.epmd", "--port", str(epmd_port),
                       "--address", HOST])
    epmd.wait_line(r"listening on", WAIT)
    env = {"ACTORNET_EPMD_PORT": str(epmd_port), "ACTORNET_COOKIE": COOKIE,
           "PYTHONUNBUFFERED": "1", "CHATTY_DATA_DIR": data_dir}
    names = [f"benchchat{i}t{tag}@{HOST}" for i in range(1, NODES + 1)]
    nodes: list[Child] = []
    for i, name in enumerate(names):
        join = ["--join", names[0]] if i else []
        # The chat figure keeps the default tick (4 s), not the harness's slow
        # BENCH_TICK: a client's hidden node ticks at 4 s, and a peer that ticks more
        # slowly looks dead to it (no tick for 5 s) whenever the client is idle.
        nodes.append(kids.start(
            [sys.executable, "-m", "examples.chatty", "node", "--name", name, *join,
             "--tick-time", str(tick_time)],
            env=env))
        if i == 0:  # the first alone, then the others (which join it) together
            nodes[0].wait_line(rf"chatty node {name} ready", WAIT)
    for node, name in zip(nodes[1:], names[1:], strict=True):
        node.wait_line(rf"chatty node {name} ready", WAIT)
    log(f"   chat: {NODES} nodes up, data in {data_dir}")
    return env, names, nodes


class ChatCluster:
    """A private port mapper, 3 chat nodes, a sender and a receiver client on each.

    Every client has joined room `ROOM` (the first sender created it, so the
    room's sequencer is on the first node). Children are started through
    `kids` (killed with it); room logs go to `data_dir`.
    """

    def __init__(self, kids: Children, data_dir: str,
                 log: Callable[[str], None] = lambda s: None, senders_per_node: int = 1) -> None:
        self.changed = threading.Condition()
        env, self.names, self.nodes = start_chat_nodes(kids, data_dir, log)
        self.env = env

        def client(nick: str, node: str) -> Member:
            child = kids.start([sys.executable, "-m", "examples.chatty", "client", "--server",
                                node, "--nick", nick, "--plain"],
                               env=env, stdin=subprocess.PIPE, changed=self.changed)
            return Member(nick, child)

        self.senders = [client(f"s{i + 1}", self.names[i % NODES])
                        for i in range(NODES * senders_per_node)]
        self.receivers = [client(f"r{i + 1}", n) for i, n in enumerate(self.names)]
        self.members = [*self.senders, *self.receivers]
        for m in self.members:
            m.child.wait_line(rf"^CONNECTED {m.nick} ", WAIT)
        for m in self.members:  # one at a time: s1 creates the room on the first node
            with self.changed:
                start = len(m.child.lines)
            m.child.write_line(f"/join {ROOM}")
            m.child.wait_line(rf"^(OK joined {ROOM}|ERROR .*)$", WAIT, start)
            if f"OK joined {ROOM}" not in m.child.lines[start:]:
                raise RuntimeError(f"{m.nick} could not join: {m.child.lines[start:]}")
        log(f"   chat: {len(self.members)} clients in #{ROOM}")

    def pids(self) -> dict[str, int]:
        """The chat nodes' and a sender's OS pids, for profiling."""
        out = {f"chat node {i + 1}" + (" (sequencer)" if i == 0 else ""): n.proc.pid
               for i, n in enumerate(self.nodes)}
        out["sender client s2 (on node 2)"] = self.senders[1].child.proc.pid
        return out

    def _wait(self, done: Callable[[], bool], deadline: float) -> bool:
        """Under the lock: parse news until `done()` or `deadline`; False on timeout."""
        while True:
            for m in self.members:
                m.scan()
            if done():
                return True
            dead = [m.nick for m in self.members if m.child.proc.poll() is not None]
            dead += [f"node {i + 1}" for i, n in enumerate(self.nodes) if n.proc.poll() is not None]
            if dead:
                tails = {m.nick: m.child.lines[-5:] for m in self.members}
                raise RuntimeError(f"chat: {', '.join(dead)} exited: {tails}")
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.changed.wait(min(left, 1.0))

    def run(self, seconds: float, rep: int, stop: threading.Event | None = None) -> Sample:
        """One repetition: type for `seconds` (or until `stop`), then check the deliveries."""
        pad = "x" * TEXT_LEN
        with self.changed:
            for m in self.members:
                m.mark()
            t0 = time.perf_counter()
            stop_at = t0 + seconds
            ended = False

            def top_up() -> bool:
                nonlocal ended
                if not ended and (time.perf_counter() >= stop_at
                                  or (stop is not None and stop.is_set())):
                    ended = True
                if not ended:
                    for s in self.senders:
                        while s.outstanding() < 1 + DEPTH:
                            text = f"{s.nick}.{rep}.{len(s.typed)}."
                            text += pad[:TEXT_LEN - len(text)]
                            s.typed.append(text)
                            s.child.write_line(text)
                return ended and all(s.outstanding() == 0 for s in self.senders)

            if not self._wait(top_up, time.monotonic() + seconds + WAIT):
                raise RuntimeError("chat: the senders' last messages were not acknowledged "
                                   f"within {WAIT} s of the window's end")
            t_acked = time.perf_counter()
            expected: dict[int, tuple[str, str]] = {}
            for s in self.senders:
                # a client runs its lines one at a time: its k-th answer is for its k-th line
                for seq, text in zip(s.answers, s.typed, strict=True):
                    if seq is not None:
                        expected[seq] = (s.nick, text)
            errors = sum(len(s.errors) for s in self.senders)
            for m in self.members:
                m.pending = set(expected) - set(m.seen)
            complete = self._wait(lambda: not any(m.pending for m in self.members),
                                  time.monotonic() + DELIVERY_WAIT)
            t_end = time.perf_counter()
            delivered = wrong = 0
            for m in self.members:
                for seq, want in expected.items():
                    got = m.seen.get(seq)
                    if got == want:
                        delivered += 1
                    elif got is not None:
                        wrong += 1
        count = len(expected)
        lost = count * len(self.members) - delivered - wrong
        rate = count / ((t_end if complete else t_acked) - t0)
        return {"rate": rate, "ack_rate": count / (t_acked - t0), "messages": count,
                "deliveries": delivered, "lost": lost, "wrong": wrong, "errors": errors,
                "members": len(self.members)}


class ManyPublishers:
    """The many-publishers row's load: one more node whose lightweight clients publish and
    receive in room `MANY_ROOM` of `cluster` (call from a process of a distributed node)."""

    def __init__(self, kids: Children, cluster: ChatCluster,
                 log: Callable[[str], None] = lambda s: None) -> None:
        self.names = cluster.names
        self.load = ActornetChild(kids, "bench_chatload", env=cluster.env, tick_time=CHAT_TICK)
        connect(self.load.address)
        self.receivers: list[actornet.Pid] = actornet.rpc.call(
            self.load.name, _seed002load.start_clients, self.names, NODES, "mr",
            MANY_ROOM, timeout=WAIT * 2)
        log(f"   chat: {NODES} lightweight receivers in #{MANY_ROOM}")

    def run(self, seconds: float, rep: int) -> Sample:
        me = actornet.self()
        tag = f"m{rep + 1}."
        for pid in self.receivers:
            actornet.send(pid, ("round", tag, None, me))
        for _ in self.receivers:
            actornet.receive(lambda x: x == ("round_ok", tag), timeout=WAIT)
        t0 = time.time()
        out = actornet.rpc.call(self.load.name, _seed002load.publish_for, self.names,
                                f"mp{rep + 1}x", PUBLISHERS, tag, seconds, TEXT_LEN,
                                PUB_WINDOW, MANY_ROOM, timeout=seconds + WAIT * 2)
        t_acked = time.time()
        actornet.rpc.call(self.load.name, _seed002load.expect, self.receivers, tag,
                          out["counts"], timeout=WAIT)
        count = sum(out["counts"].values())
        ends, lost, disorder = _seed002load.reports(tag, len(self.receivers), count,
                                                    DELIVERY_WAIT)
        end = max(ends) if len(ends) == len(self.receivers) else t_acked
        return {"rate": count / (end - out["started"]),
                "ack_rate": count / (t_acked - t0), "messages": count, "lost": lost,
                "disorder": disorder + (not out["ordered"]), "members": len(self.receivers)}


@contextlib.contextmanager
def chat_cluster(log: Callable[[str], None] = lambda s: None,
                 senders_per_node: int = 1) -> Iterator[ChatCluster]:
    """A `ChatCluster` whose processes and data directory are gone afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-chatty-") as data, Children() as kids:
        yield ChatCluster(kids, data, log, senders_per_node)


def chat(cfg: Config) -> dict[str, Any]:
    """Messages/s one chat room sustains across 3 nodes, guarantees on, beside Redis pub/sub."""
    seconds = 1.0 if cfg.quick else 5.0
    payload = bytes(range(TEXT_LEN))
    notes: list[str] = []
    samples: list[Sample] = []
    redis_samples: list[Sample] = []
    redis_dropped: list[str] = []
    many_samples: list[Sample] = []
    with chat_cluster(cfg.log) as cluster, Children() as kids, \
            redis_server(kids) as (redis_port, redis_why), \
            local_node("bench_chat", tick_time=CHAT_TICK):
        raw = RawPeer(kids) if redis_port is not None else None
        publishers: list[RawPeer] = []
        many = ManyPublishers(kids, cluster, cfg.log)

        def many_(rep: int) -> Sample:
            sample = many.run(seconds if rep >= 0 else seconds / 2, rep)
            if rep >= 0:
                many_samples.append(sample)
            return sample

        def an(rep: int) -> Sample:
            sample = cluster.run(seconds if rep >= 0 else seconds / 2, rep)
            if rep >= 0:
                samples.append(sample)
            return sample

        def redis_(rep: int) -> Sample:
            assert raw is not None
            channel = "bench-chat"
            members = len(cluster.members)
            if not publishers:
                raw.request("redis_open", redis_port, channel, members, timeout=60)
                publishers.extend(RawPeer(kids) for _ in range(NODES))
            if raw.request("redis_stream", NODES) != ["go"]:
                raise RuntimeError("the Redis subscribers did not start")
            window = seconds if rep >= 0 else seconds / 2
            t0 = time.perf_counter()
            for who, pub in enumerate(publishers):
                pub.ctl.send(msgpack.packb(
                    ["redis_publish", redis_port, channel, who, window, payload]))
            out = [pub.answer(window + WAIT) for pub in publishers]
            t_published = time.perf_counter()
            got = raw.request("wait", timeout=WAIT)[1]
            t_end = time.perf_counter()
            count = sum(n for _, n, _ in out)
            fewest = min(f for _, _, f in out)
            received = sum(g[0] for g in got)
            if rep >= 0:
                redis_dropped.extend(g[2] for g in got if g[2])
                if fewest < members:
                    redis_dropped.append(f"PUBLISH reached only {fewest} of {members} "
                                         "subscribers")
            sample = {"rate": count / (t_end - t0), "ack_rate": count / (t_published - t0),
                      "messages": count, "deliveries": received,
                      "lost": count * members - received, "gaps": sum(g[1] for g in got),
                      "members": members}
            if rep >= 0:
                redis_samples.append(sample)
            return sample

        if raw is None:
            notes.append(f"chat: Redis column skipped: {redis_why}")
        try:
            results = interleave(cfg, {ACTORNET: an, REDIS: redis_ if raw else None})
            many_results = interleave(cfg, {ACTORNET: many_, REDIS: redis_ if raw else None})
        finally:
            for pub in publishers:
                pub.close()
            if raw is not None:
                if publishers:
                    raw.request("redis_close")
                raw.close()
    notes.extend(_delivery_notes(samples, redis_samples, redis_dropped))
    notes.append(_many_note(many_samples))
    acked = sum(s["messages"] for s in samples)
    r = row(
        "chat room across 3 nodes", "rate", "messages/s", results, higher_is_better=True,
        skipped={ERLANG: "n/a: no Erlang chat service", REDIS: redis_why},
        note=(f"{seconds:g} s windows; 3 senders (one per node, one message in flight each) and "
              f"3 receivers, all 6 in one room; acked after replication and fsync on 3 nodes; "
              f"messages/s acknowledged and shown to all 6 members ({acked:,} messages in "
              "all). Redis: 3 publishers, 6 subscribers, one channel"),
    )
    many_acked = sum(s["messages"] for s in many_samples)
    r_many = row(
        "chat room, many publishers", "rate", "messages/s", many_results,
        higher_is_better=True,
        skipped={ERLANG: "n/a: no Erlang chat service", REDIS: redis_why},
        goal=(REDIS, 0.25, ">= 5,000 messages/s and >= 0.25x Redis pub/sub"),
        note=(f"{seconds:g} s windows; {PUBLISHERS} lightweight publishers over 3 chat nodes, "
              f"each with up to {PUB_WINDOW} messages unacknowledged, and {NODES} "
              f"receivers, one room; acked after replication and fsync on 3 nodes; messages/s "
              f"acknowledged and delivered to every member ({many_acked:,} messages in all). "
              "Redis: as in the row above"),
    )
    # the goal is two: the ratio (checked by `row`) and the rate itself
    rate = r_many["series"].get(ACTORNET, {}).get("median")
    if r_many["goal"]["met"] is not None:
        r_many["goal"]["met"] = bool(r_many["goal"]["met"] and rate is not None
                                     and rate >= MANY_GOAL)
    return {"rows": [r, r_many], "notes": notes}


def _many_note(samples: list[Sample]) -> str:
    n = int(sum(s["messages"] for s in samples))
    lost = int(sum(s["lost"] for s in samples))
    disorder = int(sum(s["disorder"] for s in samples))
    acks = sorted(s["ack_rate"] for s in samples)
    ack = f"; acknowledgements alone: {acks[len(acks) // 2]:.0f} messages/s (median)" if acks \
        else ""
    if lost or disorder:
        return (f"chat, many publishers: MESSAGES LOST: of {n:,} acknowledged messages, "
                f"{lost:,} deliveries missing, {disorder} receivers or publishers out of "
                f"order{ack}")
    return (f"chat, many publishers: delivered: all {n:,} acknowledged messages reached every "
            f"receiver once, in each publisher's order{ack}")


def _delivery_notes(chat_samples: list[Sample], redis_samples: list[Sample],
                    dropped: list[str]) -> list[str]:
    """What was delivered; loud when anything was lost."""
    notes = []
    n = int(sum(s["messages"] for s in chat_samples))
    members = int(chat_samples[0]["members"]) if chat_samples else 0
    got = int(sum(s["deliveries"] for s in chat_samples))
    lost = int(sum(s["lost"] for s in chat_samples))
    wrong = int(sum(s["wrong"] for s in chat_samples))
    errors = int(sum(s["errors"] for s in chat_samples))
    ack_rates = sorted(s["ack_rate"] for s in chat_samples)
    if lost or wrong or errors:
        notes.append(f"chat: MESSAGES LOST: of {n:,} acknowledged messages x {members} members, "
                     f"{lost:,} deliveries never arrived, {wrong:,} arrived with another "
                     f"text, and the senders got {errors} ERROR answers")
    else:
        notes.append(f"chat: delivered: all {n:,} acknowledged messages reached all {members} "
                     f"members ({got:,} deliveries, 0 lost, in sequence order)")
    if ack_rates:
        notes.append(f"chat: acknowledgements alone: {ack_rates[len(ack_rates) // 2]:.0f} "
                     "messages/s (median)")
    if redis_samples:
        n = int(sum(s["messages"] for s in redis_samples))
        members = int(redis_samples[0]["members"])
        lost = int(sum(s["lost"] for s in redis_samples))
        gaps = int(sum(s["gaps"] for s in redis_samples))
        if lost or gaps or dropped:
            notes.append(f"chat: Redis LOST MESSAGES: of {n:,} published x {members} "
                         f"subscribers, {lost:,} never arrived, {gaps} gaps in a publisher's "
                         f"order; dropped connections: {dropped or 'none'}")
        else:
            notes.append(f"chat: Redis delivered all {n:,} published messages to all {members} "
                         "subscribers")
        pub_rates = sorted(s["ack_rate"] for s in redis_samples)
        notes.append(f"chat: Redis publishing alone: {pub_rates[len(pub_rates) // 2]:.0f} "
                     "messages/s (median)")
    return notes
