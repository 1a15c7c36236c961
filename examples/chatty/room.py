"""A chat room: one `Room` server per room on every node where it is used.

The room servers of one room find each other through the pg group
``("chatty.room", room)``. One of them is the room's *sequencer*, elected
through the global name ``("chatty.room", room)`` (global_ guarantees there is
one). Every change to a room (a message, a join, a leave, a like...) is sent
to the sequencer, which numbers it, hands it to every other room server of the
room and answers the client once each has it (with several such rounds in
flight, `examples.chatty.replication`): so all clients see one order per room,
and an acknowledged message is on every surviving node.
When the sequencer's node dies, the survivors race for the global name; the
winner carries on from the highest sequence number any survivor has.

During a partition each side elects its own sequencer. When it heals, global_
keeps one of the two (the other gets a ``global_name_conflict`` exit signal,
which a room server traps); the loser hands its replicas over to the winner,
which appends the events only the losing side has after its own and makes every
replica's history its own (``rebase``). Events keep a random id (eid) through
this renumbering, so clients show each event once. Every batch of events names
the record before it, so a replica whose history parted from the sequencer's
says so (``diverged``) instead of silently skipping what it thinks it has.

Every replica compares, once a tick, whom it follows with whom the global name
names, and mends any difference (a sequencer it missed, a name nobody holds), so
after a pause, a cut or a restart a room has one sequencer again within about a
tick of the nodes meeting. A publish that reaches a replica while no sequencer
is known (an election) waits for one instead of failing.

Members whose node went down keep their place for a grace period; then the
sequencer asks whether their clients are really gone (`examples.chatty.liveness`)
and only on evidence publishes ``("gone", ...)``, which removes a member only if
it has not resumed elsewhere meanwhile.

Each room server delivers the room's events, in sequence order, to the
clients that joined through its node. This module holds the replica's half of a
room server; the sequencer's half (election, numbering, replication, merges) is
`examples.chatty.sequencer`.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import actornet
from actornet import NOREPLY, GenServer, pg

from . import storage
from .events import describe, describe_all, messages
from .history import HISTORY_LIMIT, Record, RoomState, event_problem
from .sequencer import RoomConfig, Sequencer, group, leader_name, local_name
from .window import Window

log = logging.getLogger("chatty")


def _records_problem(records: Any) -> str | None:
    """Why `records` from another replica is not a list of ``[seq, eid, event]`` records."""
    if not isinstance(records, list):
        return "records must be a list"
    for record in records:
        if not (isinstance(record, (list, tuple)) and len(record) == 3
                and all(isinstance(x, int) and not isinstance(x, bool) for x in record[:2])):
            return f"malformed record {str(record)[:100]}"
        why = event_problem(tuple(record[2]) if isinstance(record[2], (list, tuple))
                            else record[2])
        if why is not None:
            return why
    return None


class RoomLimit(actornet.ActornetError):
    """This node runs as many room servers as it may."""


_MEMBERSHIP = ("join", "leave", "gone", "kick", "move")  # events that change who is in

# The requests a room server answers, and how many elements each has (its name included).
_ARITY = {"sync": 1, "state": 1, "rebase": 2, "merge": 2, "publish": 2,
          "forwarded": 2, "history": 2, "records": 1, "info": 1, "member": 2}


class Room(Sequencer, GenServer):
    """One node's replica of a room, and its sequencer if it holds the global name."""

    def init(self, room: str, config: RoomConfig | None = None) -> None:
        actornet.trap_exit(True)
        self.room = room
        self.config = config or RoomConfig()
        self.state = RoomState(HISTORY_LIMIT)
        self.leader: actornet.Pid | None = None
        self.leader_ref: actornet.Ref | None = None
        # Replicas that synced from us as sequencer: pg may not list them here yet.
        self.synced: set[actornet.Pid] = set()
        # numbered, not yet replicated: (record, members it removed, caller to answer)
        self.pending: list[tuple[Record, list[tuple[actornet.Pid, str]], Any]] = []
        self.flush_queued = False
        self.window = Window(self.config.window)  # rounds replicated, not all answered
        self.watched: dict[actornet.Pid, actornet.Ref] = {}  # replicas monitored for them
        self.diverged: set[actornet.Pid] = set()  # replicas to rebase once it is empty
        self.draining = False
        # as a replica: answers to the sequencer's rounds, sent after one fsync for all
        self.acks_due: list[tuple[actornet.Pid, int, Any]] = []
        self.acks_queued = False
        # publishes that came while no sequencer was known: (event, caller, give up at)
        self.held: list[tuple[tuple[Any, ...], Any, float]] = []
        # publishes passed on to the sequencer we follow, maybe not answered yet: if it
        # goes, their callers are told they may have gone through (event kind, caller)
        self.forwarded: deque[tuple[str, Any, float]] = deque()
        self.expiring: set[str] = set()  # homes whose members' grace period runs
        self.seen_down: set[str] = set()  # homes seen going down, their members in question
        self.unnamed = 0  # checks in a row that found the name free while we follow someone
        self.log = storage.open_room(room)
        if self.log is not None:
            self._recover(self.log)
        actornet.monitor_nodes(True)
        self._elect()
        # Joined after the first sync: the sequencer's events reach us from now
        # on, and a gap (an event between the sync and the join) is filled on demand.
        pg.join(group(self.room), self.gen_pid)
        self.check_ref = actornet.make_ref()
        self._arm_check()

    def _recover(self, log_: storage.RoomLog) -> None:
        """Rebuild this replica from its log on disk (a restart)."""
        for seq, eid, event in log_.replay():
            if seq == self.state.seq + 1:
                self.state.apply(seq, eid, event)
        if self.state.seq:
            print(f"[#{self.room}] recovered {self.state.seq} events from {log_.path}",
                  flush=True)

    def terminate(self, reason: Any) -> None:
        if self.log is not None:
            self.log.close()

    # -- requests ------------------------------------------------------------------------

    def handle_call(self, request: Any, from_: Any) -> Any:
        if (not isinstance(request, tuple) or not request or not isinstance(request[0], str)
                or _ARITY.get(request[0]) != len(request)):
            return ("error", f"malformed room request {str(request)[:200]}")
        match request:
            case ("sync",):
                self.synced.add(from_[0])  # it must get every event after this state
                return self.state.to_wire()
            case ("state",):
                return self.state.to_wire()
            case ("rebase", dict(wire)):  # from a sequencer: take its history, after
                self._commit()  # giving it ours (its last events count as ours)
                try:
                    theirs = RoomState.from_wire(wire)
                except (KeyError, TypeError, ValueError) as e:
                    return ("error", f"malformed room state: {str(e)[:100]}")
                extras = self.state.unknown_to(theirs)
                if extras:
                    return ("extras", extras)
                self._follow(from_[0])
                self._adopt(theirs)
                return ("ok", self.state.seq)
            case ("merge", list(records)):  # to the sequencer: events only the caller's side has
                if self.leader != self.gen_pid:
                    return ("error", "this room server is not the sequencer; retry")
                why = _records_problem(records)
                if why is not None:
                    return ("error", why)
                self._take_in(records)
                return ("ok", self.state.seq)
            case (("publish" | "forwarded") as op, tuple(event)):
                if self.leader == self.gen_pid:
                    return self._publish(event, from_)
                if self.leader is not None and op == "publish":
                    # to our sequencer (or, for one that just lost its name, to the
                    # winner): passed on once, never back and forth
                    self._forward(event, from_)
                    return NOREPLY
                self._hold(event, from_)  # an election is under way
                return NOREPLY
            case ("history", int(n)):
                return messages(self.state, self.room, n)
            case ("records",):
                return [list(r) for r in self.state.records]
            case ("info",):
                return {"members": self.state.nicks(), "owner": self.state.owner_nick(),
                        "seq": self.state.seq, "leader": self.leader}
            case ("member", actornet.Pid() as pid):
                return pid in self.state.members
        return ("error", f"malformed room request {str(request)[:200]}")

    def handle_cast(self, request: Any) -> None:
        log.warning("room %s: dropped an unexpected cast %.200r", self.room, request)

    def handle_info(self, msg: Any) -> None:
        match msg:
            case ("DOWN", ref, _, pid, reason) if ref == self.leader_ref:
                log.warning("room %s: sequencer %r is gone (%s); electing", self.room, pid,
                            reason)
                self.leader_ref = None
                self.leader = None
                self._sequencer_gone("went down" if reason == "noconnection"
                                     else f"exited ({str(reason)[:80]})")
                self._take_over()
            case ("EXIT", _, ("global_name_conflict", name)) if name == leader_name(self.room):
                self._lost_name()
            case ("rejoin", list(pids)):
                # replicas of the other side of a healed split, or one that followed
                # another: take in their events and make their history ours
                if self.leader == self.gen_pid:
                    self.synced.update(p for p in pids if isinstance(p, actornet.Pid))
                    self._rebase_all(self._followers())
            case ("find_winner", list(followers), int(tries)):
                if self.leader is None:
                    self._rejoin(followers, tries)
            case ("replicate", actornet.Pid() as sequencer, int(number), list(batch),
                  (int(), (int() | None)) as prev):  # a round, from the sequencer
                why = _records_problem(batch)
                self._ack_later(sequencer, number,
                                ("error", why) if why else self._receive_events(batch, prev))
            case ("acks",):
                self._send_acks()
            case ("flush",):
                self.flush_queued = False
                self._flush()
            case ("replicated", int(number), actornet.Pid() as pid, answer):
                self._replicated(number, pid, answer)
            case ("round_timeout", int(number)):
                self._round_timeout(number)
            case ("DOWN", ref, _, actornet.Pid() as pid, _) if self.watched.get(pid) == ref:
                self._replica_down(pid)  # a replica we sent rounds to
            case ("elect",):
                if self.leader is None:
                    self._take_over()
            case ("check", ref) if ref == self.check_ref:  # our timer's, not a copy's
                self._check()
                self._arm_check()
            case ("held",):
                self._expire_held()
            case ("expire", str(home)):
                self._expire(home)
            case ("verdict", str(home), list(pids), (set(), set()) | None as verdict):
                self._verdict(home, pids, verdict)
            case ("tell_members", actornet.Pid() as server):  # a restarted chat server
                for pid in self._members_here():
                    actornet.send(server, ("membership", self.room, pid, True))
            case ("nodedown", str(node)):
                self.seen_down.add(node)
                if self.leader == self.gen_pid:
                    self._grace_for(node)
            case ("nodeup", _) if self.leader == self.gen_pid:
                # a healed link: once pg lists the replicas there, make sure they agree
                actornet.send_after(1.0, self.gen_pid, ("agree",))
            case ("agree",):
                if self.leader == self.gen_pid:
                    self._rebase_all(self._followers())
            case ("EXIT" | "nodeup" | "nodedown" | "DOWN", *_):
                pass
            case _:
                log.warning("room %s: dropped an unexpected message %.200r", self.room, msg)

    # -- replicas --------------------------------------------------------------------------

    def _receive_events(self, batch: list[Any], prev: tuple[int, int | None]) -> Any:
        mine = self.state.eid_at(prev[0])
        if prev[1] is not None and mine is not None and mine != prev[1]:
            return ("diverged", self.state.seq)  # the histories parted before this batch
        for seq, eid, event in batch:
            if seq <= self.state.seq:
                mine = self.state.eid_at(seq)
                if mine is not None and mine != eid:
                    return ("diverged", self.state.seq)
                continue  # already have it
            if seq != self.state.seq + 1:
                return ("gap", self.state.seq)
            self._apply(seq, eid, tuple(event))
        return ("ok", self.state.seq)

    def _ack_later(self, sequencer: actornet.Pid, number: int, answer: Any) -> None:
        """Answer round `number` once the rounds already in our mailbox are applied too:
        one fsync for them all (the replica's group commit)."""
        self.acks_due.append((sequencer, number, answer))
        if not self.acks_queued:
            self.acks_queued = True
            actornet.send(self.gen_pid, ("acks",))

    def _send_acks(self) -> None:
        self.acks_queued = False
        acks, self.acks_due = self.acks_due, []
        self._sync_log()  # on disk before the sequencer counts it acknowledged
        for sequencer, number, answer in acks:
            actornet.send(sequencer, ("replicated", number, self.gen_pid, answer))

    def _adopt(self, theirs: RoomState) -> None:
        """Make `theirs` our history; show local clients what they have not seen."""
        if theirs.extends(self.state) and theirs.first_seq() <= self.state.seq + 1:
            for record in [r for r in theirs.records if r[0] > self.state.seq]:
                self._apply(*record)
            self._sync_log()
            return
        base = self.state.common_prefix(theirs)
        before = self._members_here()
        self.state = theirs
        self._report_members(before)
        if self.log is not None:
            self.log.rewrite(list(theirs.records))
        here = self.gen_node.name
        after = describe_all(theirs, self.room, [r for r in theirs.records if r[0] > base])
        for pid, (_, home) in theirs.members.items():
            if home == here:
                actornet.send(pid, ("merged", self.room, after, theirs.seq))
        print(f"[#{self.room}] history merged: #{base + 1}..#{theirs.seq} from the sequencer",
              flush=True)

    def _sync_log(self) -> None:
        if self.log is not None:
            self.log.sync()

    def _apply(self, seq: int, eid: int, event: tuple[Any, ...],
               deliver: bool = True) -> list[tuple[actornet.Pid, str]]:
        """Apply record `seq` to this replica, log it, and (unless told not to) show it to
        local clients; returns the members it removed, who must still hear of it."""
        before = self._members_here() if event[0] in _MEMBERSHIP else None
        gone = self.state.apply(seq, eid, event)
        if before is not None:
            self._report_members(before)
        if self.log is not None:
            self.log.append(seq, eid, event)
        if deliver:
            self._deliver(seq, eid, event, gone)
        if event[0] != "msg":
            print(f"[#{self.room} {seq}] {' '.join(str(x) for x in event[:3])}", flush=True)
        return gone

    def _members_here(self) -> set[actornet.Pid]:
        here = self.gen_node.name
        return {p for p, (_, h) in self.state.members.items() if h == here}

    def _report_members(self, before: set[actornet.Pid]) -> None:
        """Tell this node's chat server which of its clients came or went (it counts the
        rooms each is in, and knows which to leave when one quits)."""
        after = self._members_here()
        server = actornet.whereis("chatty")
        if server is not None:
            for pid in before ^ after:
                actornet.send(server, ("membership", self.room, pid, pid in after))

    def _deliver(self, seq: int, eid: int, event: tuple[Any, ...],
                 gone: list[tuple[actornet.Pid, str]]) -> None:
        here = self.gen_node.name
        if event[0] == "join" and event[3] == here:
            # the joiner gets the room's recent history first, then live events
            actornet.send(event[2], ("history", self.room,
                                     messages(self.state, self.room,
                                              self.config.history_on_join)))
        elif event[0] == "move" and event[3] == here:
            # a client resuming here gets everything after the last event it saw,
            # from this replica and before any live event: no gap, no duplicate
            missed = [r for r in self.state.records if event[4] < r[0] < seq]
            actornet.send(event[2], ("catchup", self.room,
                                     describe_all(self.state, self.room, missed)))
        out = describe(self.state, self.room, seq, eid, event)
        if out is None:
            return
        # one copy per client node, handed there to each client (as pg.broadcast does)
        self.gen_node.send_each([pid for pid, home in [
            *((p, h) for p, (_, h) in self.state.members.items()), *gone] if home == here], out)


