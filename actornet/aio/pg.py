"""`actornet.pg`'s waiting functions, awaited (the same code: `actornet._steps`).

`get_members`, `get_local_members` and `which_groups` are local reads that never
wait: use `actornet.pg`'s.

Example:
    >>> import asyncio, actornet
    >>> from actornet import aio, pg
    >>> async def main():
    ...     await aio.pg.join("doc_aio_room", actornet.self())
    ...     here = pg.get_local_members("doc_aio_room") == [actornet.self()]
    ...     return here, await aio.pg.leave("doc_aio_room", actornet.self())
    >>> asyncio.run(main())
    (True, 'ok')
"""

from __future__ import annotations

from typing import Any

from actornet import pg as _pg
from actornet._ids import Pid, Ref
from actornet._steps import arun

__all__ = ["join", "leave", "monitor", "demonitor"]


async def join(group: Any, pid_or_pids: Pid | list[Pid], scope: str | None = None) -> None:
    """`pg.join`, awaited.

    Example:
        >>> import asyncio, actornet
        >>> from actornet import aio, pg
        >>> async def main():
        ...     await aio.pg.join("doc_aio_join", actornet.self())
        ...     return pg.get_members("doc_aio_join") == [actornet.self()]
        >>> asyncio.run(main())
        True
    """
    await arun(_pg.join_steps(group, pid_or_pids, scope))


async def leave(group: Any, pid_or_pids: Pid | list[Pid], scope: str | None = None) -> str:
    """`pg.leave`, awaited: ``"ok"`` or ``"not_joined"``.

    Example:
        >>> import asyncio, actornet
        >>> from actornet import aio
        >>> asyncio.run(aio.pg.leave("doc_aio_nobody", actornet.self()))
        'not_joined'
    """
    return await arun(_pg.leave_steps(group, pid_or_pids, scope))


async def monitor(group: Any, scope: str | None = None) -> tuple[Ref, list[Pid]]:
    """`pg.monitor`, awaited: ``(ref, members)``, then ``("pg", ref, ...)`` messages.

    Example:
        >>> import asyncio, actornet
        >>> from actornet import aio
        >>> async def main():
        ...     ref, members = await aio.pg.monitor("doc_aio_watch")
        ...     await aio.pg.join("doc_aio_watch", actornet.self())
        ...     event = await aio.receive(lambda m: m[0] == "pg", timeout=5)
        ...     await aio.pg.demonitor(ref)
        ...     return members, event[2]
        >>> asyncio.run(main())
        ([], 'join')
    """
    return await arun(_pg.monitor_steps(group, scope))


async def demonitor(ref: Ref, scope: str | None = None) -> bool:
    """`pg.demonitor`, awaited: True if the subscription was active.

    Example:
        >>> import asyncio
        >>> from actornet import aio
        >>> async def main():
        ...     ref, _ = await aio.pg.monitor("doc_aio_unwatch")
        ...     return await aio.pg.demonitor(ref), await aio.pg.demonitor(ref)
        >>> asyncio.run(main())
        (True, False)
    """
    return await arun(_pg.demonitor_steps(ref, scope))
