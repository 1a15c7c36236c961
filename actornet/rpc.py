"""Remote procedure calls and remote spawns (Erlang's `rpc`/`erpc` and ``spawn(Node, ...)``).

A function travels by name, as ``module`` and ``qualname``: it must be a
module-level function importable on both nodes (a lambda or a nested function
cannot travel). The remote node imports it in the new process, so an import
failure is that process's crash, reported to the caller as `RemoteImportError`.

Any node that knows the cookie may run any importable function here, as in
Erlang: the cookie is full trust.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from actornet import _gen
from actornet import _wire as w
from actornet._callslot import REPLY, TaskSlot, ThreadSlot
from actornet._gen import timeout_arg
from actornet._ids import Pid, Ref
from actornet._light import is_async_function
from actornet.errors import ActornetError, CallError, Crash, NodeDown, RemoteImportError, Timeout
from actornet.node import current_node

if TYPE_CHECKING:
    from actornet._process import Process
    from actornet.node import Node

__all__ = ["call", "RemoteImportError", "function_name"]

_Slot = TypeVar("_Slot", ThreadSlot, TaskSlot)


def function_name(fn: Callable[..., Any]) -> tuple[str, str]:
    """``(module, qualname)`` of a function that can run on another node.

    Example:
        >>> import os.path
        >>> function_name(os.path.join)
        ('posixpath', 'join')
    """
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if module == "__main__":
        # A script run as `python -m pkg.mod` has a real name other nodes can import.
        # A plain script has none: "__main__" then only works for nodes of this
        # interpreter, and elsewhere fails as a RemoteImportError naming it.
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is not None and spec.name:
            module = spec.name
    bound = getattr(fn, "__self__", None)
    if not module or not qualname or "<" in qualname or (
        bound is not None and not inspect.ismodule(bound)
    ):
        raise TypeError(
            f"{fn!r} cannot run on another node: pass a module-level function importable "
            "there (not a lambda, a nested function or a bound method)"
        )
    return module, qualname


def call(node: str, fn: Callable[..., Any], *args: Any, timeout: float | None = 5.0) -> Any:
    """Run ``fn(*args)`` in a new process on `node` and return its result (Erlang `erpc:call`).

    Raises:
        NodeDown: `node` cannot be reached, or went down during the call.
        RemoteImportError: `node` cannot import `fn`.
        CallError: `fn` raised there (`.reason` is the `Crash`).
        Timeout: no answer within `timeout` seconds (None or ``math.inf``: no limit).
        ValueError, TypeError: a bad `timeout`, refused before anything is sent.

    Example:
        >>> import os, actornet
        >>> with actornet.start_node("rpcdoc@127.0.0.1", cookie="doc", port=0) as n:
        ...     actornet.rpc.call("rpcdoc@127.0.0.1", os.getpid) == os.getpid()
        True
    """
    timeout = timeout_arg(timeout, "rpc.call()")
    module, qualname = function_name(fn)
    here = current_node()
    _gen.refuse_blocking("rpc.call()", "await actornet.aio.rpc.call(node, fn, *args)")
    if node == here.name:
        if is_async_function(fn):
            raise TypeError(f"rpc.call() of the async function {qualname} on this node: "
                            "await it, or use `await actornet.aio.rpc.call(...)`")
        return fn(*args)
    value = _request(node, module, qualname, args, _flags(fn, w.SPAWN_RPC), timeout)
    return value[1]


def _flags(fn: Callable[..., Any], flags: int) -> int:
    return flags | w.SPAWN_LIGHT if is_async_function(fn) else flags


def spawn(node: str, fn: Callable[..., Any], args: tuple[Any, ...], *, link: bool) -> Pid:
    """Start ``fn(*args)`` on `node`; used by ``actornet.spawn(..., node=...)``."""
    module, qualname = function_name(fn)
    _gen.refuse_blocking("spawn(..., node=...)",
                         "await actornet.aio.spawn(fn, *args, node=node)")
    pid = _request(node, module, qualname, args, _flags(fn, w.SPAWN_LINK if link else 0), 10.0)
    if not isinstance(pid, Pid):
        raise ActornetError(f"spawn on {node} failed: {pid!r}")
    return pid


def _request(node: str, module: str, qualname: str, args: tuple[Any, ...], flags: int,
             timeout: float | None) -> Any:
    here = current_node()
    me = here.current()
    ref, slot = _begin(here, me, node, module, qualname, args, flags, ThreadSlot())
    if not slot.wait(timeout):
        if _gen.abandon(here, ref):
            raise Timeout(f"{module}.{qualname} on {node} did not answer within {timeout} s")
        slot.wait(None)
    return _outcome(node, module, qualname, slot)


async def arequest(node: str, module: str, qualname: str, args: tuple[Any, ...], flags: int,
                   timeout: float | None) -> Any:
    """`_request`, awaited (`actornet.aio.rpc.call`, a remote `aio.spawn`)."""
    here = current_node()
    me = here.current()
    ref, slot = _begin(here, me, node, module, qualname, args, flags, _gen.task_slot())
    if not await _gen.await_slot(here, ref, slot, timeout):
        raise Timeout(f"{module}.{qualname} on {node} did not answer within {timeout} s")
    return _outcome(node, module, qualname, slot)


def _begin(here: Node, me: Process, node: str, module: str, qualname: str,
           args: tuple[Any, ...], flags: int, slot: _Slot) -> tuple[Ref, _Slot]:
    """Ask `node` to spawn ``module.qualname(*args)``, answering to a new alias."""
    transport = here.transport()
    ref, slot = here.new_alias(slot)
    slot.watcher = me
    # Filed under a pseudo-target on `node`, so the node going down fails the wait.
    me.add_monitor(ref, ("$spawn", node))
    try:
        transport.spawn_request(node, me.pid, ref, module, qualname, tuple(args), flags)
    except BaseException:
        here.drop_alias(ref)
        me.pop_monitor(ref)
        raise
    return ref, slot


def _outcome(node: str, module: str, qualname: str, slot: ThreadSlot | TaskSlot) -> Any:
    if slot.kind == REPLY:
        return slot.value
    reason = slot.value
    if reason == "noconnection":
        raise NodeDown(f"node {node} is down or unreachable ({module}.{qualname})")
    if isinstance(reason, Crash) and reason.type == "RemoteImportError":
        raise RemoteImportError(reason.message)
    raise CallError(f"{module}.{qualname} on {node} failed: {reason}", reason)
