"""actornet for asyncio: the functions that wait, as coroutines.

Inside a lightweight process (an ``async def`` function spawned with
`actornet.spawn`, or a `GenServer` with ``async def`` callbacks) and in any
asyncio task (a web handler, say), waiting must not block the thread, which
runs every other task of the loop. So each function that waits has a twin
here with the same name, arguments, results and errors, to ``await``:
`receive`, `receiving`, `call`, `multi_call`, `ping`, `start`, `start_link`,
`stop`, remote `spawn`/`spawn_link`, and `rpc.call`,
`global_.register_name`/`re_register_name`/`unregister_name`,
`pg.join`/`leave`/`monitor`/`demonitor` in the submodules. What never waits
(`send`, `cast`, `self`, `link`, `monitor`, `exit`, `register`, `whereis`,
local `spawn`, ...) is the same function for both kinds: use ``actornet.send``.

A blocking function called where it would stall a loop raises
`actornet.ActornetError` naming its twin here, instead of freezing the loop.

A send to a busy remote node never blocks a loop: the message is queued,
and the sender yields at its next ``await`` until the connection drains
(see docs/lightweight-processes.md).

Example:
    >>> import asyncio, actornet
    >>> from actornet import aio
    >>> async def echo():
    ...     async for msg in aio.receiving(timeout=5):
    ...         match msg:
    ...             case (sender, text):
    ...                 actornet.send(sender, text.upper())
    ...                 break
    >>> async def main():
    ...     pid = actornet.spawn(echo)
    ...     actornet.send(pid, (actornet.self(), "hi"))
    ...     return await aio.receive(timeout=5)
    >>> asyncio.run(main())
    'HI'
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from actornet import _gen, _runtime, _server, _wire, gen_server, net_kernel
from actornet import rpc as rpc_
from actornet._ids import Pid
from actornet._light import is_async_function
from actornet._scheduler import scheduler_of
from actornet._steps import arun
from actornet.aio import global_, pg, rpc
from actornet.aio._node import start_node, stop_node
from actornet.errors import ActornetError
from actornet.gen_server import GenServer
from actornet.node import current_node

if TYPE_CHECKING:
    from actornet._process import Process

__all__ = [
    "receive",
    "receiving",
    "call",
    "multi_call",
    "ping",
    "start",
    "start_link",
    "stop",
    "spawn",
    "spawn_link",
    "start_node",
    "stop_node",
    "rpc",
    "global_",
    "pg",
]


def _me(what: str, blocking_twin: str) -> Process:
    """The calling task's process (made on first use); an error outside any task."""
    proc = _runtime.task_process()
    if proc is not None and proc.node.running:
        return proc  # the fast path: a lightweight process asking for itself
    return _light_self(what, blocking_twin)


def _light_self(what: str, blocking_twin: str) -> Process:
    """The calling task's process; an error outside any asyncio task."""
    if asyncio._get_running_loop() is None:
        raise ActornetError(
            f"actornet.aio.{what} is awaited in an asyncio task (a lightweight process, "
            f"say); this thread runs no event loop: use `{blocking_twin}`")
    return current_node().current()


def receive(match: Callable[[Any], object] | None = None,
            timeout: float | None = None) -> Awaitable[Any]:
    """Take the first message `match` accepts (`actornet.receive`, awaited).

    Messages `match` rejects stay queued, in order. `actornet.Timeout` (a
    `TimeoutError`) is raised when `timeout` seconds pass.

    Example:
        >>> import asyncio, actornet
        >>> from actornet import aio
        >>> async def main():
        ...     me = actornet.self()
        ...     actornet.send(me, ("b", 2)); actornet.send(me, ("a", 1))
        ...     first = await aio.receive(lambda m: m[0] == "a", timeout=1)
        ...     return first, await aio.receive(timeout=1)
        >>> asyncio.run(main())
        (('a', 1), ('b', 2))
    """
    # Not `async def`: the mailbox's own coroutine is what is awaited, so a waiting
    # process holds one coroutine frame, not two. The checks are inline: this is hot.
    if match is not None and not callable(match):
        raise TypeError(
            f"receive(): match must be a callable or None, got {type(match).__name__!r}")
    seconds = None if timeout is None else _gen.timeout_arg(timeout, "aio.receive()",
                                                            zero_ok=True)
    me = _me("receive()", "actornet.receive()")
    if not me.alive:
        me.check_alive()
    return me.light_mailbox.receive(match, seconds)


