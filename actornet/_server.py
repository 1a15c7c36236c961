"""What runs a GenServer: its loop, in a thread (pykka) or as a lightweight process.

A server is the user's `GenServer` object plus a process. One `route` decides
which callback each message goes to, with OTP's rules; two small loops call
it: `_PykkaRunner`, a private pykka `ThreadingActor` whose thread runs a
server with plain callbacks, and `_light_server_main`, the asyncio task of a
server with ``async def`` callbacks. The user's class never is a pykka actor,
so pykka's ``tell``/``ask``/``proxy`` cannot bypass actornet.

Failure semantics are OTP's whatever the kind: a callback that raises ends the
server with a `Crash` (logged with the last message), `terminate` runs, and
the exit travels along links and monitors; a caller waiting on a `call` gets
an error at once.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

import pykka

from actornet import _gen, _runtime
from actornet._ids import Pid
from actornet._light import new_task
from actornet._mailbox import WAKE
from actornet._process import Killed, Process
from actornet._registry import global_names
from actornet._steps import Steps
from actornet.errors import AlreadyRegistered, Crash, ProcessExit

if TYPE_CHECKING:
    from actornet._process import NodeApi

__all__ = ["Boot", "Callbacks", "NOREPLY", "start", "route"]

log = logging.getLogger("actornet")


class _NoReply:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOREPLY"


NOREPLY: Any = _NoReply()


class Callbacks(Protocol):
    """A server as its loop sees it: a `GenServer` (``actornet.gen_server``)."""

    @property
    def gen_pid(self) -> Pid: ...

    @property
    def gen_parent(self) -> Pid | None: ...

    def init(self, *args: Any, **kwargs: Any) -> Any: ...

    def handle_call(self, request: Any, from_: tuple[Pid, Any]) -> Any: ...

    def handle_cast(self, request: Any) -> Any: ...

    def handle_info(self, msg: Any) -> Any: ...

    def terminate(self, reason: Any) -> Any: ...


class Boot:
    """A server being started: what `init` gets, and how the starter learns the outcome."""

    __slots__ = ("args", "error", "future", "kwargs", "name", "node", "parent", "pid",
                 "started", "waker")

    def __init__(self, node: NodeApi, args: tuple[Any, ...], kwargs: dict[str, Any],
                 name: Any, parent: Process | None) -> None:
        self.node = node
        self.args = args
        self.kwargs = kwargs
        self.name = name
        self.parent = parent
        self.error: BaseException | None = None
        self.pid: Pid | None = None
        self.started = threading.Event()  # a starting thread waits on it
        self.future: asyncio.Future[None] | None = None  # ... a starting task on this
        self.waker: Callable[[asyncio.Future[None]], None] | None = None

    def done(self) -> None:
        """`init` is over (returned or raised): let the starter go on."""
        self.started.set()
        if self.future is not None and self.waker is not None:
            self.waker(self.future)


def register(boot: Boot, proc: Process) -> Steps[None]:
    """Take the server's name and link it to its starter (in the starter), as steps: a
    global name waits for the cluster (`actornet._steps`)."""
    node = boot.node
    name = boot.name
    try:
        if isinstance(name, str):
            node.register(name, proc.pid)
        elif isinstance(name, tuple) and len(name) == 2 and name[0] == "global":
            if (yield from global_names().register_name_steps(name[1], proc.pid)) != "yes":
                raise AlreadyRegistered(f"global name {name[1]!r} is already registered")
        elif name is not None:
            raise TypeError(f"name must be None, a str or ('global', name), got {name!r}")
    except BaseException:
        node.end_process(proc, "normal")
        raise
    link_parent(boot, proc)


def link_parent(boot: Boot, proc: Process) -> None:
    if boot.parent is not None:
        with boot.node.lock:
            boot.parent.add_link(proc.pid)
            proc.add_link(boot.parent.pid)


def start(server: Callbacks, proc: Process, boot: Boot) -> None:
    """Start the server's loop: a pykka thread, or a task on the node's scheduler."""
    if proc.light:
        proc.light_mailbox.sched.call(_create_task, server, proc, boot)
    else:
        _PykkaRunner.start(server, proc, boot)


def _create_task(server: Callbacks, proc: Process, boot: Boot) -> None:
    new_task(proc, _light_server_main(server, proc, boot))


def route(server: Callbacks, message: Any) -> tuple[Callable[..., Any], tuple[Any, ...], Any]:
    """The callback `message` goes to, its arguments, and whom to reply to (a call's
    `from_`, else None). Raises `ProcessExit` for a stop, or the parent's exit."""
    if message.__class__ is tuple:
        match message:
            case (_gen.CALL, from_, request):
                return server.handle_call, (request, from_), from_
            case (_gen.CAST, request):
                return server.handle_cast, (request,), None
            case (_gen.STOP, reason):
                raise ProcessExit(reason)
            case ("EXIT", pid, reason) if pid == server.gen_parent:
                raise ProcessExit(reason)  # OTP: the parent's exit ends a trapping server
    return server.handle_info, (message,), None


