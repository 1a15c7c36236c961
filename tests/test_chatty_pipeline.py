"""A room's sequencer keeps several replication rounds in flight, and acknowledges in order.

One room server runs in the test's node, as its room's sequencer; a stand-in
replica (a plain process in the room's pg group) receives the rounds and
answers only when the test says so. So the test decides the order of the
answers, and sees what the sequencer sends meanwhile.
"""

from __future__ import annotations

import time
from typing import Any

import actornet
from actornet import pg
from examples.chatty.room import Room
from examples.chatty.sequencer import RoomConfig, group

ROOM = "pipe"
WAIT = 10.0
# A call timeout (1.5 ticks) far above the test's waits: a round held by the test is
# never given up by the sequencer's timer meanwhile.
CONFIG = RoomConfig(tick_time=40.0)


def _replica(test: actornet.Pid) -> None:
    """A stand-in replica: tells `test` of each round (its number and seqs), answers
    it when told ``("ack", number)``, then makes a round trip to the room server so
    that the test knows the answer was handled."""
    pg.join(group(ROOM), actornet.self())
    actornet.send(test, ("replica_ready",))
    rounds: dict[Any, tuple[Any, int]] = {}
    while True:
        match actornet.receive():
            case ("replicate", sequencer, number, batch, _):
                rounds[number] = (sequencer, batch[-1][0])
                actornet.send(test, ("round", number, [r[0] for r in batch]))
            case ("$gen_call", from_, ("event", batch, _)):  # a one-round-at-a-time sequencer
                number = ("call", batch[0][0])
                rounds[number] = (from_, batch[-1][0])
                actornet.send(test, ("round", number, [r[0] for r in batch]))
            case ("ack", number):
                to, last = rounds.pop(number)
                if isinstance(number, tuple):
                    actornet.reply(to, ("ok", last))
                else:
                    actornet.send(to, ("replicated", number, actornet.self(), ("ok", last)))
                    actornet.call(to, ("info",), timeout=WAIT)  # handled after the answer
                actornet.send(test, ("acked", number))
            case ("gap", number, since):  # answer that records before the round are missing
                actornet.send(rounds[number][0],
                              ("replicated", number, actornet.self(), ("gap", since)))
            case ("$gen_call", from_, _):
                actornet.reply(from_, ("error", "a stand-in replica"))
            case "stop":
                return


def _publisher(room: actornet.Pid, event: tuple[Any, ...], test: actornet.Pid) -> None:
    actornet.send(test, ("answer", event[2], actornet.call(room, ("publish", event),
                                                            timeout=WAIT)))


def _next_round() -> tuple[Any, list[int]]:
    _, number, seqs = actornet.receive(lambda m: m[0] == "round", timeout=WAIT)
    return number, seqs


def _ack(replica: actornet.Pid, number: Any) -> None:
    actornet.send(replica, ("ack", number))
    actornet.receive(lambda m: m == ("acked", number), timeout=WAIT)


def _shown() -> list[tuple[int, str]]:
    """The room's messages delivered to the test so far: (seq, text)."""
    out: list[tuple[int, str]] = []
    while True:
        try:
            msg = actornet.receive(lambda m: m[0] == "room_msg", timeout=0)
        except actornet.Timeout:
            return out
        out.append((msg[2], msg[4]))


def test_later_rounds_go_out_while_one_is_unanswered_and_are_acknowledged_in_order() -> None:
    me = actornet.self()
    room = Room.start(ROOM, CONFIG)
    replica = actornet.spawn(_replica, me)
    try:
        actornet.receive(lambda m: m == ("replica_ready",), timeout=WAIT)
        join = ("join", "ann", me, actornet.node())
        actornet.spawn(_publisher, room, join, me)
        number, _ = _next_round()
        _ack(replica, number)
        assert actornet.receive(lambda m: m[0] == "answer", timeout=WAIT)[2] == ("ok", 1)

        # m0 goes out in a round the replica holds; m1 and m2 are published after it
        actornet.spawn(_publisher, room, ("msg", "ann", "m0", time.time()), me)
        held, seqs = _next_round()
        assert seqs == [2]
        actornet.spawn(_publisher, room, ("msg", "ann", "m1", time.time()), me)
        later = [_next_round()]  # a one-round-at-a-time sequencer never sends it
        actornet.spawn(_publisher, room, ("msg", "ann", "m2", time.time()), me)
        if later[0][1] != [3, 4]:  # m2 in a round of its own, unless it joined m1's
            later.append(_next_round())
        assert [s for _, seqs in later for s in seqs] == [3, 4]

        for number, _ in reversed(later):  # the later rounds answered first
            _ack(replica, number)
        assert _shown() == [], "nothing is shown before the round before it is answered"
        _ack(replica, held)
        answers = {}
        for _ in range(3):
            _, text, answer = actornet.receive(lambda m: m[0] == "answer", timeout=WAIT)
            answers[text] = answer
        assert answers == {"m0": ("ok", 2), "m1": ("ok", 3), "m2": ("ok", 4)}
        assert _shown() == [(2, "m0"), (3, "m1"), (4, "m2")], "in order, each once"
    finally:
        actornet.send(replica, "stop")
        actornet.GenServer.stop(room)


def test_a_round_waits_no_longer_for_a_replica_that_went_down() -> None:
    me = actornet.self()
    room = Room.start(ROOM, CONFIG)
    replica = actornet.spawn(_replica, me)
    try:
        actornet.receive(lambda m: m == ("replica_ready",), timeout=WAIT)
        actornet.spawn(_publisher, room, ("join", "bob", me, actornet.node()), me)
        _next_round()
        actornet.exit(replica, "kill")  # it never answers: the sequencer sees it go
        assert actornet.receive(lambda m: m[0] == "answer", timeout=WAIT)[2] == ("ok", 1)
    finally:
        actornet.GenServer.stop(room)


def test_a_replica_that_lacks_records_gets_them_before_its_answer_counts() -> None:
    me = actornet.self()
    room = Room.start(ROOM, CONFIG)
    replica = actornet.spawn(_replica, me)
    try:
        actornet.receive(lambda m: m == ("replica_ready",), timeout=WAIT)
        actornet.spawn(_publisher, room, ("join", "cid", me, actornet.node()), me)
        number, _ = _next_round()
        _ack(replica, number)
        actornet.receive(lambda m: m[0] == "answer", timeout=WAIT)
        actornet.spawn(_publisher, room, ("msg", "cid", "late", time.time()), me)
        number, seqs = _next_round()
        assert seqs == [2]
        actornet.send(replica, ("gap", number, 0))  # "I have nothing": a late joiner
        assert _next_round() == (number, [1, 2]), "what it lacks, up to the round's end"
        _ack(replica, number)
        assert actornet.receive(lambda m: m[0] == "answer", timeout=WAIT)[2] == ("ok", 2)
    finally:
        actornet.send(replica, "stop")
        actornet.GenServer.stop(room)
