"""A chat room: one `Room` server per room on every node where it is used.

The room servers of one room find each other through the pg group
``("chatty.room", room)``. One of them is the room's *sequencer*, elected
through the global name ``("chatty.room", room)`` (global_ guarantees there is
one). Every change to a room (a message, a join, a leave, a like...) is sent
to the sequencer, which numbers it, hands it to every other room server of the
room and waits until each has it, then answers the client: so all clients see
one order per room, and an acknowledged message is on every surviving node.
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
clients that joined through its node.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import actornet
from actornet import NOREPLY, GenServer, global_, pg

from . import liveness, storage
from .events import describe, describe_all, messages
from .history import HISTORY_LIMIT, Record, RoomState, event_problem, new_eid

log = logging.getLogger("chatty")


@dataclass(frozen=True)
class RoomConfig:
    """What every room server of a node is started with."""

    history_on_join: int = 50  # messages a joiner gets
    grace: float = 10.0  # seconds a member whose node went down has to resume elsewhere
    tick_time: float = 4.0  # the node's failure detection: how long a peer may be silent
    max_rooms: int = 1000  # room servers this node runs at most

    @property
    def call_timeout(self) -> float:
        """How long a room server waits for another: a little over the failure detection,
        so a hung replica holds a room up about as long as a dead one."""
        return max(2.0, 1.5 * self.tick_time)


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


def group(room: str) -> tuple[str, str]:
    return ("chatty.room", room)


def leader_name(room: str) -> tuple[str, str]:
    return ("chatty.room", room)


def local_name(room: str) -> str:
    return f"chatty.room:{room}"


_MEMBERSHIP = ("join", "leave", "gone", "kick", "move")  # events that change who is in
_FORWARDED_KEPT = 10_000  # publishes remembered as passed on (a bound, far above a round)

# The requests a room server answers, and how many elements each has (its name included).
_ARITY = {"event": 3, "sync": 1, "state": 1, "rebase": 2, "merge": 2, "publish": 2,
          "forwarded": 2, "history": 2, "records": 1, "info": 1, "member": 2}


class Room(GenServer):
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
        # publishes that came while no sequencer was known: (event, caller, give up at)
        self.held: list[tuple[tuple[Any, ...], Any, float]] = []
        # publishes passed on to the sequencer we follow, maybe not answered yet: if it
        # goes, their callers are told they may have gone through (event kind, caller)
        self.forwarded: deque[tuple[str, Any, float]] = deque()
        self.expiring: set[str] = set()  # homes whose members' grace period runs
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

    # -- sequencer election ----------------------------------------------------------

    def _elect(self) -> None:
        """Follow (and catch up with) the sequencer, or become it if there is none.

        A new replica waits a while for a takeover under way (replicas exist but
        nobody holds the name) rather than sequence from what may be nothing; it
        never gives up: if nothing settles, it starts following nobody, and the
        periodic check settles it.
        """
        patience = time.monotonic() + 2 * self.config.tick_time
        deadline = patience + 2 * self.config.tick_time
        while time.monotonic() < deadline:
            leader = global_.whereis_name(leader_name(self.room))
            if leader is None:
                if not pg.get_members(group(self.room)) or time.monotonic() > patience:
                    if self._claim():
                        return
                    continue
            elif leader == self.gen_pid or self._sync_from(leader):
                self._follow(leader)
                return
            time.sleep(0.05)  # a takeover under way, or that sequencer just died
        log.warning("room %s: no sequencer settled within %.0f s; the periodic check will "
                    "find one", self.room, 4 * self.config.tick_time)

    def _sync_from(self, leader: actornet.Pid) -> bool:
        """Give `leader` the events only we have, then take its history; False if it went."""
        timeout = self.config.call_timeout
        try:
            # What only we have (we came back from the other side of a split, or
            # from a crash) goes to the sequencer before we take its history.
            theirs = RoomState.from_wire(actornet.call(leader, ("state",), timeout=timeout))
            extras = self.state.unknown_to(theirs)
            if extras:
                actornet.call(leader, ("merge", extras), timeout=timeout)
            self._adopt(RoomState.from_wire(actornet.call(leader, ("sync",), timeout=timeout)))
        except (actornet.NoProc, actornet.NodeDown, actornet.CallError, TimeoutError):
            return False
        return True

    def _claim(self) -> bool:
        """Take the global name and sequence, starting from the most advanced replica.

        The other replicas are idle at that moment (they wait for a sequencer), so
        collecting their states cannot deadlock. The members of every home get the
        grace period: whoever the last sequencer was, we do not know which of them
        are still there.
        """
        if global_.register_name(leader_name(self.room), self.gen_pid) != "yes":
            return False
        self._follow(self.gen_pid)
        others = self._followers()
        best = self.state
        for kind, value in actornet._gen.multi_call(others, ("state",),
                                                    self.config.call_timeout):
            if kind == "reply" and isinstance(value, dict) and value.get("seq", 0) > best.seq:
                best = RoomState.from_wire(value)
        if best is not self.state:
            self._adopt(best)
        self._rebase_all(others)
        for home in {h for _, h in self.state.members.values()}:
            self._grace_for(home)
        log.warning("room %s: %r sequences from #%d", self.room, self.gen_pid, self.state.seq)
        self._release_held()
        return True

    def _take_over(self) -> None:
        """No sequencer (it died, or the name is free): claim it, or follow whoever won."""
        if self._claim():
            return
        leader = global_.whereis_name(leader_name(self.room))
        if leader is not None and leader != self.gen_pid:
            self._follow(leader)  # it rebases us soon; watch it meanwhile
        else:  # the name was freed again meanwhile: try once more shortly
            actornet.send_after(0.2, self.gen_pid, ("elect",))

    def _lost_name(self) -> None:
        """A healed partition had two sequencers; global_ kept the other one."""
        log.warning("room %s: %r is no longer the sequencer (a partition healed); "
                    "handing over to the one kept", self.room, self.gen_pid)
        self._commit()  # what we numbered goes to our side first, then to the winner
        followers = self._followers()
        self.leader = None
        self._rejoin(followers, 50)

    def _rejoin(self, followers: list[actornet.Pid], tries: int) -> None:
        winner = global_.whereis_name(leader_name(self.room))
        if winner is not None and winner != self.gen_pid:
            self._follow(winner)
            # it takes in what only our side has, and rebases us and our followers
            actornet.send(winner, ("rejoin", [self.gen_pid, *followers]))
        elif tries > 0:
            actornet.send_after(0.1, self.gen_pid, ("find_winner", followers, tries - 1))
        else:
            self._take_over()

    def _follow(self, leader: actornet.Pid) -> None:
        """Follow `leader` (ourselves: sequence); publishes held meanwhile go to another
        leader at once, while a claim releases them once it has the best state."""
        if leader != self.leader or (self.leader_ref is None and leader != self.gen_pid):
            if self.leader_ref is not None:
                actornet.demonitor(self.leader_ref)
            self.leader = leader
            self.leader_ref = None if leader == self.gen_pid else actornet.monitor(leader)
        if leader != self.gen_pid:
            self._release_held()

    def _arm_check(self) -> None:
        self.check_ref = actornet.make_ref()
        actornet.send_after(self.config.tick_time, self.gen_pid, ("check", self.check_ref))

    def _check(self) -> None:
        """Once a tick: mend any difference between whom we follow and the global name."""
        holder = global_.whereis_name(leader_name(self.room))
        me = self.gen_pid
        if holder is not None:
            self.unnamed = 0
        if self.leader == me:
            if holder is None:  # our registration was lost (a merge of tables): take it back
                if global_.register_name(leader_name(self.room), me) != "yes":
                    self._lost_name()
            elif holder != me:  # the cluster says another sequences: hand over to it
                self._lost_name()
        elif holder is None:
            self.unnamed += 1
            if self.leader is None or self.unnamed > 1:  # not a conflict being settled
                self._take_over()
        elif holder != self.leader:
            log.warning("room %s: following %r, which the cluster names as sequencer "
                        "(was %r)", self.room, holder, self.leader)
            self._follow(holder)
            actornet.send(holder, ("rejoin", [me]))
        self._expire_held()

    def _followers(self) -> list[actornet.Pid]:
        listed = set(pg.get_members(group(self.room)))
        self.synced -= listed  # pg knows those now
        return sorted(p for p in listed | self.synced if p != self.gen_pid)

    # -- publishes passed on, and those waiting for a sequencer ------------------------

    def _forward(self, event: tuple[Any, ...], from_: Any) -> None:
        """Pass a client's publish to the sequencer, which answers it; remember it until
        the sequencer could have, to say "may have gone through" if the sequencer goes."""
        assert self.leader is not None
        now = time.monotonic()
        keep = 4 * self.config.call_timeout  # it answers well within this, or is down
        while self.forwarded and (now - self.forwarded[0][2] > keep
                                  or len(self.forwarded) > _FORWARDED_KEPT):
            self.forwarded.popleft()
        self.forwarded.append((str(event[0]), from_, now))
        actornet.send(self.leader, ("$gen_call", from_, ("forwarded", event)))

    def _sequencer_gone(self, why: str) -> None:
        """The sequencer we passed publishes to is gone: their callers hear that each may
        or may not have been done (an answer already given makes this one dropped)."""
        forwarded, self.forwarded = self.forwarded, deque()
        for kind, from_, _ in forwarded:
            if kind == "msg":
                text = (f"your message to {self.room} may have been delivered: the room's "
                        f"sequencer {why} before confirming it (it is not sent again)")
            else:
                text = (f"/{kind} in {self.room} may or may not have been done: the room's "
                        f"sequencer {why} before confirming it")
            actornet.reply(from_, ("error", text))

    def _hold(self, event: tuple[Any, ...], from_: Any) -> None:
        wait = 2 * self.config.tick_time + 1.0
        self.held.append((event, from_, time.monotonic() + wait))
        actornet.send_after(0.05, self.gen_pid, ("held",))

    def _release_held(self) -> None:
        """A sequencer is known again: pass on what waited for one."""
        if self.leader is None or not self.held:
            return
        held, self.held = self.held, []
        for event, from_, _ in held:
            if self.leader == self.gen_pid:
                answer = self._publish(event, from_)
                if answer is not NOREPLY:
                    actornet.reply(from_, answer)
            else:
                self._forward(event, from_)

    def _expire_held(self) -> None:
        now = time.monotonic()
        for event, from_, until in [h for h in self.held if h[2] <= now]:
            self.held.remove((event, from_, until))
            actornet.reply(from_, ("error", f"room {self.room} has no sequencer right now "
                                            "(an election is under way); retry"))
        if self.held:
            actornet.send_after(0.05, self.gen_pid, ("held",))

    # -- members whose node went down ------------------------------------------------------

    def _grace_for(self, home: str) -> None:
        """Members who joined through `home` have a while to come back elsewhere."""
        if home not in self.expiring:
            self.expiring.add(home)
            actornet.send_after(self.config.grace, self.gen_pid, ("expire", home))

    def _expire(self, home: str) -> None:
        """The grace period of the members of `home` is over: are they really gone?"""
        self.expiring.discard(home)
        pids = [p for p, (_, h) in self.state.members.items() if h == home]
        if self.leader == self.gen_pid and pids:
            liveness.spawn_check(self.gen_pid, ("verdict", home, pids), liveness.gone_members,
                                 home, pids, self.config.call_timeout)

    def _verdict(self, home: str, pids: list[actornet.Pid],
                 verdict: tuple[set[actornet.Pid], set[actornet.Pid]] | None) -> None:
        if self.leader != self.gen_pid:
            return  # the sequencer now is another, which runs its own grace periods
        gone, unknown = verdict if verdict is not None else (set(), set(pids))
        for pid in pids:
            entry = self.state.members.get(pid)
            if entry is None or entry[1] != home:
                continue  # it left, or resumed elsewhere, meanwhile
            if pid in gone:
                self._publish(("gone", entry[0], pid, home))
            elif pid not in unknown:
                print(f"[#{self.room}] {entry[0]} stays: still connected", flush=True)
        if unknown & set(self.state.members):
            print(f"[#{self.room}] keeping {len(unknown)} member(s) of {home}: their clients "
                  "cannot be reached to confirm they are gone; asking again later", flush=True)
            self._grace_for(home)

    # -- requests ------------------------------------------------------------------------

    def handle_call(self, request: Any, from_: Any) -> Any:
        if (not isinstance(request, tuple) or not request or not isinstance(request[0], str)
                or _ARITY.get(request[0]) != len(request)):
            return ("error", f"malformed room request {str(request)[:200]}")
        match request:
            case ("event", list(batch), (int(), (int() | None)) as prev):  # from the sequencer
                why = _records_problem(batch)
                return ("error", why) if why else self._receive_events(batch, prev)
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
            case ("flush",):
                self.flush_queued = False
                self._commit()
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
            case ("nodedown", node) if self.leader == self.gen_pid:
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

    # -- the sequencer ---------------------------------------------------------------------

    def _publish(self, event: tuple[Any, ...], from_: Any = None) -> Any:
        """Number `event`; it is answered ``("ok", seq)`` once every replica has it.

        For a client's call (`from_`), the answer comes at the next flush, which
        runs after the publishes already waiting in the mailbox: they share one
        fsync and one replication round (group commit)."""
        numbered, error = self.state.prepare(event, self.room)
        if numbered is None:
            return ("error", error)
        record = (self.state.seq + 1, new_eid(), numbered)
        gone = self._apply(*record, deliver=False)
        self.pending.append((record, gone, from_))
        if from_ is None:
            self._commit()
            return ("ok", record[0])
        if not self.flush_queued:
            self.flush_queued = True
            actornet.send(self.gen_pid, ("flush",))
        return NOREPLY

    def _commit(self) -> None:
        """`_flush`, then rebase the replicas whose history turned out to differ."""
        diverged = self._flush()
        if diverged:
            self._rebase_all(diverged)

    def _flush(self) -> list[actornet.Pid]:
        """Replicate the events numbered since the last flush, then show and answer them;
        returns the replicas whose history differs (for the caller to rebase)."""
        pending, self.pending = self.pending, []
        if not pending:
            return []
        self._sync_log()
        # Answer only once every replica has the events: acknowledged = replicated.
        diverged = self._replicate([record for record, _, _ in pending])
        for record, gone, from_ in pending:
            # Shown here only now: had this node died before, a client of it could have
            # seen an event that no survivor has, and that a new sequencer renumbers.
            self._deliver(*record, gone)
            if from_ is not None:
                actornet.reply(from_, ("ok", record[0]))
        return diverged

    def _replicate(self, batch: list[Record]) -> list[actornet.Pid]:
        """Hand `batch` to every replica and wait; returns those whose history differs."""
        followers = self._followers()
        diverged: list[actornet.Pid] = []
        for _ in range(3):
            lagging: dict[actornet.Pid, int] = {}
            prev_seq = batch[0][0] - 1
            prev = (prev_seq, self.state.eid_at(prev_seq))
            replies = actornet._gen.multi_call(followers, ("event", batch, prev),
                                               self.config.call_timeout)
            for pid, (kind, value) in zip(followers, replies, strict=True):
                if kind == "reply" and value[0] == "gap":
                    lagging[pid] = value[1]  # a replica that joined late: send what it lacks
                elif kind == "reply" and value[0] == "diverged":
                    diverged.append(pid)
                elif kind != "reply":
                    self.synced.discard(pid)
            if not lagging:
                break
            followers = list(lagging)
            since = min(lagging.values())
            batch = [r for r in self.state.records if r[0] > since]
            if not batch:
                break
        return diverged

    def _take_in(self, records: list[Any]) -> list[actornet.Pid]:
        """Number, after ours, the events of `records` we lack, and replicate them; returns
        the replicas whose history differs."""
        diverged = self._flush()
        for _, eid, event in records:
            if eid not in self.state.seq_of:
                record = (self.state.seq + 1, eid, tuple(event))
                self.pending.append((record, self._apply(*record, deliver=False), None))
        if self.pending:
            log.warning("room %s: merged %d events from the other side of a split (now #%d)",
                        self.room, len(self.pending), self.state.seq)
        return diverged + self._flush()

    def _rebase_all(self, pids: list[actornet.Pid]) -> None:
        """Make the history of each replica in `pids` ours, first taking in what only it has."""
        pids = sorted(set(pids) | set(self._flush()))
        for _ in range(5):
            if not pids:
                return
            wire = self.state.to_wire()
            again: list[actornet.Pid] = []
            diverged: list[actornet.Pid] = []
            replies = actornet._gen.multi_call(pids, ("rebase", wire), self.config.call_timeout)
            for pid, (kind, value) in zip(pids, replies, strict=True):
                if kind == "reply" and value[0] == "extras":
                    diverged += self._take_in(value[1])
                    again.append(pid)
            pids = sorted(set(again) | set(diverged))

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
        self._sync_log()  # on disk before the sequencer counts it acknowledged
        return ("ok", self.state.seq)

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
        for pid, home in [*((p, h) for p, (_, h) in self.state.members.items()), *gone]:
            if home == here:
                actornet.send(pid, out)


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
