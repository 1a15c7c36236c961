"""Chatty nodes restarted as the docs start them (issue #18, findings 1 and 7).

Every chat node and client is an OS process (the real CLI). A node restarted with
``python -m examples.chatty node --name NAME`` (no ``--join``) finds the chat nodes it
remembers in its data directory, syncs its rooms from them before it serves anyone,
numbers nothing of its own and removes nobody; a node that finds no peer says so,
and serves alone only when no known peer can be running (or after
``--wait-for-peers``). A client resuming through another node while its rooms elect
a new sequencer is told ok only once every room has its move: an acknowledged
message is never missing at a live member.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator

import pytest

import actornet
from actornet import rpc
from examples.chatty import room as chat_room
from examples.chatty.demo import Child, DemoFailed  # noqa: F401  (Child: for types)

from .cluster import ROOT
from .helpers import wait_until
from .test_chatty_faults import HOST, Chat, join, messages

pytestmark = pytest.mark.timeout(150)
FAST = ["--tick-time", "1"]
# What a node says when it looks for its cluster at start (docs/chatty.md quotes each).
SAYS = {
    "joined": r"^chatty: joined the cluster through ",
    "first": r"^chatty: no other chat node known: serving alone",
    "none runs": r"^chatty: none of the chat nodes it knows runs \(",
    "waiting": r"^chatty: waiting for \S+: may be running",
    "gave up": r"^chatty: \S+ may be running but did not answer within \d+ s: serving alone",
}


@pytest.fixture
def chat() -> Iterator[Chat]:
    with Chat() as c:
        yield c


@pytest.fixture
def node(chat: Chat, monkeypatch: pytest.MonkeyPatch) -> Iterator[actornet.Node]:
    """A hidden node of this process that reaches every chat node by name (for checks)."""
    monkeypatch.setenv("ACTORNET_EPMD_PORT", str(chat.epmd_port))
    with actornet.start_node(f"ctl{os.getpid()}@{HOST}", cookie="faults", hidden=True,
                             port=0) as n:
        yield n


def records(name: str, room: str) -> list[tuple[int, int, tuple]]:
    return [(s, e, tuple(ev)) for s, e, ev in rpc.call(f"{name}@{HOST}", chat_room.records,
                                                       room, timeout=5)]


def test_a_node_restarted_as_the_docs_start_it_rejoins_and_catches_up_before_serving(
        chat: Chat, node: actornet.Node) -> None:
    """r1 sequences the room; it is SIGKILLed, its client resumes elsewhere, the room
    goes on; r1 restarted without --join finds r2 and r3 itself, syncs the room before
    it serves, numbers nothing of its own and removes nobody."""
    short = [*FAST, "--grace", "1"]
    chat.node("r1", *short)
    chat.node("r2", "--join", f"r1@{HOST}", *short)
    chat.node("r3", "--join", f"r1@{HOST}", *short)
    alice = chat.client("alice", "r1", *FAST)
    bob = chat.client("bob", "r2", *FAST)
    join("back", alice, bob)  # created through r1: r1 sequences the room
    for k in range(3):
        alice.say(f"before {k}")
    bob.expect(r"^MSG back \d+ alice 0 before 2$")
    r1 = chat.children[0]
    r1.kill(signal.SIGKILL)
    alice.expect(f"^RECONNECTED r[23]@{HOST}")
    for k in range(3):
        bob.say(f"while r1 was down {k}")
    last = int(alice.expect(r"^MSG back (\d+) bob 0 while r1 was down 2$").group(1))
    restarted = chat.node("r1", *short)  # the docs' command: no --join
    restarted.expect(SAYS["joined"] + f".*r[23]@{HOST}")
    # before it served anyone, its replica caught up: the same records as the others'
    assert records("r1", "back") == records("r2", "back")  # r3 has no replica of it
    carol = chat.client("carol", "r1", *FAST)
    carol.say("/join back")
    for k in range(3):
        carol.expect(rf"^HIST back \d+ bob 0 \S+ while r1 was down {k}$")
    # new messages are numbered after the cluster's, once, the same for everyone
    mark = bob.mark()
    bob.say("after the restart")
    new = int(bob.expect(r"^OK sent back (\d+)$", since=mark).group(1))
    assert new > last
    for c in (alice, carol):
        c.expect(rf"^MSG back {new} bob 0 after the restart$")
    # and nobody is removed: not when its grace would have run out, not ever
    with pytest.raises(DemoFailed):
        alice.expect("^(LEAVE|KICK) back", timeout=3)
    for c in (alice, bob):
        mark = c.mark()
        c.say("/who back")
        c.expect(r"^WHO back \S+ alice bob carol$", since=mark)
    assert records("r1", "back") == records("r2", "back")


def test_a_node_that_finds_no_peer_says_so_and_serves_alone_only_when_alone(
        chat: Chat, node: actornet.Node) -> None:
    a1 = chat.node("a1", *FAST)  # a new cluster's first node
    a1.expect(SAYS["first"])
    a2 = chat.node("a2", "--join", f"a1@{HOST}", *FAST)
    a2.expect(SAYS["joined"] + f"a1@{HOST}")
    wait_until(lambda: f"a2@{HOST}" in rpc.call(f"a1@{HOST}", actornet.call, "chatty.peers",
                                                ("known",)), 10, 0.05, "a1 to remember a2")
    for n in (a2, a1):  # both stopped: a1 remembers a2, which no longer runs
        n.kill(signal.SIGTERM)
    a1 = chat.node("a1", *FAST)
    a1.expect(SAYS["none runs"] + f"a2@{HOST}\\): serving alone")
    a2 = chat.node("a2", *FAST)  # no --join: it remembers a1, which runs
    a2.expect(SAYS["joined"] + f"a1@{HOST}")
    # a2 hangs; a1 restarted finds it registered but silent: it waits, then serves
    # alone, saying so; when a2 comes back the two meet by themselves
    os.kill(a2.proc.pid, signal.SIGSTOP)
    a1.kill(signal.SIGKILL)
    a1 = chat.node("a1", *FAST, "--wait-for-peers", "2")
    a1.expect(SAYS["waiting"])
    a1.expect(SAYS["gave up"])
    assert a1.expect(SAYS["gave up"]).string.startswith(f"chatty: a2@{HOST} may be running")
    os.kill(a2.proc.pid, signal.SIGCONT)
    wait_until(lambda: f"a2@{HOST}" in rpc.call(f"a1@{HOST}", actornet.nodes), 10, 0.05,
               "a1 and a2 to meet again")


def test_the_docs_quote_what_a_node_says_when_it_looks_for_its_cluster() -> None:
    doc = (ROOT / "docs" / "chatty.md").read_text()
    section = doc.split("### Restarting a node", 1)[1].split("\n### ", 1)[0]
    quoted = re.findall(r"`(chatty: [^`]+)`", section)
    for what, pattern in SAYS.items():
        assert [q for q in quoted if re.match(pattern, q)], f"the docs do not quote {what!r}"


RUNS = 12  # burst-and-kill runs at most, until one has seen the election race
ROOMS = 4


def test_a_resume_during_an_election_is_all_or_nothing(chat: Chat, node: actornet.Node) -> None:
    """A sender bursts into rooms sequenced on k1, where the victim's client is; k1 is
    SIGKILLed mid-burst, at once or after hanging for a moment (the victim, with a
    shorter tick, then resumes while the rooms' sequencer is still k1); the victim
    resumes through another node while the rooms elect their new sequencers. Repeated
    until a run has seen that race (a resume that found no sequencer yet, or whose move
    went to a sequencer that died): every message the sender was told was sent reached
    the victim, and the victim said RECONNECTED only with every room resumed."""
    slow = ["--tick-time", "2"]
    chat.node("k1", *slow)
    chat.node("k2", "--join", f"k1@{HOST}", *slow)
    chat.node("k3", "--join", f"k1@{HOST}", *slow)
    for run in range(RUNS):
        if _burst_and_kill(chat, run, hang_first=run % 2 == 1) and run >= 1:
            return
        chat.node("k1", *slow)  # it rejoins by itself, for the next run
    raise AssertionError(f"no run of {RUNS} saw a resume race an election")


def _burst_and_kill(chat: Chat, run: int, hang_first: bool) -> bool:
    """One run; True if a resume raced an election."""
    k1 = next(c for c in reversed(chat.children) if c.label == "k1")
    victim = chat.client(f"v{run}", "k1", "--tick-time", "0.5")
    sender = chat.client(f"s{run}", "k2", "--tick-time", "2")
    rooms = [f"b{run}x{j}" for j in range(ROOMS)]
    for room in rooms:  # the victim creates them through k1: k1 sequences them
        join(room, victim, sender)
    burst = "".join(f"/join {room}\n{room} {k}\n" for k in range(40) for room in rooms)
    assert sender.proc.stdin is not None
    sender.proc.stdin.write(burst)
    sender.proc.stdin.flush()
    sender.expect(rf"^OK sent {rooms[-1]} \d+$")  # the burst is under way
    survivors = [c for c in chat.children if c.label in ("k2", "k3")]
    marks = [c.mark() for c in survivors]
    if hang_first:
        os.kill(k1.proc.pid, signal.SIGSTOP)
        victim.expect(f"^DISCONNECTED k1@{HOST}")
        # the victim's resume is on its way while k1 still sequences, until the nodes
        # see k1 hang (their tick is longer): its moves race the rooms' elections
        wait_until(lambda: any(f"[RESUME] {victim.label} " in x or "RECONNECTED" in x
                               for c in (*survivors, victim) for x in list(c.lines)),
                   20, 0.02, "the victim's resume to race the elections")
    k1.kill(signal.SIGKILL)
    victim.expect(f"^RECONNECTED k[23]@{HOST}")

    def answered() -> bool:
        return sum(1 for x in list(sender.lines) if x.startswith(("OK sent ", "ERROR "))) \
            >= 40 * ROOMS

    wait_until(answered, 60, 0.05, "the burst to be answered")
    acked = {(m[1], int(m[2])) for m in map(re.compile(r"^OK sent (\S+) (\d+)$").match,
                                           list(sender.lines)) if m}
    for room in rooms:
        want = {i for r, i in acked if r == room}

        def shown(room: str = room, want: set[int] = want) -> bool:
            return want <= {i for i, nick, _ in messages(victim, room) if nick == sender.label}

        wait_until(shown, 20, 0.05, f"{victim.label} to show every acknowledged message "
                                    f"of {room}")
    raced = any(f"[RESUME] {victim.label} " in x for n, m in zip(survivors, marks, strict=True)
                for x in list(n.lines)[m:])
    for c in (victim, sender):
        c.kill(signal.SIGKILL)
    return raced
