"""One implementation of a waiting function, run blocking or awaited.

A function that waits for other processes more than once, with logic between
the waits (`global_`'s locks and retries, `pg`'s requests to its scope
server, a GenServer's start with a global name), is written once as a
generator that *yields* what it waits for: a `Call`, a `MultiCall`, a
`Sleep`. `run` performs each step blocking (for threads); `arun` awaits it
(for lightweight processes and asyncio tasks). So ``global_.register_name``
and ``aio.global_.register_name`` are the same code, as ``h11`` is the same
protocol whatever does the I/O.

Example:
    >>> import actornet
    >>> from actornet._steps import Sleep, run
    >>> def twice(x):
    ...     yield Sleep(0.001)
    ...     return 2 * x
    >>> run(twice(21), "twice()", "await arun(twice(...))")
    42
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from actornet import _gen

__all__ = ["Call", "MultiCall", "Sleep", "Steps", "run", "arun"]

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """Wait for `server`'s reply to `request` (its value is the step's result)."""

    server: Any
    request: Any
    timeout: float | None = 5.0


@dataclass(frozen=True)
class MultiCall:
    """Call every server at once; the result is `multi_call`'s list of outcomes."""

    servers: list[Any]
    request: Any
    timeout: float | None = 5.0


@dataclass(frozen=True)
class Sleep:
    """Let `seconds` pass."""

    seconds: float


Step = Call | MultiCall | Sleep
Steps = Generator[Step, Any, T]


def run(steps: Steps[T], what: str, twin: str) -> T:
    """Run `steps`, blocking the calling thread at each wait.

    `what` names the blocking function and `twin` its awaitable form, for the
    error raised if a wait comes on a thread that runs an asyncio loop (which
    must not block: a lightweight process, an asyncio task).
    """
    value: Any = None
    error: BaseException | None = None
    first = True
    while True:
        try:
            step = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        if first:
            first = False
            try:
                _gen.refuse_blocking(what, twin)
            except BaseException:
                steps.close()
                raise
        value, error = None, None
        try:
            match step:
                case Call(server, request, timeout):
                    value = _gen.call(server, request, timeout)
                case MultiCall(servers, request, timeout):
                    value = _gen.multi_call(servers, request, timeout)
                case Sleep(seconds):
                    time.sleep(seconds)
        except Exception as e:  # thrown into the steps, which may clean up or catch it
            error = e


async def arun(steps: Steps[T]) -> T:
    """Run `steps`, awaiting at each wait (in a lightweight process or an asyncio task)."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        value, error = None, None
        try:
            match step:
                case Call(server, request, timeout):
                    value = await _gen.acall(server, request, timeout)
                case MultiCall(servers, request, timeout):
                    value = await _gen.amulti_call(servers, request, timeout)
                case Sleep(seconds):
                    await asyncio.sleep(seconds)
        except Exception as e:
            error = e
