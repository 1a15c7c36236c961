"""A node's system servers (`global_`'s name server, the default `pg` scope), found or started.

A node's kernel supervisor (`actornet._kernel`) owns these servers: when one crashes
it starts it again. Between the crash and the end of the new server's ``init`` a
caller must wait, not start one of its own: its start and the supervisor's would race
for the registered name, and the loser of that race would be the supervisor, whose
restart then fails until it gives up (taking the other system server with it). So
`ensure` starts a server only when no kernel supervisor runs on the node (a node
whose supervisor gave up); otherwise it waits, bounded, for the supervisor's restart.

A server calls `announce` at the end of its ``init``, which wakes the waiters.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from actornet.errors import AlreadyRegistered, NoProc

if TYPE_CHECKING:
    from actornet._process import NodeApi

__all__ = ["KERNEL_SUP", "announce", "ensure"]

KERNEL_SUP: Final = "kernel_sup"
RESTART_WAIT: Final = 5.0  # seconds a caller waits for a system server to come back

T = TypeVar("T")

_changed = threading.Condition()


def announce() -> None:
    """Wake every caller waiting in `ensure` (a system server's ``init`` has ended)."""
    with _changed:
        _changed.notify_all()


def ensure(node: NodeApi, name: str, ready: Callable[[], T | None], start: Callable[[], Any],
           timeout: float = RESTART_WAIT) -> T:
    """The running system server registered as `name` on `node`, as `ready()` gives it.

    While `ready()` gives None: if nobody holds `name` and no kernel supervisor runs,
    `start()` one here; otherwise wait for the server being started to announce itself.
    Raises `NoProc` if none is ready after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (found := ready()) is None:
        with _changed:
            if node.whereis(name) is not None or node.whereis(KERNEL_SUP) is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NoProc(f"the system server {name!r} on {node.name} did not come "
                                 f"back within {timeout} s")
                # The slice bounds the wait if the supervisor gives up or an init fails,
                # neither of which announces.
                _changed.wait(min(remaining, 0.05))
                continue
        with contextlib.suppress(AlreadyRegistered):  # another caller was first: wait
            start()
    return found
