"""Call, cast and reply: the plumbing every behaviour shares (OTP's `gen`).

A call is ``("$gen_call", (caller, ref), request)``; a cast is
``("$gen_cast", request)``. The caller monitors the server under the call's
ref and waits on an *alias slot* for that ref, so the reply and the DOWN land
in the same place and nothing reaches the caller's mailbox: a dead server fails
the call at once, and a reply that arrives after a timeout is dropped (OTP 24's
process aliases).
"""

from __future__ import annotations

import asyncio
import numbers
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from actornet import _runtime
from actornet._backpressure import owing, settle
from actornet._callslot import REPLY, TaskSlot, ThreadSlot
from actornet._ids import Pid, Ref
from actornet._runtime import current_node
from actornet._scheduler import TIMEOUT
from actornet.errors import (
    ActornetError,
    BadArg,
    CallDeadlock,
    CallError,
    NodeDown,
    NoProc,
    Timeout,
)

if TYPE_CHECKING:
    from actornet._process import NodeApi, Process

Slot = TypeVar("Slot", ThreadSlot, TaskSlot)

__all__ = ["call", "cast", "reply", "wait_exit", "multi_call", "timeout_arg", "acall",
           "await_exit", "amulti_call"]

CALL = "$gen_call"
CAST = "$gen_cast"
STOP = "$gen_stop"
BADARG = "$badarg"  # a server's answer to a request it has no clause for (`badarg`)


