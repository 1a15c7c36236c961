"""The lightweight runtime: a process that is an asyncio task on the node's scheduler.

``spawn(fn)`` of an ``async def`` function runs the coroutine ``fn(*args)`` as a
`ProcessTask` that knows its process; when the task is done, `_done` ends the
process with Erlang's reason: ``normal``, the exception as a `Crash`, the
reason of a `ProcessExit`. No wrapper coroutine runs around the function, so
an idle process costs its own coroutine, its task and its mailbox: about two
kilobytes. An exit signal that ends the process cancels its task, which stops
at its next ``await``.

An asyncio task that is not a process, such as a web handler on the
application's loop, becomes an *adopted task* the first time it needs a pid
(``actornet.self()``, ``aio.call``): a process whose mailbox belongs to that
task's loop, ending when the task ends.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from actornet import _runtime
from actornet._light_mailbox import LightMailbox
from actornet._process import ADOPTED_TASK, Killed, Process
from actornet._runtime import ProcessTask
from actornet._scheduler import scheduler_of
from actornet.errors import Crash, ProcessExit

if TYPE_CHECKING:
    from actornet._process import NodeApi

__all__ = ["classify", "is_async_function", "start", "new_task", "adopt_task",
           "check_function"]

log = logging.getLogger("actornet")

_get_ident = threading.get_ident
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


def start(proc: Process, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """Run ``fn(*args)`` as `proc`'s task on its node's scheduler (from any thread)."""
    sched = proc.light_mailbox.sched
    if _get_ident() == sched.thread_id:
        _create(proc, fn, args)
    else:
        sched.submit(_create, proc, fn, args)


def _create(proc: Process, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    if not proc.alive:
        return  # an exit signal ended it before it could start
    try:
        coro = fn(*args)
    except BaseException as e:  # wrong arguments, say: the process crashes, as Erlang's
        coro = _raise(e)
    task = new_task(proc, coro)
    task.add_done_callback(_done, context=_DONE_CONTEXT)


def new_task(proc: Process, coro: Coroutine[Any, Any, Any]) -> ProcessTask:
    """Start `coro` as the task of `proc` on its scheduler's loop (on that loop)."""
    task = ProcessTask(coro, loop=proc.light_mailbox.sched.loop)
    task.actornet_proc = proc
    proc.task = task
    return task


# What `_done` runs in: it reads no context variable, and one shared context saves each
# process the copy `add_done_callback` would make.
_DONE_CONTEXT = contextvars.Context()


async def _raise(error: BaseException) -> None:
    raise error


def _done(task: ProcessTask) -> None:
    """A lightweight process's task is done: end the process with Erlang's reason."""
    proc: Process = task.actornet_proc
    if task.cancelled():
        if not proc.alive:
            return  # an exit signal cancelled it
        reason: Any = "killed"  # cancelled by someone else: the loop's shutdown, say
    else:
        error = task.exception()
        if error is None:
            reason = "normal"
        elif isinstance(error, Killed):
            return  # already dead: whoever killed it did the bookkeeping
        elif isinstance(error, ProcessExit):
            reason = error.reason
        else:
            reason = Crash.from_exception(error)
            log.error("process %r crashed (%s) running %s", proc.pid, reason, proc.function,
                      exc_info=error)
    if proc.node.running:
        proc.node.end_process(proc, reason)


def adopt_task(node: NodeApi) -> Process:
    """Make the running asyncio task a process of `node` (see the module docstring)."""
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("actornet needs a process here, and code on an asyncio loop "
                           "outside any task cannot be one: call it from a task")
    loop = task.get_loop()
    proc = node.new_process(ADOPTED_TASK, LightMailbox(scheduler_of(loop)))
    proc.task = task
    proc.function = f"task {task.get_name()}"
    _runtime.bind_task(task, proc)
    task.add_done_callback(_adopted_task_done)
    return proc


def _adopted_task_done(task: asyncio.Task[Any]) -> None:
    # Like an adopted thread's, its end is "normal": the task, its result and its
    # exception are its owner's business (asyncio still reports an unretrieved one).
    proc = _runtime.process_of_task(task)
    if proc is not None and proc.alive and proc.node.running:
        proc.node.end_process(proc, "normal")
