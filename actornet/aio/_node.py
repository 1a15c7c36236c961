"""Starting a node on the application's running loop (`actornet.aio.start_node`)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Generator
from types import TracebackType
from typing import Any

from actornet.node import Node

__all__ = ["start_node", "stop_node"]


class _NodeStart:
    """What `start_node` returns: await it for the node, or use it with ``async with``."""

    def __init__(self, name: str, cookie: str | bytes | None, options: dict[str, Any]) -> None:
        self._call = functools.partial(_start_blocking, name, cookie, options)
        self._node: Node | None = None

    def __await__(self) -> Generator[Any, None, Node]:
        return self._start().__await__()

    async def _start(self) -> Node:
        loop = asyncio.get_running_loop()
        # start_node waits for the port mapper and the system servers: not on the loop.
        node = await loop.run_in_executor(None, self._call)
        try:
            node.use_loop(loop)
        except BaseException:
            await stop_node(node)
            raise
        return node

    async def __aenter__(self) -> Node:
        self._node = await self._start()
        return self._node

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._node is not None:
            await stop_node(self._node)


def _start_blocking(name: str, cookie: str | bytes | None, options: dict[str, Any]) -> Node:
    from actornet.net_kernel import start_node as start

    return start(name, cookie, **options)


def start_node(name: str, cookie: str | bytes | None = None, **options: Any) -> _NodeStart:
    """Start a named node whose lightweight processes run on the running asyncio loop.

    Takes `actornet.start_node`'s arguments. ``node = await start_node(...)``,
    or ``async with start_node(...) as node:`` (stopped at the end). The
    loop's tasks can then ``await actornet.aio.call(...)`` servers on any node
    of the cluster with no thread in between, and every ``async def`` process
    the node spawns runs on this loop.

    Example:
        >>> import asyncio, actornet
        >>> from actornet import aio
        >>> async def main():
        ...     async with aio.start_node("aiodoc@127.0.0.1", cookie="doc", port=0) as n:
        ...         return actornet.node(), n.scheduler().loop is asyncio.get_running_loop()
        >>> asyncio.run(main())
        ('aiodoc@127.0.0.1', True)
    """
    return _NodeStart(name, cookie, options)


async def stop_node(node: Node, timeout: float | None = 5.0) -> None:
    """Stop `node` from its loop: its servers run `terminate` meanwhile (`Node.stop`).

    Example:
        >>> import asyncio
        >>> from actornet import aio
        >>> async def main():
        ...     n = await aio.start_node("aiostopdoc@127.0.0.1", cookie="doc", port=0)
        ...     await aio.stop_node(n)
        ...     return n.running
        >>> asyncio.run(main())
        False
    """
    await asyncio.get_running_loop().run_in_executor(None, node.stop, timeout)
