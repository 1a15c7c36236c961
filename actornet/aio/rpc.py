"""`actornet.rpc`'s waiting functions, awaited.

Example:
    >>> import asyncio, os, actornet
    >>> from actornet import aio
    >>> async def main():
    ...     async with aio.start_node("aiorpcdoc@127.0.0.1", cookie="doc", port=0) as n:
    ...         return await aio.rpc.call(n.name, os.getpid) == os.getpid()
    >>> asyncio.run(main())
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actornet import _wire
from actornet._gen import timeout_arg
from actornet._light import is_async_function
from actornet.node import current_node
from actornet.rpc import arequest, function_name

__all__ = ["call"]


async def call(node: str, fn: Callable[..., Any], *args: Any,
               timeout: float | None = 5.0) -> Any:
    """Run ``fn(*args)`` in a new process on `node` and await its result (`rpc.call`).

    `fn` may be an ``async def`` function: it then runs as a lightweight
    process there. The errors are `rpc.call`'s.

    Example:
        >>> import asyncio, actornet
        >>> from actornet import aio
        >>> asyncio.run(aio.rpc.call(actornet.node(), max, 1, 2))
        2
    """
    seconds = timeout_arg(timeout, "aio.rpc.call()")
    module, qualname = function_name(fn)
    light = is_async_function(fn)
    if node == current_node().name:
        result = fn(*args)
        return await result if light else result
    flags = _wire.SPAWN_RPC | (_wire.SPAWN_LIGHT if light else 0)
    value = await arequest(node, module, qualname, args, flags, seconds)
    return value[1]
