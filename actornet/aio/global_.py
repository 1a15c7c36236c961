"""`actornet.global_`'s waiting functions, awaited (the same code: `actornet._steps`).

`whereis_name`, `registered_names` and `send` never wait: use `actornet.global_`'s.

Example:
    >>> import asyncio, actornet
    >>> from actornet import aio, global_
    >>> async def main():
    ...     said = await aio.global_.register_name("doc_aio_global", actornet.self())
    ...     found = global_.whereis_name("doc_aio_global") == actornet.self()
    ...     await aio.global_.unregister_name("doc_aio_global")
    ...     return said, found
    >>> asyncio.run(main())
    ('yes', True)
"""

from __future__ import annotations

from typing import Any

from actornet import global_ as _global
from actornet._ids import Pid
from actornet._steps import arun

__all__ = ["register_name", "re_register_name", "unregister_name"]


async def register_name(name: Any, pid: Pid, resolve: Any = None) -> str:
    """`global_.register_name`, awaited: ``"yes"``, or ``"no"`` if the name is taken.

    Example:
        >>> import asyncio, actornet
        >>> from actornet import aio
        >>> async def main():
        ...     me = actornet.self()
        ...     first = await aio.global_.register_name("doc_twice", me)
        ...     second = await aio.global_.register_name("doc_twice", me)
        ...     await aio.global_.unregister_name("doc_twice")
        ...     return first, second
        >>> asyncio.run(main())
        ('yes', 'no')
    """
    return await arun(_global.register_name_steps(name, pid, resolve))


async def re_register_name(name: Any, pid: Pid, resolve: Any = None) -> None:
    """`global_.re_register_name`, awaited.

    Example:
        >>> import asyncio, actornet
        >>> from actornet import aio, global_
        >>> async def main():
        ...     await aio.global_.re_register_name("doc_re_aio", actornet.self())
        ...     found = global_.whereis_name("doc_re_aio") == actornet.self()
        ...     await aio.global_.unregister_name("doc_re_aio")
        ...     return found
        >>> asyncio.run(main())
        True
    """
    await arun(_global.re_register_name_steps(name, pid, resolve))


async def unregister_name(name: Any) -> None:
    """`global_.unregister_name`, awaited.

    Example:
        >>> import asyncio
        >>> from actornet import aio
        >>> asyncio.run(aio.global_.unregister_name("doc_never"))
    """
    await arun(_global.unregister_name_steps(name))
