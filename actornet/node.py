"""A node: one process table, one name registry, one delivery path.

A `Node` is actornet's BEAM VM. It owns every process it spawned, the local
name registry and the signal paths (message, exit, link, monitor, down). Each
path has one entry point taking pids, which the local API and the distribution
layer both call, so a remote pid behaves like a local one.

Concurrency: process-table and link/monitor bookkeeping is guarded by one node
lock; message delivery to a local pid takes no lock (a dict lookup and a
`SimpleQueue.put`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from actornet import _gen, _light, _runtime
from actornet._callslot import DOWN, REPLY, TaskSlot, ThreadSlot
from actornet._ids import Pid, Ref, _next_ref_id
from actornet._light_mailbox import LightMailbox
from actornet._process import (
    ADOPTED,
    ADOPTED_TASK,
    FUNCTION,
    LIGHT,
    LIGHT_SERVER,
    Killed,
    Process,
)
from actornet._scheduler import Scheduler
from actornet._terms import check_term
from actornet.errors import (
    ActornetError,
    AlreadyRegistered,
    Crash,
    NoProc,
    ProcessExit,
    Timeout,
)

__all__ = ["Node", "LOCAL_NODE_NAME"]

_Slot = TypeVar("_Slot", ThreadSlot, TaskSlot)

log = logging.getLogger("actornet")

LOCAL_NODE_NAME = "nonode@nohost"


class Node:
    """One actornet node: processes, names, and (once started) distribution.

    Most programs never touch a `Node` directly: `actornet.spawn`, `send` and
    friends act on the current node. Tests use several nodes in one
    interpreter through these methods.

    Example:
        >>> import actornet
        >>> with actornet.Node("demo@localhost") as n:
        ...     pid, ref = n.spawn_monitor(print, "hello from", "a process")
        ...     _ = n.receive(lambda m: m[1] == ref, timeout=5)
        hello from a process
    """

    def __init__(self, name: str = LOCAL_NODE_NAME, *, creation: int | None = None) -> None:
        if "@" not in name:
            raise ValueError(f"node name must look like 'name@host', got {name!r}")
        self.name = name
        self.creation = creation if creation is not None else _new_creation()
        self._procs: dict[int, Process] = {}
        self._names: dict[str, Process] = {}
        self._aliases: dict[Ref, ThreadSlot | TaskSlot] = {}
        self._node_monitors: dict[str, list[Pid]] = {}
        self._nodes_watchers: list[Pid] = []  # monitor_nodes subscribers
        self._global: Any = None  # this node's global_ name server, once started
        self._pg_scopes: dict[str, Any] = {}  # pg scope servers by scope name
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._running = True
        self._dist: Any = None  # the ZeroMQ transport, once distributed
        self._closers: list[Callable[[], None]] = []  # run by stop(), e.g. port-mapper entry
        self._scheduler: Scheduler | None = None  # where lightweight processes run
        self._scheduler_lock = threading.Lock()
        _runtime.node_started(self)

    # -- lifecycle --------------------------------------------------------------

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Node {self.name} {'running' if self._running else 'stopped'}>"

    @property
    def port(self) -> int | None:
        """The TCP port this node listens on (None when not distributed).

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     n.port is None  # not distributed
            True
        """
        return None if self._dist is None else int(self._dist.port)

    @property
    def running(self) -> bool:
        """True until `stop` is called.

        Example:
            >>> import actornet
            >>> n = actornet.Node("doc@localhost")
            >>> n.running
            True
            >>> n.stop()
            >>> n.running
            False
        """
        return self._running

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop every process (servers get `terminate`), then the transport.

        Servers get `timeout` seconds in all to run `terminate` (None or
        ``math.inf``: no limit); whatever is left is killed. Idempotent. Peers
        are told at once, so they see this node go down without waiting for a
        tick timeout.

        Example:
            >>> import actornet
            >>> n = actornet.Node("doc@localhost")
            >>> n.stop(timeout=1.0)
            >>> n.running
            False
        """
        seconds = _gen.timeout_arg(timeout, "Node.stop()")
        if not self._running:
            return
        sched = self._scheduler
        if sched is not None and sched.on_loop() and any(
                p.kind == LIGHT_SERVER for p in list(self._procs.values())):
            raise ActornetError(
                f"Node.stop() of {self.name} was called on its scheduler's loop, where it "
                "would wait for its own lightweight servers: use `await "
                "actornet.aio.stop_node(node)` there")
        deadline = None if seconds is None else time.monotonic() + seconds
        # Oldest first: a supervisor stops its own children before we reach them.
        for proc in sorted(self._procs.values(), key=lambda p: p.pid.id):
            if proc.alive and proc.server is not None:
                remaining = None if deadline is None else max(0.1, deadline - time.monotonic())
                with contextlib.suppress(Exception):
                    _gen.wait_exit(proc.pid, (_gen.STOP, "shutdown"), remaining, node=self)
        for proc in list(self._procs.values()):
            self._kill(proc, "shutdown")
        self._running = False
        if self._dist is not None:
            self._dist.stop()
        for close in self._closers:
            with contextlib.suppress(Exception):
                close()
        if sched is not None:
            sched.stop()
        _runtime.node_stopped(self)
        _runtime.forget(self)  # stop() adopted this thread here: do not keep the node alive

    def scheduler(self) -> Scheduler:
        """The scheduler this node's lightweight processes run on (started on first use).

        It is the node's own thread running an asyncio loop, unless the node
        was started on an application's loop (`actornet.aio.start_node`).

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     n.scheduler().owns_loop
            True
        """
        sched = self._scheduler
        if sched is None:
            with self._scheduler_lock:
                sched = self._scheduler
                if sched is None:
                    if not self._running:
                        raise RuntimeError(f"node {self.name} is stopped")
                    sched = self._scheduler = Scheduler.start_thread(self.name)
        return sched

    def use_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run this node's lightweight processes on `loop`, the running loop of the
        calling thread, before any of them starts (`actornet.aio.start_node` does this).

        Example:
            >>> import asyncio, actornet
            >>> async def main():
            ...     n = actornet.Node("doc@localhost")
            ...     n.use_loop(asyncio.get_running_loop())
            ...     same = n.scheduler().loop is asyncio.get_running_loop()
            ...     n.stop()
            ...     return same
            >>> asyncio.run(main())
            True
        """
        with self._scheduler_lock:
            if self._scheduler is not None:
                raise ActornetError(f"node {self.name} already has a scheduler")
            self._scheduler = Scheduler.attach(loop, self.name)

    # -- identifiers ---------------------------------------------------------------

    def make_ref(self) -> Ref:
        """Return a reference unique on this node incarnation (Erlang `make_ref/0`).

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     n.make_ref() == n.make_ref()
            False
        """
        return Ref(self.name, _next_ref_id(), self.creation)

    def _new_process(self, kind: str, mailbox: Any = None) -> Process:
        if not self._running:
            raise RuntimeError(f"node {self.name} is stopped")
        pid = Pid(self.name, next(self._ids), self.creation)
        proc = Process(pid, self, kind, mailbox)
        self._procs[pid.id] = proc
        return proc

    def _local(self, pid: Pid) -> Process | None:
        """The live local process for `pid`, or None (dead, or not ours)."""
        proc = self._procs.get(pid.id)
        if proc is not None and proc.pid.creation == pid.creation and pid.node == self.name:
            return proc
        return None

    def is_local(self, pid: Pid) -> bool:
        """True if `pid` names a process of this node incarnation.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     n.is_local(n.current().pid), n.is_local(actornet.Pid("b@localhost", 1, 1))
            (True, False)
        """
        return pid.node == self.name and pid.creation == self.creation

    # -- processes -------------------------------------------------------------------

    def current(self) -> Process:
        """The calling thread's process on this node (adopting the thread if needed).

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     n.current().pid == n.current().pid
            True
        """
        proc = _runtime.thread_process()
        if proc is not None and proc.node is self and proc.alive:
            return proc  # the fast path of a thread process
        task = _runtime.running_task()
        if task is not None:
            proc = _runtime.process_of_task(task)
            if (proc is not None and proc.node is self
                    and (proc.alive or proc.kind != ADOPTED_TASK)):
                return proc  # a dead one raises at its next check (`check_alive`)
            return _light.adopt_task(self)  # a web handler, or a task a process made
        proc = _runtime.adopted_process(self)
        if proc is not None and proc.alive:
            return proc
        proc = self._new_process(ADOPTED)
        proc.thread_id = threading.get_ident()
        proc.function = threading.current_thread().name
        _runtime.adopt(proc)
        return proc

    def spawn(self, fn: Callable[..., Any], *args: Any) -> Pid:
        """Start `fn(*args)` as a new process on this node and return its pid.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     pid = n.spawn(n.send, n.current().pid, "from a process")
            ...     n.receive(timeout=5)
            'from a process'
        """
        return self._spawn(fn, args)[0]

    def spawn_link(self, fn: Callable[..., Any], *args: Any) -> Pid:
        """Like `spawn`, atomically linked to the calling process.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     _ = n.trap_exit(True)
            ...     pid = n.spawn_link(lambda: None)
            ...     n.receive(timeout=5)[2]
            'normal'
        """
        return self._spawn(fn, args, link=True)[0]

    def spawn_monitor(self, fn: Callable[..., Any], *args: Any) -> tuple[Pid, Ref]:
        """Like `spawn`, atomically monitored by the calling process.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     pid, ref = n.spawn_monitor(lambda: None)
            ...     n.receive(timeout=5)[4]
            'normal'
        """
        pid, ref = self._spawn(fn, args, monitor=True)
        assert ref is not None
        return pid, ref

    def _spawn(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        *,
        link: bool = False,
        monitor: bool = False,
    ) -> tuple[Pid, Ref | None]:
        light = _light.classify(fn, "spawn")
        parent = self.current() if (link or monitor) else None
        if light:
            sched = self._scheduler or self.scheduler()
            proc = self._new_process(LIGHT, LightMailbox(sched))
        else:
            proc = self._new_process(FUNCTION)
        proc.function = getattr(fn, "__qualname__", None) or repr(fn)
        ref = None
        if parent is not None:
            with self._lock:
                if link:
                    parent.add_link(proc.pid)
                    proc.add_link(parent.pid)
                if monitor:
                    ref = self.make_ref()
                    parent.add_monitor(ref, proc.pid)
                    proc.add_watcher(ref, parent.pid)
        self._start(proc, fn, args)
        return proc.pid, ref

    def _start(self, proc: Process, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        if proc.light:
            _light.start(proc, fn, args)
            return
        thread = threading.Thread(
            target=self._run, args=(proc, fn, args), name=f"actornet{proc.pid!r}", daemon=True
        )
        thread.start()

    # -- remote spawn (transport entries and the requesting side) ----------------------------

    def _spawn_request(self, requester: Pid, ref: Ref, module: str, qualname: str,
                       args: tuple[Any, ...], flags: int) -> None:
        """A peer asks for a process running ``module.qualname(*args)`` here."""
        from actornet import _wire as w
        from actornet.rpc import arpc_runner, arun_named, rpc_runner, run_named

        light = bool(flags & w.SPAWN_LIGHT)
        if light:
            proc = self._new_process(LIGHT, LightMailbox(self.scheduler()))
        else:
            proc = self._new_process(FUNCTION)
        proc.function = f"{module}.{qualname}"
        with self._lock:
            if flags & w.SPAWN_LINK:
                proc.add_link(requester)
            if flags & (w.SPAWN_MONITOR | w.SPAWN_RPC):
                proc.add_watcher(ref, requester)
        if flags & w.SPAWN_RPC:
            runner: Callable[..., Any] = arpc_runner if light else rpc_runner
            self._start(proc, runner, (requester, ref, module, qualname, args))
            return
        # The reply goes out before the process can run, so a link's EXIT can
        # never overtake it on the wire.
        self._remote().spawn_reply(requester, ref, proc.pid, flags)
        self._start(proc, arun_named if light else run_named, (module, qualname, args))

    def _spawn_reply(self, requester: Pid, ref: Ref, result: Any, flags: int) -> None:
        """The answer to our spawn request (transport entry, in wire order)."""
        from actornet import _wire as w

        proc = self._local(requester)
        if proc is not None and flags & w.SPAWN_LINK and result.__class__ is Pid:
            with self._lock:
                proc.add_link(result)
        self._deliver_alias(ref, result)

    def _run(self, proc: Process, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
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
        self._exit(proc, reason)

    # -- dying ------------------------------------------------------------------------------

    def _exit(self, proc: Process, reason: Any) -> bool:
        """Mark `proc` dead with `reason` and fire its links and monitors. Once."""
        with self._lock:
            if not proc.alive:
                return False
            proc.alive = False
            proc.exit_reason = reason
            self._procs.pop(proc.pid.id, None)
            if proc.name is not None:
                self._names.pop(proc.name, None)
            links, mine, watchers = proc.take_links_and_monitors()
        proc.mailbox.closed = True
        pid = proc.pid
        for ref, target in mine.items():
            self._demonitor_target(target, ref, pid)
        for other in links:
            self._route_exit(other, pid, reason, linked=True)
        for ref, watcher in watchers.items():
            self._route_down(watcher, ref, pid, reason)
        return True

    def _kill(self, proc: Process, reason: Any) -> None:
        """End `proc` by an exit signal and stop its thread.

        When the signal is handled in the victim's own thread (it linked to a
        dead pid, say), nothing is raised here, mid-bookkeeping: the API call
        in progress ends with `check_alive`, and a receive wakes and raises.
        """
        if self._exit(proc, reason):
            proc.interrupt()

    # -- messages ---------------------------------------------------------------------------

    def send(self, dest: Any, msg: Any, *, noconnect: bool = False) -> None:
        """Send `msg` to a pid, a registered name, or `(name, node)`. Never blocks.

        With `noconnect`, a message for a node that is not connected is dropped
        instead of making a connection (Erlang's ``send(Dest, Msg, [noconnect])``).

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     n.send(n.current().pid, "note")
            ...     n.receive(timeout=1)
            'note'
        """
        self._send(dest, msg, True, not noconnect)

    def _send(self, dest: Any, msg: Any, check: bool, connect: bool = True) -> None:
        """`send`; with `check` False a local message may hold any Python object
        (the runtime's own messages, e.g. a child spec with its start function)."""
        cls = dest.__class__
        if cls is Pid:
            node = dest.node
            if node is self.name or node == self.name:
                if check:
                    check_term(msg)
                proc = self._procs.get(dest.id)
                if proc is not None and proc.pid.creation == dest.creation:
                    proc.mailbox.put(msg)
                return  # sending to a dead pid is not an error, as in Erlang
            self._remote().send(dest, msg, connect)
            return
        if cls is str:
            if check:
                check_term(msg)
            proc = self._names.get(dest)
            if proc is None:
                raise NoProc(f"no process is registered as {dest!r} on {self.name}")
            proc.mailbox.put(msg)
            return
        if cls is tuple and len(dest) == 2:
            name, node = dest
            if name == "global":
                from actornet import global_

                global_.send(node, msg)
                return
            if isinstance(name, str) and isinstance(node, str):
                if node == self.name:
                    self._send(name, msg, check)
                else:
                    self._remote().send_name(self.current().pid, name, node, msg, connect)
                return
        raise TypeError(
            f"cannot send to {dest!r}: a destination is a Pid, a registered name (str), "
            "or a (name, node) tuple"
        )

    def _deliver(self, pid: Pid, msg: Any) -> None:
        """Put `msg` in the mailbox of local `pid`, if it lives (transport entry)."""
        proc = self._procs.get(pid.id)
        if proc is not None and proc.pid.creation == pid.creation:
            proc.mailbox.put(msg)

    def _deliver_name(self, name: str, msg: Any) -> None:
        proc = self._names.get(name)
        if proc is not None:
            proc.mailbox.put(msg)

    def receive(self, match: Callable[[Any], object] | None = None,
                timeout: float | None = None) -> Any:
        """Selective receive for the calling thread's process on this node.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     _ = n.send(n.current().pid, ("hi", 1))
            ...     n.receive(lambda m: m[0] == "hi", timeout=1)
            ('hi', 1)
        """
        if match is not None and not callable(match):
            raise TypeError(
                f"receive(): match must be a callable or None, got {type(match).__name__!r}"
            )
        seconds = _gen.timeout_arg(timeout, "receive()", zero_ok=True)
        _gen.refuse_blocking("actornet.receive()", "await actornet.aio.receive(...)")
        proc = self.current()
        proc.check_alive()
        proc.waiting = True
        try:
            return proc.mailbox.receive(match, seconds)
        except queue.Empty:
            raise Timeout(f"no matching message within {timeout} s") from None
        finally:
            proc.waiting = False

    def receiving(self, timeout: float | None = None) -> Iterator[Any]:
        """The calling process's messages one at a time, for a `match` that takes one.

        See `actornet.receiving`. The arguments are checked at the call.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     _ = n.send(n.current().pid, "skip me"); _ = n.send(n.current().pid, 7)
            ...     for msg in n.receiving(timeout=1):
            ...         if isinstance(msg, int):
            ...             break
            ...     msg, n.receive(timeout=0)
            (7, 'skip me')
        """
        seconds = _gen.timeout_arg(timeout, "receiving()", zero_ok=True)
        _gen.refuse_blocking("actornet.receiving()",
                             "async for msg in actornet.aio.receiving(...)")
        proc = self.current()
        proc.check_alive()
        return proc.mailbox.offer(seconds)

    # -- introspection --------------------------------------------------------------------

    def process_info(self, pid: Pid) -> dict[str, Any] | None:
        """What this node knows of its process `pid`, or None if it is not alive.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     n.process_info(n.current().pid)["message_queue_len"]
            0
        """
        proc = self._local(pid)
        if proc is None:
            return None
        with self._lock:
            links = sorted(proc.links)
            monitors = [t for t in proc.monitors.values() if t.__class__ is Pid or
                        (isinstance(t, tuple) and not str(t[0]).startswith("$"))]
            monitored_by = sorted(set(proc.monitored_by.values()))
        return {
            "pid": pid,
            "registered_name": proc.name,
            "status": "waiting" if proc.waiting else "running",
            "message_queue_len": len(proc.mailbox),
            "links": links,
            "monitors": monitors,
            "monitored_by": monitored_by,
            "trap_exit": proc.trap_exit,
            "current_function": proc.function,
            "kind": proc.kind,
        }

    def node_info(self) -> dict[str, Any]:
        """A snapshot of this node: processes, names, connections and traffic.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     info = n.node_info()
            ...     info["name"], info["distributed"]
            ('doc@localhost', False)
        """
        procs = list(self._procs.values())
        info: dict[str, Any] = {
            "name": self.name,
            "creation": self.creation,
            "running": self._running,
            "processes": len(procs),
            "registered": self.registered(),
            "message_queue_total": sum(len(p.mailbox) for p in procs),
            "largest_queues": sorted(
                ((len(p.mailbox), p.pid) for p in procs), reverse=True)[:5],
            "threads": threading.active_count(),
            "distributed": self._dist is not None,
        }
        if self._dist is not None:
            info.update(self._dist.info())
        return info

    # -- registry -----------------------------------------------------------------------------

    def register(self, name: str, pid: Pid) -> bool:
        """Register `pid` (a live local process) as `name` on this node; True, as in Erlang.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     n.register("doc_me", n.current().pid)
            ...     n.whereis("doc_me") == n.current().pid
            True
            True
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"a registered name is a non-empty str, got {name!r}")
        if not isinstance(pid, Pid):
            raise TypeError(f"register needs a Pid, got {type(pid).__name__!r}")
        if not self.is_local(pid):
            raise ValueError(f"cannot register {pid!r}: it is not a process of {self.name}")
        with self._lock:
            proc = self._local(pid)
            if proc is None or not proc.alive:
                raise NoProc(f"cannot register {name!r}: process {pid!r} is not alive")
            holder = self._names.get(name)
            if holder is not None:
                raise AlreadyRegistered(f"name {name!r} is already registered to {holder.pid!r}")
            if proc.name is not None:
                raise AlreadyRegistered(f"process {pid!r} is already registered as {proc.name!r}")
            proc.name = name
            self._names[name] = proc
        return True

    def unregister(self, name: str) -> None:
        """Remove the registered name `name`; raises `NoProc` if not registered.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     _ = n.register("doc_me", n.current().pid)
            ...     n.unregister("doc_me")
            ...     n.registered()
            []
        """
        with self._lock:
            proc = self._names.pop(name, None)
            if proc is None:
                raise NoProc(f"no process is registered as {name!r} on {self.name}")
            proc.name = None

    def whereis(self, name: str) -> Pid | None:
        """The pid registered as `name` on this node, or None.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     n.whereis("nobody") is None
            True
        """
        proc = self._names.get(name)
        return proc.pid if proc is not None else None

    def registered(self) -> list[str]:
        """All locally registered names.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     _ = n.register("doc_me", n.current().pid)
            ...     n.registered()
            ['doc_me']
        """
        return sorted(self._names)

    def processes(self) -> list[Pid]:
        """Pids of every live process on this node (Erlang `processes/0`).

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     me = n.current().pid
            ...     n.processes() == [me]
            True
        """
        return [p.pid for p in list(self._procs.values())]

    def _resolve(self, dest: Any) -> Pid | tuple[str, str]:
        """A pid for `dest`, or `(name, node)` for a remote name; raises NoProc."""
        if dest.__class__ is Pid:
            return dest  # type: ignore[no-any-return]
        if isinstance(dest, str):
            proc = self._names.get(dest)
            if proc is None:
                raise NoProc(f"no process is registered as {dest!r} on {self.name}")
            return proc.pid
        if isinstance(dest, tuple) and len(dest) == 2:
            name, node = dest
            if name == "global":
                from actornet import global_

                pid = global_.whereis_name(node)
                if pid is None:
                    raise NoProc(f"no process is globally registered as {node!r}")
                return pid
            if isinstance(name, str) and isinstance(node, str):
                return self._resolve(name) if node == self.name else (name, node)
        raise TypeError(
            f"{dest!r} is not a process: expected a Pid, a registered name, (name, node) "
            "or ('global', name)"
        )

    # -- links --------------------------------------------------------------------------------

    def link(self, pid: Pid) -> None:
        """Link the calling process and `pid` (Erlang `link/1`).

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     worker = n.spawn(n.receive)
            ...     n.link(worker)
            ...     n.process_info(worker)["links"] == [n.current().pid]
            True
        """
        _require_pid(pid, "link")
        me = self.current()
        if pid == me.pid:
            return
        if not self.is_local(pid):
            with self._lock:
                me.add_link(pid)
            self._remote().link(me.pid, pid)
            return
        with self._lock:
            other = self._local(pid)
            if other is not None:
                me.add_link(pid)
                other.add_link(me.pid)
                return
        # Linking to a dead process: an exit signal with reason noproc.
        self._signal_exit(me.pid, pid, "noproc", linked=True, force=True)
        me.check_alive()

    def unlink(self, pid: Pid) -> None:
        """Remove the link between the calling process and `pid`, if any.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     worker = n.spawn_link(n.receive)
            ...     n.unlink(worker)
            ...     n.process_info(worker)["links"]
            []
        """
        _require_pid(pid, "unlink")
        me = self.current()
        with self._lock:
            me.remove_link(pid)
            other = self._local(pid) if self.is_local(pid) else None
            if other is not None:
                other.remove_link(me.pid)
        if not self.is_local(pid):
            self._remote().unlink(me.pid, pid)

    def _signal_link(self, to: Pid, from_: Pid) -> None:
        """A remote process `from_` linked to local `to` (transport entry)."""
        with self._lock:
            proc = self._local(to)
            if proc is not None:
                proc.add_link(from_)
                return
        self._route_exit(from_, to, "noproc", linked=True)

    def _signal_unlink(self, to: Pid, from_: Pid) -> None:
        with self._lock:
            proc = self._local(to)
            if proc is not None:
                proc.remove_link(from_)

    # -- exit signals ---------------------------------------------------------------------------

    def exit(self, pid: Pid, reason: Any) -> None:
        """Send an exit signal to `pid` from the calling process (Erlang `exit/2`).

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     pid, ref = n.spawn_monitor(n.receive)
            ...     n.exit(pid, "stop")
            ...     n.receive(timeout=5)[4]
            'stop'
        """
        _require_pid(pid, "exit")
        check_term(reason)
        me = self.current()
        if self.is_local(pid):
            self._signal_exit(pid, me.pid, reason, linked=False)
        else:
            self._remote().exit(me.pid, pid, reason, linked=False)
        me.check_alive()

    def _route_exit(self, to: Pid, from_: Pid, reason: Any, *, linked: bool) -> None:
        if self.is_local(to):
            self._signal_exit(to, from_, reason, linked=linked)
        elif self._dist is not None:
            self._dist.exit(from_, to, reason, linked=linked)

    def _signal_exit(
        self, to: Pid, from_: Pid, reason: Any, *, linked: bool, force: bool = False
    ) -> None:
        """Exit signal from `from_` to local `to`, with Erlang's rules (transport entry).

        `linked` signals come from a link and are void once the link is gone
        (`force` skips that check, for the noproc of linking to a dead pid).
        """
        proc = self._local(to)
        if proc is None:
            return
        if linked and not force:
            with self._lock:
                if from_ not in proc.links:
                    return  # unlinked meanwhile: the signal is void
                proc.remove_link(from_)
        if reason == "kill" and not linked:
            self._kill(proc, "killed")
        elif proc.trap_exit:
            proc.mailbox.put(("EXIT", from_, reason))
        elif reason == "normal":
            if from_ == to and not linked:
                self._kill(proc, "normal")
        else:
            self._kill(proc, reason)

    def trap_exit(self, flag: bool) -> bool:
        """Set the calling process's trap_exit flag; return the old value.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     n.trap_exit(True)
            False
        """
        if not isinstance(flag, bool):
            raise TypeError(f"trap_exit needs True or False, got {flag!r}")
        me = self.current()
        old, me.trap_exit = me.trap_exit, flag
        return old

    # -- monitors -------------------------------------------------------------------------------

    def monitor(self, target: Any) -> Ref:
        """Monitor a process (pid, name or (name, node)); DOWN arrives once.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     ref = n.monitor(n.spawn(lambda: None))
            ...     n.receive(timeout=5)[:3] == ("DOWN", ref, "process")
            True
        """
        me = self.current()
        ref = self.make_ref()
        self._monitor(me, target, ref)
        return ref

    def _monitor(self, me: Process, target: Any, ref: Ref) -> None:
        try:
            resolved = self._resolve(target)
        except NoProc:
            item = (target, self.name) if isinstance(target, str) else target
            me.add_monitor(ref, item)
            self._signal_down(me.pid, ref, item, "noproc")
            return
        with self._lock:
            me.add_monitor(ref, resolved)
            if resolved.__class__ is Pid and self.is_local(resolved):  # type: ignore[union-attr]
                proc = self._local(resolved)  # type: ignore[arg-type]
                if proc is not None:
                    proc.add_watcher(ref, me.pid)
                    return
        if resolved.__class__ is Pid and self.is_local(resolved):  # type: ignore[union-attr]
            self._signal_down(me.pid, ref, resolved, "noproc")
            return
        self._remote().monitor(me.pid, resolved, ref)

    def demonitor(self, ref: Ref) -> bool:
        """Stop a monitor; no DOWN for it arrives afterwards. True if it was active.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     ref = n.monitor(n.spawn(n.receive))
            ...     n.demonitor(ref)
            True
        """
        if not isinstance(ref, Ref):
            raise TypeError(f"demonitor needs a Ref, got {type(ref).__name__!r}")
        me = self.current()
        with self._lock:
            target = me.pop_monitor(ref)
        if target is None:
            return False
        self._demonitor_target(target, ref, me.pid)
        return True

    def _demonitor_target(self, target: Any, ref: Ref, watcher: Pid) -> None:
        if target.__class__ is Pid and self.is_local(target):
            self._signal_demonitor(target, ref)
        elif self._dist is not None:
            self._dist.demonitor(watcher, target, ref)

    def _signal_monitor(self, target: Any, watcher: Pid, ref: Ref) -> None:
        """A remote `watcher` monitors local `target` (pid or name) (transport entry)."""
        with self._lock:
            proc = self._names.get(target) if isinstance(target, str) else self._local(target)
            if proc is not None:
                proc.add_watcher(ref, watcher)
                return
        item = (target, self.name) if isinstance(target, str) else target
        self._route_down(watcher, ref, item, "noproc")

    def _signal_demonitor(self, target: Any, ref: Ref) -> None:
        with self._lock:
            proc = self._names.get(target) if isinstance(target, str) else self._local(target)
            if proc is not None:
                proc.pop_watcher(ref)

    def _route_down(self, watcher: Pid, ref: Ref, item: Any, reason: Any) -> None:
        if self.is_local(watcher):
            self._signal_down(watcher, ref, item, reason)
        elif self._dist is not None:
            self._dist.down(watcher, ref, item, reason)

    def _signal_down(self, watcher: Pid, ref: Ref, item: Any, reason: Any) -> None:
        """Monitor `ref` of local `watcher` fired (transport entry)."""
        slot = self._aliases.pop(ref, None)
        if slot is not None:
            # a pending call's monitor: the DOWN goes to the call, not the mailbox
            if slot.watcher is not None:
                slot.watcher.pop_monitor(ref)
            slot.set(DOWN, reason)
            return
        proc = self._local(watcher)
        if proc is None:
            return
        with self._lock:
            if proc.pop_monitor(ref) is None:
                return  # demonitored meanwhile
        proc.mailbox.put(("DOWN", ref, "process", item, reason))

    # -- call plumbing (shared by GenServer, Supervisor, global_, pg) ----------------------------

    def _new_alias(self, slot: _Slot) -> tuple[Ref, _Slot]:
        """File `slot` under a new ref (see `actornet._callslot`)."""
        ref = self.make_ref()
        self._aliases[ref] = slot
        return ref, slot

    def _deliver_alias(self, ref: Ref, value: Any) -> None:
        """A reply for the pending call `ref` (transport entry); late ones are dropped."""
        slot = self._aliases.pop(ref, None)
        if slot is not None:
            # The call's monitor is over: a DOWN racing this reply is dropped.
            if slot.watcher is not None:
                slot.watcher.pop_monitor(ref)
            slot.set(REPLY, value)

    def _drop_alias(self, ref: Ref) -> bool:
        return self._aliases.pop(ref, None) is not None

    def reply(self, from_: tuple[Pid, Ref], value: Any) -> None:
        """Answer a call whose `from_` a server got in `handle_call`.

        Example:
            >>> import actornet
            >>> class Later(actornet.GenServer):
            ...     def handle_call(self, request, from_):
            ...         self.gen_node.reply(from_, "later")
            ...         return actornet.NOREPLY
            >>> pid = Later.start()
            >>> actornet.call(pid, "now?")
            'later'
            >>> actornet.GenServer.stop(pid)
        """
        pid, ref = from_
        if pid.node == self.name:
            check_term(value)
            self._deliver_alias(ref, value)
        else:
            check_term(value)
            self._remote().alias_send(pid, ref, value)

    # -- nodes --------------------------------------------------------------------------------

    def monitor_node(self, node: str, flag: bool = True) -> None:
        """Get `("nodedown", node)` in the calling process's mailbox when `node` goes down.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     n.monitor_node("b@localhost")  # not distributed: down at once
            ...     n.receive(timeout=5)
            ('nodedown', 'b@localhost')
        """
        me = self.current()
        address, node = node, _base_node_name(node)
        with self._lock:
            subs = self._node_monitors.setdefault(node, [])
            if flag:
                subs.append(me.pid)
            elif me.pid in subs:
                subs.remove(me.pid)
        if flag and node != self.name and (
            self._dist is None or not self._dist.connect(address)
        ):
            # The failed attempt may have told us already (it fires every
            # subscription of `node`): say it once.
            with self._lock:
                subs = self._node_monitors.get(node, [])
                still = me.pid in subs
                if still:
                    subs.remove(me.pid)
            if still:
                self._deliver(me.pid, ("nodedown", node))

    def monitor_nodes(self, flag: bool = True) -> None:
        """``("nodeup", n)`` and ``("nodedown", n)`` for every node, to the caller.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     n.monitor_nodes(True)  # ("nodeup", name) / ("nodedown", name) from now on
            ...     n.monitor_nodes(False)
        """
        me = self.current()
        with self._lock:
            if flag:
                self._nodes_watchers.append(me.pid)
            elif me.pid in self._nodes_watchers:
                self._nodes_watchers.remove(me.pid)

    def _node_up(self, node: str) -> None:
        """A connection to `node` came up (transport entry)."""
        for pid in list(self._nodes_watchers):
            self._deliver(pid, ("nodeup", node))

    def _node_down(self, node: str, was_up: bool = True) -> None:
        """Every link, monitor and call towards `node` fires with noconnection."""
        with self._lock:
            subscribers = self._node_monitors.pop(node, [])
            procs = list(self._procs.values())
            self._nodes_watchers = [p for p in self._nodes_watchers if p.node != node]
            watchers = list(self._nodes_watchers) if was_up else []
        for pid in subscribers:
            self._deliver(pid, ("nodedown", node))
        for pid in watchers:
            self._deliver(pid, ("nodedown", node))
        for proc in procs:
            with self._lock:
                dead_links = [p for p in proc.links if p.node == node]
                dead_mons = [
                    (ref, t) for ref, t in proc.monitors.items() if _node_of(t) == node
                ]
                for ref in [r for r, w in proc.monitored_by.items() if w.node == node]:
                    proc.pop_watcher(ref)
            for ref, target in dead_mons:
                self._signal_down(proc.pid, ref, target, "noconnection")
            for other in dead_links:
                self._signal_exit(proc.pid, other, "noconnection", linked=True)

    def _remote(self) -> Any:
        if self._dist is None:
            from actornet.errors import NodeDown

            raise NodeDown(
                f"node {self.name} is not distributed: start it with actornet.start_node("
                "'name@host') to reach other nodes"
            )
        return self._dist


def _base_node_name(address: str) -> str:
    """``name@host`` of ``name@host:port``."""
    name, _, host = address.partition("@")
    return f"{name}@{host.split(':')[0]}"


def _node_of(target: Any) -> str:
    if target.__class__ is Pid:
        return target.node  # type: ignore[no-any-return]
    # (name, "node@host:port") is filed under the node, whatever address reached it
    return _base_node_name(target[1]) if isinstance(target, tuple) else ""


def _require_pid(pid: Any, what: str) -> None:
    if pid.__class__ is not Pid:
        raise TypeError(f"{what} needs a Pid, got {type(pid).__name__!r}")


def _new_creation() -> int:
    return int.from_bytes(os.urandom(4), "big") or 1

