"""Supervisor: Erlang's supervisor behaviour.

A supervisor is a GenServer that traps exits, starts its children in order,
restarts them by its strategy when they exit, and gives up (exits with
``"shutdown"`` after stopping every child) when more than `max_restarts`
restarts happen within `max_seconds`. Children stop in reverse start order.

Example:
    >>> import actornet
    >>> from actornet import Supervisor, child_spec
    >>> class Worker(actornet.GenServer):
    ...     def handle_call(self, request, from_):
    ...         return "ok"
    >>> sup = Supervisor.start_link([child_spec("w", Worker, name="doc_worker")])
    >>> actornet.call("doc_worker", "ping")
    'ok'
    >>> actornet.GenServer.stop(sup)
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actornet import process
from actornet._gen import call_any
from actornet._ids import Pid
from actornet._wire import shown
from actornet.errors import ActornetError, ProcessExit, Timeout
from actornet.gen_server import GenServer, badarg, call

__all__ = ["Supervisor", "ChildSpec", "child_spec"]

log = logging.getLogger("actornet")

STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
RESTARTS = ("permanent", "transient", "temporary")


@dataclass
class ChildSpec:
    """How to start and restart one child (Erlang's child specification).

    `start` must start the child *linked to the caller* and return its pid
    (a GenServer's `start_link`, or `spawn_link`). `shutdown` is seconds to
    wait after the ``"shutdown"`` exit signal before killing, or
    ``"brutal_kill"``, or None to wait forever (for supervisors). Most specs
    are made with `child_spec`; build one directly for a custom start.

    Example:
        >>> import actornet
        >>> def worker():
        ...     actornet.receive()
        >>> spec = actornet.ChildSpec("w", lambda: actornet.spawn_link(worker),
        ...                           restart="transient", shutdown="brutal_kill")
        >>> sup = actornet.Supervisor.start([spec])
        >>> [(cid, kind) for cid, _, kind in actornet.Supervisor.which_children(sup)]
        [('w', 'worker')]
        >>> actornet.GenServer.stop(sup)
    """

    id: Any
    start: Callable[[], Pid]
    restart: str = "permanent"
    shutdown: float | str | None = 5.0
    type: str = "worker"

    def __post_init__(self) -> None:
        if self.restart not in RESTARTS:
            raise ValueError(f"restart must be one of {RESTARTS}, got {self.restart!r}")
        if self.type not in ("worker", "supervisor"):
            raise ValueError(f"type must be 'worker' or 'supervisor', got {self.type!r}")
        if not callable(self.start):
            raise TypeError(f"child {self.id!r}: start must be callable, got {self.start!r}")
        sd = self.shutdown
        if not (sd is None or sd == "brutal_kill" or
                (isinstance(sd, (int, float)) and not isinstance(sd, bool) and sd > 0)):
            raise ValueError(
                f"child {self.id!r}: shutdown must be seconds > 0, 'brutal_kill' or None, "
                f"got {sd!r}"
            )


def child_spec(
    id: Any,  # noqa: A002 - Erlang's field name
    target: Any,
    *args: Any,
    restart: str = "permanent",
    shutdown: float | str | None = 5.0,
    name: Any = None,
    **kwargs: Any,
) -> ChildSpec:
    """A child spec for a GenServer class or a plain function.

    A GenServer subclass starts as ``target.start_link(*args, name=name,
    **kwargs)``; any other callable as ``spawn_link(target, *args)``, then
    registered as `name` if given.

    Example:
        >>> import actornet
        >>> spec = actornet.child_spec("ticker", print, "tick", restart="transient")
        >>> spec.id, spec.restart
        ('ticker', 'transient')
    """
    if isinstance(target, type) and issubclass(target, GenServer):
        kind = "supervisor" if issubclass(target, Supervisor) else "worker"

        def start() -> Pid:
            return target.start_link(*args, name=name, **kwargs)

        return ChildSpec(id, start, restart, None if kind == "supervisor" else shutdown, kind)
    if not callable(target):
        raise TypeError(f"child {id!r}: target must be a GenServer class or a callable")
    if kwargs:
        raise TypeError(f"child {id!r}: keyword arguments only go to GenServer.init")

    def spawn_start() -> Pid:
        pid = process.spawn_link(target, *args)
        if name is not None:
            process.register(name, pid)
        return pid

    return ChildSpec(id, spawn_start, restart, shutdown, "worker")


class _Child:
    __slots__ = ("pid", "spec")

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.pid: Pid | None = None


class Supervisor(GenServer):
    """A supervisor process; start it with `Supervisor.start_link(children, ...)`.

    Arguments of `start`/`start_link`: `children` (list of `ChildSpec` or
    ``(id, target, *args)`` tuples), `strategy` (``"one_for_one"``,
    ``"one_for_all"``, ``"rest_for_one"``), `max_restarts` (default 3) and
    `max_seconds` (default 5.0), and `name=`. A child's abnormal exit and each
    restart are logged at ERROR level on the ``actornet`` logger.

    Example:
        >>> import actornet
        >>> from actornet import Supervisor
        >>> def worker():
        ...     actornet.receive()
        >>> sup = Supervisor.start([("a", worker), ("b", worker)], strategy="one_for_all")
        >>> Supervisor.count_children(sup)["active"]
        2
        >>> actornet.GenServer.stop(sup)
    """

    def init(self, children: list[Any], strategy: str = "one_for_one",
             max_restarts: int = 3, max_seconds: float = 5.0) -> None:
        """Start the children in order; their arguments are those of `start`/`start_link`.

        Up to `max_restarts` restarts within any `max_seconds` are allowed; one
        more stops every child and ends the supervisor with ``"shutdown"``.
        If a child fails to start, the ones started are stopped and `start`
        raises that child's error.

        Example:
            >>> import actornet
            >>> sup = actornet.Supervisor.start([], strategy="rest_for_one",
            ...                                 max_restarts=10, max_seconds=60)
            >>> actornet.Supervisor.which_children(sup)
            []
            >>> actornet.GenServer.stop(sup)
        """
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if max_restarts < 0 or max_seconds <= 0:
            raise ValueError("max_restarts must be >= 0 and max_seconds > 0")
        process.trap_exit(True)
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self._restarts: deque[float] = deque()
        self._children: list[_Child] = []
        for spec in children:
            self._add(_as_spec(spec))
        try:
            for child in self._children:
                self._start(child)
        except BaseException:
            self._stop_children(self._children)
            raise

    # -- the public API (runs in the caller) ---------------------------------------

    @staticmethod
    def which_children(sup: Any, timeout: float = 5.0) -> list[tuple[Any, Pid | None, str]]:
        """``(id, pid or None, type)`` for each child, in start order.

        Example:
            >>> import actornet
            >>> sup = actornet.Supervisor.start([("w", actornet.receive)])
            >>> [(cid, kind) for cid, _, kind in actornet.Supervisor.which_children(sup)]
            [('w', 'worker')]
            >>> actornet.GenServer.stop(sup)
        """
        return call(sup, ("which_children",), timeout)  # type: ignore[no-any-return]

    @staticmethod
    def count_children(sup: Any, timeout: float = 5.0) -> dict[str, int]:
        """Counts: ``specs``, ``active``, ``workers``, ``supervisors``.

        Example:
            >>> import actornet
            >>> sup = actornet.Supervisor.start([("w", actornet.receive)])
            >>> actornet.Supervisor.count_children(sup)
            {'specs': 1, 'active': 1, 'workers': 1, 'supervisors': 0}
            >>> actornet.GenServer.stop(sup)
        """
        return call(sup, ("count_children",), timeout)  # type: ignore[no-any-return]

    @staticmethod
    def start_child(sup: Any, spec: ChildSpec | tuple[Any, ...], timeout: float = 5.0) -> Pid:
        """Add a child and start it; raises `ActornetError` if the id is taken.

        Example:
            >>> import actornet
            >>> sup = actornet.Supervisor.start([])
            >>> pid = actornet.Supervisor.start_child(sup, ("late", actornet.receive))
            >>> actornet.Supervisor.which_children(sup) == [("late", pid, "worker")]
            True
            >>> actornet.GenServer.stop(sup)
        """
        # A spec holds its start function: a local-only message.
        return _started(call_any(sup, ("start_child", _as_spec(spec)), timeout, check=False))

    @staticmethod
    def terminate_child(sup: Any, id: Any, timeout: float = 30.0) -> None:  # noqa: A002
        """Stop a child (its spec stays, unless it is temporary).

        Example:
            >>> import actornet
            >>> sup = actornet.Supervisor.start([("w", actornet.receive)])
            >>> actornet.Supervisor.terminate_child(sup, "w")
            >>> actornet.Supervisor.which_children(sup)
            [('w', None, 'worker')]
            >>> actornet.GenServer.stop(sup)
        """
        _checked(call(sup, ("terminate_child", id), timeout))

    @staticmethod
    def restart_child(sup: Any, id: Any, timeout: float = 5.0) -> Pid:  # noqa: A002
        """Start again a child that was terminated.

        Example:
            >>> import actornet
            >>> sup = actornet.Supervisor.start([("w", actornet.receive)])
            >>> actornet.Supervisor.terminate_child(sup, "w")
            >>> pid = actornet.Supervisor.restart_child(sup, "w")
            >>> actornet.is_alive(pid)
            True
            >>> actornet.GenServer.stop(sup)
        """
        return _started(call(sup, ("restart_child", id), timeout))

    @staticmethod
    def delete_child(sup: Any, id: Any, timeout: float = 5.0) -> None:  # noqa: A002
        """Forget the spec of a terminated child.

        Example:
            >>> import actornet
            >>> sup = actornet.Supervisor.start([("w", actornet.receive)])
            >>> actornet.Supervisor.terminate_child(sup, "w")
            >>> actornet.Supervisor.delete_child(sup, "w")
            >>> actornet.Supervisor.which_children(sup)
            []
            >>> actornet.GenServer.stop(sup)
        """
        _checked(call(sup, ("delete_child", id), timeout))

    # -- callbacks ---------------------------------------------------------------------

    def handle_call(self, request: Any, from_: Any) -> Any:
        """Serve the management calls (`which_children`, `start_child`, ...).

        Example:
            >>> import actornet
            >>> sup = actornet.Supervisor.start([])
            >>> actornet.call(sup, ("count_children",))["specs"]
            0
            >>> actornet.GenServer.stop(sup)
        """
        match request:
            case ("which_children",):
                return [(c.spec.id, c.pid, c.spec.type) for c in self._children]
            case ("count_children",):
                workers = sum(c.spec.type == "worker" for c in self._children)
                return {"specs": len(self._children),
                        "active": sum(c.pid is not None for c in self._children),
                        "workers": workers, "supervisors": len(self._children) - workers}
            case ("start_child", spec):
                try:
                    child = self._add(spec)
                except ActornetError as e:
                    return ("error", str(e))
                try:
                    return self._start(child)
                except Exception as e:
                    self._children.remove(child)
                    return ("error", f"child {child.spec.id!r} failed to start: {e}")
            case (("terminate_child" | "restart_child" | "delete_child") as op, child_id):
                found = self._find(child_id)
                if found is None:
                    return ("error", f"no child with id {child_id!r}")
                return self._manage(op, found)
        return badarg(f"unknown supervisor request {shown(request, 200)}")

    def _manage(self, op: str, child: _Child) -> Any:
        match op:
            case "terminate_child":
                self._stop_children([child])
                if child.spec.restart == "temporary":
                    self._children.remove(child)
                return "ok"
            case "restart_child" if child.pid is not None:
                return ("error", f"child {child.spec.id!r} is running")
            case "restart_child":
                return self._start(child)
            case "delete_child" if child.pid is not None:
                return ("error", f"child {child.spec.id!r} is running")
            case _:  # delete_child
                self._children.remove(child)
                return "ok"

    def handle_info(self, msg: Any) -> None:
        """Restart a child whose ``("EXIT", pid, reason)`` arrives, by the strategy.

        An EXIT from a pid that is no longer a child is dropped, as OTP does:
        a sibling that died while a one_for_all or rest_for_one restart was
        stopping it has already been replaced.

        Example:
            >>> import actornet
            >>> sup = actornet.Supervisor.start([("w", actornet.receive)])
            >>> old = actornet.Supervisor.which_children(sup)[0][1]
            >>> actornet.exit(old, "kill")  # its EXIT reaches handle_info
            >>> new = old
            >>> while new in (old, None):
            ...     new = actornet.Supervisor.which_children(sup)[0][1]
            >>> actornet.is_alive(new)
            True
            >>> actornet.GenServer.stop(sup)
        """
        match msg:
            case ("EXIT", pid, reason):
                child = next((c for c in self._children if c.pid == pid), None)
                if child is not None:
                    self._child_exited(child, reason)
                else:
                    log.debug("supervisor %r: dropped an EXIT from %r, no longer a child (%s)",
                              self.gen_pid, pid, reason)
            case _:
                super().handle_info(msg)

    def terminate(self, reason: Any) -> None:
        """Stop every child, in reverse start order (each by its `shutdown`).

        Example:
            >>> import actornet
            >>> sup = actornet.Supervisor.start([("w", actornet.receive)])
            >>> child = actornet.Supervisor.which_children(sup)[0][1]
            >>> actornet.GenServer.stop(sup)  # terminate runs here
            >>> actornet.is_alive(child)
            False
        """
        self._stop_children(self._children)

    # -- restarts ------------------------------------------------------------------------

    def _child_exited(self, child: _Child, reason: Any) -> None:
        child.pid = None
        restart = child.spec.restart
        if restart == "temporary" or (restart == "transient" and _is_clean(reason)):
            if restart == "temporary":
                self._children.remove(child)
            return
        log.error("supervisor %r: child %r exited with reason %s; restarting (%s)",
                  self.gen_pid, child.spec.id, reason, self.strategy)
        while True:
            self._count_restart()
            try:
                self._restart_for(child)
                return
            except Exception as e:
                log.error("supervisor %r: restarting child %r failed: %s",
                          self.gen_pid, child.spec.id, e)

    def _count_restart(self) -> None:
        now = time.monotonic()
        self._restarts.append(now)
        while self._restarts and self._restarts[0] < now - self.max_seconds:
            self._restarts.popleft()
        if len(self._restarts) > self.max_restarts:
            log.error("supervisor %r: reached max restart intensity (%d in %.1f s), shutting down",
                      self.gen_pid, self.max_restarts, self.max_seconds)
            raise ProcessExit("shutdown")

    def _restart_for(self, child: _Child) -> None:
        if self.strategy == "one_for_one":
            group = [child]
        elif self.strategy == "one_for_all":
            group = list(self._children)
        else:
            group = self._children[self._children.index(child):]
        self._stop_children(group)
        for c in group:
            if c.pid is None:
                self._start(c)

    # -- children ------------------------------------------------------------------------

    def _add(self, spec: ChildSpec) -> _Child:
        if self._find(spec.id) is not None:
            raise ActornetError(f"a child with id {spec.id!r} already exists")
        child = _Child(spec)
        self._children.append(child)
        return child

    def _find(self, id: Any) -> _Child | None:  # noqa: A002
        return next((c for c in self._children if c.spec.id == id), None)

    def _start(self, child: _Child) -> Pid:
        pid = child.spec.start()
        if not isinstance(pid, Pid):
            raise TypeError(f"child {child.spec.id!r}: start returned {pid!r}, not a Pid")
        child.pid = pid
        return pid

    def _stop_children(self, children: list[_Child]) -> None:
        for child in reversed(children):
            if child.pid is not None:
                _shutdown(child.pid, child.spec.shutdown)
                child.pid = None


def _shutdown(pid: Pid, how: float | str | None) -> None:
    """Stop one child as OTP does: monitor, unlink, exit signal, wait, then kill."""
    ref = process.monitor(pid)
    process.unlink(pid)

    def down(m: Any) -> bool:
        return m.__class__ is tuple and len(m) == 5 and m[0] == "DOWN" and m[1] == ref

    if how == "brutal_kill":
        process.exit(pid, "kill")
        process.receive(down)
        return
    process.exit(pid, "shutdown")
    try:
        process.receive(down, timeout=None if how is None else float(how))
    except Timeout:
        process.exit(pid, "kill")
        process.receive(down)


def _is_clean(reason: Any) -> bool:
    return reason in ("normal", "shutdown") or (
        isinstance(reason, tuple) and len(reason) == 2 and reason[0] == "shutdown"
    )


def _as_spec(spec: Any) -> ChildSpec:
    if isinstance(spec, ChildSpec):
        return spec
    if isinstance(spec, tuple) and len(spec) >= 2:
        return child_spec(spec[0], spec[1], *spec[2:])
    raise TypeError(f"a child is a ChildSpec or an (id, target, *args) tuple, got {spec!r}")


def _started(result: Any) -> Pid:
    """The pid of a child the supervisor started; its refusal as `ActornetError`."""
    pid = _checked(result)
    if not isinstance(pid, Pid):
        raise ActornetError(f"the supervisor answered {shown(pid, 200)}, not a pid")
    return pid


def _checked(result: Any) -> Any:
    if isinstance(result, tuple) and len(result) == 2 and result[0] == "error":
        raise ActornetError(result[1])
    return result
