"""Process groups, as Erlang's `pg` (OTP 23+).

A *scope* is a server registered under the scope's name on each node that runs
it (``pg.start(scope)``; the default scope ``"pg"`` starts on first use). The
scope server owns the node's *local* memberships and a replica of every other
node's, so `get_members` and friends read a local snapshot with no round trip.

Consistency: eventual. A join or leave is applied locally before `join`
returns, then sent to every peer scope; each peer applies one node's changes
in the order that node made them (per-pair FIFO), so all nodes converge to the
same multiset of members.

The scope server and the messages scope servers exchange are in
`actornet._pg_scope`.

Members are removed when they exit. A pid may join a group several times and
then appears that many times. `monitor(group)` returns the current members and
then delivers ``("pg", ref, "join" | "leave", group, pids)`` for every change.
"""

from __future__ import annotations

from typing import Any

from actornet import _system, gen_server
from actornet._ids import Pid, Ref
from actornet._pg_scope import ScopeServer
from actornet._steps import Call, Steps, run
from actornet.errors import NoProc
from actornet.node import Node, current_node

__all__ = [
    "broadcast",
    "DEFAULT_SCOPE",
    "start",
    "start_link",
    "join",
    "leave",
    "get_members",
    "get_local_members",
    "which_groups",
    "monitor",
    "demonitor",
]

DEFAULT_SCOPE = "pg"


def start(scope: str = DEFAULT_SCOPE) -> Pid:
    """Start the scope server for `scope` on this node (OTP ``pg:start(Scope)``).

    Example:
        >>> from actornet import pg
        >>> pid = pg.start("doc_scope")
        >>> pg.which_groups("doc_scope")
        []
    """
    return ScopeServer.start(scope, name=scope)


def start_link(scope: str = DEFAULT_SCOPE) -> Pid:
    """Like `start`, linked to the caller (OTP ``pg:start_link(Scope)``, for a supervisor).

    The scope stops when the caller exits abnormally, and its members then
    disappear from every other node's view of that scope.

    Example:
        >>> from actornet import pg
        >>> pid = pg.start_link("doc_linked")
        >>> pg.get_members("any", "doc_linked")
        []
    """
    return ScopeServer.start_link(scope, name=scope)


def start_on(node: Node, scope: str = DEFAULT_SCOPE) -> Pid:
    """Start `scope` on a given node object (used by `start_node`)."""
    return gen_server.start_server(ScopeServer, (scope,), {}, scope, link=False, node=node)


def _scope(scope: str | None) -> ScopeServer:
    name = scope or DEFAULT_SCOPE
    node = current_node()

    def ready() -> ScopeServer | None:
        server: ScopeServer | None = node.pg_scopes.get(name)
        return server if server is not None and node.local_process(server.gen_pid) else None

    if name == DEFAULT_SCOPE:
        return _system.ensure(node, name, ready, lambda: start_on(node, name))
    server = ready()
    if server is None:
        raise NoProc(f"pg scope {name!r} is not running on {node.name}: pg.start({name!r})")
    return server


def _pids(pid_or_pids: Pid | list[Pid]) -> list[Pid]:
    pids = [pid_or_pids] if isinstance(pid_or_pids, Pid) else list(pid_or_pids)
    node = current_node()
    for pid in pids:
        if not isinstance(pid, Pid):
            raise TypeError(f"pg members are Pids, got {type(pid).__name__!r}")
        if not node.is_local(pid):
            raise ValueError(f"{pid!r} is not a local process: a process joins groups on "
                             "its own node (OTP: nolocal)")
        if node.local_process(pid) is None:
            raise NoProc(f"cannot join: process {pid!r} is not alive")
    return pids


def join(group: Any, pid_or_pids: Pid | list[Pid], scope: str | None = None) -> None:
    """Add local process(es) to `group`; visible locally at once, elsewhere soon.

    Example:
        >>> import actornet
        >>> from actornet import pg
        >>> pg.join("doc_room", actornet.self())
        >>> pg.get_local_members("doc_room") == [actornet.self()]
        True
        >>> pg.leave("doc_room", actornet.self())
        'ok'
    """
    run(join_steps(group, pid_or_pids, scope), "pg.join()",
        "await actornet.aio.pg.join(group, pid_or_pids)")


def join_steps(group: Any, pid_or_pids: Pid | list[Pid], scope: str | None = None,
               ) -> Steps[None]:
    """`join` as steps (`actornet._steps`), for both kinds of caller."""
    server = _scope(scope)
    yield Call(server.gen_pid, ("join", group, _pids(pid_or_pids)))


