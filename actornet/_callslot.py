"""Where the answer to one pending request lands: a reply, or the DOWN of its monitor.

A call (`gen_server:call`), a stop, a multi-call, an rpc and a remote spawn
each file a slot under a fresh ref (OTP 24's *alias*) and monitor the server
under the same ref, so whichever comes first, the reply or the DOWN, lands in
the slot, and anything after it is dropped. The waiter is a thread
(`ThreadSlot`, a lock) or an asyncio task (`TaskSlot`, a future); `set` may be
called from any thread, exactly once, by whoever popped the slot from the
node's alias table.

The wait is the same for every kind of request, in two forms::

    if not slot.wait(timeout):                  # await slot.wait(timeout)
        if abandon():                           # the alias was still filed:
            raise Timeout(...)                  #   nobody will set it now
        slot.wait(None)                         # else its answer is being set
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any, Protocol

from actornet._ids import Ref
from actornet._scheduler import TIMEOUT

if TYPE_CHECKING:
    from actornet._scheduler import Scheduler

__all__ = ["ThreadSlot", "TaskSlot", "REPLY", "DOWN"]

class Watcher(Protocol):
    """The caller's process, as a slot knows it: it holds the monitor that guards the call."""

    def pop_monitor(self, ref: Ref) -> Any: ...


REPLY = "reply"
DOWN = "down"


class ThreadSlot:
    """A slot a thread waits on."""

    __slots__ = ("_lock", "kind", "value", "watcher")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.kind = ""  # REPLY or DOWN once set
        self.value: Any = None
        self.watcher: Watcher | None = None  # whose monitor guards the request

    def set(self, kind: str, value: Any) -> None:
        self.kind = kind
        self.value = value
        self._lock.release()

    def wait(self, timeout: float | None) -> bool:
        """True once set; False if `timeout` seconds passed first. Succeeds once."""
        if timeout is None:
            return self._lock.acquire()
        return self._lock.acquire(True, timeout)


class TaskSlot:
    """A slot an asyncio task awaits, on the loop of `sched`."""

    __slots__ = ("_future", "_sched", "kind", "value", "watcher")

    def __init__(self, sched: Scheduler) -> None:
        self._sched = sched
        self._future: asyncio.Future[Any] | None = None
        self.kind = ""
        self.value: Any = None
        self.watcher: Watcher | None = None

    def set(self, kind: str, value: Any) -> None:
        self.kind = kind
        self.value = value
        fut = self._future
        if fut is not None:
            self._sched.wake(fut)

    def arm(self, timeout: float | None) -> tuple[asyncio.Future[Any], int | None] | None:
        """What to await for the answer: ``(future, deadline key)``, or None if it came
        already. The future resolves with `TIMEOUT` when `timeout` passes; `disarm` after.
        (`wait` is this and the await; a hot caller inlines the two.)"""
        if self.kind:
            return None
        sched = self._sched
        fut = self._future = sched.loop.create_future()
        if self.kind:  # set between the first check and the future's publication
            return None
        return fut, (None if timeout is None else sched.deadlines.add(timeout, fut))

    def disarm(self, fut: asyncio.Future[Any], key: int | None) -> None:
        if key is not None:
            self._sched.deadlines.discard(key, fut)

    async def wait(self, timeout: float | None) -> bool:
        """True once set; False if `timeout` seconds passed first."""
        if self.kind:
            return True
        sched = self._sched
        fut = self._future = sched.loop.create_future()
        if self.kind:  # set between the first check and the future's publication
            return True
        if timeout is None:
            await fut
            return True
        deadlines = sched.deadlines
        key = deadlines.add(timeout, fut)
        try:
            woke = await fut
        finally:
            deadlines.discard(key, fut)
        return woke is not TIMEOUT or bool(self.kind)
