"""Chatty under injected faults: one order per room, no acknowledged message lost, failover.

Every node and client is an OS process (the real CLI); nodes are killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from examples.chatty.demo import Child, DemoFailed

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Chat:
    """A private port mapper, chat nodes and clients; everything killed at the end."""

    def __init__(self) -> None:
        self.epmd_port = _free_port()
        self.data = tempfile.TemporaryDirectory(prefix="chatty-faults-")
        self.env = {**os.environ, "ACTORNET_EPMD_PORT": str(self.epmd_port),
                    "ACTORNET_COOKIE": "faults", "PYTHONUNBUFFERED": "1",
                    "CHATTY_DATA_DIR": self.data.name}
        self.children: list[Child] = []
        self.closed = False
        self.t0 = time.monotonic()

    def _echo(self, label: str, line: str) -> None:
        if not self.closed:  # pytest shows it when a test fails
            print(f"{time.monotonic() - self.t0:7.3f} {label:>8} | {line}", flush=True)

    def node(self, name: str, *extra: str) -> Child:
        child = Child(name, ["node", "--name", name, "--tick-time", "3", *extra], self.env,
                      self._echo)
        self.children.append(child)
        child.expect("ready")
        return child

    def client(self, nick: str, server: str, *extra: str) -> Child:
        child = Child(nick, ["client", "--server", f"{server}@{HOST}", "--nick", nick, *extra],
                      self.env, self._echo)
        self.children.append(child)
        child.expect("^CONNECTED")
        return child

    def __enter__(self) -> Chat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.closed = True
        for child in reversed(self.children):
            child.kill(signal.SIGKILL)
        from actornet import epmd

        with contextlib.suppress(Exception):  # nothing may be running
            epmd.kill(epmd_port=self.epmd_port, timeout=2.0)
        self.data.cleanup()


@pytest.fixture
def chat() -> Iterator[Chat]:
    with Chat() as c:
        yield c


def messages(child: Child, room: str, since: int = 0) -> list[tuple[int, str, str]]:
    """(id, nick, text) of every MSG line of `room` a client printed."""
    rx = re.compile(rf"^MSG {room} (\d+) (\S+) \d+ (.*)$")
    with child.cond:
        lines = list(child.lines[since:])
    return [(int(m[1]), m[2], m[3]) for m in map(rx.match, lines) if m]


def wait_messages(child: Child, room: str, count: int, timeout: float = 30) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = messages(child, room)
        if len(got) >= count:
            return got
        with child.cond:
            child.cond.wait(0.2)
    raise DemoFailed(f"{child.label} saw {len(messages(child, room))} of {count} messages")


def join(room: str, *clients: Child) -> None:
    for c in clients:
        c.say(f"/join {room}")
        c.expect(f"^OK joined {room}")


def test_one_order_per_room_with_concurrent_senders(chat: Chat) -> None:
    chat.node("c1")
    chat.node("c2", "--join", f"c1@{HOST}")
    chat.node("c3", "--join", f"c1@{HOST}")
    clients = [chat.client(f"u{i}", f"c{i}") for i in (1, 2, 3)]
    join("order", *clients)
    per_client = 15
    for c in clients:  # all at once: the three streams interleave
        assert c.proc.stdin is not None
        c.proc.stdin.write("".join(f"{c.label} says {k}\n" for k in range(per_client)))
        c.proc.stdin.flush()
    seen = [wait_messages(c, "order", 3 * per_client) for c in clients]
    assert seen[0] == seen[1] == seen[2], "every client sees one order"
    assert [m[0] for m in seen[0]] == sorted(m[0] for m in seen[0])
    for c in clients:  # and each sender's own messages in the order it sent them
        own = [text for _, nick, text in seen[0] if nick == c.label]
        assert own == [f"{c.label} says {k}" for k in range(per_client)]


def test_acknowledged_messages_survive_the_sequencer_node_being_killed(chat: Chat) -> None:
    n1 = chat.node("s1")
    chat.node("s2", "--join", f"s1@{HOST}")
    chat.node("s3", "--join", f"s1@{HOST}")
    sender = chat.client("sender", "s1")
    r2, r3 = chat.client("r2", "s2"), chat.client("r3", "s3")
    join("acks", sender, r2, r3)  # created on s1: s1 sequences the room
    acked: list[int] = []
    for k in range(10):
        mark = sender.mark()
        sender.say(f"before {k}")
        acked.append(int(sender.expect(r"^OK sent acks (\d+)", since=mark).group(1)))
    n1.kill(signal.SIGKILL)  # right after the last acknowledgement
    sender.expect("^RECONNECTED")
    for k in range(10):
        mark = sender.mark()
        sender.say(f"after {k}")
        m = sender.expect(r"^(OK sent acks (\d+)|ERROR .*)", since=mark)
        if m.group(2):
            acked.append(int(m.group(2)))
    assert len(acked) >= 15, "the room keeps accepting messages after the takeover"
    for receiver in (r2, r3):
        ids = {i for i, _, _ in wait_messages(receiver, "acks", len(acked))}
        assert set(acked) <= ids, f"{receiver.label} lost {sorted(set(acked) - ids)}"
    assert messages(r2, "acks") == messages(r3, "acks"), "the survivors agree on the order"


def answers(child: Child, room: str, since: int = 0) -> list[int | None]:
    """Per line a plain client sent since `since`: the number its OK gave, None for ERROR."""
    rx = re.compile(rf"^(?:OK sent {room} (\d+)|ERROR .*)$")
    with child.cond:
        lines = list(child.lines[since:])
    return [int(m[1]) if m[1] else None for m in map(rx.match, lines) if m]


def test_a_sequencer_killed_with_rounds_in_flight_loses_no_acknowledged_message(
        chat: Chat) -> None:
    n1 = chat.node("w1")
    chat.node("w2", "--join", f"w1@{HOST}")
    n3 = chat.node("w3", "--join", f"w1@{HOST}")
    senders = [chat.client(f"ws{i}", "w2") for i in range(3)]
    r2, r3 = chat.client("wr2", "w2"), chat.client("wr3", "w3")
    anchor = chat.client("wa1", "w1")
    join("win", anchor, *senders, r2, r3)  # created on w1: w1 sequences the room
    per_sender = 6
    marks = [s.mark() for s in senders]
    os.kill(n3.proc.pid, signal.SIGSTOP)  # w3 holds every round: they pile up in flight
    try:
        for s in senders:
            assert s.proc.stdin is not None
            s.proc.stdin.write("".join(f"{s.label} w{k}\n" for k in range(per_sender)))
            s.proc.stdin.flush()
        # w2 applies (and shows) each round it is sent; w3 answers none of them, so the
        # first message of every sender is in a round in flight, none acknowledged
        wait_messages(r2, "win", len(senders), timeout=10)
        assert all(answers(s, "win", m) == [] for s, m in zip(senders, marks, strict=True))
        n1.kill(signal.SIGKILL)
    finally:
        os.kill(n3.proc.pid, signal.SIGCONT)
    for s, m in zip(senders, marks, strict=True):  # every line answered, OK or ERROR
        deadline = time.monotonic() + 30
        while len(answers(s, "win", m)) < per_sender:
            assert time.monotonic() < deadline, f"{s.label}: {answers(s, 'win', m)}"
            with s.cond:
                s.cond.wait(0.2)
    acked = {}
    for s, m in zip(senders, marks, strict=True):
        for k, seq in enumerate(answers(s, "win", m)):
            if seq is not None:
                acked[seq] = (s.label, f"{s.label} w{k}")
    assert len(acked) >= len(senders) * (per_sender - 1), "the room goes on after the takeover"
    views = []
    for receiver in (r2, r3):
        deadline = time.monotonic() + 30
        while not set(acked.items()) <= {(i, (n, t)) for i, n, t in messages(receiver, "win")}:
            assert time.monotonic() < deadline, f"{receiver.label} lacks acknowledged messages"
            with receiver.cond:
                receiver.cond.wait(0.2)
        view = messages(receiver, "win")
        texts = [t for _, _, t in view]
        assert len(texts) == len(set(texts)), f"{receiver.label} shows a message twice"
        assert [i for i, _, _ in view] == sorted({i for i, _, _ in view})
        views.append(view)
    assert views[0] == views[1], "the survivors agree on one order"


def test_client_fails_over_and_misses_nothing(chat: Chat) -> None:
    chat.node("f1")
    chat.node("f2", "--join", f"f1@{HOST}")
    n3 = chat.node("f3", "--join", f"f1@{HOST}")
    talker = chat.client("talker", "f1")
    victim = chat.client("victim", "f3")
    join("fo", talker, victim)
    talker.say("one")
    victim.expect("^MSG fo \\d+ talker 0 one")
    t0 = time.monotonic()
    n3.kill(signal.SIGKILL)
    for k in range(5):  # while the victim's node is dead and it fails over
        talker.say(f"during {k}")
    victim.expect(f"^RECONNECTED f[12]@{HOST}")
    assert time.monotonic() - t0 < 3 + 5.0, "reconnected within 5 s of the node being down"
    talker.say("after")
    got = [text for _, nick, text in wait_messages(victim, "fo", 7) if nick == "talker"]
    assert got == ["one", *[f"during {k}" for k in range(5)], "after"], "no gap, no duplicate"
    victim.say("still victim")
    talker.expect("^MSG fo \\d+ victim 0 still victim")


@pytest.mark.skipif(sys.platform != "linux", reason="uses Linux process groups")
def test_members_of_a_dead_node_leave_after_the_grace_period(chat: Chat) -> None:
    chat.node("g1")
    n2 = chat.node("g2", "--join", f"g1@{HOST}")
    watcher = chat.client("watcher", "g1")
    gone = chat.client("gone", "g2")
    join("grace", watcher, gone)
    gone.kill(signal.SIGKILL)  # the client itself dies: its chat server says so at once
    watcher.expect("^LEAVE grace gone")
    assert n2.proc.poll() is None


def test_restarted_node_recovers_its_log_and_catches_up(chat: Chat) -> None:
    chat.node("p1")
    n2 = chat.node("p2", "--join", f"p1@{HOST}")
    alice = chat.client("alice", "p1")
    bob = chat.client("bob", "p2")
    join("kept", alice, bob)
    for k in range(3):
        alice.say(f"m{k}")
    wait_messages(bob, "kept", 3)
    n2.kill(signal.SIGKILL)
    bob.expect("^RECONNECTED")
    for k in range(3, 5):  # while p2 is down
        alice.say(f"m{k}")
    wait_messages(bob, "kept", 5)
    n2b = chat.node("p2", "--join", f"p1@{HOST}")
    n2b.expect(r"\[#kept\] recovered \d+ events")
    carol = chat.client("carol", "p2")
    carol.say("/join kept")
    for k in range(5):
        carol.expect(f"^HIST kept \\d+ alice 0 \\S+ m{k}$")


def test_whole_cluster_restart_keeps_history(chat: Chat) -> None:
    n1 = chat.node("w1")
    n2 = chat.node("w2", "--join", f"w1@{HOST}")
    alice = chat.client("alice", "w1")
    join("durable", alice)
    for k in range(3):
        alice.say(f"saved {k}")
    wait_messages(alice, "durable", 3)
    alice.kill(signal.SIGKILL)
    for node in (n2, n1):
        node.kill(signal.SIGTERM)
    chat.node("w1")
    chat.node("w2", "--join", f"w1@{HOST}")
    dave = chat.client("dave", "w2")
    dave.say("/join durable")
    for k in range(3):
        dave.expect(f"^HIST durable \\d+ alice 0 \\S+ saved {k}$")


def test_a_client_given_the_nodes_tick_time_stays_connected_while_idle(chat: Chat) -> None:
    """Nodes with a long tick are quiet for long; a client with the default (4 s) would
    declare its chat node down. Given the same tick, it stays connected."""
    chat.node("t1", "--tick-time", "30")  # ticks every 7.5 s
    idle = chat.client("idle", "t1", "--tick-time", "30")
    mark = idle.mark()
    with pytest.raises(DemoFailed):  # 8 s of nothing: in particular no failover, no error
        idle.expect("RECONNECTED|ERROR|is down", timeout=8, since=mark)
    join("quiet", idle)
