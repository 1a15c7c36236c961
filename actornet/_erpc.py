"""The serving side of `rpc` and remote spawns: what runs a peer's spawn request here.

A peer's ``spawn(Node, ...)`` or ``rpc.call`` arrives as a `SPAWN` op naming a
function by module and qualname (`actornet.rpc`); the node starts a process that
imports it and runs one of these. Kept apart from `actornet.rpc`, the calling
side, so that the node can start them without importing the API built on it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from actornet._ids import Pid, Ref
from actornet._runtime import current_node
from actornet.errors import RemoteImportError

__all__ = ["import_function", "run_named", "arun_named", "rpc_runner", "arpc_runner"]


def import_function(module: str, qualname: str) -> Callable[..., Any]:
    """``module.qualname``, imported here; `RemoteImportError` if it cannot be."""
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception as e:
        here = current_node().name
        raise RemoteImportError(
            f"node {here} cannot import {module}.{qualname}: {type(e).__name__}: {e}"
        ) from e
    if not callable(obj):
        raise RemoteImportError(f"{module}.{qualname} on {current_node().name} is not callable")
    return obj  # type: ignore[no-any-return]


def run_named(module: str, qualname: str, args: tuple[Any, ...]) -> Any:
    """A remotely spawned thread process: ``module.qualname(*args)``."""
    return import_function(module, qualname)(*args)


async def arun_named(module: str, qualname: str, args: tuple[Any, ...]) -> Any:
    """A remotely spawned lightweight process: ``await module.qualname(*args)``."""
    return await import_function(module, qualname)(*args)


def rpc_runner(requester: Pid, ref: Ref, module: str, qualname: str,
               args: tuple[Any, ...]) -> None:
    """Run an rpc in a thread process and answer the caller."""
    result = import_function(module, qualname)(*args)
    current_node().reply((requester, ref), ("ok", result))


async def arpc_runner(requester: Pid, ref: Ref, module: str, qualname: str,
                      args: tuple[Any, ...]) -> None:
    """Run an rpc of an ``async def`` function in a lightweight process."""
    result = await import_function(module, qualname)(*args)
    current_node().reply((requester, ref), ("ok", result))
