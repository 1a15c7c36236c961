"""Chatty across a network partition: both sides chat, and the heal merges them.

Three chat nodes and their clients are OS processes (the real CLI). The partition is
the transport's fault injection (`actornet.testing.partition`: every link between the
two sides cut, both ways), driven from this test's own hidden node, which stays
connected to all of them.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import actornet
from actornet import rpc, testing
from examples.chatty import room as chat_room
from examples.chatty.demo import Child, DemoFailed
from examples.chatty.history import RoomState

from .helpers import wait_until
from .test_chatty_faults import HOST, Chat, join, messages
from .test_chatty_pauses import settle_time

pytestmark = pytest.mark.timeout(180)
SETTLE = 40.0  # seconds for a heal to converge on this (noisy, 2-core) machine
GRACE = 8.0  # seconds the members of a node that went down keep their place


@pytest.fixture
def chat() -> Iterator[Chat]:
    with Chat() as c:
        yield c


@pytest.fixture
def node(chat: Chat, monkeypatch: pytest.MonkeyPatch) -> Iterator[actornet.Node]:
    """Instead of conftest's local node: a hidden node of this process, which the module
    API acts on, that reaches every chat node by name."""
    monkeypatch.setenv("ACTORNET_EPMD_PORT", str(chat.epmd_port))
    with actornet.start_node(f"ctl{os.getpid()}@{HOST}", cookie="faults", hidden=True,
                             port=0) as n:
        yield n


def full(*short: str) -> list[str]:
    return [f"{s}@{HOST}" for s in short]


def split(side_a: list[str], side_b: list[str]) -> None:
    """Cut every link between the sides; wait until each side sees only itself."""
    testing.partition(side_a, side_b)
    for side, other in ((side_a, side_b), (side_b, side_a)):
        for n in side:
            wait_until(lambda n=n, other=other: not set(rpc.call(n, actornet.nodes)) & set(other),
                       20, what=f"{n} to lose the other side")


def heal(side_a: list[str], side_b: list[str]) -> None:
    testing.heal_partition(side_a, side_b)
    everyone = sorted(side_a + side_b)
    for n in everyone:
        wait_until(lambda n=n: set(rpc.call(n, actornet.nodes)) >= set(everyone) - {n}, 20,
                   what=f"{n} to see the whole cluster again")


def say_acked(client: Child, room: str, text: str, timeout: float = 30) -> int:
    """Say `text` until the service acknowledges it (a takeover may ask to retry)."""
    deadline = time.monotonic() + timeout
    while True:
        mark = client.mark()
        client.say(text)
        m = client.expect(rf"^(OK sent {room} (\d+)|ERROR (.*))", since=mark)
        if m.group(2):
            return int(m.group(2))
        if time.monotonic() > deadline:
            raise DemoFailed(f"{client.label} could not say {text!r}: {m.group(3)}")
        with client.cond:  # "retry": give the election a moment (bounded by the deadline)
            client.cond.wait(0.2)


def histories(nodes: list[str], room: str) -> list[list[tuple[int, int, tuple[Any, ...]]]]:
    out = []
    for n in nodes:
        try:
            recs = rpc.call(n, chat_room.records, room)
        except Exception:  # a replica busy merging may not answer in time: not equal yet
            return []
        out.append([(s, e, tuple(ev)) for s, e, ev in recs])
    return out


def texts(history: list[tuple[int, int, tuple[Any, ...]]]) -> list[tuple[str, str]]:
    return [(ev[1], ev[2]) for _, _, ev in history if ev[0] == "msg"]


def shown(client: Child, room: str) -> Counter[tuple[str, str]]:
    """How many times the client printed each (nick, text) of `room`."""
    return Counter((nick, text) for _, nick, text in messages(client, room))


def wait_shown(client: Child, room: str, want: set[tuple[str, str]]) -> None:
    deadline = time.monotonic() + SETTLE
    while not want <= set(shown(client, room)):
        if time.monotonic() > deadline:
            missing = sorted(want - set(shown(client, room)))
            raise DemoFailed(f"{client.label} never showed {missing}")
        with client.cond:
            client.cond.wait(0.2)


def test_a_healed_partition_leaves_one_history_everywhere(chat: Chat, node: actornet.Node) -> None:
    """Both sides chat, like and unlike while split; after the heal every replica holds
    the same records in the same order, each client has been shown every message once,
    and the likes of both sides are merged."""
    grace = ["--grace", str(GRACE)]  # longer than the split, so it ends after the heal
    nodes = [chat.node(name, *grace, *(["--join", f"p1@{HOST}"] if name != "p1" else []))
             for name in ("p1", "p2", "p3")]
    u1, u2, u3 = (chat.client(f"u{i}", f"p{i}") for i in (1, 2, 3))
    join("split", u3, u1, u2)  # created through p3: p3 sequences the room
    first = say_acked(u1, "split", "before one")
    second = say_acked(u2, "split", "before two")
    for c in (u1, u2, u3):
        c.expect("^MSG split \\d+ u2 0 before two")
    mark = u3.mark()
    u3.say(f"/like {first}")
    u3.expect("^OK liked", since=mark)

    lonely, crowd = full("p3"), full("p1", "p2")
    split(lonely, crowd)
    # The side without the sequencer elects its own; both sides keep chatting.
    said = {("u1", f"crowd {k}") for k in range(4)} | {("u2", f"crowd2 {k}") for k in range(2)}
    said |= {("u3", f"lonely {k}") for k in range(4)}
    for k in range(4):
        say_acked(u1, "split", f"crowd {k}")
        say_acked(u3, "split", f"lonely {k}")
    for k in range(2):
        say_acked(u2, "split", f"crowd2 {k}")
    for client, cmd in ((u1, f"/like {second}"), (u3, f"/like {second}"),
                        (u3, f"/unlike {first}")):
        mark = client.mark()
        client.say(cmd)
        client.expect("^OK (liked|unliked)", since=mark)

    heal(lonely, crowd)
    everyone = full("p1", "p2", "p3")
    want = {("u1", "before one"), ("u2", "before two")} | said

    def converged() -> bool:
        h = histories(everyone, "split")
        return bool(h) and h[0] == h[1] == h[2] and want <= set(texts(h[0]))

    wait_until(converged, SETTLE, 0.2, "every replica to hold one merged history")
    history = histories(everyone, "split")[0]
    assert [s for s, _, _ in history] == list(range(1, len(history) + 1)), "numbered 1, 2, 3..."
    assert Counter(texts(history)) == Counter(want), "every message once, none lost, none new"
    by_sender = {"u1": ["before one", *(f"crowd {k}" for k in range(4))],
                 "u2": ["before two", *(f"crowd2 {k}" for k in range(2))],
                 "u3": [f"lonely {k}" for k in range(4)]}
    for nick, sent in by_sender.items():  # each sender's messages in the order it sent them
        assert [text for who, text in texts(history) if who == nick] == sent
    # likes and unlikes of both sides, merged
    state = RoomState()
    for record in history:
        state.apply(*record)
    eid_of = {ev[2]: eid for _, eid, ev in history if ev[0] == "msg"}
    assert state.likes.get(eid_of["before two"]) == {"u1", "u3"}
    assert not state.likes.get(eid_of["before one"]), "u3's unlike on its side counts"
    # Every client was shown every message exactly once, including the other side's.
    for c in (u1, u2, u3):
        wait_shown(c, "split", want)
        twice = [m for m, n in shown(c, "split").items() if n > 1]
        assert not twice, f"{c.label} was shown {twice} more than once"
    # The grace the crowd's new sequencer gave u3 (its node had gone down) ends after the
    # heal: u3 is still connected, so u3 stays in the room.
    deadline = time.monotonic() + GRACE + SETTLE
    while not any(re.search(r"u3 stays: still connected", line)
                  for n in nodes[:2] for line in list(n.lines)):
        assert time.monotonic() < deadline, "the grace period never ended"
        with nodes[0].cond:
            nodes[0].cond.wait(0.2)
    mark = u1.mark()
    u1.say("/who split")
    who = u1.expect(r"^WHO split \S+ (.*)$", since=mark).group(1).split()
    assert sorted(who) == ["u1", "u2", "u3"], who
    # The merged room keeps working, in one order, for everyone.
    say_acked(u2, "split", "after the heal")
    ids = {c.label: c.expect(r"^MSG split (\d+) u2 \d+ after the heal").group(1)
           for c in (u1, u2, u3)}
    assert len(set(ids.values())) == 1, f"one number for the new message everywhere: {ids}"
    assert int(ids["u1"]) == len(history) + 1


def test_a_nickname_taken_on_both_sides_is_resolved_on_heal(
    chat: Chat, node: actornet.Node
) -> None:
    """During a split two users take the same nickname, one on each side; on heal the
    loser is told and renamed, and no two users share a name."""
    for name in ("q1", "q2", "q3"):
        chat.node(name, *(["--join", f"q1@{HOST}"] if name != "q1" else []))
    watcher = chat.client("watcher", "q2")
    join("lobby", watcher)
    side_a, side_b = full("q1"), full("q2", "q3")
    split(side_a, side_b)
    zed_a = chat.client("zed", "q1")  # one on each side: each side says the name is free
    zed_b = chat.client("zed", "q3")
    join("lobby", zed_a, zed_b)
    heal(side_a, side_b)
    # exactly one of the two is told and renamed; the other keeps the name
    deadline = time.monotonic() + SETTLE
    renamed: list[tuple[Child, re.Match[str]]] = []
    while not renamed and time.monotonic() < deadline:
        for c in (zed_a, zed_b):
            with c.cond:
                hits = [m for m in map(re.compile(r"^RENAMED zed (\S+) (.*)$").match, c.lines)
                        if m]
            renamed += [(c, m) for m in hits]
        if not renamed:
            with zed_a.cond:
                zed_a.cond.wait(0.2)
    assert len(renamed) == 1, f"one loser, told once: {[(c.label, m[0]) for c, m in renamed]}"
    loser, m = renamed[0]
    winner = zed_b if loser is zed_a else zed_a
    new = m.group(1)
    assert new == "zed-2" and "partition" in m.group(2)
    assert not any(line.startswith("RENAMED") for line in winner.lines)
    # one user per name, everywhere
    def holders() -> list[list[Any]]:
        return [rpc.call(n, _nick_holders, ["zed", new]) for n in full("q1", "q2", "q3")]

    deadline = time.monotonic() + SETTLE
    while True:  # one user per name, and every node agrees who
        seen = holders()
        if None not in seen[0] and len(set(seen[0])) == 2 and seen[0] == seen[1] == seen[2]:
            break
        assert time.monotonic() < deadline, f"holders of zed, {new} on q1, q2, q3: {seen}"
        time.sleep(0.1)  # polling the nodes' tables (bounded by the deadline)
    # the room agrees: two members, two names, and each speaks under its own
    mark = watcher.mark()
    watcher.say("/who lobby")
    who = watcher.expect(r"^WHO lobby \S+ (.*)$", since=mark).group(1).split()
    assert sorted(who) == sorted(["watcher", "zed", new]), who
    say_acked(loser, "lobby", "I was renamed")
    say_acked(winner, "lobby", "I kept my name")
    watcher.expect(rf"^MSG lobby \d+ {re.escape(new)} \d+ I was renamed")
    watcher.expect(r"^MSG lobby \d+ zed \d+ I kept my name")
    # a direct message to the name reaches the user who kept it
    mark = watcher.mark()
    watcher.say("/msg zed hello")
    watcher.expect("^OK", since=mark)
    winner.expect("^DM watcher hello")


def _nick_holders(nicks: list[str]) -> list[Any]:
    """The processes holding the global names of `nicks`, as this node sees them."""
    from actornet import global_
    from examples.chatty.service import nick_name

    return [global_.whereis_name(nick_name(n)) for n in nicks]



def test_a_member_who_resumed_elsewhere_survives_a_cut_off_sides_grace_expiry(
        chat: Chat, node: actornet.Node) -> None:
    """m1 is cut off from m2 and m3; then m3, home of `mover`, is killed, and mover resumes
    on one side. The other side cannot see that: its sequencer's grace period for m3's
    members runs out, and it must not remove mover (it asks: mover's client is alive).
    After the heal mover is still in the room, everywhere, and was never shown leaving.

    The cut is the transport's fault injection (`actornet.testing`); a packet-dropping
    cut between network namespaces can replace `split`/`heal` unchanged."""
    fast = ["--tick-time", "1", "--grace", "1.5"]
    nodes = [chat.node("m1", *fast)]
    nodes += [chat.node(n, "--join", f"m1@{HOST}", *fast) for n in ("m2", "m3")]
    watcher = chat.client("watcher", "m1", "--tick-time", "1")
    bob = chat.client("bob", "m2", "--tick-time", "1")
    mover = chat.client("mover", "m3", "--tick-time", "1")
    join("iso", watcher, bob, mover)  # created through m1: m1 sequences it
    split(full("m1"), full("m2", "m3"))
    nodes[2].kill(signal.SIGKILL)
    mover.expect(f"^RECONNECTED m[12]@{HOST}")
    # the side that did not see mover resume decides about m3's members after the grace
    deadline = time.monotonic() + SETTLE
    decided = re.compile(r"\[#iso\] mover stays|\[#iso \d+\] (leave|gone) mover")
    while not any(decided.search(x) for n in nodes[:2] for x in list(n.lines)):
        assert time.monotonic() < deadline, "no grace expiry was decided"
        with nodes[0].cond:
            nodes[0].cond.wait(0.2)
    healed = time.monotonic()
    heal(full("m1"), full("m2"))
    took = settle_time(full("m1", "m2"), ["iso"], healed)
    assert took <= 2 * 1.0, f"one sequencer for the room {took:.2f} s after the heal"
    for c in (watcher, bob, mover):
        wait_until(lambda c=c: _who(c, "iso") == ["bob", "mover", "watcher"], SETTLE, 0.2,
                   f"{c.label} to list mover in iso")
    for c in (watcher, bob, mover):
        with c.cond:
            left = [x for x in c.lines if re.match(r"^(LEAVE|KICK) iso mover", x)]
        assert not left, f"{c.label} was shown {left}"
    said = say_acked(mover, "iso", "still here")
    watcher.expect(rf"^MSG iso {said} mover 0 still here")
    bob.expect(rf"^MSG iso {said} mover 0 still here")


def _who(client: Child, room: str) -> list[str]:
    mark = client.mark()
    client.say(f"/who {room}")
    line = client.expect(rf"^(WHO {room} \S+ .*|ERROR .*)$", since=mark).group(1)
    return sorted(line.split()[3:]) if line.startswith("WHO") else []
