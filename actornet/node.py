"""A node: actornet's BEAM VM, one per OS process (or several in one, for tests).

`Node` is the facade the rest of actornet uses. It is built from one class per
concept (see `actornet._nodebase`): the process table, `Registry`, `Signals`,
`Aliases` and `Info`; here are its lifecycle, spawning (thread processes by
`actornet._thread`, lightweight ones by `actornet._light`), messages and
introspection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

from actornet import _gen, _light, _runtime, _thread
from actornet import _wire as w
from actornet._erpc import arpc_runner, arun_named, rpc_runner, run_named
from actornet._ids import Pid, Ref
from actornet._info import Info
from actornet._light_mailbox import LightMailbox
from actornet._nodebase import LOCAL_NODE_NAME
from actornet._process import ADOPTED_TASK, FUNCTION, LIGHT, LIGHT_SERVER, Process
from actornet._scheduler import Scheduler
from actornet._terms import check_term
from actornet.errors import ActornetError, NoProc, Timeout

__all__ = ["Node", "LOCAL_NODE_NAME", "current_node"]

log = logging.getLogger("actornet")


class Node(Info):
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
        super().__init__(name, creation=creation)
        _runtime.node_started(self)

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
        return None if self.dist is None else int(self.dist.port)

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
                p.kind == LIGHT_SERVER for p in list(self.procs.values())):
            raise ActornetError(
                f"Node.stop() of {self.name} was called on its scheduler's loop, where it "
                "would wait for its own lightweight servers: use `await "
                "actornet.aio.stop_node(node)` there")
        deadline = None if seconds is None else time.monotonic() + seconds
        # Oldest first: a supervisor stops its own children before we reach them.
        for proc in sorted(self.procs.values(), key=lambda p: p.pid.id):
            if proc.alive and proc.server is not None:
                remaining = None if deadline is None else max(0.1, deadline - time.monotonic())
                with contextlib.suppress(Exception):
                    _gen.wait_exit(proc.pid, (_gen.STOP, "shutdown"), remaining, node=self)
        for proc in list(self.procs.values()):
            self._kill(proc, "shutdown")
        self._running = False
        if self.dist is not None:
            self.dist.stop()
        for close in self.closers:
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
        return _thread.adopt(self)

    def spawn(self, fn: Callable[..., Any], *args: Any) -> Pid:
        """Start `fn(*args)` as a new process on this node and return its pid.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     pid = n.spawn(n.send, n.current().pid, "from a process")
            ...     n.receive(timeout=5)
            'from a process'
        """
        return self.spawn_opt(fn, args)[0]

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
        return self.spawn_opt(fn, args, link=True)[0]

    def spawn_monitor(self, fn: Callable[..., Any], *args: Any) -> tuple[Pid, Ref]:
        """Like `spawn`, atomically monitored by the calling process.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     pid, ref = n.spawn_monitor(lambda: None)
            ...     n.receive(timeout=5)[4]
            'normal'
        """
        pid, ref = self.spawn_opt(fn, args, monitor=True)
        assert ref is not None
        return pid, ref

    def spawn_opt(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        *,
        link: bool = False,
        monitor: bool = False,
    ) -> tuple[Pid, Ref | None]:
        """Spawn ``fn(*args)``, linked and/or monitored by the caller (Erlang's
        `spawn_opt/2` with ``link`` and ``monitor``): its pid, and the monitor's
        ref (None without `monitor`).

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     pid, ref = n.spawn_opt(print, ("spawned",), monitor=True)
            ...     n.receive(lambda m: m[:2] == ("DOWN", ref), timeout=5)[4]
            spawned
            'normal'
        """
        light = _light.classify(fn, "spawn")
        parent = self.current() if (link or monitor) else None
        if light:
            sched = self._scheduler or self.scheduler()
            proc = self.new_process(LIGHT, LightMailbox(sched))
        else:
            proc = self.new_process(FUNCTION)
        proc.function = getattr(fn, "__qualname__", None) or repr(fn)
        ref = None
        if parent is not None:
            with self.lock:
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
        else:
            _thread.start(self, proc, fn, args)

    def spawn_request(self, requester: Pid, ref: Ref, module: str, qualname: str,
                       args: tuple[Any, ...], flags: int) -> None:
        """A peer asks for a process running ``module.qualname(*args)`` here."""
        light = bool(flags & w.SPAWN_LIGHT)
        if light:
            proc = self.new_process(LIGHT, LightMailbox(self.scheduler()))
        else:
            proc = self.new_process(FUNCTION)
        proc.function = f"{module}.{qualname}"
        with self.lock:
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
        self.transport().spawn_reply(requester, ref, proc.pid, flags)
        self._start(proc, arun_named if light else run_named, (module, qualname, args))

    def spawn_reply(self, requester: Pid, ref: Ref, result: Any, flags: int) -> None:
        """The answer to our spawn request (transport entry, in wire order)."""
        proc = self.local_process(requester)
        if proc is not None and flags & w.SPAWN_LINK and result.__class__ is Pid:
            with self.lock:
                proc.add_link(result)
        self.deliver_alias(ref, result)

    def send(self, dest: Any, msg: Any, *, noconnect: bool = False) -> None:
        """Send `msg` to a pid, a registered name, or `(name, node)`.

        It waits only for a node that cannot keep up: a thread process whose message
        finds over ``busy_limit`` bytes queued for that node waits until it drains, as
        the BEAM suspends a sender on a busy port; a lightweight process owes that wait
        to its next `actornet.aio` await instead (docs/lightweight-processes.md).

        With `noconnect`, a message for a node that is not connected is dropped
        instead of making a connection (Erlang's ``send(Dest, Msg, [noconnect])``).

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     n.send(n.current().pid, "note")
            ...     n.receive(timeout=1)
            'note'
        """
        self.route(dest, msg, True, not noconnect)

    def route(self, dest: Any, msg: Any, check: bool, connect: bool = True) -> None:
        """`send`; with `check` False a local message may hold any Python object
        (the runtime's own messages, e.g. a child spec with its start function)."""
        cls = dest.__class__
        if cls is Pid:
            node = dest.node
            if node is self.name or node == self.name:
                if check:
                    check_term(msg)
                self.deliver(dest.id, dest.creation, msg)
                return  # sending to a dead pid is not an error, as in Erlang
            self.transport().send(dest, msg, connect)
            return
        if cls is str:
            if check:
                check_term(msg)
            proc = self._names.get(dest)
            if proc is None:
                raise NoProc(f"no process is registered as {dest!r} on {self.name}")
            self.deliver(proc.pid.id, proc.pid.creation, msg)
            return
        if cls is tuple and len(dest) == 2:
            name, node = dest
            if name == "global":
                self.route(self.resolve(dest), msg, check, connect)
                return
            if isinstance(name, str) and isinstance(node, str):
                if node == self.name:
                    self.route(name, msg, check)
                else:
                    self.transport().send_name(self.current().pid, name, node, msg, connect)
                return
        raise TypeError(
            f"cannot send to {dest!r}: a destination is a Pid, a registered name (str), "
            "or a (name, node) tuple"
        )

    def send_each(self, pids: list[Pid], msg: Any) -> None:
        """Send `msg` to each of `pids`, shipping one copy per other node, which hands it to
        its own pids there (`pg.broadcast`). Each pid gets it in order with what the caller
        sent it before and after, as with `send`, and it waits as `send` does.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     me = n.current().pid
            ...     n.send_each([me, me], "twice")
            ...     n.receive(timeout=1), n.receive(timeout=1)
            ('twice', 'twice')
        """
        check_term(msg)
        elsewhere: dict[str, list[Pid]] = {}
        deliver = self.deliver
        for pid in pids:
            if pid.__class__ is not Pid:
                raise TypeError(f"send_each: not a pid: {pid!r}")
            if pid.node == self.name:
                deliver(pid.id, pid.creation, msg)
            else:
                elsewhere.setdefault(pid.node, []).append(pid)
        for node, there in elsewhere.items():
            self.transport().send_many(node, there, msg)

    def deliver_name(self, name: str, msg: Any) -> None:
        """A message for the local name `name`, from another node: dropped if no
        process has that name, as Erlang drops it (transport entry)."""
        proc = self._names.get(name)
        if proc is not None:
            self.deliver(proc.pid.id, proc.pid.creation, msg)

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
        return proc.thread_mailbox.offer(seconds)


_runtime.set_default_node_factory(Node)


def current_node() -> Node:
    """The node the calling thread acts on (`actornet._runtime.current_node`).

    The runtime keeps its nodes by the protocol its own modules see them by
    (`actornet._process.NodeApi`); every one of them is a `Node`, started here.

    Example:
        >>> import actornet
        >>> from actornet.node import current_node
        >>> current_node().name == actornet.node()
        True
    """
    return cast(Node, _runtime.current_node())
