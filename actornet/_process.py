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

A process knows its node by `NodeApi`: the node's entry points for the runtime
(a process ends through it, a server files its replies in it, the transport
hands it what arrives). The runtime's modules name the node by this protocol,
never by ``actornet.node``, so no module imports the facade that imports it;
`Node` satisfies it structurally, and mypy checks that it does wherever a
`Node` is passed for it. These are not API for applications: those are
`Node`'s documented methods and ``actornet``'s functions. Each signal has one
entry point: `route` for a message, the ``signal_*`` methods for links, exits
and monitors, `deliver_alias` for a call's reply, `node_up`/`node_down` for
the transport's news.
"""

from __future__ import annotations

import ctypes
import threading
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from actornet._ids import Pid, Ref
from actornet._light_mailbox import LightMailbox
from actornet._mailbox import Mailbox
from actornet.errors import ProcessExit

if TYPE_CHECKING:
    from actornet._callslot import TaskSlot, ThreadSlot
    from actornet._scheduler import Scheduler

__all__ = ["Process", "Killed", "NodeApi"]

_Slot = TypeVar("_Slot", "ThreadSlot", "TaskSlot")

# Shared by every process that has none: read-only at run time (a change through them
# raises), typed as the tables they stand for so that readers need no casts.
_NO_LINKS = cast("set[Any]", frozenset())
_NO_MONITORS = cast("dict[Any, Any]", MappingProxyType({}))

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

    def __init__(self, pid: Pid, node: NodeApi, kind: str,
                 mailbox: Mailbox | LightMailbox | None = None) -> None:
        self.pid = pid
        self.node = node
        self.kind = kind
        self.light = kind in LIGHT_KINDS
        # a `Mailbox` (thread kinds) or a `LightMailbox` (lightweight kinds, always given)
        box = mailbox if mailbox is not None else Mailbox()
        if isinstance(box, LightMailbox):
            box.owner = self  # a LightMailbox checks its owner when it wakes
        else:
            box.check = self.check_alive
        self.mailbox: Mailbox | LightMailbox = box
        # Made on first use (most processes never link or monitor): read them freely,
        # change them only through the methods below.
        self.links: set[Pid] = _NO_LINKS
        # monitors this process holds: ref -> what it watches (a Pid or (name, node))
        self.monitors: dict[Ref, Any] = _NO_MONITORS
        # monitors others hold on this process: ref -> watcher pid
        self.monitored_by: dict[Ref, Pid] = _NO_MONITORS
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

    @property
    def thread_mailbox(self) -> Mailbox:
        """The mailbox of a thread process; `TypeError` for a lightweight one."""
        box = self.mailbox
        if not isinstance(box, Mailbox):
            raise TypeError(f"{self.pid!r} is a lightweight process: it has no thread mailbox")
        return box

    @property
    def light_mailbox(self) -> LightMailbox:
        """The mailbox of a lightweight process; `TypeError` for a thread one."""
        box = self.mailbox
        if not isinstance(box, LightMailbox):
            raise TypeError(f"{self.pid!r} is a thread process: it has no scheduler")
        return box

    def __repr__(self) -> str:
        state = "alive" if self.alive else f"dead: {self.exit_reason!r}"
        return f"<Process {self.pid!r} {self.kind} {state}>"

    # -- links and monitors (under the node's lock) -------------------------------------------

    def add_link(self, pid: Pid) -> None:
        links = self.links
        if links is _NO_LINKS:
            links = self.links = set()
        links.add(pid)

    def remove_link(self, pid: Pid) -> None:
        if pid in self.links:
            self.links.discard(pid)

    def add_monitor(self, ref: Ref, target: Any) -> None:
        monitors = self.monitors
        if monitors is _NO_MONITORS:
            monitors = self.monitors = {}
        monitors[ref] = target

    def pop_monitor(self, ref: Ref) -> Any:
        """Forget the monitor `ref` this process holds; what it watched, or None."""
        return self.monitors.pop(ref, None) if self.monitors else None

    def add_watcher(self, ref: Ref, watcher: Pid) -> None:
        watchers = self.monitored_by
        if watchers is _NO_MONITORS:
            watchers = self.monitored_by = {}
        watchers[ref] = watcher

    def pop_watcher(self, ref: Ref) -> Pid | None:
        """Forget the monitor `ref` someone holds on this process; its watcher, or None."""
        if self.monitored_by:
            return self.monitored_by.pop(ref, None)
        return None

    def take_links_and_monitors(self) -> tuple[set[Pid], dict[Ref, Any], dict[Ref, Pid]]:
        """``(links, monitors, monitored_by)``, leaving none (the process is dying)."""
        taken = self.links, self.monitors, self.monitored_by
        self.links, self.monitors, self.monitored_by = _NO_LINKS, _NO_MONITORS, _NO_MONITORS
        return taken

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
                self.light_mailbox.sched.call(task.cancel)
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


class NodeApi(Protocol):
    """The node, as the process runtimes, the servers and the transport see it."""

    name: str
    creation: int
    lock: threading.RLock
    procs: dict[int, Process]

    @property
    def running(self) -> bool: ...

    # -- processes ---------------------------------------------------------------------
    def current(self) -> Process: ...

    def new_process(self, kind: str, mailbox: Mailbox | LightMailbox | None = None) -> Process: ...

    def end_process(self, proc: Process, reason: Any) -> bool: ...

    def local_process(self, pid: Pid) -> Process | None: ...

    def is_local(self, pid: Pid) -> bool: ...

    def scheduler(self) -> Scheduler: ...

    def stop(self, timeout: float | None = 5.0) -> None: ...

    # -- messages and names ------------------------------------------------------------
    def send(self, dest: Any, msg: Any, *, noconnect: bool = False) -> None: ...

    def route(self, dest: Any, msg: Any, check: bool, connect: bool = True) -> None: ...

    def deliver(self, id_: int, creation: int, msg: Any) -> None: ...

    def deliver_name(self, name: str, msg: Any) -> None: ...

    def register(self, name: str, pid: Pid) -> bool: ...

    def whereis(self, name: str) -> Pid | None: ...

    def resolve(self, dest: Any) -> Pid | tuple[str, str]: ...

    # -- calls -------------------------------------------------------------------------
    def make_ref(self) -> Ref: ...

    def new_alias(self, slot: _Slot) -> tuple[Ref, _Slot]: ...

    def drop_alias(self, ref: Ref) -> bool: ...

    def deliver_alias(self, ref: Ref, value: Any) -> None: ...

    def reply(self, from_: tuple[Pid, Ref], value: Any) -> None: ...

    def spawn_request(self, requester: Pid, ref: Ref, module: str, qualname: str,
                      args: tuple[Any, ...], flags: int) -> None: ...

    def spawn_reply(self, requester: Pid, ref: Ref, result: Any, flags: int) -> None: ...

    # -- signals -----------------------------------------------------------------------
    def monitor_as(self, me: Process, target: Any, ref: Ref) -> None: ...

    def demonitor(self, ref: Ref) -> bool: ...

    def demonitor_target(self, target: Any, ref: Ref, watcher: Pid) -> None: ...

    def signal_link(self, to: Pid, from_: Pid) -> None: ...

    def signal_unlink(self, to: Pid, from_: Pid) -> None: ...

    def signal_exit(self, to: Pid, from_: Pid, reason: Any, *, linked: bool,
                    force: bool = False) -> None: ...

    def signal_monitor(self, target: Any, watcher: Pid, ref: Ref) -> None: ...

    def signal_demonitor(self, target: Any, ref: Ref) -> None: ...

    def signal_down(self, watcher: Pid, ref: Ref, item: Any, reason: Any) -> None: ...

    def node_up(self, node: str) -> None: ...

    def node_down(self, node: str, was_up: bool = True) -> None: ...
