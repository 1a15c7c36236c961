"""The record a node keeps for each of its processes, and how one is stopped.

A process is a `Pid`, a mailbox, its links and monitors, and what runs it.
There are two kinds, and an adopted variant of each:

- *thread* processes: a function process owns a thread; a thread GenServer runs
  on its pykka actor's thread; a plain thread (the main thread, a test) becomes
  an *adopted* process the first time it calls `self()` or `receive()`.
- *lightweight* processes: an ``async def`` function or a GenServer with
  ``async def`` callbacks runs as an asyncio task on the node's scheduler
  (`actornet._scheduler`); an asyncio task that is not a process (a web
  handler, say) becomes an *adopted task* the first time it needs a pid.
"""

from __future__ import annotations

import ctypes
import threading
from typing import TYPE_CHECKING, Any

from actornet._ids import Pid, Ref
from actornet._mailbox import Mailbox
from actornet.errors import ProcessExit

if TYPE_CHECKING:
    from actornet.node import Node

__all__ = ["Process", "Killed"]

FUNCTION = "function"
SERVER = "server"
ADOPTED = "adopted"
LIGHT = "light"
LIGHT_SERVER = "light_server"
ADOPTED_TASK = "adopted_task"
LIGHT_KINDS = frozenset({LIGHT, LIGHT_SERVER, ADOPTED_TASK})


class Killed(ProcessExit):
    """Unwinds the thread of a process that an exit signal already ended."""


class Process:
    """A node's bookkeeping for one live (or just-dead) process."""

    __slots__ = (
        "__weakref__",
        "alive",
        "async_sent",
        "exit_reason",
        "function",
        "in_user_code",
        "kind",
        "light",
        "links",
        "lock",
        "mailbox",
        "monitored_by",
        "monitors",
        "name",
        "node",
        "pid",
        "server",
        "task",
        "thread_id",
        "trap_exit",
        "waiting",
    )

    def __init__(self, pid: Pid, node: Node, kind: str, mailbox: Any = None) -> None:
        self.pid = pid
        self.node = node
        self.kind = kind
        self.light = kind in LIGHT_KINDS
        # a `Mailbox` (thread kinds) or a `LightMailbox` (lightweight kinds, always given)
        self.mailbox: Any = mailbox if mailbox is not None else Mailbox()
        self.mailbox.check = self.check_alive
        self.links: set[Pid] = set()
        # monitors this process holds: ref -> what it watches (a Pid or (name, node))
        self.monitors: dict[Ref, Any] = {}
        # monitors others hold on this process: ref -> watcher pid
        self.monitored_by: dict[Ref, Pid] = {}
        self.trap_exit = False
        self.name: str | None = None
        self.alive = True
        self.exit_reason: Any = None
        self.thread_id: int | None = None
        self.in_user_code = False
        self.async_sent = False
        self.lock = None if self.light else threading.Lock()  # guards the async exception
        self.task: Any = None  # the asyncio task of a lightweight process
        self.function: str = ""
        self.waiting = False  # blocked in receive (for process_info)
        self.server: Any = None  # the GenServer instance, for SERVER processes

    def __repr__(self) -> str:
        state = "alive" if self.alive else f"dead: {self.exit_reason!r}"
        return f"<Process {self.pid!r} {self.kind} {state}>"

    def check_alive(self) -> None:
        """Raise in the process's own thread if an exit signal ended it."""
        if not self.alive:
            raise Killed(self.exit_reason)

    def enter_user_code(self) -> None:
        # No lock: a killer that reads False here just skips the async exception,
        # and the process still sees its death at the next receive.
        self.in_user_code = True

    def leave_user_code(self) -> None:
        """Mark that user code is over; cancel a kill still in flight."""
        assert self.lock is not None
        with self.lock:
            self.in_user_code = False
            if self.async_sent and self.thread_id is not None:
                # The killer's exception may not have fired yet; clear it so
                # it cannot surface in the runtime's own clean-up code.
                _set_async_exc(self.thread_id, None)

    def interrupt(self) -> None:
        """Stop what runs a process that an exit signal ended.

        A thread blocked in `receive` wakes on the mailbox; one busy in
        Python code gets `Killed` raised at its next bytecode, like an
        untrappable exit on the BEAM. Only ever once, and only while it runs
        user code, never the runtime's own bookkeeping. A lightweight
        process's task is cancelled: it ends at its next ``await``
        (cooperative scheduling cannot stop code that never awaits).
        """
        if self.light:
            task = self.task
            if task is None or self.kind == ADOPTED_TASK:
                self.mailbox.put_wake()  # never cancel a task we do not own
            else:
                self.mailbox.sched.call(task.cancel)
            return
        self.mailbox.put_wake()
        if self.kind == ADOPTED:
            return  # never inject into a thread we do not own
        assert self.lock is not None
        with self.lock:
            if (
                self.in_user_code
                and not self.async_sent
                and self.thread_id is not None
                and self.thread_id != threading.get_ident()
            ):
                self.async_sent = True
                _set_async_exc(self.thread_id, Killed)


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc is not None else None
    )