def records(room: str) -> list[list[Any]]:
    """This node's history of `room`, ``[seq, eid, event]`` per record kept (for checks)."""
    return actornet.call(local_name(room), ("records",), timeout=10)  # type: ignore[no-any-return]


def info(room: str) -> dict[str, Any]:
    """This node's replica of `room`: its members, owner, last seq and the sequencer it
    follows (for checks)."""
    return actornet.call(local_name(room), ("info",), timeout=10)  # type: ignore[no-any-return]


def local_rooms() -> list[str]:
    """The rooms this node runs a room server for."""
    prefix = local_name("")
    return sorted(n[len(prefix):] for n in actornet.registered() if n.startswith(prefix))


def ensure(room: str, config: RoomConfig | None = None) -> actornet.Pid:
    """The local room server of `room`, started under the rooms supervisor if needed.

    Raises:
        RoomLimit: this node already runs `config.max_rooms` room servers.
    """
    pid = actornet.whereis(local_name(room))
    if pid is not None:
        return pid
    from actornet import Supervisor, child_spec

    config = config or RoomConfig()
    if len(local_rooms()) >= config.max_rooms:
        raise RoomLimit(f"this chat node already serves {config.max_rooms} rooms, its limit")
    try:
        return Supervisor.start_child("chatty.rooms", child_spec(
            room, Room, room, config, name=local_name(room), restart="transient"))
    except actornet.ActornetError:
        pid = actornet.whereis(local_name(room))
        if pid is None:
            raise
        return pid


__all__ = ["Room", "RoomConfig", "RoomLimit", "ensure", "group", "info", "leader_name",
           "local_name", "local_rooms", "records"]
