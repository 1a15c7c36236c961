"""The lightweight runtime: a process that is an asyncio task on the node's scheduler.

``spawn(fn)`` of an ``async def`` function starts ``fn(*args)`` as a task whose
main coroutine is `_light_main`: it binds the task to its process (a context
variable, so the task's own context carries it), runs the function, and ends
the process with Erlang's reason (``normal``, the exception as a `Crash`, the
reason of a `ProcessExit`). An exit signal that ends the process cancels its
task, which stops at its next ``await``.

An asyncio task that is not a process, such as a web handler on the
application's loop, becomes an *adopted task* the first time it needs a pid
(``actornet.self()``, ``aio.call``): a process whose mailbox belongs to that
task's loop, ending when the task ends.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from actornet import _runtime
from actornet._light_mailbox import LightMailbox
from actornet._process import ADOPTED_TASK, Killed, Process
from actornet._scheduler import Scheduler, scheduler_of
from actornet.errors import Crash, ProcessExit

if TYPE_CHECKING:
    from actornet.node import Node

__all__ = ["classify", "is_async_function", "start", "adopt_task", "check_function"]

log = logging.getLogger("actornet")

_CO_COROUTINE = inspect.CO_COROUTINE
_CO_GENERATORS = inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR


def classify(fn: Any, what: str) -> bool:
    """True if `fn` runs as a lightweight process, False as a thread process;
    `TypeError` (naming `what`) if it cannot be a process at all."""
    code = getattr(fn, "__code__", None)
    if code is not None:  # a function or a bound method: the fast path
        flags = code.co_flags
        if not flags & _CO_GENERATORS:
            return bool(flags & _CO_COROUTINE)
    check_function(fn, what)
    return is_async_function(fn)


def is_async_function(fn: Any) -> bool:
    """True for an ``async def`` function (or a partial or callable object of one)."""
    code = getattr(fn, "__code__", None)
    if code is not None:
        return bool(code.co_flags & _CO_COROUTINE)
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None))  # noqa: B004  # an object with `async def __call__`


def check_function(fn: Any, what: str) -> None:
    """Refuse what cannot run as a process, with the reason (a `TypeError`)."""
    if inspect.iscoroutine(fn):
        fn.close()  # it will never run: no "never awaited" warning on top of the error
        raise TypeError(
            f"{what} needs a function, got a coroutine object: pass the async function "
            "itself and its arguments, as spawn(fn, arg), not spawn(fn(arg))")
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"{what} cannot run the generator function {fn.__qualname__!r} as a process: "
            "a process is a plain function or an async def function")
    if not callable(fn):
        raise TypeError(f"{what} needs a callable, got {type(fn).__name__!r}")


def start(node: Node, proc: Process, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """Run ``fn(*args)`` as `proc`'s task on `node`'s scheduler (from any thread)."""
    proc.mailbox.sched.call(_create, proc, fn, args)


def _create(proc: Process, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    if proc.alive:  # an exit signal may have ended it before it could start
        proc.task = proc.mailbox.sched.loop.create_task(_light_main(proc, fn, args))


async def _light_main(proc: Process, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    # This function's name is how the scheduler's watchdog finds the process a
    # stack belongs to (`_scheduler._process_of`).
    _runtime.bind_task(proc)
    reason: Any = "normal"
    try:
        if proc.alive:
            await fn(*args)
    except Killed:
        return  # already dead: whoever killed it did the bookkeeping
    except ProcessExit as e:
        reason = e.reason
    except asyncio.CancelledError:
        if not proc.alive:
            return  # an exit signal cancelled it
        reason = "killed"  # cancelled by someone else: the loop's shutdown, say
    except BaseException as e:
        reason = Crash.from_exception(e)
        log.error("process %r crashed (%s) running %s", proc.pid, reason, proc.function,
                  exc_info=e)
    proc.node._exit(proc, reason)


def new_mailbox(sched: Scheduler) -> LightMailbox:
    return LightMailbox(sched)


def adopt_task(node: Node) -> Process:
    """Make the running asyncio task a process of `node` (see the module docstring)."""
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("actornet needs a process here, and code on an asyncio loop "
                           "outside any task cannot be one: call it from a task")
    loop = task.get_loop()
    proc = node._new_process(ADOPTED_TASK, LightMailbox(scheduler_of(loop)))
    proc.task = task
    proc.function = f"task {task.get_name()}"
    _runtime.bind_task(proc)
    task.add_done_callback(lambda t: _adopted_task_done(proc, t))
    return proc


def _adopted_task_done(proc: Process, task: asyncio.Task[Any]) -> None:
    if not proc.alive or not proc.node.running:
        return
    reason: Any = "normal"
    if not task.cancelled():
        error = task.exception()
        if error is not None and not isinstance(error, Killed):
            reason = (error.reason if isinstance(error, ProcessExit)
                      else Crash.from_exception(error))
    proc.node._exit(proc, reason)
