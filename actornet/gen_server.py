"""GenServer: Erlang's gen_server behaviour, on pykka's `ThreadingActor`.

The server is a process like any other (pid, links, monitors, names,
trap_exit). Its mailbox is the pykka actor's inbox, so pykka's loop feeds
`on_receive`, which dispatches calls, casts and everything else to the user's
callbacks with OTP's failure semantics: an exception in a callback ends the
server with that reason, along its links, and a caller waiting on a `call`
gets an error at once.

Framework attributes on a server carry the ``gen_`` prefix (``gen_pid``,
``gen_node``), private ones ``_gen_``, so they never clash with user fields.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, ClassVar

import pykka

from actornet import _gen, _runtime
from actornet._ids import Pid
from actornet._mailbox import WAKE, Mailbox
from actornet._process import SERVER, Killed, Process
from actornet.errors import AlreadyRegistered, Crash, ProcessExit

__all__ = ["GenServer", "NOREPLY", "call", "cast", "reply"]

log = logging.getLogger("actornet")

call = _gen.call
cast = _gen.cast
reply = _gen.reply


class _NoReply:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOREPLY"


NOREPLY: Any = _NoReply()
"""Return it from `handle_call` to answer later with `actornet.reply`."""


class _Boot:
    """What `start` hands to the new server's thread."""

    __slots__ = ("args", "done", "error", "kwargs", "name", "node", "parent", "pid")

    def __init__(self, node: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                 name: Any, parent: Process | None) -> None:
        self.node = node
        self.args = args
        self.kwargs = kwargs
        self.name = name
        self.parent = parent
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.pid: Pid | None = None


class GenServer(pykka.ThreadingActor):
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

    use_daemon_thread: ClassVar[bool] = True

    gen_pid: Pid
    """The server's pid."""

    # -- callbacks (override these) -----------------------------------------------

    def init(self, *args: Any, **kwargs: Any) -> None:
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

    def handle_cast(self, request: Any) -> None:
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

    def handle_info(self, msg: Any) -> None:
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

    def terminate(self, reason: Any) -> None:
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
    def start(  # type: ignore[override]  # OTP's start, not pykka's
        cls, *args: Any, name: Any = None, **kwargs: Any
    ) -> Pid:
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
        return cls._gen_start(args, kwargs, name, link=False)

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
        return cls._gen_start(args, kwargs, name, link=True)

    @staticmethod
    def stop(  # type: ignore[override]  # OTP's gen_server:stop/3, not pykka's
        server: Any, reason: Any = "normal", timeout: float | None = 5.0
    ) -> None:
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

    @classmethod
    def _gen_start(cls, args: tuple[Any, ...], kwargs: dict[str, Any], name: Any,
                   *, link: bool, node: Any = None) -> Pid:
        node = node if node is not None else _runtime.current_node()
        parent = node.current() if link else None
        boot = _Boot(node, args, kwargs, name, parent)
        pykka.ThreadingActor.start.__func__(cls, boot)  # type: ignore[attr-defined]
        boot.done.wait()
        if boot.error is not None:
            raise boot.error
        assert boot.pid is not None
        return boot.pid

    def __init__(self, boot: _Boot) -> None:
        super().__init__()
        node = boot.node
        proc = node._new_process(SERVER, mailbox=self.actor_inbox)
        proc.server = self
        proc.function = f"{type(self).__module__}.{type(self).__qualname__}"
        self.gen_pid = boot.pid = proc.pid
        self.gen_node = node
        self._gen_proc = proc
        self._gen_boot: _Boot | None = boot
        self._gen_parent = boot.parent.pid if boot.parent is not None else None
        try:
            _register_name(node, boot.name, proc.pid)
        except BaseException:
            node._exit(proc, "normal")
            raise
        if boot.parent is not None:
            with node._lock:
                boot.parent.links.add(proc.pid)
                proc.links.add(boot.parent.pid)

    @staticmethod
    def _create_actor_inbox() -> Mailbox:
        return Mailbox()

    # -- the loop (pykka hooks, in the server's thread) ---------------------------------

    def on_start(self) -> None:
        """pykka's start hook (not actornet API): runs `init` in the server's thread."""
        boot = self._gen_boot
        assert boot is not None
        self._gen_boot = None
        proc = self._gen_proc
        proc.thread_id = threading.get_ident()
        _runtime.bind(proc)
        try:
            try:
                proc.enter_user_code()
                self.init(*boot.args, **boot.kwargs)
            finally:
                proc.leave_user_code()
        except BaseException as e:
            boot.error = e
            reason = e.reason if isinstance(e, ProcessExit) else Crash.from_exception(e)
            if boot.parent is not None:  # the starter gets the exception, not a signal
                with boot.node._lock:
                    proc.links.discard(boot.parent.pid)
                    boot.parent.links.discard(proc.pid)
            boot.node._exit(proc, reason)
            self._gen_halt()
        boot.done.set()

    def on_receive(self, message: Any) -> Any:
        """pykka's message hook (not actornet API): dispatches to the callbacks."""
        proc = self._gen_proc
        if not proc.alive:
            self._gen_halt()  # killed by an exit signal meanwhile
            return None
        if message is WAKE:
            return None
        try:
            try:
                proc.enter_user_code()
                self._gen_dispatch(message)
            finally:
                proc.leave_user_code()
        except Killed:
            self._gen_halt()
        except ProcessExit as e:
            self._gen_terminate(e.reason)
        except BaseException as e:
            crash = Crash.from_exception(e)
            log.error("GenServer %s %r terminating: %s (last message: %r)",
                      type(self).__name__, self.gen_pid, crash, message, exc_info=e)
            self._gen_terminate(crash)
        return None

    def _gen_dispatch(self, message: Any) -> None:
        if message.__class__ is tuple and message:
            tag = message[0]
            if tag == _gen.CALL:
                from_ = message[1]
                answer = self.handle_call(message[2], from_)
                if answer is not NOREPLY:
                    self.gen_node.reply(from_, answer)
                return
            if tag == _gen.CAST:
                self.handle_cast(message[1])
                return
            if tag == _gen.STOP:
                raise ProcessExit(message[1])
            if tag == "EXIT" and len(message) == 3 and message[1] == self._gen_parent:
                raise ProcessExit(message[2])  # OTP: the parent's exit ends a trapping server
        self.handle_info(message)

    def _gen_terminate(self, reason: Any) -> None:
        proc = self._gen_proc
        try:
            proc.enter_user_code()
            try:
                self.terminate(reason)
            finally:
                proc.leave_user_code()
        except Killed:
            pass
        except BaseException as e:
            reason = Crash.from_exception(e)
            log.error("GenServer %s %r crashed in terminate: %s",
                      type(self).__name__, self.gen_pid, reason, exc_info=e)
        self.gen_node._exit(proc, reason)
        self._gen_halt()

    def _gen_halt(self) -> None:
        """Leave pykka's loop after this message; the process is already dead."""
        self._gen_proc.mailbox.closed = True
        _runtime.unbind()
        pykka.ActorRegistry.unregister(self.actor_ref)
        self.actor_stopped.set()


def _register_name(node: Any, name: Any, pid: Pid) -> None:
    if name is None:
        return
    if isinstance(name, str):
        node.register(name, pid)
        return
    if isinstance(name, tuple) and len(name) == 2 and name[0] == "global":
        from actornet import global_

        if global_.register_name(name[1], pid) != "yes":
            raise AlreadyRegistered(f"global name {name[1]!r} is already registered")
        return
    raise TypeError(f"name must be None, a str or ('global', name), got {name!r}")