def receiving(timeout: float | None = None) -> AsyncIterator[Any]:
    """Erlang's ``receive ... after`` as an ``async for`` around a `match`.

    The same as `actornet.receiving`, awaited: each message is offered to the
    loop body in order; the one the body leaves the loop with is taken, the
    others stay queued in place; the loop's ``else:`` runs when `timeout`
    seconds pass with none taken.

    Example:
        >>> import asyncio, actornet
        >>> from actornet import aio
        >>> async def main():
        ...     me = actornet.self()
        ...     for m in [("temp", 15), ("alarm", "door")]:
        ...         actornet.send(me, m)
        ...     async for msg in aio.receiving(timeout=1):
        ...         match msg:
        ...             case ("alarm", what):
        ...                 break
        ...     else:
        ...         what = "nothing"
        ...     return what, await aio.receive(timeout=0)
        >>> asyncio.run(main())
        ('door', ('temp', 15))
    """
    seconds = _gen.timeout_arg(timeout, "aio.receiving()", zero_ok=True)
    me = _light_self("receiving()", "actornet.receiving()")
    me.check_alive()
    return me.light_mailbox.offer(seconds)


def call(server: Any, request: Any, timeout: float | None = 5.0) -> Awaitable[Any]:
    """Call a GenServer and await its reply (`actornet.call`, awaited; same errors).

    Example:
        >>> import asyncio, actornet
        >>> from actornet import aio
        >>> class Doubler(actornet.GenServer):
        ...     async def handle_call(self, n, from_):
        ...         return 2 * n
        >>> async def main():
        ...     pid = await aio.start(Doubler)
        ...     answer = await aio.call(pid, 21)
        ...     await aio.stop(pid)
        ...     return answer
        >>> asyncio.run(main())
        42
    """
    # Not `async def`: the call's own coroutine is what is awaited (one frame, not two).
    return _gen.acall(server, request, timeout, me=_me("call()", "actornet.call()"))


async def multi_call(servers: list[Any], request: Any, timeout: float | None = 5.0,
                     ) -> list[tuple[str, Any]]:
    """Call several servers at once (the awaited form of the blocking one).

    One ``(kind, value)`` per server, in order: ``("reply", value)``,
    ``("down", reason)`` or ``("timeout", None)``.

    Example:
        >>> import asyncio, actornet
        >>> from actornet import aio
        >>> class Name(actornet.GenServer):
        ...     async def init(self, name):
        ...         self.name = name
        ...     async def handle_call(self, request, from_):
        ...         return self.name
        >>> async def main():
        ...     pids = [await aio.start(Name, n) for n in ("a", "b")]
        ...     answers = await aio.multi_call(pids, "name?")
        ...     for pid in pids:
        ...         await aio.stop(pid)
        ...     return answers
        >>> asyncio.run(main())
        [('reply', 'a'), ('reply', 'b')]
    """
    _light_self("multi_call()", "multi_call()")
    return await _gen.amulti_call(servers, request, timeout)


async def ping(node: str, timeout: float | None = None) -> str:
    """``"pong"`` if `node` answers (connecting if needed), else ``"pang"`` (`actornet.ping`).

    Example:
        >>> import asyncio, actornet
        >>> from actornet import aio
        >>> asyncio.run(aio.ping(actornet.node()))
        'pong'
    """
    _light_self("ping()", "actornet.ping()")
    # The transport's connect waits on a condition; a worker thread waits for us.
    return await asyncio.to_thread(net_kernel.ping, node, timeout)


async def start(cls: type[GenServer], *args: Any, name: Any = None, **kwargs: Any) -> Pid:
    """Start a GenServer of either kind and await its `init` (``cls.start``, awaited).

    Example:
        >>> import asyncio, actornet
        >>> from actornet import aio
        >>> class Idle(actornet.GenServer):
        ...     async def init(self):
        ...         await asyncio.sleep(0)
        >>> async def main():
        ...     pid = await aio.start(Idle, name="doc_idle")
        ...     found = actornet.whereis("doc_idle") == pid
        ...     await aio.stop("doc_idle")
        ...     return found
        >>> asyncio.run(main())
        True
    """
    return await _start(cls, args, kwargs, name, link=False)