def timeout_arg(timeout: object, what: str, *, zero_ok: bool = False) -> float | None:
    """Check a user's `timeout` for `what` (e.g. ``"call()"``): seconds to wait, or None.

    None, ``math.inf`` and anything from `threading.TIMEOUT_MAX` up mean no
    deadline (Erlang's ``infinity``). Zero is allowed only with `zero_ok`
    (``receive`` polls; a call cannot be answered in no time). Everything that
    takes a timeout from a user checks it here, before acting on anything.

    Raises:
        TypeError: `timeout` is not a real number (or is a bool).
        ValueError: `timeout` is NaN, negative, or zero without `zero_ok`.

    Example:
        >>> import math
        >>> timeout_arg(2, "call()"), timeout_arg(math.inf, "call()"), timeout_arg(None, "x")
        (2.0, None, None)
        >>> timeout_arg(float("nan"), "receive()", zero_ok=True)
        Traceback (most recent call last):
          ...
        ValueError: receive(): timeout must be a number of seconds, got nan
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(
            f"{what}: timeout must be a number of seconds or None, got {timeout!r}"
        )
    if timeout != timeout:  # NaN, of any real type
        raise ValueError(f"{what}: timeout must be a number of seconds, got {timeout!r}")
    if timeout < 0 or (timeout == 0 and not zero_ok):
        bound = ">= 0" if zero_ok else "> 0"
        raise ValueError(f"{what}: timeout must be {bound} seconds, got {timeout!r}")
    try:
        seconds = float(timeout)
    except OverflowError:  # an int too large for a float
        return None
    # Longer than any wait the OS can time (math.inf included): wait forever.
    return None if seconds >= threading.TIMEOUT_MAX else seconds


def call(server: Any, request: Any, timeout: float | None = 5.0) -> Any:
    """Send `request` to a GenServer and wait for its reply (Erlang `gen_server:call/3`).

    `server` is a pid, a local name, `(name, node)` or `("global", name)`.

    Raises:
        Timeout: no reply within `timeout` seconds (a `TimeoutError`).
        NoProc: the server does not exist.
        NodeDown: the server's node is down or became unreachable.
        CallError: the server exited while handling the call (`.reason` says why).
        CallDeadlock: a process called itself.

    Example:
        >>> import actornet
        >>> class Echo(actornet.GenServer):
        ...     def handle_call(self, request, from_):
        ...         return ("echo", request)
        >>> pid = Echo.start()
        >>> actornet.call(pid, "hi")
        ('echo', 'hi')
        >>> actornet.GenServer.stop(pid)
    """
    return call_any(server, request, timeout, check=True)


def call_any(server: Any, request: Any, timeout: float | None, *, check: bool) -> Any:
    """`call`; with `check` False a local request may hold any Python object."""
    seconds = timeout_arg(timeout, "call()")
    node = current_node()
    me = node.current()
    refuse_blocking("actornet.call()", "await actornet.aio.call(server, request)")
    target, ref, slot = begin_call(node, me, server, request, ThreadSlot(), check)
    if not slot.wait(seconds):
        if abandon(node, ref):
            raise Timeout(f"call to {server!r} timed out after {timeout} s (request: {request!r})")
        slot.wait(None)  # the answer is being set right now
    return call_outcome(node, me, server, target, request, ref, slot)


def begin_call(node: NodeApi, me: Process, server: Any, request: Any, slot: Slot,
               check: bool = True) -> tuple[Any, Ref, Slot]:
    """Resolve `server`, monitor it under a new alias and send it the call: the part of
    a call before its wait (`actornet.call` and `actornet.aio.call` share it)."""
    target = node.resolve(server)
    if target == me.pid:
        raise CallDeadlock(
            f"process {me.pid!r} called itself ({server!r}): it can never answer its own "
            "call; handle the request directly or reply later with NOREPLY"
        )
    ref, slot = node.new_alias(slot)
    slot.watcher = me
    node.monitor_as(me, target, ref)
    try:
        node.route(target, (CALL, (me.pid, ref), request), check)
    except BaseException:
        node.drop_alias(ref)
        node.demonitor(ref)
        raise
    return target, ref, slot


def abandon(node: NodeApi, ref: Ref) -> bool:
    """Give up a request whose wait ended without an answer (a timeout, a cancelled
    task): True if it was still pending, False if its answer is being set right now."""
    if node.drop_alias(ref):
        node.demonitor(ref)
        return True
    return False


def call_outcome(node: NodeApi, me: Process, server: Any, target: Any, request: Any, ref: Ref,
                 slot: Slot) -> Any:
    """The reply in `slot`, or the error its DOWN means."""
    if slot.kind == REPLY:
        node.demonitor_target(target, ref, me.pid)
        return _checked_reply(server, slot.value)
    raise _call_failed(server, target, request, slot.value)


def badarg(why: str) -> tuple[str, str]:
    """The reply to a request the server does not understand: its `call` raises `BadArg`."""
    return (BADARG, why)


def _checked_reply(server: Any, value: Any) -> Any:
    """`value`, unless it is a `badarg` answer: then `BadArg`, naming the server."""
    if value.__class__ is tuple and len(value) == 2 and value[0] == BADARG:
        raise BadArg(f"call to {server!r} failed: badarg: {value[1]}")
    return value


def refuse_blocking(what: str, twin: str) -> None:
    """Raise if the calling thread runs an asyncio loop (a lightweight process, an
    asyncio task): `what` would block it, and with it every task of that loop."""
    if asyncio._get_running_loop() is not None:
        proc = _runtime.task_process()
        who = (f"the lightweight process {proc.pid!r}" if proc is not None and proc.light
               else "code running on an asyncio event loop")
        raise ActornetError(
            f"{what} blocks, and this is {who}: blocking would stall every task of the "
            f"loop. Use `{twin}` instead")


def _call_failed(server: Any, target: Any, request: Any, reason: Any) -> Exception:
    if reason == "noproc":
        return NoProc(f"call to {server!r} failed: no such process")
    if reason == "noconnection":
        node = target.node if isinstance(target, Pid) else target[1]
        return NodeDown(f"call to {server!r} failed: node {node} is down or unreachable")
    return CallError(
        f"call to {server!r} failed: the server exited with reason {reason!s} "
        f"while handling {request!r}",
        reason,
    )


def cast(server: Any, request: Any) -> None:
    """Send `request` to a GenServer without waiting (Erlang `gen_server:cast/2`).

    Like Erlang, a cast to a dead pid is silently dropped; a cast to an
    unregistered local name raises `NoProc`.

    Example:
        >>> import actornet
        >>> class Sink(actornet.GenServer):
        ...     def handle_cast(self, request):
        ...         self.last = request
        >>> pid = Sink.start()
        >>> actornet.cast(pid, "hello")
        >>> actornet.GenServer.stop(pid)
    """
    current_node().send(server, (CAST, request))


def reply(from_: tuple[Pid, Ref], value: Any) -> None:
    """Answer a call later, after `handle_call` returned `NOREPLY` (Erlang `gen_server:reply/2`).

    Example:
        >>> import actornet
        >>> class Later(actornet.GenServer):
        ...     def handle_call(self, request, from_):
        ...         actornet.reply(from_, request * 2)
        ...         return actornet.NOREPLY
        >>> pid = Later.start()
        >>> actornet.call(pid, 21)
        42
        >>> actornet.GenServer.stop(pid)
    """
    current_node().reply(from_, value)


def wait_exit(server: Any, message: Any, timeout: float | None,
              node: NodeApi | None = None) -> Any:
    """Monitor `server`, send it `message`, and wait for it to exit; return its reason.

    `node` is the node acting (default: the current one); `Node.stop` passes itself.
    """
    seconds = timeout_arg(timeout, "GenServer.stop()")
    node = node if node is not None else current_node()
    me = node.current()
    refuse_blocking("GenServer.stop()", "await actornet.aio.stop(server)")
    ref, slot = begin_exit(node, me, server, message, ThreadSlot())
    if not slot.wait(seconds):
        if abandon(node, ref):
            raise Timeout(f"{server!r} did not exit within {timeout} s")
        slot.wait(None)
    return exit_outcome(server, slot)


def begin_exit(node: NodeApi, me: Process, server: Any, message: Any,
               slot: Slot) -> tuple[Ref, Slot]:
    """Monitor `server` under a new alias and send it `message` (`wait_exit`'s start)."""
    target = node.resolve(server)
    if target == me.pid:
        raise CallDeadlock(f"process {me.pid!r} cannot wait for its own exit")
    ref, slot = node.new_alias(slot)
    slot.watcher = me
    node.monitor_as(me, target, ref)
    node.send(target, message)
    return ref, slot


def exit_outcome(server: Any, slot: ThreadSlot | TaskSlot) -> Any:
    reason = slot.value
    if reason == "noproc":
        raise NoProc(f"no such process: {server!r}")
    if reason == "noconnection":
        raise NodeDown(f"the node of {server!r} went down")
    return reason


def multi_call(servers: list[Any], request: Any, timeout: float | None = 5.0,
               ) -> list[tuple[str, Any]]:
    """Call several servers at once; one ``(kind, value)`` per server, in order.

    `kind` is ``"reply"``, ``"down"`` (value: the exit reason, e.g.
    ``"noproc"`` or ``"noconnection"``) or ``"timeout"``. Used by `global_`
    to take cluster-wide locks in one round trip.
    """
    seconds = timeout_arg(timeout, "multi_call()")
    node = current_node()
    me = node.current()
    refuse_blocking("multi_call()", "await actornet.aio.multi_call(...)")
    pending = begin_multi(node, me, servers, request, ThreadSlot)
    deadline = None if seconds is None else time.monotonic() + seconds
    results: list[tuple[str, Any]] = []
    for target, ref, slot in pending:
        if slot is not None:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not slot.wait(remaining):
                if abandon(node, ref):
                    slot = None
                else:
                    slot.wait(None)
        results.append(multi_outcome(node, me, target, ref, slot))
    return results


_Pending = tuple[Any, Any, Any]  # (target, ref, slot), or (None, None, None): no such server


def begin_multi(node: NodeApi, me: Process, servers: list[Any], request: Any,
                new_slot: Callable[[], Slot]) -> list[_Pending]:
    pending: list[_Pending] = []
    for server in servers:
        try:
            target = node.resolve(server)
        except NoProc:
            pending.append((None, None, None))
            continue
        ref, slot = node.new_alias(new_slot())
        slot.watcher = me
        node.monitor_as(me, target, ref)
        node.send(target, (CALL, (me.pid, ref), request))
        pending.append((target, ref, slot))
    return pending


def multi_outcome(node: NodeApi, me: Process, target: Any, ref: Any,
                  slot: ThreadSlot | TaskSlot | None) -> tuple[str, Any]:
    if slot is None:
        return ("down", "noproc") if target is None else ("timeout", None)
    if slot.kind == REPLY:
        node.demonitor_target(target, ref, me.pid)
    return (slot.kind, slot.value)


# -- the same, awaited (actornet.aio) ---------------------------------------------------


async def acall(server: Any, request: Any, timeout: float | None = 5.0, *,
                check: bool = True, me: Process | None = None) -> Any:
    """`call` for a lightweight process or any asyncio task (`actornet.aio.call`);
    `me` is the calling process, if the caller knows it. The wait is inline (this is
    the one coroutine a call costs)."""
    seconds = None if timeout is None else timeout_arg(timeout, "aio.call()")
    if owing:  # a send of this task found a peer busy: it waits for it first
        await settle()
    if me is None:
        me = current_node().current()
    node = me.node
    slot = TaskSlot(me.light_mailbox.sched)
    target, ref, slot = begin_call(node, me, server, request, slot, check)
    armed = slot.arm(seconds)
    if armed is not None:
        fut, key = armed
        try:
            woke = await fut
        except BaseException:
            abandon(node, ref)  # cancelled: an exit signal ended the caller
            raise
        finally:
            slot.disarm(fut, key)
        if woke is TIMEOUT and not slot.kind:
            if abandon(node, ref):
                raise Timeout(
                    f"call to {server!r} timed out after {timeout} s (request: {request!r})")
            await slot.wait(None)  # the answer is being set right now
    return call_outcome(node, me, server, target, request, ref, slot)


async def await_exit(server: Any, message: Any, timeout: float | None, *,
                     me: Process | None = None) -> Any:
    """`wait_exit`, awaited (`actornet.aio.stop`)."""
    seconds = timeout_arg(timeout, "aio.stop()")
    if owing:
        await settle()
    if me is None:
        me = current_node().current()
    node = me.node
    ref, slot = begin_exit(node, me, server, message, TaskSlot(me.light_mailbox.sched))
    if not await await_slot(node, ref, slot, seconds):
        raise Timeout(f"{server!r} did not exit within {timeout} s")
    return exit_outcome(server, slot)


async def amulti_call(servers: list[Any], request: Any, timeout: float | None = 5.0,
                      ) -> list[tuple[str, Any]]:
    """`multi_call`, awaited."""
    seconds = timeout_arg(timeout, "aio.multi_call()")
    if owing:
        await settle()
    node = current_node()
    me = node.current()
    pending = begin_multi(node, me, servers, request, lambda: TaskSlot(me.light_mailbox.sched))
    loop = asyncio.get_running_loop()
    deadline = None if seconds is None else loop.time() + seconds
    results: list[tuple[str, Any]] = []
    for i, (target, ref, slot) in enumerate(pending):
        if slot is not None:
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                answered = await await_slot(node, ref, slot, remaining)
            except BaseException:
                for _, later, _ in pending[i + 1:]:
                    if later is not None:
                        abandon(node, later)
                raise
            if not answered:
                slot = None
        results.append(multi_outcome(node, me, target, ref, slot))
    return results


async def await_slot(node: NodeApi, ref: Ref, slot: TaskSlot, seconds: float | None) -> bool:
    """The wait of every awaited request: True once answered, False on a timeout. A
    cancelled waiter (an exit signal ended its process) gives up the request."""
    try:
        if await slot.wait(seconds):
            return True
    except BaseException:
        abandon(node, ref)
        raise
    if abandon(node, ref):
        return False
    await slot.wait(None)  # the answer is being set right now
    return True


def task_slot() -> TaskSlot:
    """A slot for the calling lightweight process (or asyncio task) to await."""
    return TaskSlot(current_node().current().light_mailbox.sched)