def _crash_reason(server: Callbacks, error: BaseException, message: Any) -> Crash:
    crash = Crash.from_exception(error)
    log.error("GenServer %s %r terminating: %s (last message: %r)",
              type(server).__name__, server.gen_pid, crash, message, exc_info=error)
    return crash


def _refuse_to_start(boot: Boot, proc: Process, error: BaseException) -> None:
    """`init` raised: the starter gets the exception, not an exit signal."""
    boot.error = error
    reason = error.reason if isinstance(error, ProcessExit) else Crash.from_exception(error)
    if boot.parent is not None:
        with boot.node.lock:
            proc.remove_link(boot.parent.pid)
            boot.parent.remove_link(proc.pid)
    boot.node.end_process(proc, reason)


# -- the thread kind: a private pykka actor ---------------------------------------------


class _PykkaRunner(pykka.ThreadingActor):
    """Runs one thread server on pykka's actor thread; reads the process's mailbox."""

    use_daemon_thread = True

    def __init__(self, server: Callbacks, proc: Process, boot: Boot) -> None:
        super().__init__()
        # pykka types its inbox by its private Envelope; ours yields letters of that shape.
        self.actor_inbox = cast(Any, proc.thread_mailbox)  # pykka's loop reads our mailbox
        self.server = server
        self.proc = proc
        self.boot: Boot | None = boot

    def on_start(self) -> None:
        boot, proc = self.boot, self.proc
        assert boot is not None
        self.boot = None
        proc.thread_id = threading.get_ident()
        _runtime.bind(proc)
        try:
            try:
                proc.enter_user_code()
                self.server.init(*boot.args, **boot.kwargs)
            finally:
                proc.leave_user_code()
        except BaseException as e:
            _refuse_to_start(boot, proc, e)
            self._halt()
        boot.done()

    def on_receive(self, message: Any) -> Any:
        proc = self.proc
        if not proc.alive:
            self._halt()  # killed by an exit signal meanwhile
            return None
        if message is WAKE:
            return None
        server = self.server
        try:
            try:
                proc.enter_user_code()
                callback, args, from_ = route(server, message)
                answer = callback(*args)
                if from_ is not None and answer is not NOREPLY:
                    proc.node.reply(from_, answer)
            finally:
                proc.leave_user_code()
        except Killed:
            self._halt()
        except ProcessExit as e:
            self._terminate(e.reason)
        except BaseException as e:
            self._terminate(_crash_reason(server, e, message))
        return None

    def _terminate(self, reason: Any) -> None:
        proc, server = self.proc, self.server
        try:
            proc.enter_user_code()
            try:
                server.terminate(reason)
            finally:
                proc.leave_user_code()
        except Killed:
            pass
        except BaseException as e:
            reason = Crash.from_exception(e)
            log.error("GenServer %s %r crashed in terminate: %s",
                      type(server).__name__, server.gen_pid, reason, exc_info=e)
        proc.node.end_process(proc, reason)
        self._halt()

    def _halt(self) -> None:
        """Leave pykka's loop after this message; the process is already dead."""
        self.proc.mailbox.closed = True
        _runtime.unbind()
        pykka.ActorRegistry.unregister(self.actor_ref)
        self.actor_stopped.set()


# -- the lightweight kind: an asyncio task ----------------------------------------------


async def _light_server_main(server: Callbacks, proc: Process, boot: Boot) -> None:
    try:
        await _maybe_await(server.init(*boot.args, **boot.kwargs))
    except BaseException as e:
        if isinstance(e, asyncio.CancelledError) and not proc.alive:
            boot.error = e
            boot.done()
            return
        _refuse_to_start(boot, proc, e)
        boot.done()
        return
    boot.done()
    mailbox = proc.light_mailbox
    message: Any = None
    reason: Any
    try:
        while True:
            message = await mailbox.get()
            callback, args, from_ = route(server, message)
            answer: Any = callback(*args)
            if answer.__class__ is _Coroutine:
                answer = await answer
            if from_ is not None and answer is not NOREPLY:
                proc.node.reply(from_, answer)
    except Killed:
        return
    except ProcessExit as e:
        reason = e.reason
    except asyncio.CancelledError:
        if not proc.alive:
            return  # an exit signal cancelled it
        reason = "killed"
    except BaseException as e:
        reason = _crash_reason(server, e, message)
    try:
        await _maybe_await(server.terminate(reason))
    except (Killed, asyncio.CancelledError):
        if not proc.alive:
            return
    except BaseException as e:
        reason = Crash.from_exception(e)
        log.error("GenServer %s %r crashed in terminate: %s",
                  type(server).__name__, server.gen_pid, reason, exc_info=e)
    proc.node.end_process(proc, reason)


async def _maybe_await(result: Any) -> Any:
    if inspect.isawaitable(result):
        return await result
    return result


async def _coroutine() -> None:
    pass


_probe = _coroutine()
_Coroutine: Any = type(_probe)
_probe.close()