def leave(group: Any, pid_or_pids: Pid | list[Pid], scope: str | None = None) -> str:
    """Remove local process(es) from `group` once each: ``"ok"`` or ``"not_joined"``.

    Example:
        >>> import actornet
        >>> from actornet import pg
        >>> pids = [actornet.spawn(actornet.receive) for _ in range(3)]
        >>> pg.join("doc_leave", pids)
        >>> pg.leave("doc_leave", pids[:2])
        'ok'
        >>> pg.get_local_members("doc_leave") == pids[2:]
        True
    """
    return run(leave_steps(group, pid_or_pids, scope), "pg.leave()",
               "await actornet.aio.pg.leave(group, pid_or_pids)")


def leave_steps(group: Any, pid_or_pids: Pid | list[Pid], scope: str | None = None,
                ) -> Steps[str]:
    """`leave` as steps (`actornet._steps`)."""
    server = _scope(scope)
    pids = [pid_or_pids] if isinstance(pid_or_pids, Pid) else list(pid_or_pids)
    return str((yield Call(server.gen_pid, ("leave", group, pids))))


def broadcast(group: Any, msg: Any, scope: str | None = None) -> int:
    """Send `msg` to every member of `group`; the number of members it was addressed to.

    One copy goes to each other node with members, which hands it to its own members
    there (as Phoenix.PubSub's ``broadcast`` does), so a thousand members on one node
    cost one message on the wire, not a thousand. Each member gets `msg` in order with
    what the caller sent it before and after, as with `send`. A member that joined
    twice gets it twice. Never waits.

    Example:
        >>> import actornet
        >>> from actornet import pg
        >>> pg.join("doc_news", actornet.self())
        >>> pg.broadcast("doc_news", "extra!")
        1
        >>> actornet.receive(timeout=1)
        'extra!'
        >>> pg.leave("doc_news", actornet.self())
        'ok'
    """
    members = list(_scope(scope).members.get(group, ()))
    if members:
        current_node().send_each(members, msg)
    return len(members)


def get_members(group: Any, scope: str | None = None) -> list[Pid]:
    """Every member of `group` on every connected node (a local read).

    Example:
        >>> from actornet import pg
        >>> pg.get_members("doc_nobody")
        []
    """
    return list(_scope(scope).members.get(group, ()))


def get_local_members(group: Any, scope: str | None = None) -> list[Pid]:
    """The members of `group` on this node.

    Example:
        >>> import actornet
        >>> from actornet import pg
        >>> pg.join("doc_local", actornet.self())
        >>> pg.get_local_members("doc_local") == [actornet.self()]
        True
        >>> pg.leave("doc_local", actornet.self())
        'ok'
    """
    return list(_scope(scope).local_members.get(group, ()))


def which_groups(scope: str | None = None) -> list[Any]:
    """Every group with at least one member anywhere.

    Example:
        >>> import actornet
        >>> from actornet import pg
        >>> pg.join("doc_groups", actornet.self())
        >>> "doc_groups" in pg.which_groups()
        True
        >>> pg.leave("doc_groups", actornet.self())
        'ok'
    """
    return list(_scope(scope).members)


def monitor(group: Any, scope: str | None = None) -> tuple[Ref, list[Pid]]:
    """Subscribe to `group`: returns ``(ref, members)``, then ``("pg", ref, ...)`` messages.

    Example:
        >>> import actornet
        >>> from actornet import pg
        >>> ref, members = pg.monitor("doc_watched")
        >>> members
        []
        >>> pid = actornet.spawn(actornet.receive)
        >>> pg.join("doc_watched", pid)
        >>> actornet.receive(timeout=5) == ("pg", ref, "join", "doc_watched", [pid])
        True
        >>> pg.demonitor(ref)
        True
    """
    return run(monitor_steps(group, scope), "pg.monitor()",
               "await actornet.aio.pg.monitor(group)")


def monitor_steps(group: Any, scope: str | None = None) -> Steps[tuple[Ref, list[Pid]]]:
    """`monitor` as steps (`actornet._steps`)."""
    server = _scope(scope)
    me = current_node().current().pid
    result = yield Call(server.gen_pid, ("monitor", group, me))
    return result[0], result[1]


def demonitor(ref: Ref, scope: str | None = None) -> bool:
    """Stop a group subscription; True if it was active.

    Example:
        >>> from actornet import pg
        >>> ref, _ = pg.monitor("doc_unwatched")
        >>> pg.demonitor(ref), pg.demonitor(ref)
        (True, False)
    """
    return run(demonitor_steps(ref, scope), "pg.demonitor()",
               "await actornet.aio.pg.demonitor(ref)")


def demonitor_steps(ref: Ref, scope: str | None = None) -> Steps[bool]:
    """`demonitor` as steps (`actornet._steps`)."""
    answer = yield Call(_scope(scope).gen_pid, ("demonitor", ref))
    return bool(answer == "ok")
