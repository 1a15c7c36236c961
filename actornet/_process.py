"""The record a node keeps for each of its processes, and how a thread is stopped.

A process is a `Pid`, a `Mailbox`, its links and monitors, and the thread that
runs it. Function processes own a thread each; a GenServer runs on its pykka
actor's thread; a plain thread (the main thread, a test) becomes an *adopted*
process the first time it calls `self()` or `receive()`.
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
        "links",
        "lock",
        "mailbox",
        "monitored_by",
        "monitors",
        "name",
        "node",
        "pid",
        "server",
        "thread_id",
        "trap_exit",
        "waiting",
    )

    def __init__(self, pid: Pid, node: Node, kind: str, mailbox: Mailbox | None = None) -> None:
        self.pid = pid
        self.node = node
        self.kind = kind
        self.mailbox = mailbox if mailbox is not None else Mailbox()
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
        self.lock = threading.Lock()
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
        with self.lock:
            self.in_user_code = False
            if self.async_sent and self.thread_id is not None:
                # The killer's exception may not have fired yet; clear it so
                # it cannot surface in the runtime's own clean-up code.
                _set_async_exc(self.thread_id, None)

    def interrupt(self) -> None:
        """Stop the thread of a process that was killed from another thread.

        A process blocked in `receive` wakes on the mailbox; one busy in
        Python code gets `Killed` raised at its next bytecode, like an
        untrappable exit on the BEAM. Only ever once, and only while it runs
        user code, never the runtime's own bookkeeping.
        """
        self.mailbox.put_wake()
        if self.kind == ADOPTED:
            return  # never inject into a thread we do not own
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
