"""Timers, as Erlang's ``erlang:send_after/3`` and ``erlang:cancel_timer/1``.

One thread serves every timer of the interpreter from a heap, so a timer costs
an entry, not a thread.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from typing import Any

from actornet._ids import Pid, Ref
from actornet._terms import check_term
from actornet.node import current_node

__all__ = ["send_after", "cancel_timer"]

_heap: list[tuple[float, int, Ref]] = []
_pending: dict[Ref, tuple[float, Any, Any, Any]] = {}  # ref -> (when, node, dest, msg)
_cond = threading.Condition()
_counter = itertools.count()
_thread: threading.Thread | None = None


def send_after(seconds: float, dest: Any, msg: Any) -> Ref:
    """Send `msg` to `dest` after `seconds`; returns a ref for `cancel_timer`.

    The message and the destination are checked now (a `TypeError` for an
    unsendable value or what is no destination) and the message is sent
    later from the current node; a dead destination drops it, as `send` does.
    `seconds` must be finite (``math.inf`` or NaN raise `ValueError`): a timer
    that never fires is no timer.

    Example:
        >>> import actornet
        >>> _ = actornet.send_after(0.01, actornet.self(), "tick")
        >>> actornet.receive(timeout=5)
        'tick'
    """
    if (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
            or not 0 <= seconds < threading.TIMEOUT_MAX):  # also refuses NaN and inf
        raise ValueError(f"send_after needs a finite number of seconds >= 0, got {seconds!r}")
    _check_dest(dest)
    check_term(msg)
    node = current_node()
    ref = node.make_ref()
    when = time.monotonic() + seconds
    global _thread
    with _cond:
        _pending[ref] = (when, node, dest, msg)
        heapq.heappush(_heap, (when, next(_counter), ref))
        if _thread is None:
            _thread = threading.Thread(target=_run, name="actornet-timers", daemon=True)
            _thread.start()
        _cond.notify()
    return ref


def _check_dest(dest: Any) -> None:
    """Refuse what `send` would refuse when the timer fires (Erlang's badarg, at the call)."""
    if dest.__class__ is Pid or dest.__class__ is str:
        return
    if (dest.__class__ is tuple and len(dest) == 2
            and dest[0].__class__ is str and dest[1].__class__ is str):
        return
    raise TypeError(
        f"send_after cannot send to {dest!r}: a destination is a Pid, a registered name "
        "(str), a (name, node) tuple or ('global', name)")


def cancel_timer(ref: Ref) -> float | bool:
    """Cancel a `send_after` timer: the seconds it had left, or False if it already fired.

    Example:
        >>> import actornet
        >>> ref = actornet.send_after(60, actornet.self(), "never")
        >>> actornet.cancel_timer(ref) > 59
        True
    """
    with _cond:
        entry = _pending.pop(ref, None)
    if entry is None:
        return False
    return max(0.0, entry[0] - time.monotonic())


def _run() -> None:
    while True:
        with _cond:
            while True:
                now = time.monotonic()
                while _heap and _heap[0][2] not in _pending:
                    heapq.heappop(_heap)  # cancelled
                if _heap and _heap[0][0] <= now:
                    _, _, ref = heapq.heappop(_heap)
                    entry = _pending.pop(ref, None)
                    break
                _cond.wait(None if not _heap else _heap[0][0] - now)
        if entry is None:
            continue
        _, node, dest, msg = entry
        if node.running:
            with contextlib.suppress(Exception):  # e.g. a name no longer registered: dropped
                node.send(dest, msg)
