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

Each room server delivers the room's events, in sequence order, to the
clients that joined through its node.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import actornet
from actornet import NOREPLY, GenServer, global_, pg

from . import storage
from .history import HISTORY_LIMIT, Record, RoomState, new_eid

log = logging.getLogger("chatty")


def group(room: str) -> tuple[str, str]:
    return ("chatty.room", room)


def leader_name(room: str) -> tuple[str, str]:
    return ("chatty.room", room)


def local_name(room: str) -> str:
    return f"chatty.room:{room}"


class Room(GenServer):
    """One node's replica of a room, and its sequencer if it holds the global name."""

    def init(self, room: str, history_on_join: int = 50, grace: float = 10.0) -> None:
        actornet.trap_exit(True)
        self.room = room
        self.grace = grace  # seconds a client of a dead node has to resume elsewhere
        self.history_on_join = history_on_join
        self.state = RoomState(HISTORY_LIMIT)
        self.leader: actornet.Pid | None = None
        self.leader_ref: actornet.Ref | None = None
        # Replicas that synced from us as sequencer: pg may not list them here yet.
        self.synced: set[actornet.Pid] = set()
        # numbered, not yet replicated: (record, members it removed, caller to answer)
        self.pending: list[tuple[Record, list[tuple[actornet.Pid, str]], Any]] = []
        self.flush_queued = False
        self.recovered: dict[actornet.Pid, tuple[str, str]] = {}
        self.log = storage.open_room(room)
        if self.log is not None:
            self._recover(self.log)
        actornet.monitor_nodes(True)
        self._elect()
        # Joined after the first sync: the sequencer's events reach us from now
        # on, and a gap (an event between the sync and the join) is filled on demand.
        pg.join(group(self.room), self.gen_pid)

    def _recover(self, log_: storage.RoomLog) -> None:
        """Rebuild this replica from its log on disk (a restart)."""
        for seq, eid, event in log_.replay():
            if seq == self.state.seq + 1:
                self.state.apply(seq, eid, event)
        if self.state.seq:
            print(f"[#{self.room}] recovered {self.state.seq} events from {log_.path}",
                  flush=True)
        # Their clients knew this node before it restarted: they get the grace
        # period to resume, like the clients of a node that died.
        self.recovered = dict(self.state.members)

    def terminate(self, reason: Any) -> None:
        if self.log is not None:
            self.log.sync()
            self.log.close()

    # -- sequencer election ----------------------------------------------------------

    def _elect(self) -> None:
        """Become the sequencer if there is none, else follow (and catch up with) it."""
        for _ in range(100):
            leader = global_.whereis_name(leader_name(self.room))
            if leader is None:
                if pg.get_members(group(self.room)):
                    # Replicas exist: a takeover is under way. A new, empty
                    # replica must not grab the name and sequence from nothing.
                    time.sleep(0.05)
                    continue
                if global_.register_name(leader_name(self.room), self.gen_pid) == "yes":
                    self.leader = self.gen_pid
                    log.info("room %s: %r sequences from #%d", self.room, self.gen_pid,
                             self.state.seq)
                    for pid, (nick, home) in self.recovered.items():
                        actornet.send_after(self.grace, self.gen_pid,
                                            ("expire", nick, home, pid, True))
                    return
                continue
            if leader == self.gen_pid:
                self.leader = leader
                return
            try:
                # What only we have (we came back from the other side of a split, or
                # from a crash) goes to the sequencer before we take its history.
                theirs = RoomState.from_wire(actornet.call(leader, ("state",), timeout=5))
                extras = self.state.unknown_to(theirs)
                if extras:
                    actornet.call(leader, ("merge", extras), timeout=5)
                self._adopt(RoomState.from_wire(actornet.call(leader, ("sync",), timeout=5)))
            except (actornet.NoProc, actornet.NodeDown, actornet.CallError, TimeoutError):
                # that sequencer just died; its global name goes with it
                time.sleep(0.05)
                continue
            self._follow(leader)
            return
        raise actornet.ActornetError(f"room {self.room}: no sequencer could be found or elected")

    def _take_over(self) -> None:
        """The sequencer died: one survivor takes over with every event any survivor has.

        Survivors that lose the race for the global name wait: the winner
        collects every replica's state (they are idle, so this cannot deadlock),
        keeps the most advanced, and hands it to each of them (``rebase``).
        """
        if global_.register_name(leader_name(self.room), self.gen_pid) != "yes":
            leader = global_.whereis_name(leader_name(self.room))
            if leader is not None and leader != self.gen_pid:
                self._follow(leader)  # it rebases us soon; watch it meanwhile
            else:  # the name was freed again meanwhile: try once more shortly
                actornet.send_after(0.2, self.gen_pid, ("elect",))
            return
        self._follow(self.gen_pid)
        others = self._followers()
        best = self.state
        for kind, value in actornet._gen.multi_call(others, ("state",), 5.0):
            if kind == "reply" and value["seq"] > best.seq:
                best = RoomState.from_wire(value)
        if best is not self.state:
            self._adopt(best)
        self._rebase_all(others)
        here = {self.gen_node.name, *actornet.nodes()}
        for home in {h for _, h in self.state.members.values()} - here:
            self._grace_for(home)
        log.warning("room %s: %r took over as sequencer at #%d", self.room, self.gen_pid,
                    self.state.seq)

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
        if leader == self.leader and (self.leader_ref is not None or leader == self.gen_pid):
            return
        if self.leader_ref is not None:
            actornet.demonitor(self.leader_ref)
        self.leader = leader
        self.leader_ref = None if leader == self.gen_pid else actornet.monitor(leader)

    def _followers(self) -> list[actornet.Pid]:
        listed = set(pg.get_members(group(self.room)))
        self.synced -= listed  # pg knows those now
        return sorted(p for p in listed | self.synced if p != self.gen_pid)

    def _grace_for(self, home: str) -> None:
        """Members who joined through `home` (down) have a while to come back elsewhere."""
        for pid, (nick, where) in list(self.state.members.items()):
            if where == home:
                actornet.send_after(self.grace, self.gen_pid,
                                    ("expire", nick, home, pid, False))

    def _expire(self, nick: str, home: str, pid: actornet.Pid, recovered: bool) -> None:
        """The grace period of a member whose node went down (or restarted) is over."""
        if self.leader != self.gen_pid or self.state.members.get(pid) != (nick, home):
            return  # not ours to decide, or it resumed elsewhere meanwhile
        if not recovered and home in actornet.nodes():
            # its node is back (the link was cut, and healed): its client never left
            print(f"[#{self.room}] {nick} stays: {home} is reachable again", flush=True)
            return
        self._publish(("leave", nick, pid))

    # -- requests ------------------------------------------------------------------------

    def handle_call(self, request: Any, from_: Any) -> Any:
        op = request[0]
        if op == "event":  # from the sequencer
            return self._receive_events(request[1], request[2])
        if op == "sync":
            self.synced.add(from_[0])  # it must get every event after this state
            return self.state.to_wire()
        if op == "state":
            return self.state.to_wire()
        if op == "rebase":  # from a sequencer: take its history, after giving it ours
            self._commit()  # a sequencer that lost its name: its last events count as ours
            theirs = RoomState.from_wire(request[1])
            extras = self.state.unknown_to(theirs)
            if extras:
                return ("extras", extras)
            self._follow(from_[0])
            self._adopt(theirs)
            return ("ok", self.state.seq)
        if op == "merge":  # to the sequencer: events only the caller's side has
            if self.leader != self.gen_pid:
                return ("error", "this room server is not the sequencer; retry")
            self._take_in(request[1])
            return ("ok", self.state.seq)
        if op in ("publish", "forwarded"):  # to the sequencer
            if self.leader != self.gen_pid and self.leader is not None and op == "publish":
                # a sequencer that just lost its name to another: pass it on
                actornet.send(self.leader, ("$gen_call", from_, ("forwarded", request[1])))
                return NOREPLY
            return self._publish(request[1], from_)
        if op == "history":
            return self._messages(request[1])
        if op == "records":
            return [list(r) for r in self.state.records]
        if op == "info":
            return {"members": self.state.nicks(), "owner": self.state.owner_nick(),
                    "seq": self.state.seq}
        if op == "member":
            return request[1] in self.state.members
        return ("error", f"unknown room request {request!r}")

    def handle_info(self, msg: Any) -> None:
        kind = msg[0]
        if kind == "DOWN" and msg[1] == self.leader_ref:
            log.warning("room %s: sequencer %r is gone (%s); electing", self.room, msg[3], msg[4])
            self.leader_ref = None
            self.leader = None
            self._take_over()
        elif kind == "EXIT" and msg[2] == ("global_name_conflict", leader_name(self.room)):
            self._lost_name()
        elif kind == "rejoin":
            # replicas of the other side of a healed split: take in their events
            if self.leader == self.gen_pid:
                self.synced.update(msg[1])
                self._rebase_all(self._followers())
        elif kind == "find_winner":
            if self.leader is None:
                self._rejoin(msg[1], msg[2])
        elif kind == "flush":
            self.flush_queued = False
            self._commit()
        elif kind == "elect":
            if self.leader is None:
                self._take_over()
        elif kind == "expire":
            self._expire(msg[1], msg[2], msg[3], msg[4])
        elif kind == "nodedown" and self.leader == self.gen_pid:
            self._grace_for(msg[1])
        elif kind == "nodeup" and self.leader == self.gen_pid:
            # a healed link: once pg lists the replicas there, make sure they agree
            actornet.send_after(1.0, self.gen_pid, ("check",))
        elif kind == "check":
            if self.leader == self.gen_pid:
                self._rebase_all(self._followers())
        elif kind in ("EXIT", "nodeup", "nodedown"):
            pass
        else:
            super().handle_info(msg)

    # -- the sequencer ---------------------------------------------------------------------

    def _publish(self, event: tuple[Any, ...], from_: Any = None) -> Any:
        """Number `event`; it is answered ``("ok", seq)`` once every replica has it.

        For a client's call (`from_`), the answer comes at the next flush, which
        runs after the publishes already waiting in the mailbox: they share one
        fsync and one replication round (group commit)."""
        if self.leader != self.gen_pid:
            return ("error", "this room server is not the sequencer; retry")
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
            replies = actornet._gen.multi_call(followers, ("event", batch, prev), 5.0)
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
            for pid, (kind, value) in zip(
                    pids, actornet._gen.multi_call(pids, ("rebase", wire), 5.0), strict=True):
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
        self.state = theirs
        if self.log is not None:
            self.log.rewrite(list(theirs.records))
        here = self.gen_node.name
        after = [self._describe(*r) for r in theirs.records if r[0] > base]
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
        gone = self.state.apply(seq, eid, event)
        if self.log is not None:
            self.log.append(seq, eid, event)
        if deliver:
            self._deliver(seq, eid, event, gone)
        if event[0] != "msg":
            print(f"[#{self.room} {seq}] {' '.join(str(x) for x in event[:3])}", flush=True)
        return gone

    def _deliver(self, seq: int, eid: int, event: tuple[Any, ...],
                 gone: list[tuple[actornet.Pid, str]]) -> None:
        here = self.gen_node.name
        out = self._describe(seq, eid, event)
        if event[0] == "join" and event[3] == here:
            # the joiner gets the room's recent history first, then live events
            actornet.send(event[2], ("history", self.room, self._messages(self.history_on_join)))
        elif event[0] == "move" and event[3] == here:
            # a client resuming here gets everything after the last event it saw,
            # from this replica and before any live event: no gap, no duplicate
            missed = [self._describe(*r) for r in self.state.records if event[4] < r[0] < seq]
            actornet.send(event[2], ("catchup", self.room, missed))
        if out is None:
            return
        for pid, home in [*((p, h) for p, (_, h) in self.state.members.items()), *gone]:
            if home == here:
                actornet.send(pid, out)

    def _messages(self, n: int) -> list[Any]:
        """The last `n` messages of the room kept here, as clients get them."""
        msgs = [r for r in self.state.records if r[2][0] == "msg"]
        return [self._describe(*r) for r in msgs[-n:]] if n > 0 else []

    def _describe(self, seq: int, eid: int, event: tuple[Any, ...]) -> Any:
        """The message a client gets for an event (None: nothing to show yet)."""
        kind = event[0]
        room = self.room
        if kind == "msg":
            stamp = event[3] if len(event) > 3 else None
            return ("room_msg", room, seq, event[1], event[2], self.state.like_count(eid),
                    stamp, eid)
        if kind == "join":
            return ("room_join", room, seq, event[1], eid)
        if kind == "leave":
            return ("room_leave", room, seq, event[1], self.state.new_owner.get(eid), eid)
        if kind == "kick":
            return ("room_kick", room, seq, event[1], event[2], self.state.new_owner.get(eid),
                    eid)
        if kind in ("like", "unlike"):
            msg_seq = self.state.seq_of.get(event[1])
            if msg_seq is None:  # a like of a message not here yet: it counts when it comes
                return None
            return ("room_likes", room, seq, msg_seq, self.state.like_count(event[1]), eid)
        if kind == "rename":
            return ("room_rename", room, seq, event[1], event[2], eid)
        if kind == "move":
            return ("room_move", room, seq, event[1], self.state.new_owner.get(eid), eid)
        return ("room_event", room, seq, event, eid)


def records(room: str) -> list[list[Any]]:
    """This node's history of `room`, ``[seq, eid, event]`` per record kept (for checks)."""
    return actornet.call(local_name(room), ("records",), timeout=10)  # type: ignore[no-any-return]


def ensure(room: str, history_on_join: int = 50, grace: float = 10.0) -> actornet.Pid:
    """The local room server of `room`, started under the rooms supervisor if needed."""
    pid = actornet.whereis(local_name(room))
    if pid is not None:
        return pid
    from actornet import Supervisor, child_spec

    try:
        return Supervisor.start_child("chatty.rooms", child_spec(
            room, Room, room, history_on_join, grace, name=local_name(room),
            restart="transient"))
    except actornet.ActornetError:
        pid = actornet.whereis(local_name(room))
        if pid is None:
            raise
        return pid


__all__ = ["Room", "ensure", "group", "leader_name", "local_name", "records"]
