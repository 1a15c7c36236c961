"""What a client may ask a chat server, and the check of every field: pure, no I/O.

A request is a tuple, its name first: ``("say", room, text)``. `problem` says
what is wrong with one (None if nothing is), before the chat server acts on any
field, so a wrong-typed or malformed field gets a clear error instead of an
exception in the server. The shapes::

    ("connect", nick)                ("resume", nick, [(room, last_seq), ...])
    ("resume_session", nick, [(room, last_seq), ...])   a gateway session taking over its
                                     user's place (token checked by the gateway)
    ("join", room)   ("leave", room)  ("who", room)
    ("say", room, text)              ("history", room, count)
    ("kick", room, nick)             ("like", room, id)   ("unlike", room, id)
    ("dm", nick, text)               ("nick", new_nick)
    ("rooms",)  ("servers",)  ("quit",)  ("detach",)  ("nick_conflict",)

Texts (messages and direct messages) are plain text: no control characters,
no invisible formatting characters (see `text_problem`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

from .storage import ROOM

__all__ = ["MAX_INPUT", "MAX_RESUME_ROOMS", "MAX_TEXT", "NICK", "SHAPES", "last_seen_problem",
           "nick_problem", "problem", "room_problem", "text_problem"]

NICK = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,19}$")
MAX_TEXT = 2000  # characters in one message
MAX_INPUT = MAX_TEXT + 100  # characters in one line a client reads: a command and its text
MAX_RESUME_ROOMS = 1000  # rooms one resume may name (a user is in far fewer: see service)

# Joiners that scripts need between two visible characters (Persian, Indic scripts,
# emoji sequences); every other format character (Cf) is refused.
_JOINERS = {"\u200c", "\u200d"}


def text_problem(text: Any) -> str | None:
    r"""Why `text` cannot be a message (None if it can).

    Control characters (ESC starts a terminal escape sequence, CR moves the
    cursor) and the characters ``str.splitlines`` breaks lines at would reach
    other users' terminals and split the plain client's one-event-per-line
    output, so they are refused; a tab is the one control character allowed.
    Invisible formatting characters are refused too: a right-to-left override
    makes a message read backwards, a zero-width space hides text in a word.
    The zero-width (non-)joiner is allowed between two visible characters,
    where scripts and emoji need it.

    Example:
        >>> text_problem("hello") is None
        True
        >>> text_problem("red \x1b[31m")
        'message contains a control character (U+001B); send plain text'
        >>> text_problem("abc\u202edef")
        'message contains an invisible formatting character (U+202E RIGHT-TO-LEFT OVERRIDE); send plain text'
    """  # noqa: E501
    if not isinstance(text, str):
        return f"a message is text, not {type(text).__name__}"
    if len(text) > MAX_TEXT:
        return f"message too long: {len(text)} characters, the limit is {MAX_TEXT}"
    if not text.strip():
        return "empty message"
    if text.isprintable():  # no Cc, Cf, Cs, Zl or Zp: the common case, without a loop
        return None
    for i, ch in enumerate(text):
        category = unicodedata.category(ch)
        if ch != "\t" and category in ("Cc", "Zl", "Zp"):
            return (f"message contains a control character (U+{ord(ch):04X}); "
                    "send plain text")
        if category in ("Cf", "Cs") and not _joins(text, i):
            name = unicodedata.name(ch, "unnamed")
            return (f"message contains an invisible formatting character "
                    f"(U+{ord(ch):04X} {name}); send plain text")
    return None


def _joins(text: str, i: int) -> bool:
    """True if ``text[i]`` is a joiner between two visible characters."""
    if text[i] not in _JOINERS or i == 0 or i == len(text) - 1:
        return False
    return all(not text[j].isspace() and unicodedata.category(text[j])[0] not in "CZ"
               for j in (i - 1, i + 1))


def nick_problem(nick: Any, what: str = "nickname") -> str | None:
    """Why `nick` is not a nickname (None if it is).

    Example:
        >>> nick_problem("ann") is None
        True
        >>> nick_problem("has space")
        "invalid nickname 'has space': 1-20 letters, digits, _ or -, starting with a letter"
    """
    if not isinstance(nick, str) or not NICK.fullmatch(nick):
        return f"invalid {what} {nick!r}: 1-20 letters, digits, _ or -, starting with a letter"
    return None


def room_problem(room: Any) -> str | None:
    """Why `room` is not a room name (None if it is).

    Example:
        >>> room_problem("lobby") is None
        True
        >>> room_problem("Not A Room!")
        "invalid room name 'Not A Room!': 1-30 of a-z 0-9 _ -, starting with a letter or digit"
    """
    if not isinstance(room, str) or not ROOM.fullmatch(room):
        return (f"invalid room name {room!r}: 1-30 of a-z 0-9 _ -, starting with a letter "
                "or digit")
    return None


def _count_problem(n: Any) -> str | None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        return f"/history N: N must be a number of messages, 1 or more, not {n!r}"
    return None


def _id_problem(n: Any) -> str | None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        return f"a message id is a number, 0 or more, not {n!r}"
    return None


def last_seen_problem(last_seen: Any) -> str | None:
    """Why `last_seen`, a resuming client's ``[(room, seq), ...]``, is malformed (None if not).

    Example:
        >>> last_seen_problem([("lobby", 12), ("dev", 0)]) is None
        True
        >>> last_seen_problem([("../x", 1)])
        "resume: invalid room name '../x'"
        >>> last_seen_problem([("lobby", "12")])
        "resume: the last event seen in lobby must be a number, 0 or more, not '12'"
    """
    if not isinstance(last_seen, (list, tuple)):
        return f"resume: expected a list of (room, seq) pairs, not {last_seen!r}"
    if len(last_seen) > MAX_RESUME_ROOMS:
        return f"resume: {len(last_seen)} rooms, more than {MAX_RESUME_ROOMS}"
    rooms = set()
    for entry in last_seen:
        if not isinstance(entry, (list, tuple)) or len(entry) != 2:
            return f"resume: expected a (room, seq) pair, not {entry!r}"
        room, seq = entry
        if not isinstance(room, str) or not ROOM.fullmatch(room):
            return f"resume: invalid room name {room!r}"
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            return (f"resume: the last event seen in {room} must be a number, 0 or more, "
                    f"not {seq!r}")
        if room in rooms:
            return f"resume: room {room} is named twice"
        rooms.add(room)
    return None


Check = Callable[[Any], "str | None"]

# Each request's fields (after its name), in order, and the check of each.
SHAPES: dict[str, tuple[Check, ...]] = {
    "connect": (nick_problem,),
    "resume": (nick_problem, last_seen_problem),
    "resume_session": (nick_problem, last_seen_problem),
    "join": (room_problem,),
    "leave": (room_problem,),
    "who": (room_problem,),
    "say": (room_problem, text_problem),
    "history": (room_problem, _count_problem),
    "kick": (room_problem, nick_problem),
    "like": (room_problem, _id_problem),
    "unlike": (room_problem, _id_problem),
    "dm": (nick_problem, text_problem),
    "nick": (nick_problem,),
    "rooms": (),
    "servers": (),
    "quit": (),
    "detach": (),
    "nick_conflict": (),
}


def problem(request: Any) -> str | None:
    """What is wrong with `request` (None: its shape and every field are right).

    Example:
        >>> problem(("say", "lobby", "hi")) is None
        True
        >>> problem(("say", "lobby", 5))
        'a message is text, not int'
        >>> problem(("join", "lobby", "extra"))
        "malformed request ('join', 'lobby', 'extra'): join takes 1 argument"
        >>> problem("hello")
        "malformed request 'hello': expected a tuple, its name first"
    """
    if not isinstance(request, tuple) or not request or not isinstance(request[0], str):
        return f"malformed request {_short(request)}: expected a tuple, its name first"
    checks = SHAPES.get(request[0])
    if checks is None:
        return f"unknown request {_short(request[0])}"
    if len(request) != len(checks) + 1:
        n = len(checks)
        return (f"malformed request {_short(request)}: {request[0]} takes {n} "
                f"argument{'' if n == 1 else 's'}")
    for check, field in zip(checks, request[1:], strict=True):
        why = check(field)
        if why is not None:
            return why
    return None


def _short(value: Any, limit: int = 200) -> str:
    """`repr` of `value`, cut to `limit` characters: errors quote what was sent, boundedly."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