async def start_link(cls: type[GenServer], *args: Any, name: Any = None,
                     **kwargs: Any) -> Pid:
    """Like `start`, linked to the calling process (``cls.start_link``, awaited).

    Example:
        >>> import asyncio, actornet
        >>> from actornet import aio
        >>> class Idle(actornet.GenServer):
        ...     async def init(self):
        ...         pass
        >>> async def main():
        ...     actornet.trap_exit(True)
        ...     pid = await aio.start_link(Idle)
        ...     await aio.stop(pid, "done")
        ...     return (await aio.receive(lambda m: m[0] == "EXIT", timeout=5))[2]
        >>> asyncio.run(main())
        'done'
    """
    return await _start(cls, args, kwargs, name, link=True)


async def _start(cls: type[GenServer], args: tuple[Any, ...], kwargs: dict[str, Any],
                 name: Any, *, link: bool) -> Pid:
    me = _light_self("start()", f"{cls.__name__}.start()")
    node = current_node()
    boot = _server.Boot(node, args, kwargs, name, me if link else None)
    server, proc = gen_server.prepare(cls, node, boot)
    await arun(_server.register(boot, proc))
    loop = asyncio.get_running_loop()
    boot.future = loop.create_future()
    boot.waker = scheduler_of(loop).wake
    _server.start(server, proc, boot)
    if not boot.started.is_set():
        await boot.future
    if boot.error is not None:
        raise boot.error
    return proc.pid


async def stop(server: Any, reason: Any = "normal", timeout: float | None = 5.0) -> None:
    """Stop a GenServer and await its exit (``GenServer.stop``, awaited; same errors).

    Example:
        >>> import asyncio, actornet
        >>> from actornet import aio
        >>> class Idle(actornet.GenServer):
        ...     async def init(self):
        ...         pass
        >>> async def main():
        ...     pid = await aio.start(Idle)
        ...     await aio.stop(pid)
        ...     return actornet.is_alive(pid)
        >>> asyncio.run(main())
        False
    """
    await _gen.await_exit(server, (_gen.STOP, reason), timeout,
                          me=_me("stop()", "GenServer.stop()"))


async def spawn(fn: Callable[..., Any], *args: Any, node: str | None = None) -> Pid:
    """`actornet.spawn`, with a remote `node` awaited (a local spawn never waits).

    Example:
        >>> import asyncio, actornet
        >>> from actornet import aio
        >>> async def worker(parent):
        ...     actornet.send(parent, "done")
        >>> async def main():
        ...     await aio.spawn(worker, actornet.self())
        ...     return await aio.receive(timeout=5)
        >>> asyncio.run(main())
        'done'
    """
    return await _spawn(fn, args, node, link=False)


async def spawn_link(fn: Callable[..., Any], *args: Any, node: str | None = None) -> Pid:
    """`actornet.spawn_link`, with a remote `node` awaited.

    Example:
        >>> import asyncio, actornet
        >>> from actornet import aio
        >>> async def fails():
        ...     raise ValueError("no")
        >>> async def main():
        ...     actornet.trap_exit(True)
        ...     pid = await aio.spawn_link(fails)
        ...     return (await aio.receive(lambda m: m[:2] == ("EXIT", pid), timeout=5))[2].type
        >>> asyncio.run(main())
        'ValueError'
    """
    return await _spawn(fn, args, node, link=True)


async def _spawn(fn: Callable[..., Any], args: tuple[Any, ...], node: str | None, *,
                 link: bool) -> Pid:
    here = current_node()
    if node is None or node == here.name:
        return here.spawn_opt(fn, args, link=link)[0]
    module, qualname = rpc_.function_name(fn)
    flags = (_wire.SPAWN_LINK if link else 0) | (
        _wire.SPAWN_LIGHT if is_async_function(fn) else 0)
    pid = await rpc_.arequest(node, module, qualname, args, flags, 10.0)
    if not isinstance(pid, Pid):
        raise ActornetError(f"spawn on {node} failed: {pid!r}")
    return pid



