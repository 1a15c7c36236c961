"""The mailbox of a lightweight process: selective receive that awaits.

Any thread may `put`; only the owning task receives. Messages wait in one list,
oldest first, from index `_head` on: a receive takes the first message its
match accepts and leaves the others in place, in order, like the BEAM's save
queue. An idle mailbox costs a list and a few slots (a million of them fit in
well under a gigabyte), which is why it is a list with a head index and not a
deque (a deque allocates a 64-slot block up front).

A waiting owner parks one future (`_waiter`); `put` resolves it directly on
the loop's thread and through the scheduler's batch from any other thread.
Both sides re-check the list after publishing, so no wakeup is lost.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Protocol

from actornet._backpressure import owing, settle
from actornet._scheduler import TIMEOUT
from actornet.errors import Timeout

if TYPE_CHECKING:
    import asyncio

    from actornet._scheduler import Scheduler

__all__ = ["LightMailbox", "Owner"]

_COMPACT = 256  # taken slots at the head before the list is compacted
_get_ident = threading.get_ident


class Owner(Protocol):
    """The process a mailbox belongs to, as the mailbox sees it."""

    waiting: bool

    def check_alive(self) -> None: ...


class LightMailbox:
    """A multi-producer, single-consumer mailbox whose owner is an asyncio task."""

    __slots__ = ("_head", "_offering", "_q", "_waiter", "closed", "owner", "sched")

    def __init__(self, sched: Scheduler) -> None:
        self._q: list[Any] = []
        self._head = 0
        self._waiter: asyncio.Future[Any] | None = None
        self._offering = 0  # suspended `offer` loops: their indices must stay valid
        self.sched = sched
        # The owning process (it sets this): checked whenever the owner wakes, so a
        # receive ends at once with `Killed` if an exit signal ended the process.
        self.owner: Owner | None = None
        self.closed = False

    def put(self, msg: Any) -> None:
        """Queue `msg` and wake the owner if it waits (any thread)."""
        self._q.append(msg)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            sched = self.sched
            if _get_ident() == sched.thread_id:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                sched.submit(_resolve, waiter, None)

    def put_wake(self) -> None:
        """Wake the owner so it looks at its process's state (`check`)."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            self.sched.wake(waiter)

    def __len__(self) -> int:
        return len(self._q) - self._head

    # -- receiving (the owner only) ---------------------------------------------------------

    async def receive(self, match: Callable[[Any], object] | None,
                      timeout: float | None) -> Any:
        """Remove and return the first message `match` accepts (any, if None).

        Raises `actornet.Timeout` when `timeout` seconds pass without one. The
        wait is inline (one coroutine frame per waiting process: a million idle
        processes are a million of these).
        """
        if owing:  # a send of this task found a peer busy: it waits for it now
            await settle()
        q = self._q
        i = self._head
        if match is None and i < len(q):
            return self._take(i)  # the common case: no scan, no wait
        owner = self.owner
        assert owner is not None
        loop = self.sched.loop
        deadline = None if timeout is None else loop.time() + timeout
        owner.waiting = True
        try:
            while True:
                n = len(q)
                while i < n:
                    if match is None or match(q[i]):
                        return self._take(i)
                    i += 1
                fut = loop.create_future()
                self._waiter = fut
                if len(q) > n:  # one came between the scan and the waiter's publication
                    self._waiter = None
                    continue
                key = None
                if deadline is not None:
                    delay = deadline - loop.time()
                    if delay <= 0:
                        self._waiter = None
                        raise Timeout(f"no matching message within {timeout} s")
                    key = self.sched.deadlines.add(delay, fut)
                try:
                    woke = await fut
                finally:
                    self._waiter = None
                    if key is not None:
                        self.sched.deadlines.discard(key, fut)
                owner.check_alive()
                if woke is TIMEOUT:  # a message that came with the timer still counts
                    deadline = loop.time()
        finally:
            owner.waiting = False

    async def offer(self, timeout: float | None) -> AsyncIterator[Any]:
        """Offer the messages one by one, in order, waiting for more as needed.

        Each message is out of the mailbox while offered; asking for the next
        one puts it back in its place. Ends when `timeout` seconds pass.
        """
        if owing:
            await settle()
        q = self._q
        deadline = None if timeout is None else self.sched.loop.time() + timeout
        self._offering += 1  # from here on a take deletes: indices stay meaningful
        try:
            if self._head:
                del q[:self._head]
                self._head = 0
            i = 0
            while True:
                while i < len(q):
                    msg = q[i]
                    del q[i]
                    yield msg
                    q.insert(i, msg)  # passed over: back in its place
                    i += 1
                if not await self._wait(len(q), deadline) and i >= len(q):
                    return  # the loop's `else:` runs: Erlang's `after`
        finally:
            self._offering -= 1

    async def get(self) -> Any:
        """The next message, whatever it is (a GenServer's loop); the wait is inline."""
        if owing:
            await settle()
        q = self._q
        loop = self.sched.loop
        owner = self.owner
        while True:
            i = self._head
            if i < len(q):
                return self._take(i)
            fut = loop.create_future()
            self._waiter = fut
            if len(q) > i:
                self._waiter = None
                continue
            try:
                await fut
            finally:
                self._waiter = None
            if owner is not None:
                owner.check_alive()

    def _take(self, i: int) -> Any:
        q = self._q
        msg = q[i]
        head = self._head
        if i != head or self._offering:
            del q[i]
            return msg
        q[i] = None
        head += 1
        if head == len(q) or (head >= _COMPACT and head * 2 >= len(q)):
            # Only what was taken is deleted: other threads append concurrently.
            del q[:head]
            head = 0
        self._head = head
        return msg

    async def _wait(self, seen: int, deadline: float | None) -> bool:
        """Wait for a message after the first `seen`; False once `deadline` passes."""
        loop = self.sched.loop
        fut = loop.create_future()
        self._waiter = fut
        if len(self._q) > seen:  # one came between the scan and the waiter's publication
            self._waiter = None
            return True
        key = None
        if deadline is not None:
            delay = deadline - loop.time()
            if delay <= 0:
                self._waiter = None
                return False
            key = self.sched.deadlines.add(delay, fut)
        try:
            woke = await fut
        finally:
            self._waiter = None
            if key is not None:
                self.sched.deadlines.discard(key, fut)
        if self.owner is not None:
            self.owner.check_alive()
        return woke is not TIMEOUT


def _resolve(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


