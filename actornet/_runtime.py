"""Which node and which process the calling code belongs to.

A thread that runs a process knows its process (and so its node); so does an
asyncio task that runs a lightweight process, through an attribute of its
task (`ProcessTask`). Any other code acts on the *default node*: the oldest
running named node, else a local-only node ``nonode@nohost`` created on first
use, as a fresh `erl` without ``-name`` is.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from actornet._scheduler import loop_threads

if TYPE_CHECKING:
    from actornet._process import NodeApi, Process

_local = threading.local()
_nodes: list[NodeApi] = []
_nodes_lock = threading.Lock()


_get_running_loop = asyncio._get_running_loop
_get_ident = threading.get_ident
try:  # Python 3.12+: in C
    from _asyncio import current_task as _task_of_loop  # type: ignore[attr-defined]
except ImportError:  # 3.10, 3.11: the table asyncio.current_task() itself reads
    try:
        _task_of_loop = asyncio.tasks._current_tasks.get  # type: ignore[attr-defined]
    except AttributeError:
        _task_of_loop = asyncio.current_task


def running_task() -> asyncio.Task[Any] | None:
    """The running asyncio task of this thread, or None (no loop, or outside a task).

    On a scheduler's thread the loop is known without asking asyncio, whose
    ``_get_running_loop`` makes a ``getpid`` system call each time (fork safety):
    this runs on every API call of a lightweight process.
    """
    loop = loop_threads.get(_get_ident())
    if loop is not None:
        task = _task_of_loop(loop)
        if task is not None:
            return task  # type: ignore[no-any-return]
    loop = _get_running_loop()
    return None if loop is None else _task_of_loop(loop)


class ProcessTask(asyncio.Task):  # type: ignore[type-arg]
    """The task of a lightweight process: it knows its process (`actornet_proc`)."""

    __slots__ = ("actornet_proc",)

    actornet_proc: Process


def bind_task(task: asyncio.Task[Any], proc: Process) -> None:
    """Make `proc` the process of `task` (a `ProcessTask`, or any task to adopt)."""
    try:
        task.actornet_proc = proc  # type: ignore[attr-defined]
    except AttributeError:  # a task class with neither the slot nor a __dict__
        _other_tasks[task] = proc


def process_of_task(task: asyncio.Task[Any] | None) -> Process | None:
    proc = getattr(task, "actornet_proc", None)
    if proc is None and _other_tasks and task is not None:
        return _other_tasks.get(task)
    return proc


def task_process() -> Process | None:
    """The process of the running asyncio task, if it is one."""
    task = running_task()
    return None if task is None else process_of_task(task)


_other_tasks: weakref.WeakKeyDictionary[asyncio.Task[Any], Process] = (
    weakref.WeakKeyDictionary())


def bind(proc: Process) -> None:
    """Make `proc` the calling thread's process (the thread runs it)."""
    _local.proc = proc


def unbind() -> None:
    _local.proc = None


class _AdoptedThread:
    """Lives in an adopted thread's locals; ends its process when the thread ends."""

    __slots__ = ("__weakref__", "proc")

    def __init__(self, proc: Process) -> None:
        self.proc = proc

    def __del__(self) -> None:
        proc = self.proc
        if proc.alive and proc.node.running:
            proc.node.end_process(proc, "normal")


def adopt(proc: Process) -> None:
    """Make `proc` the calling thread's process on `proc.node` (a thread the runtime
    did not start). A thread may have one such process per node it talks through."""
    adopted = getattr(_local, "adopted", None)
    if adopted is None:
        adopted = _local.adopted = {}
    for key in [k for k, holder in adopted.items() if not holder.proc.node.running]:
        del adopted[key]  # a stopped node is let go, not kept alive by this thread
    adopted[id(proc.node)] = _AdoptedThread(proc)


def forget(node: NodeApi) -> None:
    """Drop the calling thread's adopted process on `node` (which is stopping)."""
    getattr(_local, "adopted", {}).pop(id(node), None)


def adopted_process(node: NodeApi) -> Process | None:
    """The calling thread's adopted process on `node`, if any."""
    holder = getattr(_local, "adopted", {}).get(id(node))
    return None if holder is None else holder.proc


def thread_process() -> Process | None:
    """The calling thread's process, if it has one."""
    return getattr(_local, "proc", None)


def node_started(node: NodeApi) -> None:
    with _nodes_lock:
        _nodes.append(node)


def node_stopped(node: NodeApi) -> None:
    with _nodes_lock:
        if node in _nodes:
            _nodes.remove(node)


def current_node() -> NodeApi:
    """The node the calling thread acts on (see the module docstring)."""
    proc = getattr(_local, "proc", None)
    # A thread that runs a process belongs to its node; any other thread (the
    # main thread, a REPL) follows the default node, so start_node() after
    # earlier local use moves it over, as `net_kernel:start` would.
    if proc is not None and proc.node.running:
        return proc.node  # type: ignore[no-any-return]
    task = running_task()
    if task is not None:  # in a lightweight process, or another asyncio task
        proc = process_of_task(task)
        if proc is not None and proc.node.running:
            return proc.node
    nodes = _nodes
    for node in nodes:
        if node.name != "nonode@nohost":
            return node
    if nodes:
        return nodes[0]
    with _creating:
        if _nodes:
            return _nodes[0]
        return _default_node()


def _no_factory() -> NodeApi:
    raise RuntimeError("no node module loaded: import actornet")


# Makes the default local node; actornet.node sets it when imported (so this module,
# which the node imports, does not import the node back).
_default_node: Callable[[], NodeApi] = _no_factory


def set_default_node_factory(factory: Callable[[], NodeApi]) -> None:
    """Tell `current_node` how to make the default local node (done by actornet.node)."""
    global _default_node
    _default_node = factory


def running_nodes() -> list[NodeApi]:
    """Every running node of this interpreter, oldest first."""
    with _nodes_lock:
        return list(_nodes)


_creating = threading.Lock()


@atexit.register
def _stop_all() -> None:
    # Peers hear at once that we are gone, and the port mapper forgets us.
    for node in reversed(running_nodes()):
        with contextlib.suppress(Exception):  # interpreter exit: best effort
            node.stop(timeout=2.0)
