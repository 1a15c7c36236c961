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

Each room server delivers the room's events, in sequence order, to the
clients that joined through its node.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import actornet
from actornet import GenServer, global_, pg

from . import storage

log = logging.getLogger("chatty")

HISTORY_LIMIT = 1000  # events a room server keeps in memory


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
        self.seq = 0
        self.events: deque[tuple[int, tuple[Any, ...]]] = deque(maxlen=HISTORY_LIMIT)
        self.members: dict[str, tuple[actornet.Pid, str]] = {}  # nick -> (client, home node)
        self.owner: str | None = None
        self.likes: dict[int, set[str]] = {}
        self.leader: actornet.Pid | None = None
        self.leader_ref: actornet.Ref | None = None
        # Replicas that synced from us as sequencer: pg may not list them here yet.
        self.synced: set[actornet.Pid] = set()
        self.replaying = False
        self.recovered: dict[str, tuple[actornet.Pid, str]] = {}
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
        self.replaying = True
        try:
            for seq, event in log_.replay():
                if seq == self.seq + 1:
                    self._apply(seq, event)
        finally:
            self.replaying = False
        if self.seq:
            print(f"[#{self.room}] recovered {self.seq} events from {log_.path}", flush=True)
        # Their clients knew this node before it restarted: they get the grace
        # period to resume, like the clients of a node that died.
        self.recovered = dict(self.members)

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
                    log.info("room %s: %r sequences from #%d", self.room, self.gen_pid, self.seq)
                    for nick, (_, home) in self.recovered.items():
                        actornet.send_after(self.grace, self.gen_pid, ("expire", nick, home))
                    return
                continue
            if leader == self.gen_pid:
                self.leader = leader
                return
            try:
                self._load(actornet.call(leader, ("sync",), timeout=5))
            except (actornet.NoProc, actornet.NodeDown, actornet.CallError, TimeoutError):
                # that sequencer just died; its global name goes with it
                time.sleep(0.05)
                continue
            self.leader = leader
            self.leader_ref = actornet.monitor(leader)
            return
        raise actornet.ActornetError(f"room {self.room}: no sequencer could be found or elected")

    def _take_over(self) -> None:
        """The sequencer died: one survivor takes over with every event any survivor has.

        Survivors that lose the race for the global name wait: the winner
        collects every replica's state (they are idle, so this cannot deadlock),
        keeps the most advanced, and hands it to each of them (``adopt``).
        """
        if global_.register_name(leader_name(self.room), self.gen_pid) != "yes":
            leader = global_.whereis_name(leader_name(self.room))
            if leader is not None and leader != self.gen_pid:
                self.leader = leader  # it adopts us soon; watch it meanwhile
                self.leader_ref = actornet.monitor(leader)
            else:  # the name was freed again meanwhile: try once more shortly
                actornet.send_after(0.2, self.gen_pid, ("elect",))
            return
        self.leader = self.gen_pid
        others = [p for p in pg.get_members(group(self.room)) if p != self.gen_pid]
        best = self._state()
        for kind, value in actornet._gen.multi_call(others, ("state",), 5.0):
            if kind == "reply" and value["seq"] > best["seq"]:
                best = value
        self._catch_up(best)
        actornet._gen.multi_call(others, ("adopt", self._state()), 5.0)
        here = {self.gen_node.name, *actornet.nodes()}
        for home in {h for _, h in self.members.values()} - here:
            self._grace_for(home)
        log.warning("room %s: %r took over as sequencer at #%d", self.room, self.gen_pid,
                    self.seq)

    def _catch_up(self, state: dict[str, Any]) -> None:
        """Apply (and show local clients) the events of `state` this replica lacks."""
        missing = [tuple(e) for e in state["events"] if e[0] > self.seq]
        if missing and missing[0][0] != self.seq + 1:
            self._load(state)  # too far behind for the events kept: take the state whole
            return
        for seq, event in missing:
            self._apply(seq, tuple(event))
        self._sync_log()

    def _grace_for(self, home: str) -> None:
        """Members who joined through `home` (down) have a while to come back elsewhere."""
        for nick, (_, where) in list(self.members.items()):
            if where == home:
                actornet.send_after(self.grace, self.gen_pid, ("expire", nick, home))

    def _expire(self, nick: str, home: str) -> None:
        entry = self.members.get(nick)
        if self.leader == self.gen_pid and entry is not None and entry[1] == home:
            self._publish(("leave", nick))

    def _state(self) -> dict[str, Any]:
        return {"seq": self.seq, "events": list(self.events), "members": dict(self.members),
                "owner": self.owner, "likes": {k: sorted(v) for k, v in self.likes.items()}}

    def _load(self, state: dict[str, Any]) -> None:
        self.seq = state["seq"]
        self.events = deque((tuple(e) for e in state["events"]), maxlen=HISTORY_LIMIT)
        self.members = {k: tuple(v) for k, v in state["members"].items()}  # type: ignore[misc]
        self.owner = state["owner"]
        self.likes = {k: set(v) for k, v in state["likes"].items()}
        if self.log is not None:
            self.log.rewrite(list(self.events))

    # -- requests ------------------------------------------------------------------------

    def handle_call(self, request: Any, from_: Any) -> Any:
        op = request[0]
        if op == "event":  # from the sequencer
            return self._receive_events(request[1])
        if op == "sync":
            self.synced.add(from_[0])  # it must get every event after this state
            return self._state()
        if op == "state":
            return self._state()
        if op == "adopt":  # from a sequencer that just took over
            self._catch_up(request[1])
            self.leader = from_[0]
            if self.leader_ref is not None:
                actornet.demonitor(self.leader_ref)
            self.leader_ref = actornet.monitor(self.leader)
            return "ok"
        if op == "since":
            return [self._describe(seq, ev) for seq, ev in self.events if seq > request[1]]
        if op == "publish":  # to the sequencer
            return self._publish(request[1])
        if op == "history":
            n = request[1]
            msgs = [(seq, e) for seq, e in self.events if e[0] == "msg"]
            return [self._describe(seq, ev) for seq, ev in msgs[-n:]] if n > 0 else []
        if op == "info":
            return {"members": sorted(self.members), "owner": self.owner, "seq": self.seq}
        return ("error", f"unknown room request {request!r}")

    def handle_info(self, msg: Any) -> None:
        if msg[0] == "DOWN" and msg[1] == self.leader_ref:
            log.warning("room %s: sequencer %r is gone (%s); electing", self.room, msg[3], msg[4])
            self.leader_ref = None
            self.leader = None
            self._take_over()
        elif msg[0] == "elect":
            if self.leader is None:
                self._take_over()
        elif msg[0] == "expire":
            self._expire(msg[1], msg[2])
        elif msg[0] == "nodedown" and self.leader == self.gen_pid:
            self._grace_for(msg[1])
        elif msg[0] in ("EXIT", "nodeup", "nodedown"):
            pass
        else:
            super().handle_info(msg)

    # -- the sequencer ---------------------------------------------------------------------

    def _publish(self, event: tuple[Any, ...]) -> Any:
        if self.leader != self.gen_pid:
            return ("error", "this room server is not the sequencer; retry")
        error = self._check(event)
        if error:
            return ("error", error)
        self.seq += 1
        self._apply(self.seq, event)
        self._sync_log()
        # Answer only once every replica has the event: acknowledged = replicated.
        batch = [(self.seq, event)]
        listed = set(pg.get_members(group(self.room)))
        self.synced -= listed  # pg knows those now
        followers = [p for p in listed | self.synced if p != self.gen_pid]
        for _ in range(3):
            lagging: dict[actornet.Pid, int] = {}
            for pid, (kind, value) in zip(
                    followers, actornet._gen.multi_call(followers, ("event", batch), 5.0),
                    strict=True):
                if kind == "reply" and value[0] == "gap":
                    lagging[pid] = value[1]  # a replica that joined late: send what it lacks
                elif kind != "reply":
                    self.synced.discard(pid)
            if not lagging:
                break
            followers = list(lagging)
            since = min(lagging.values())
            batch = [e for e in self.events if e[0] > since]
        return ("ok", self.seq)

    def _check(self, event: tuple[Any, ...]) -> str | None:
        kind = event[0]
        if kind == "msg" and event[1] not in self.members:
            return f"{event[1]} is not in room {self.room}"
        if kind in ("like", "unlike"):
            _, msg_id, nick = event
            if not any(seq == msg_id and ev[0] == "msg" for seq, ev in self.events):
                return f"no message #{msg_id} in room {self.room}"
            if nick not in self.members:
                return f"{nick} is not in room {self.room}"
        if kind == "kick":
            _, target, by = event
            if by != self.owner:
                return f"only the owner of {self.room} ({self.owner}) can kick"
            if target not in self.members:
                return f"{target} is not in room {self.room}"
        if kind in ("leave", "move") and event[1] not in self.members:
            return f"{event[1]} is not in room {self.room}"
        return None

    # -- replicas --------------------------------------------------------------------------

    def _receive_events(self, numbered: list[tuple[int, tuple[Any, ...]]]) -> Any:
        for seq, event in numbered:
            if seq <= self.seq:
                continue  # already have it
            if seq != self.seq + 1:
                return ("gap", self.seq)
            self._apply(seq, tuple(event))
        self._sync_log()  # on disk before the sequencer counts it acknowledged
        return ("ok", self.seq)

    def _sync_log(self) -> None:
        if self.log is not None:
            self.log.sync()

    def _apply(self, seq: int, event: tuple[Any, ...]) -> None:
        """Apply event number `seq` to this replica and show it to local clients."""
        self.seq = seq
        self.events.append((seq, event))
        if self.log is not None and not self.replaying:
            self.log.append(seq, event)
        kind = event[0]
        also: list[tuple[actornet.Pid, str]] = []  # who must hear it though no longer a member
        if kind == "join":
            _, nick, pid, home = event
            if self.owner is None:
                self.owner = nick
            self.members[nick] = (pid, home)
        elif kind in ("leave", "kick"):
            gone = self.members.pop(event[1], None)
            if gone is not None:
                also.append(gone)
        elif kind == "like":
            self.likes.setdefault(event[1], set()).add(event[2])
        elif kind == "unlike":
            self.likes.get(event[1], set()).discard(event[2])
        elif kind == "move":  # the client resumed through another node
            _, nick, pid, home, _last = event
            self.members[nick] = (pid, home)
        elif kind == "rename":
            _, old, new, pid = event
            if old in self.members:
                self.members[new] = (pid, self.members.pop(old)[1])
            if self.owner == old:
                self.owner = new
        if self.replaying:
            return
        self._deliver(seq, event, also)
        if kind != "msg":
            print(f"[#{self.room} {seq}] {' '.join(str(x) for x in event[:3])}", flush=True)

    def _deliver(self, seq: int, event: tuple[Any, ...],
                 also: list[tuple[actornet.Pid, str]]) -> None:
        here = self.gen_node.name
        out = self._describe(seq, event)
        if event[0] == "join" and event[3] == here:
            # the joiner gets the room's recent history first, then live events
            history = [self._describe(s, e) for s, e in self.events if e[0] == "msg"]
            actornet.send(event[2], ("history", self.room, history[-self.history_on_join:]))
        elif event[0] == "move" and event[3] == here:
            # a client resuming here gets everything after the last event it saw,
            # from this replica and before any live event: no gap, no duplicate
            missed = [self._describe(s, e) for s, e in self.events if event[4] < s < seq]
            actornet.send(event[2], ("catchup", self.room, missed))
        for pid, home in [*self.members.values(), *also]:
            if home == here:
                actornet.send(pid, out)

    def _describe(self, seq: int, event: tuple[Any, ...]) -> tuple[Any, ...]:
        """The message a client gets for an event."""
        kind = event[0]
        room = self.room
        if kind == "msg":
            return ("room_msg", room, seq, event[1], event[2], len(self.likes.get(seq, ())))
        if kind == "join":
            return ("room_join", room, seq, event[1])
        if kind == "leave":
            return ("room_leave", room, seq, event[1])
        if kind == "kick":
            return ("room_kick", room, seq, event[1], event[2])
        if kind in ("like", "unlike"):
            return ("room_likes", room, seq, event[1], len(self.likes.get(event[1], ())))
        if kind == "rename":
            return ("room_rename", room, seq, event[1], event[2])
        if kind == "move":
            return ("room_move", room, seq, event[1])
        return ("room_event", room, seq, event)


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


__all__ = ["Room", "ensure", "group", "leader_name", "local_name"]
