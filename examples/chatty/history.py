"""A room's history and the state it implies: a pure, replayable machine, no I/O.

A *record* is ``(seq, eid, event)``: `seq` is the event's place in the room's
one order (1, 2, 3...), `eid` a random 63-bit id the event keeps for ever, even
when a partition merge gives it another place. Replicas of a room that applied
the same records in the same order hold the same `RoomState`: members, owner
and likes are derived from the events, never sent on their own.

The owner is a member's client process (its pid), not a nickname: a nickname
freed by the owner's quit gives whoever takes it next no right over the room.
The first member to join an empty room owns it; when the owner leaves (quits,
is kicked, or its node's grace runs out) ownership passes to the member present
longest (the earliest join among those still there), and to nobody if the room
is empty. Being derived from the records, the owner is the same on every
replica and after every merge. For each record kept that passed the room to
another member, `RoomState.new_owner` names that member (clients are told);
one that left the room empty names nobody.

Events (the tuples the sequencer numbers)::

    ("join", nick, pid, home)        home: the chat node the client came through
    ("leave", nick, pid)
    ("gone", nick, pid, home)        the member's connection through `home` was lost (its
                                     node died, or its client did): it leaves only if `home`
                                     is still its home, so a member who resumed elsewhere
                                     stays, whichever order a partition merge puts them in
    ("kick", nick, by, by_pid)       by_pid: the kicker's client (older logs: absent)
    ("msg", nick, text, time)        time: seconds since the epoch, stamped by the
                                     chat node that took the message (older logs: absent)
    ("like", msg_eid, nick) / ("unlike", msg_eid, nick)
    ("move", nick, pid, home, last)  the client resumed through another node
    ("move", nick, pid, home, last, "same_user")  a new process of the same user (a gateway
                                     session resumed with its token) takes the member's
                                     place: its seniority, and the room if it owned it
    ("rename", old, new, pid)

Likes name the message by its eid, so they survive renumbering; a like whose
message this replica has not seen yet is kept and counts once it arrives. In the
same way a rename of a client that is not a member yet (after a merge its join
can come after the rename) is kept and applies when it joins.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import actornet

__all__ = ["HISTORY_LIMIT", "Record", "RoomState", "event_problem", "new_eid"]

HISTORY_LIMIT = 1000  # records a replica keeps in memory (the disk log keeps all)

Record = tuple[int, int, tuple[Any, ...]]
_rng = random.SystemRandom()


def new_eid() -> int:
    """A fresh event id: random, so two sequencers on two sides of a split never clash."""
    return _rng.getrandbits(63)


def _is_str(x: Any) -> bool:
    return isinstance(x, str)


def _is_pid(x: Any) -> bool:
    return isinstance(x, actornet.Pid)


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _is_time(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


SAME_USER = "same_user"  # the marker of a move by a new process of the same user

# The fields of each event a sequencer numbers (after its kind); a malformed event
# would be applied by every replica, and replayed from every log on restart.
_FIELDS: dict[str, tuple[Any, ...]] = {
    "join": (_is_str, _is_pid, _is_str),
    "leave": (_is_str, _is_pid),
    "gone": (_is_str, _is_pid, _is_str),
    "kick": (_is_str, _is_str, _is_pid),
    "msg": (_is_str, _is_str, _is_time),
    "like": (_is_count, _is_str),
    "unlike": (_is_count, _is_str),
    "move": (_is_str, _is_pid, _is_str, _is_count),
    "rename": (_is_str, _is_str, _is_pid),
}


def event_problem(event: Any) -> str | None:
    """Why `event` cannot be numbered (None if its kind and every field are right).

    Example:
        >>> from actornet import Pid
        >>> event_problem(("leave", "ann", Pid("c@h", 1, 1))) is None
        True
        >>> event_problem(("move", "ann", Pid("c@h", 1, 1), "n1"))
        'malformed move event: 3 fields, not 4'
    """
    if not isinstance(event, tuple) or not event or not isinstance(event[0], str):
        return "malformed event: expected a tuple, its kind first"
    checks = _FIELDS.get(event[0])
    if checks is None:
        return f"unknown event {event[0][:40]!r}"
    if event[0] == "move" and len(event) == 6 and event[5] == SAME_USER:
        event = event[:5]
    if len(event) != len(checks) + 1:
        return f"malformed {event[0]} event: {len(event) - 1} fields, not {len(checks)}"
    for k, (check, field) in enumerate(zip(checks, event[1:], strict=True), start=1):
        if not check(field):
            return f"malformed {event[0]} event: field {k} is {type(field).__name__}"
    return None


class RoomState:
    """The records a replica keeps, and members, owner and likes derived from all of them."""

    def __init__(self, limit: int = HISTORY_LIMIT) -> None:
        self.limit = limit
        self.seq = 0
        self.records: deque[Record] = deque()
        self.seq_of: dict[int, int] = {}  # eid -> seq, for the records kept
        # pid -> (nick, home), in the order they joined (the oldest first)
        self.members: dict[actornet.Pid, tuple[str, str]] = {}
        self.owner: actornet.Pid | None = None  # the owner's client process
        self.likes: dict[int, set[str]] = {}  # message eid -> nicks who like it
        # pid -> (old, new): a rename of a client not (yet) a member, applied when it
        # joins under the old name (after a merge, its join may come after the rename)
        self.renamed: dict[actornet.Pid, tuple[str, str]] = {}
        # eid -> nick of the member a record made owner (a leave, kick or move of the
        # owner), for the records kept: what clients are told with that event
        self.new_owner: dict[int, str] = {}
        # eids of the records kept that changed nothing (a `gone` of a member who had
        # resumed elsewhere): nothing to show for them
        self.void: set[int] = set()

    # -- reading ---------------------------------------------------------------------

    def nicks(self) -> list[str]:
        return sorted({nick for nick, _ in self.members.values()})

    def owner_nick(self) -> str | None:
        """The owner's current nickname (None while the room has no owner).

        Example:
            >>> from actornet import Pid
            >>> state = RoomState()
            >>> _ = state.apply(1, new_eid(), ("join", "ann", Pid("c@h", 1, 1), "n1"))
            >>> state.owner_nick()
            'ann'
        """
        entry = self.members.get(self.owner) if self.owner is not None else None
        return None if entry is None else entry[0]

    def pids_of(self, nick: str) -> list[actornet.Pid]:
        return [pid for pid, (n, _) in self.members.items() if n == nick]

    def record_at(self, seq: int) -> Record | None:
        """Record `seq`, if this replica still keeps it."""
        if not self.records or not self.records[0][0] <= seq <= self.seq:
            return None
        rec = self.records[seq - self.records[0][0]]
        return rec if rec[0] == seq else None

    def eid_at(self, seq: int) -> int | None:
        """The eid of record `seq`, if this replica still keeps it."""
        rec = self.record_at(seq)
        return None if rec is None else rec[1]

    def first_seq(self) -> int:
        """The seq of the oldest record kept (seq + 1 when none is)."""
        return self.records[0][0] if self.records else self.seq + 1

    def message_eid(self, seq: int) -> int | None:
        """The eid of message `seq`, if record `seq` is kept here and is a message."""
        rec = self.record_at(seq)
        return rec[1] if rec is not None and rec[2][0] == "msg" else None

    def like_count(self, msg_eid: int) -> int:
        return len(self.likes.get(msg_eid, ()))

    # -- the sequencer's check ---------------------------------------------------------

    def prepare(self, event: tuple[Any, ...], room: str) -> tuple[tuple[Any, ...] | None, str]:
        """Validate a client's event; returns (event to number, "") or (None, why not).

        A like names a message by the id clients see (its seq); it is numbered
        naming the message's eid.
        """
        why = event_problem(event)
        if why is not None:
            return None, why
        kind = event[0]
        nicks = self.nicks()
        if kind == "msg" and event[1] not in nicks:
            return None, f"{event[1]} is not in room {room}"
        if kind in ("like", "unlike"):
            _, msg_seq, nick = event
            eid = self.message_eid(msg_seq) if isinstance(msg_seq, int) else None
            if eid is None:
                return None, f"no message #{msg_seq} in room {room}"
            if nick not in nicks:
                return None, f"{nick} is not in room {room}"
            likes = nick in self.likes.get(eid, ())
            if kind == "like" and likes:
                return None, f"you like message #{msg_seq} in {room} already"
            if kind == "unlike" and not likes:
                return None, f"you do not like message #{msg_seq} in {room}"
            return (kind, eid, nick), ""
        if kind == "join" and event[2] in self.members:
            return None, f"you are already in room {room}"
        if kind == "kick":
            by_pid = event[3] if len(event) > 3 else None
            if by_pid is None or by_pid != self.owner:
                return None, f"only the owner of {room} ({self.owner_nick()}) can kick"
            if event[1] not in nicks:
                return None, f"{event[1]} is not in room {room}"
        if kind in ("leave", "move") and event[1] not in nicks:
            return None, f"{event[1]} is not in room {room}"
        if kind == "gone" and self.members.get(event[2], (None, None))[1] != event[3]:
            return None, f"{event[1]} is not in room {room} through {event[3]}"
        return event, ""

    # -- applying ------------------------------------------------------------------------

    def apply(self, seq: int, eid: int, event: tuple[Any, ...]) -> list[tuple[actornet.Pid, str]]:
        """Apply record `seq`; returns the ``(pid, home)`` of members it removed.

        Example:
            >>> from actornet import Pid
            >>> ann, bob = Pid("c@h", 1, 1), Pid("c@h", 2, 1)
            >>> state = RoomState()
            >>> _ = state.apply(1, 11, ("join", "ann", ann, "n1"))
            >>> _ = state.apply(2, 12, ("join", "bob", bob, "n1"))
            >>> state.apply(3, 13, ("leave", "ann", ann))
            [(<c@h.1.1>, 'n1')]
            >>> state.owner_nick(), state.new_owner[13]
            ('bob', 'bob')
        """
        self.seq = seq
        self.records.append((seq, eid, event))
        self.seq_of[eid] = seq
        while len(self.records) > self.limit:
            forgotten = self.records.popleft()[1]
            self.seq_of.pop(forgotten, None)
            self.new_owner.pop(forgotten, None)
            self.void.discard(forgotten)
        owner, owner_nick = self.owner, self.owner_nick()
        gone = self._apply(event)
        if event[0] == "gone" and not gone:
            self.void.add(eid)
        if owner is not None and self.owner not in (None, owner):
            nick = self.owner_nick()
            if nick is not None and nick != owner_nick:  # not a client of the owner's moving
                self.new_owner[eid] = nick
        return gone

    def _apply(self, event: tuple[Any, ...]) -> list[tuple[actornet.Pid, str]]:
        kind = event[0]
        gone: list[tuple[actornet.Pid, str]] = []
        if kind == "join":
            _, nick, pid, home = event
            renamed = self.renamed.pop(pid, None)
            if renamed is not None and renamed[0] == nick:
                nick = renamed[1]
            self.members[pid] = (nick, home)
            if self.owner is None:
                self.owner = pid
        elif kind in ("leave", "kick"):
            pid = event[2] if kind == "leave" and len(event) > 2 else None
            for p in [pid] if pid is not None else self.pids_of(event[1]):
                entry = self.members.get(p)
                if entry is not None and entry[0] == event[1]:  # else it goes by another name
                    del self.members[p]
                    gone.append((p, entry[1]))
            self._pass_ownership()
        elif kind == "gone":
            _, nick, pid, home = event
            entry = self.members.get(pid)
            if entry is not None and entry[1] == home:  # else it resumed elsewhere: it stays
                del self.members[pid]
                gone.append((pid, home))
                self._pass_ownership()
        elif kind == "like":
            self.likes.setdefault(event[1], set()).add(event[2])
        elif kind == "unlike":
            self.likes.get(event[1], set()).discard(event[2])
        elif kind == "move":
            _, nick, pid, home, _last = event[:5]
            old = [p for p in self.pids_of(nick) if p != pid]
            if event[5:] == (SAME_USER,) and old and pid not in self.members:
                # the same user in a new process: in its place, keeping what it had
                self.members = {(pid if p == old[0] else p): ((nick, home) if p == old[0]
                                                                else entry)
                                for p, entry in self.members.items()}
                if self.owner == old[0]:
                    self.owner = pid
                old = old[1:]
            for p in old:
                del self.members[p]
            self.members[pid] = (nick, home)  # a pid already there keeps its seniority
            self._pass_ownership()
        elif kind == "rename":
            _, old, new, pid = event
            entry = self.members.get(pid)
            if entry is not None:
                self.members[pid] = (new, entry[1])
            else:
                self.renamed[pid] = (old, new)
        return gone

    def _pass_ownership(self) -> None:
        """An owner no longer in the room hands the room to the member present longest."""
        if self.owner not in self.members:
            self.owner = next(iter(self.members), None)

    # -- copying ---------------------------------------------------------------------------

    def to_wire(self) -> dict[str, Any]:
        return {"seq": self.seq, "records": [list(r) for r in self.records],
                "members": [[p, n, h] for p, (n, h) in self.members.items()],
                "owner": self.owner, "likes": [[e, sorted(v)] for e, v in self.likes.items()],
                "renamed": [[p, o, n] for p, (o, n) in self.renamed.items()],
                "new_owner": [[e, n] for e, n in self.new_owner.items()],
                "void": sorted(self.void)}

    @classmethod
    def from_wire(cls, wire: dict[str, Any], limit: int = HISTORY_LIMIT) -> RoomState:
        state = cls(limit)
        state.seq = wire["seq"]
        for seq, eid, event in wire["records"]:
            state.records.append((seq, eid, tuple(event)))
            state.seq_of[eid] = seq
        state.members = {p: (n, h) for p, n, h in wire["members"]}
        state.owner = wire["owner"]
        state.likes = {e: set(v) for e, v in wire["likes"]}
        state.renamed = {p: (o, n) for p, o, n in wire.get("renamed", [])}
        state.new_owner = {e: n for e, n in wire.get("new_owner", [])}
        state.void = set(wire.get("void", []))
        return state

    def extends(self, other: RoomState) -> bool:
        """True if this history is `other`'s plus records after it (as far as both keep)."""
        if other.seq > self.seq:
            return False
        for seq in range(max(other.first_seq(), self.first_seq()), other.seq + 1):
            if self.eid_at(seq) != other.eid_at(seq):
                return False
        return True

    def common_prefix(self, other: RoomState) -> int:
        """The last seq at which both histories agree (as far as both keep records)."""
        low = max(self.first_seq(), other.first_seq())
        seq = low - 1
        while seq < min(self.seq, other.seq) and self.eid_at(seq + 1) == other.eid_at(seq + 1):
            seq += 1
        return seq

    def unknown_to(self, other: RoomState) -> list[Record]:
        """Records of ours that `other` lacks, among those recent enough for it to keep."""
        return [r for r in self.records if r[0] >= other.first_seq() and r[1] not in other.seq_of]
