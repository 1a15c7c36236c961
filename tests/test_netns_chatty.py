"""The chat service across hosts (`tests.netns`): three chat nodes on alpha, beta and gamma,
clients on delta, all driven through the command line (``python -m examples.chatty``) and
its documented plain protocol; cuts drop packets silently.

A cut host's clients fail over; a partition of the chat hosts (delta keeps its links to
all, as in a split between server racks) lets both sides chat, and once the network heals
and the nodes are connected again, every node serves one merged history and a nickname
taken on both sides is resolved.
"""

from __future__ import annotations

import itertools
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from . import netns
from .netns import Lines, Net

pytestmark = pytest.mark.timeout(180)
COOKIE = "netns-chat"
TICK = "1"  # seconds, for chat nodes and clients alike: failures show fast
WAIT = 30.0  # seconds for a merge or a failover on a loaded 2-core machine
_ids = itertools.count(1)


@pytest.fixture(autouse=True)
def node() -> Iterator[None]:
    """No in-process node: everything here runs on the test hosts."""
    yield None


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    reason = netns.filter_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with Net(["alpha", "beta", "gamma", "delta"]) as n:
        yield n


class Chat:
    """Chat nodes on alpha, beta and gamma, and clients on delta, for one test."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self.tag = f"c{next(_ids)}"
        self.data = tempfile.TemporaryDirectory(prefix="chatty-netns-")
        self.children: list[Lines] = []
        self.nodes: list[str] = []
        self.node_lines: list[Lines] = []
        for i, host in enumerate(("alpha", "beta", "gamma"), 1):
            join = ["--join", self.nodes[0]] if self.nodes else []
            name = f"{self.tag}n{i}@{host}"
            node = self.start(host, name, "node", "--name", name, "--tick-time", TICK, *join)
            node.expect(rf"chatty node {name} ready on tcp://{host}:\d+")
            self.nodes.append(name)
            self.node_lines.append(node)

    def start(self, host: str, label: str, *args: str) -> Lines:
        child = self.net[host].start(label, [sys.executable, "-m", "examples.chatty", *args],
                                     env={"ACTORNET_COOKIE": COOKIE,
                                          "CHATTY_DATA_DIR": self.data.name})
        self.children.append(child)
        return child

    def client(self, nick: str, node: int) -> Lines:
        client = self.start("delta", nick, "client", "--server", self.nodes[node], "--nick",
                            nick, "--host", "delta", "--tick-time", TICK)
        client.expect(rf"CONNECTED {nick} {re.escape(self.nodes[node])}")
        return client

    def close(self) -> None:
        for child in self.children:
            child.kill()
        self.net.heal()
        self.data.cleanup()


@pytest.fixture
def chat(net: Net) -> Iterator[Chat]:
    c = Chat(net)
    try:
        yield c
    finally:
        c.close()


def join(room: str, *clients: Lines) -> None:
    for client in clients:
        client.ask(f"/join {room}", rf"OK joined {room}")


def say(client: Lines, room: str, text: str, timeout: float = WAIT) -> int:
    """Say `text` until the service acknowledges it (an election may ask to retry)."""
    deadline = time.monotonic() + timeout
    while True:
        m = client.ask(text, rf"(OK sent {room} (\d+)|ERROR (.*))")
        if m.group(2):
            return int(m.group(2))
        assert time.monotonic() < deadline, f"{client.label} could not say {text!r}: {m[0]}"
        with client.cond:  # "retry": give the election a moment (bounded by the deadline)
            client.cond.wait(0.2)


def shown(client: Lines, room: str) -> Counter[tuple[str, str]]:
    """How many times the client printed each (nick, text) of `room` as a MSG line."""
    rx = re.compile(rf"MSG {room} \d+ (\S+) \d+ (.*)")
    with client.cond:
        return Counter((m[1], m[2]) for m in map(rx.fullmatch, client.lines) if m)


def wait_shown(client: Lines, room: str, want: set[tuple[str, str]]) -> None:
    deadline = time.monotonic() + WAIT
    with client.cond:
        while not want <= set(shown(client, room)):
            remaining = deadline - time.monotonic()
            assert remaining > 0, (sorted(want - set(shown(client, room))), client.report())
            client.cond.wait(remaining)


def servers(client: Lines) -> list[str]:
    return client.ask("/servers", r"SERVERS (.*)").group(1).split()


def wait_servers(client: Lines, want: list[str]) -> None:
    deadline = time.monotonic() + WAIT
    while sorted(servers(client)) != sorted(want):
        assert time.monotonic() < deadline, client.report()
        with client.cond:
            client.cond.wait(0.1)


def history(client: Lines, room: str) -> list[tuple[int, str, str]]:
    """(id, nick, text) of the room's last 100 messages, as the client's chat node has them."""
    mark = client.say("/history 100")
    client.expect(rf"OK history {room} \d+", since=mark)
    rx = re.compile(rf"HIST {room} (\d+) (\S+) \d+ \S+ (.*)")
    with client.cond:
        return [(int(m[1]), m[2], m[3]) for m in map(rx.fullmatch, client.lines[mark:]) if m]


def reconnect(chat: Chat) -> None:
    """What an operator does after a partition heals (nothing reconnects nodes by itself, as
    in Erlang): a node that pings one chat node of each side; the mesh does the rest."""
    op = chat.net["delta"].run([sys.executable, "-m", "actornet", "node", "--name",
                                f"op{next(_ids)}@delta", "--cookie", COOKIE,
                                *(f"--connect={n}" for n in chat.nodes)])
    assert all(f"{n}: pong" in op.stdout for n in chat.nodes), op


def test_clients_fail_over_when_their_chat_host_is_cut(chat: Chat) -> None:
    """gamma's packets are dropped: the client that chatted through gamma's node resumes
    through another host's, and misses nothing the others said meanwhile."""
    talker, victim = chat.client("talker", 0), chat.client("victim", 2)
    join("fo", talker, victim)  # created through alpha's node: it sequences the room
    say(talker, "fo", "one")
    victim.expect(r"MSG fo \d+ talker 0 one")
    t0 = time.monotonic()
    chat.net.cut("gamma")
    for k in range(5):  # while the victim's node is out of reach and it fails over
        say(talker, "fo", f"during {k}")
    victim.expect(rf"RECONNECTED ({re.escape(chat.nodes[0])}|{re.escape(chat.nodes[1])})",
                  timeout=WAIT)
    assert time.monotonic() - t0 < float(TICK) * 1.125 + 5.0, "failed over soon after the cut"
    say(talker, "fo", "after")
    want = ["one", *(f"during {k}" for k in range(5)), "after"]
    wait_shown(victim, "fo", {("talker", t) for t in want})
    rx = re.compile(r"MSG fo \d+ talker \d+ (.*)")
    with victim.cond:
        got = [m[1] for m in map(rx.fullmatch, victim.lines) if m]
    assert got == want, "no gap, no duplicate, in order"
    say(victim, "fo", "still victim")
    talker.expect(r"MSG fo \d+ victim 0 still victim")


