"""The thread runtime: a process that owns an OS thread, and a thread adopted as one.

``spawn(fn)`` of a plain function runs ``fn(*args)`` on a new daemon thread
bound to its process (`_runtime.bind`); when it returns or raises, the process
ends with Erlang's reason. A thread the runtime did not start (the main thread,
a test, a REPL) becomes an *adopted* process the first time it needs a pid. A
thread GenServer runs on a pykka actor's thread instead (`actornet._server`).
The lightweight runtime is `actornet._light`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from actornet import _runtime
from actornet._process import ADOPTED, Killed, Process
from actornet.errors import Crash, ProcessExit

if TYPE_CHECKING:
    from actornet._process import NodeApi

__all__ = ["start", "adopt"]

log = logging.getLogger("actornet")


def start(node: NodeApi, proc: Process, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """Run ``fn(*args)`` as `proc` on a thread of its own."""
    thread = threading.Thread(target=_run, args=(node, proc, fn, args),
                              name=f"actornet{proc.pid!r}", daemon=True)
    thread.start()


def _run(node: NodeApi, proc: Process, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    proc.thread_id = threading.get_ident()
    _runtime.bind(proc)
    reason: Any = "normal"
    try:
        try:
            proc.enter_user_code()
            if proc.alive:
                fn(*args)
        finally:
            proc.leave_user_code()
    except Killed:
        return  # already dead: whoever killed it did the bookkeeping
    except ProcessExit as e:
        reason = e.reason
    except BaseException as e:
        reason = Crash.from_exception(e)
        log.error("process %r crashed (%s) running %s", proc.pid, reason, proc.function,
                  exc_info=e)
    finally:
        _runtime.unbind()
    node.end_process(proc, reason)


def adopt(node: NodeApi) -> Process:
    """Make the calling thread a process of `node` (one it did not start)."""
    proc = node.new_process(ADOPTED)
    proc.thread_id = threading.get_ident()
    proc.function = threading.current_thread().name
    _runtime.adopt(proc)
    return proc
