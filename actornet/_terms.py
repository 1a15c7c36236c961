"""Which Python values are messages: the check `send` makes before delivering.

The same set of types crosses nodes through the wire codec, so a program that
works on one node works across nodes.
"""

from __future__ import annotations

from typing import Any

from actornet._ids import Pid, Ref
from actornet.errors import Crash

__all__ = ["check_term", "SENDABLE"]

SENDABLE = (
    "None, bool, int, float, str, bytes, tuple, list, dict, set, frozenset, Pid, Ref"
)

_ATOMIC = frozenset({str, int, float, bytes, bool, type(None), Pid, Ref, Crash})
_CONTAINERS = (tuple, list, set, frozenset)


def check_term(value: Any) -> None:
    """Raise `TypeError` naming the type and where it is, if `value` is not a message.

    Example:
        >>> check_term(("msg", "alice", [1, 2.0, b"x"]))
        >>> check_term(("msg", object()))
        Traceback (most recent call last):
        ...
        TypeError: cannot send a value of type 'object' at msg[1]: ...
    """
    if _plain(value, 4):
        return
    bad = _find_bad(value, "msg")
    if bad is not None:
        path, what = bad
        raise TypeError(
            f"cannot send a value of type {type(what).__name__!r} at {path}: "
            f"actornet sends {SENDABLE}"
        )


def _plain(value: Any, depth: int) -> bool:
    """The fast path: scalars and small nests of tuples/lists of them (calls, replies)."""
    cls = value.__class__
    if cls in _ATOMIC:
        return True
    if (cls is tuple or cls is list) and depth:
        for item in value:
            if item.__class__ not in _ATOMIC and not _plain(item, depth - 1):
                return False
        return True
    return False


def _find_bad(value: Any, path: str) -> tuple[str, Any] | None:
    if value.__class__ in _ATOMIC or isinstance(value, (str, int, float, bytes)):
        return None
    if isinstance(value, (bytearray, memoryview)):
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            bad = _find_bad(k, f"{path}.keys()") or _find_bad(v, f"{path}[{k!r}]")
            if bad:
                return bad
        return None
    if isinstance(value, _CONTAINERS):
        for i, item in enumerate(value):
            bad = _find_bad(item, f"{path}[{i}]")
            if bad:
                return bad
        return None
    return path, value