@pytest.mark.xfail(strict=False, raises=AssertionError, reason=(
    "examples/chatty: the cut node, alone, saw the client's node go and published its leave "
    "on its side; the merge after the heal replays it, so the client that failed over is "
    "out of the room ('join a room first'), in most runs (it depends on which side's "
    "sequencer the merge keeps)"))
def test_a_client_that_failed_over_stays_in_its_room_after_the_heal(chat: Chat) -> None:
    """gamma is cut from every host: its client fails over; gamma's node, alone, saw the
    client's node go, and (its side's sequencer now) says the client left. Once the cut
    heals and the nodes are together again (a ping), the client must still be in the room:
    it never left, it moved."""
    short = 10.0  # seconds: this is expected to fail for now, and should not cost long
    talker, victim = chat.client("talker", 0), chat.client("victim", 2)
    join("back", talker, victim)
    mark = chat.node_lines[2].mark()
    chat.net.cut("gamma")
    victim.expect(rf"RECONNECTED ({re.escape(chat.nodes[0])}|{re.escape(chat.nodes[1])})",
                  timeout=short)
    say(victim, "back", "failed over", short)
    talker.expect(r"MSG back \d+ victim 0 failed over", timeout=short)
    chat.node_lines[2].expect(r"\[#back \d+\] leave victim .*", since=mark, timeout=WAIT)
    chat.net.heal()
    reconnect(chat)
    wait_servers(talker, chat.nodes)
    say(victim, "back", "healed", short)
    talker.expect(r"MSG back \d+ victim 0 healed", timeout=short)


def test_a_real_partition_both_sides_chat_and_one_history_after_the_heal(chat: Chat) -> None:
    """{alpha} | {beta, gamma}, packets dropped, delta reaching all: both sides chat and a
    nickname is taken on each. After the heal, an operator's ping (as in Erlang, nothing
    reconnects nodes by itself) brings the nodes together: each client is shown every
    message once, every node serves the same history, and one of the two nicknames is
    renamed."""
    u1, u2, u3 = (chat.client(f"u{i}", i - 1) for i in (1, 2, 3))
    join("split", u1, u2, u3)
    said = {("u1", "before one"), ("u2", "before two")}
    for client, text in sorted(said):
        say({"u1": u1, "u2": u2}[client], "split", text)
    chat.net.partition(["alpha"], ["beta", "gamma"])
    wait_servers(u1, chat.nodes[:1])
    wait_servers(u2, chat.nodes[1:])
    for k in range(3):
        say(u1, "split", f"alone {k}")
        say(u2, "split", f"crowd {k}")
        said |= {("u1", f"alone {k}"), ("u2", f"crowd {k}")}
    say(u3, "split", "crowd too")
    said.add(("u3", "crowd too"))
    zed_a, zed_b = chat.client("zed", 0), chat.client("zed", 2)  # each side: the name is free
    chat.net.heal()
    t0 = time.monotonic()
    reconnect(chat)
    wait_servers(u1, chat.nodes)
    for client in (u1, u2, u3):
        wait_shown(client, "split", said)
        twice = [m for m, n in shown(client, "split").items() if n > 1]
        assert not twice, f"{client.label} was shown {twice} more than once"
    histories = [history(client, "split") for client in (u1, u2, u3)]
    assert histories[0] == histories[1] == histories[2], histories
    assert Counter((nick, text) for _, nick, text in histories[0]) == Counter(
        {m: 1 for m in said}), "every message once, none lost, none new"
    merged = time.monotonic() - t0
    renamed = []
    for client in (zed_a, zed_b):
        with client.cond:
            renamed += [line for line in client.lines if line.startswith("RENAMED zed ")]
    deadline = time.monotonic() + WAIT
    while not renamed and time.monotonic() < deadline:
        for client in (zed_a, zed_b):
            with client.cond:
                renamed += [line for line in client.lines if line.startswith("RENAMED zed ")]
                client.cond.wait(0.1)
    assert len(renamed) == 1 and renamed[0].startswith("RENAMED zed zed-2 "), (
        renamed, zed_a.report(), zed_b.report(), *(n.report() for n in chat.node_lines))
    assert merged < WAIT
