"""The wait a lightweight process owes a busy peer, paid at its next actornet await.

A thread process that sends to a node whose queue has passed ``busy_limit``
waits inside `send` until it drains, as the BEAM suspends a process that sends
on a busy distribution port. A lightweight process must not: `send` is not a
coroutine, and waiting in it would stop every process on its loop. So its
message is queued all the same (nothing is lost, the order is kept) and the
process *owes* the wait: its next ``await`` of an `actornet.aio` function
(`receive`, `receiving`, `call`, `multi_call`, `start`, `stop`, a remote
`spawn`...) first waits until every peer it owes has drained.

A process that keeps sending without awaiting one of them is not let to grow
the queue without bound: at twice ``busy_limit`` its send waits after all,
stopping its loop until the peer drains (the watchdog logs the stall).

The transport calls `owe`; the aio functions test `owing` (empty almost always)
and, when their task is in it, await `pay` first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["Waiter", "owe", "owing", "pay", "settle"]

# Given the loop, a future that completes once the peer has drained, or None if it has.
Waiter = Callable[[asyncio.AbstractEventLoop], "asyncio.Future[None] | None"]

# task -> the waits it owes, in the order it sent
owing: dict[asyncio.Task[Any], list[Waiter]] = {}


def owe(task: asyncio.Task[Any], wait: Waiter) -> None:
    """Record that `task` sent past a busy peer's limit; `wait` waits for that peer."""
    waits = owing.get(task)
    if waits is None:
        owing[task] = [wait]
        task.add_done_callback(_forget)
    elif wait not in waits:
        waits.append(wait)


def _forget(task: asyncio.Task[Any]) -> None:
    owing.pop(task, None)


async def pay(task: asyncio.Task[Any]) -> None:
    """Wait until every peer `task` owes has drained (called by the task itself)."""
    loop = asyncio.get_running_loop()
    while (waits := owing.pop(task, None)) is not None:
        for wait in waits:
            while (done := wait(loop)) is not None:
                await done


async def settle() -> None:
    """Pay what the running task owes, if anything (cheap to guard with ``if owing:``)."""
    task = asyncio.current_task()
    if task is not None and task in owing:
        await pay(task)
