"""What a client is sent for a room's record: pure, from the record and the room's state.

Every message ends with the record's eid, which a client uses to show each
event once (a partition merge may renumber an event, never change its eid)::

    ("room_msg", room, seq, nick, text, likes, time, eid)
    ("room_join", room, seq, nick, eid)
    ("room_leave", room, seq, nick, new_owner, eid)
    ("room_gone", room, seq, nick, new_owner, eid)     its connection was lost for good
    ("room_kick", room, seq, nick, by, new_owner, eid)
    ("room_likes", room, seq, msg_seq, count, nick, "like" | "unlike", eid)
    ("room_rename", room, seq, old, new, eid)
    ("room_move", room, seq, nick, new_owner, eid)

`new_owner` is the nickname of the member the event made owner, or None.
"""

from __future__ import annotations

from typing import Any

from .history import Record, RoomState

__all__ = ["describe", "describe_all", "messages"]


def describe(state: RoomState, room: str, seq: int, eid: int,
             event: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The message a client gets for record `seq` of `room` (None: nothing to show).

    Example:
        >>> from actornet import Pid
        >>> state = RoomState()
        >>> _ = state.apply(1, 11, ("join", "ann", Pid("c@h", 1, 1), "n1"))
        >>> describe(state, "lobby", 1, 11, ("join", "ann", Pid("c@h", 1, 1), "n1"))
        ('room_join', 'lobby', 1, 'ann', 11)
    """
    kind = event[0]
    if kind == "msg":
        stamp = event[3] if len(event) > 3 else None
        return ("room_msg", room, seq, event[1], event[2], state.like_count(eid), stamp, eid)
    if kind == "join":
        return ("room_join", room, seq, event[1], eid)
    if kind == "leave":
        return ("room_leave", room, seq, event[1], state.new_owner.get(eid), eid)
    if kind == "gone":
        if eid in state.void:  # the member had resumed elsewhere: it never left
            return None
        return ("room_gone", room, seq, event[1], state.new_owner.get(eid), eid)
    if kind == "kick":
        return ("room_kick", room, seq, event[1], event[2], state.new_owner.get(eid), eid)
    if kind in ("like", "unlike"):
        msg_seq = state.seq_of.get(event[1])
        if msg_seq is None:  # a like of a message not here yet: it counts when it comes
            return None
        return ("room_likes", room, seq, msg_seq, state.like_count(event[1]), event[2], kind,
                eid)
    if kind == "rename":
        return ("room_rename", room, seq, event[1], event[2], eid)
    if kind == "move":
        return ("room_move", room, seq, event[1], state.new_owner.get(eid), eid)
    return ("room_event", room, seq, event, eid)


def describe_all(state: RoomState, room: str, records: list[Record]) -> list[tuple[Any, ...]]:
    """The messages for `records`, leaving out those with nothing to show."""
    out = (describe(state, room, *r) for r in records)
    return [m for m in out if m is not None]


def messages(state: RoomState, room: str, n: int) -> list[tuple[Any, ...]]:
    """The last `n` messages (chat messages only) of the records `state` keeps."""
    if n <= 0:
        return []
    msgs = [r for r in state.records if r[2][0] == "msg"][-n:]
    return describe_all(state, room, msgs)
