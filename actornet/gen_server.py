"""GenServer: Erlang's gen_server behaviour, in either kind of process.

A server is a process like any other (pid, links, monitors, names,
trap_exit). A subclass whose callbacks are plain functions runs in a thread,
on a private pykka `ThreadingActor`; one with any ``async def`` callback runs
as a lightweight process, its callbacks free to ``await``. Callers cannot
tell them apart: `call`, `cast`, `stop`, names, deferred replies and crash
semantics are the same (`actornet._server` runs both).

Framework attributes on a server carry the ``gen_`` prefix (``gen_pid``,
``gen_node``, ``gen_parent``), so they never clash with user fields.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from actornet import _gen, _server
from actornet._ids import Pid
from actornet._light import is_async_function
from actornet._light_mailbox import LightMailbox
from actornet._mailbox import Mailbox
from actornet._process import LIGHT_SERVER, SERVER, Process
from actornet._server import NOREPLY, Boot
from actornet._steps import run
from actornet.node import Node, current_node

__all__ = ["GenServer", "NOREPLY", "badarg", "call", "cast", "reply"]

log = logging.getLogger("actornet")


def badarg(why: str) -> Any:
    """The reply to a request a server has no clause for: the caller's `call` raises
    `actornet.BadArg` with `why`, and the server keeps serving (Erlang's ``badarg``).

    Example:
        >>> import actornet
        >>> from actornet.gen_server import badarg
        >>> class Counter(actornet.GenServer):
        ...     def handle_call(self, request, from_):
        ...         match request:
        ...             case "get":
        ...                 return 0
        ...         return badarg(f"unknown request {request!r}")
        >>> pid = Counter.start()
        >>> try:
        ...     actornet.call(pid, "set")
        ... except actornet.BadArg as e:
        ...     print(e)
        call to ... failed: badarg: unknown request 'set'
        >>> actornet.call(pid, "get")
        0
        >>> actornet.GenServer.stop(pid)
    """
    return _gen.badarg(why)

call = _gen.call
cast = _gen.cast
reply = _gen.reply

_CALLBACKS = ("init", "handle_call", "handle_cast", "handle_info", "terminate")


class GenServer:
    """Base class of a generic server; override the callbacks you need.

    A callback that raises ends the server with a `Crash` reason; the crash is
    logged at ERROR level on the ``actornet`` logger with the server's pid,
    the last message and the traceback (Erlang's error logger report).

    Example:
        >>> import actornet
        >>> class Counter(actornet.GenServer):
        ...     def init(self, start):
        ...         self.n = start
        ...     def handle_call(self, request, from_):
        ...         if request == "get":
        ...             return self.n
        ...     def handle_cast(self, request):
        ...         if request == "inc":
        ...             self.n += 1
        >>> pid = Counter.start(5)
        >>> actornet.cast(pid, "inc")
        >>> actornet.call(pid, "get")
        6
        >>> actornet.GenServer.stop(pid)
    """

    gen_pid: Pid
    """The server's pid."""
    gen_node: Node
    """The node the server runs on."""
    gen_parent: Pid | None
    """The pid of the process that started the server linked, or None."""
    gen_light: ClassVar[bool] = False
    """True when a callback is ``async def``: the server runs as a lightweight process."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.gen_light = any(is_async_function(getattr(cls, cb)) for cb in _CALLBACKS)

    # -- callbacks (override these) -----------------------------------------------

    def init(self, *args: Any, **kwargs: Any) -> Any:
        """Set up state; runs in the server's thread before `start` returns.

        Raise to refuse to start: `start` re-raises the same exception.

        Example:
            >>> import actornet
            >>> class Config(actornet.GenServer):
            ...     def init(self, path, *, strict=False):
            ...         self.path, self.strict = path, strict
            ...     def handle_call(self, request, from_):
            ...         return (self.path, self.strict)
            >>> pid = Config.start("/etc/app.toml", strict=True)
            >>> actornet.call(pid, "show")
            ('/etc/app.toml', True)
            >>> actornet.GenServer.stop(pid)
        """

    def handle_call(self, request: Any, from_: tuple[Pid, Any]) -> Any:
        """Answer a `call`: return the reply, or `NOREPLY` and `reply(from_, ...)` later.

        `from_` is ``(caller_pid, ref)``. The default raises
        `NotImplementedError`, which crashes the server.

        Example:
            >>> import actornet
            >>> class Adder(actornet.GenServer):
            ...     def handle_call(self, request, from_):
            ...         return sum(request)
            >>> pid = Adder.start()
            >>> actornet.call(pid, (1, 2, 3))
            6
            >>> actornet.GenServer.stop(pid)
        """
        raise NotImplementedError(
            f"{type(self).__name__} got call {request!r} but does not define handle_call"
        )

    def handle_cast(self, request: Any) -> Any:
        """Handle a `cast`; nobody waits for it. The default crashes the server.

        Example:
            >>> import actornet
            >>> class Forwarder(actornet.GenServer):
            ...     def handle_cast(self, request):
            ...         to, msg = request
            ...         actornet.send(to, msg)
            >>> pid = Forwarder.start()
            >>> actornet.cast(pid, (actornet.self(), "relayed"))
            >>> actornet.receive(timeout=5)
            'relayed'
            >>> actornet.GenServer.stop(pid)
        """
        raise NotImplementedError(
            f"{type(self).__name__} got cast {request!r} but does not define handle_cast"
        )

    def handle_info(self, msg: Any) -> Any:
        """Handle any other message: ``("DOWN", ...)``, ``("EXIT", ...)``, plain sends.

        The default logs the message as unexpected (WARNING, ``actornet`` logger).

        Example:
            >>> import actornet
            >>> class Watcher(actornet.GenServer):
            ...     def init(self, report_to):
            ...         self.report_to = report_to
            ...     def handle_info(self, msg):
            ...         if msg[0] == "DOWN":
            ...             actornet.send(self.report_to, ("down", msg[4]))
            ...     def handle_call(self, pid, from_):
            ...         return actornet.monitor(pid)
            >>> pid = Watcher.start(actornet.self())
            >>> _ = actornet.call(pid, actornet.spawn(lambda: None))
            >>> actornet.receive(timeout=5)[0]
            'down'
            >>> actornet.GenServer.stop(pid)
        """
        log.warning("%s %r received an unexpected message: %r",
                    type(self).__name__, self.gen_pid, msg)

    def terminate(self, reason: Any) -> Any:
        """Clean up before the server exits with `reason` (not called on ``kill``).

        Example:
            >>> import actornet
            >>> class Tidy(actornet.GenServer):
            ...     def init(self, report_to):
            ...         self.report_to = report_to
            ...     def terminate(self, reason):
            ...         actornet.send(self.report_to, ("terminated", reason))
            >>> pid = Tidy.start(actornet.self())
            >>> actornet.GenServer.stop(pid, "shutdown")
            >>> actornet.receive(timeout=5)
            ('terminated', 'shutdown')
        """

    # -- starting and stopping ------------------------------------------------------

    @classmethod
    def start(cls, *args: Any, name: Any = None, **kwargs: Any) -> Pid:
        """Start a server running ``init(*args, **kwargs)``; return its pid once init is done.

        `name` is None, a local name (str) or ``("global", name)``. If the
        name is taken, `AlreadyRegistered` is raised and nothing is started.

        Example:
            >>> import actornet
            >>> class Idle(actornet.GenServer):
            ...     pass
            >>> pid = Idle.start(name="doc_idle")
            >>> actornet.whereis("doc_idle") == pid
            True
            >>> actornet.GenServer.stop("doc_idle")
        """
        _gen.refuse_blocking(f"{cls.__name__}.start()",
                             f"await actornet.aio.start({cls.__name__}, ...)")
        return start_server(cls, args, kwargs, name, link=False)

    @classmethod
    def start_link(cls, *args: Any, name: Any = None, **kwargs: Any) -> Pid:
        """Like `start`, linked to the calling process (how supervisors start children).

        If `init` raises, the caller gets the exception, not an exit signal.

        Example:
            >>> import actornet
            >>> class Idle(actornet.GenServer):
            ...     pass
            >>> _ = actornet.trap_exit(True)
            >>> pid = Idle.start_link()
            >>> actornet.GenServer.stop(pid, "done")
            >>> actornet.receive(lambda m: m[:2] == ("EXIT", pid), timeout=5)[2]
            'done'
            >>> _ = actornet.trap_exit(False)
        """
        _gen.refuse_blocking(f"{cls.__name__}.start_link()",
                             f"await actornet.aio.start_link({cls.__name__}, ...)")
        return start_server(cls, args, kwargs, name, link=True)

    @staticmethod
    def stop(server: Any, reason: Any = "normal", timeout: float | None = 5.0) -> None:
        """Stop `server` with `reason`: it runs `terminate`, then exits. Waits for it.

        `timeout` is seconds (None or ``math.inf``: wait as long as it takes).
        Raises `NoProc` if it is not running, `Timeout` if it did not exit in
        time, `ValueError`/`TypeError` for a bad `timeout` (before asking).

        Example:
            >>> import actornet
            >>> class Idle(actornet.GenServer):
            ...     pass
            >>> pid = Idle.start()
            >>> actornet.GenServer.stop(pid, timeout=5.0)
            >>> actornet.is_alive(pid)
            False
        """
        _gen.wait_exit(server, (_gen.STOP, reason), timeout)

    call = staticmethod(_gen.call)
    cast = staticmethod(_gen.cast)
    reply = staticmethod(_gen.reply)


def start_server(cls: type[GenServer], args: tuple[Any, ...], kwargs: dict[str, Any],
                 name: Any, *, link: bool, node: Node | None = None) -> Pid:
    """Start a server of `cls` on `node` (the current node if None): `GenServer.start`,
    for the runtime's own servers, which start on the node they serve."""
    node = node if node is not None else current_node()
    parent = node.current() if link else None
    boot = Boot(node, args, kwargs, name, parent)
    server, proc = prepare(cls, node, boot)
    run(_server.register(boot, proc), f"{cls.__name__}.start()",
        f"await actornet.aio.start({cls.__name__}, ...)")
    _server.start(server, proc, boot)
    boot.started.wait()
    if boot.error is not None:
        raise boot.error
    return proc.pid


def prepare(cls: type[GenServer], node: Node, boot: Boot) -> tuple[GenServer, Process]:
    """Make the server object and its process on `node` (`boot.node`), for `start_server`
    and ``actornet.aio.start``; `actornet._server.register` names and links it next."""
    light = cls.gen_light
    server = cls.__new__(cls)
    if light:
        proc = node.new_process(LIGHT_SERVER, LightMailbox(node.scheduler()))
    else:
        proc = node.new_process(SERVER, Mailbox())
    proc.server = server
    proc.function = f"{cls.__module__}.{cls.__qualname__}"
    server.gen_pid = boot.pid = proc.pid
    server.gen_node = node
    server.gen_parent = boot.parent.pid if boot.parent is not None else None
    return server, proc
