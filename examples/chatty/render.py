"""The lines a client shows for what it receives: the plain protocol, or a terminal's lines.

Pure: an event in (as `examples.chatty.events` describes them), text out. The
plain format is documented in `examples.chatty.client`; on a terminal, past
messages (history on join, ``/history``) are framed and indented so that they
never look like live ones.
"""

from __future__ import annotations

import datetime
from typing import Any

__all__ = ["history_block", "render", "stamp"]


def stamp(when: Any, plain: bool, today: datetime.date | None = None) -> str:
    """A message's time: UTC ISO 8601 in plain mode; on a terminal the local HH:MM,
    with the date when it is not today ("" if unknown on a terminal, "-" in plain).

    Example:
        >>> stamp(0, plain=True)
        '1970-01-01T00:00:00Z'
        >>> stamp(None, plain=True), stamp(None, plain=False)
        ('-', '')
    """
    if not isinstance(when, (int, float)) or isinstance(when, bool):
        return "-" if plain else ""
    moment = datetime.datetime.fromtimestamp(when, datetime.timezone.utc)
    if plain:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    local = moment.astimezone()
    if local.date() == (today or datetime.date.today()):
        return local.strftime("%H:%M")
    return local.strftime("%b %d %H:%M")


def _owner_line(room: str, new_owner: Any, plain: bool) -> str:
    if not new_owner or new_owner == "-":  # "-": a node of an older version, for nobody
        return ""
    return (f"\nOWNER {room} {new_owner}" if plain
            else f"\n[#{room}] {new_owner} owns the room now")


def render(event: tuple[Any, ...], plain: bool) -> str:
    """The line(s) for an event (see `examples.chatty.client` for the plain format).

    Example:
        >>> render(("dm", "ann", "hi"), plain=True)
        'DM ann hi'
        >>> render(("room_likes", "lobby", 9, 4, 2, "bob", "like", 77), plain=True)
        'LIKES lobby 4 2 bob like'
        >>> render(("room_likes", "lobby", 9, 4, 2, "bob", "like", 77), plain=False)
        '[#lobby 4] ♥2: bob likes it'
    """
    kind = event[0]
    if kind in ("room_msg", "hist"):
        _, room, seq, nick, text, likes = event[:6]
        when = event[6] if len(event) > 7 else None
        if plain:
            if kind == "room_msg":
                return f"MSG {room} {seq} {nick} {likes} {text}"
            return f"HIST {room} {seq} {nick} {likes} {stamp(when, True)} {text}"
        hearts = f"  ♥{likes}" if likes else ""
        if kind == "hist":
            return f"    {seq:>5} {stamp(when, False):>5}  {nick}: {text}{hearts}"
        return f"[#{room} {seq} {stamp(when, False)}] {nick}: {text}{hearts}".replace(" ]", "]")
    room = event[1] if kind.startswith("room_") else ""
    if kind == "room_join":
        return f"JOIN {room} {event[3]}" if plain else f"[#{room}] {event[3]} joined"
    if kind in ("room_leave", "room_gone"):
        new_owner = event[4] if len(event) > 5 else None
        how = "left" if kind == "room_leave" else "is gone (its connection was lost)"
        return (f"LEAVE {room} {event[3]}" if plain else f"[#{room}] {event[3]} {how}") + \
            _owner_line(room, new_owner, plain)
    if kind == "room_kick":
        new_owner = event[5] if len(event) > 6 else None
        return (f"KICK {room} {event[3]} {event[4]}" if plain
                else f"[#{room}] {event[3]} was kicked by {event[4]}") + \
            _owner_line(room, new_owner, plain)
    if kind == "room_likes":
        msg, count = event[3], event[4]
        by, what = (event[5], event[6]) if len(event) > 7 else ("-", "like")
        if plain:
            return f"LIKES {room} {msg} {count} {by} {what}"
        says = "likes it" if what == "like" else "no longer likes it"
        return f"[#{room} {msg}] ♥{count}: {by} {says}"
    if kind == "room_rename":
        return (f"NICK {room} {event[3]} {event[4]}" if plain
                else f"[#{room}] {event[3]} is now {event[4]}")
    if kind == "room_move":
        new_owner = event[4] if len(event) > 5 else None
        return (f"MOVED {room} {event[3]}" if plain
                else f"[#{room}] {event[3]} reconnected through another node") + \
            _owner_line(room, new_owner, plain)
    if kind == "dm":
        return f"DM {event[1]} {event[2]}" if plain else f"[DM from {event[1]}] {event[2]}"
    return f"INFO {event!r}" if plain else repr(event)


def history_block(room: str, events: list[tuple[Any, ...]], why: str) -> list[str]:
    """A terminal's lines for past messages of `room`: framed, so never taken for live ones.

    Example:
        >>> history_block("lobby", [], "on joining")
        ['--- #lobby: no earlier messages ---']
    """
    if not events:
        return [f"--- #{room}: no earlier messages ---"]
    n = len(events)
    lines = [f"--- #{room}: {n} earlier message{'s' if n != 1 else ''} ({why}) ---"]
    lines += [render(("hist", *e[1:]), plain=False) for e in events]
    lines.append(f"--- end of #{room}'s history ---")
    return lines
