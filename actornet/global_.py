"""Cluster-wide names, as Erlang's `global`.

Every node runs a name server (registered locally as ``global_name_server``)
holding a replica of the whole table ``name -> pid``, so `whereis_name` is a
local lookup with no round trip.

Registering takes a lock on the name on *every* connected node in one parallel
round (each server grants it to one owner at a time), checks the name is free
everywhere, writes it on every node and waits for each to acknowledge, then
releases the locks. So of two nodes racing for a name exactly one wins, and
the name is visible on every connected node once `register_name` returns. A
lock whose owner dies or whose node goes down is released; a refused lock is
released everywhere and retried after a random back-off. A node that (re)connects
during the round, or whose lock call was lost with its connection, is left out of
the write; each server, on releasing the lock, sends such peers its table again.

A name disappears everywhere when its process dies (the node hosting it
broadcasts the removal) or when its node goes down (every node drops the names
of pids on that node). When nodes connect, their servers exchange tables; a
server that starts, or restarts after a crash, sends its (empty) table to every
connected node's with a request for theirs, so it holds the cluster's table again
as soon as they answer. A message a server does not understand (any node may send
it anything) is logged and dropped; the node's kernel supervisor restarts a server
that crashes nonetheless. Two
partitions that registered the same name meanwhile hold two pids for it; on
merge the smaller-named node of each pair that swapped tables finds the
conflict and hands it to one fixed *decider*: the *home* of the registration
whose pid sorts first (by node name, incarnation, id), that is the node that
registered it, which is usually the pid's own node but not always (a chat
node registers its clients' pids, which live on hidden nodes that take no
part in global_); if that home is gone, the other registration's home
decides. The decider runs the resolve method
once per conflict (a repeated report gets the same answer), in a process of
its own: by default the pid that sorts first keeps the name and the other
process gets an exit signal with reason ``("global_name_conflict", name)``.
A `resolve` function given to `register_name` travels with the registration
(by its importable ``"module:qualname"``, so every node can run it, as OTP
needs a fun every node can call); the one given with the pid that sorts first
is used, else the other's. The home of the kept registration then tells every
node (if it hosts that pid and the pid has died meanwhile, the name is dropped
instead), so a later "it died" from that node can never be overtaken by the
decision.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from actornet import _gen, _registry, _system, gen_server, process
from actornet._global_server import (
    SERVER,
    NameServer,
    Resolve,
    load_resolver,
    pid_order,
)
from actornet._ids import Pid
from actornet._steps import MultiCall, Sleep, Steps, run
from actornet._terms import check_term
from actornet.errors import ActornetError, NoProc, Timeout
from actornet.node import Node, current_node
from actornet.rpc import function_name

__all__ = [
    "register_name",
    "unregister_name",
    "re_register_name",
    "whereis_name",
    "registered_names",
    "send",
    "random_exit_name",
    "random_notify_name",
    "notify_all_name",
    "SERVER",
]

_LOCK_TIMEOUT = 10.0
_NO_SERVER = ("down", "noproc")  # a call's outcome on a node that runs no name server
T = TypeVar("T")

def random_exit_name(name: Any, pid1: Pid, pid2: Pid) -> Pid:
    """A resolve method (OTP ``global:random_exit_name/3``): keep one pid, kill the other.

    The one kept is the one that sorts first (node name, then pid), as OTP's
    implementation does despite the name; the other gets exit reason ``"kill"``.

    Example:
        >>> import actornet
        >>> from actornet import global_
        >>> a = actornet.spawn(actornet.receive)
        >>> b = actornet.spawn(actornet.receive)
        >>> global_.random_exit_name("doc_name", b, a) == min(a, b, key=lambda p: p.id)
        True
    """
    keep, lose = sorted((pid1, pid2), key=pid_order)
    process.exit(lose, "kill")
    return keep


def random_notify_name(name: Any, pid1: Pid, pid2: Pid) -> Pid:
    """A resolve method (OTP ``global:random_notify_name/3``): keep one pid, notify the other.

    The one kept sorts first; the other loses the name and receives
    ``("global_name_conflict", name)``.

    Example:
        >>> import actornet
        >>> from actornet import global_
        >>> me = actornet.self()
        >>> other = actornet.spawn(actornet.receive)
        >>> keep = global_.random_notify_name("doc_name", me, other)
        >>> keep == min(me, other, key=lambda p: p.id)
        True
    """
    keep, lose = sorted((pid1, pid2), key=pid_order)
    process.send(lose, ("global_name_conflict", name))
    return keep


def notify_all_name(name: Any, pid1: Pid, pid2: Pid) -> None:
    """A resolve method (OTP ``global:notify_all_name/3``): nobody keeps the name.

    Each process receives ``("global_name_conflict", name, other_pid)``.

    Example:
        >>> import actornet
        >>> from actornet import global_
        >>> me = actornet.self()
        >>> other = actornet.spawn(actornet.receive)
        >>> global_.notify_all_name("doc_name", me, other) is None
        True
        >>> actornet.receive(timeout=1) == ("global_name_conflict", "doc_name", other)
        True
    """
    process.send(pid1, ("global_name_conflict", name, pid2))
    process.send(pid2, ("global_name_conflict", name, pid1))


def _method_ref(resolve: Resolve | str | None) -> str | None:
    """`resolve` as the ``"module:qualname"`` every node can import, or a TypeError."""
    if resolve is None:
        return None
    if isinstance(resolve, str):
        try:
            load_resolver(resolve)
        except Exception as e:
            raise TypeError(f"resolve {resolve!r} does not name an importable function: {e}"
                            ) from e
        return resolve
    try:
        module, qualname = function_name(resolve)
    except TypeError as e:
        raise TypeError(f"resolve: every node may have to run it, as OTP needs: {e}") from e
    if module == "__main__":
        raise TypeError(
            f"resolve {resolve!r} is defined in a script, which other nodes cannot import: "
            "every node may run it, so define it at the top level of an importable module")
    return f"{module}:{qualname}"


def _server_node() -> Any:
    """The current node, once its name server runs (started on first use)."""
    _server()
    return current_node()


def _server() -> Any:
    """The current node's running name server (`_system.ensure`: started on first use,
    or waited for while the kernel supervisor restarts it)."""
    node = current_node()

    def ready() -> Any:
        server = node.global_server
        return server if server is not None and node.local_process(server.gen_pid) else None

    return _system.ensure(node, SERVER, ready, lambda: start_server(node))


def start_server(node: Node) -> None:
    """Start `node`'s name server (done by `start_node`, or on first use)."""
    gen_server.start_server(NameServer, (), {}, SERVER, link=False, node=node)


def _servers() -> list[Any]:
    server = _server()
    node = server.gen_node
    if not node.dist:
        return [SERVER]
    # The name servers of another protocol version are left out: they would not
    # understand the lock round (and their names are not shared).
    peers = [n for n in node.dist.nodes() if n not in server.other_versions]
    return [(SERVER, n) for n in [node.name, *peers]]


_Wrote = tuple[T, list[tuple[str, Any]] | None]


def _with_locks(name: Any, timeout: float,
                action: Callable[[list[Any], list[Any]], Steps[_Wrote[T]]]) -> Steps[T]:
    """Hold `name`'s lock on every connected node while `action(servers, holders)` runs.

    `servers` are those that granted the lock: one whose node went down during the
    round is left out, as calling it again would reconnect, and on a hung node wait
    for the handshake to time out. `action` returns its value and the outcome of its
    write to each of `servers` (None if it wrote nothing). Each unlock names the nodes
    written to: a server tells its table again, once the lock is released, to its peers
    that the write missed (one that came back up during the round), and to those it sent
    the table to while the name was locked (perhaps before the write)."""
    node = _server_node()
    me = node.current().pid
    owner = (me, node.make_ref())
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        servers = _servers()
        results = yield MultiCall(servers, ("lock", name, owner), timeout)
        granted = [s for s, (kind, value) in zip(servers, results, strict=True)
                   if kind == "reply" and value[0] == "ok"]
        refused = any(kind == "reply" and value[0] == "busy" for kind, value in results)
        written: list[str] | None = None
        try:
            if not refused:
                holders = [value[1] for kind, value in results
                           if kind == "reply" and value[1] is not None]
                written = []  # until the write's outcome is known: assume it missed all
                value, wrote = yield from action(granted, holders)
                if wrote is not None:  # and a node that runs no name server needs no table
                    written = [_node_of(s, node) for s, outcome in zip(granted, wrote,
                                                                       strict=True)
                               if outcome[0] == "reply" or outcome == _NO_SERVER]
                    written += [_node_of(s, node) for s, outcome in zip(servers, results,
                                                                        strict=True)
                                if outcome == _NO_SERVER]
                else:
                    written = None
                return value
        finally:
            for server in granted:
                _gen.cast(server, ("unlock", name, owner, written))
        attempt += 1
        if time.monotonic() > deadline:
            raise Timeout(f"could not lock global name {name!r} within {timeout} s")
        yield Sleep(random.uniform(0.001, 0.005) * min(attempt, 20))  # back off, then retry


def _node_of(server: Any, node: Node) -> str:
    """The node of a name server as `_servers` names it."""
    return server[1] if isinstance(server, tuple) else node.name


def _check_name(name: Any) -> None:
    check_term(name)
    hash(name)


def register_name(name: Any, pid: Pid, resolve: Resolve | str | None = None) -> str:
    """Register `pid` under `name` across the cluster: ``"yes"``, or ``"no"`` if taken.

    `resolve(name, pid1, pid2)` picks the pid that keeps the name when two
    partitions that both registered it merge: it returns one of the two, or
    None to drop the name, and may tell or stop the loser. Every node may have
    to run it, so it must be a top-level function of an importable module
    (or its ``"module:qualname"``); a lambda or closure raises `TypeError`.
    `random_exit_name`, `random_notify_name` and `notify_all_name` are OTP's.
    Without it, the pid that sorts first keeps the name and the other gets
    an exit with reason ``("global_name_conflict", name)``.

    Example:
        >>> import actornet
        >>> from actornet import global_
        >>> global_.register_name("doc_global", actornet.self())
        'yes'
        >>> global_.whereis_name("doc_global") == actornet.self()
        True
        >>> global_.unregister_name("doc_global")
        >>> global_.register_name("doc_g2", actornet.self(), resolve=global_.notify_all_name)
        'yes'
        >>> global_.unregister_name("doc_g2")
    """
    return run(register_name_steps(name, pid, resolve), "global_.register_name()",
               "await actornet.aio.global_.register_name(name, pid)")


def register_name_steps(name: Any, pid: Pid, resolve: Resolve | str | None = None,
                        ) -> Steps[str]:
    """`register_name` as steps (`actornet._steps`), for both kinds of caller."""
    _check_name(name)
    method = _method_ref(resolve)
    if not isinstance(pid, Pid):
        raise TypeError(f"register_name needs a Pid, got {type(pid).__name__!r}")
    node = _server_node()
    if node.is_local(pid) and node.local_process(pid) is None:
        raise NoProc(f"cannot register {name!r}: process {pid!r} is not alive")

    def register(servers: list[Any], holders: list[Any]) -> Steps[_Wrote[str]]:
        if holders:
            return "no", None
        request = ("register", name, pid, method, node.whereis(SERVER))
        wrote = yield MultiCall(servers, request, _LOCK_TIMEOUT)
        for kind, value in wrote:
            if kind == "down" and value not in ("noconnection", "noproc"):
                raise ActornetError(f"global registration of {name!r} failed: {value}")
        return "yes", wrote

    return str((yield from _with_locks(name, _LOCK_TIMEOUT, register)))


def re_register_name(name: Any, pid: Pid, resolve: Resolve | str | None = None) -> None:
    """Register `pid` under `name` even if the name is taken (Erlang `re_register_name/2,3`).

    `resolve` is as for `register_name`.

    Example:
        >>> import actornet
        >>> from actornet import global_
        >>> global_.re_register_name("doc_re", actornet.self())
        >>> global_.whereis_name("doc_re") == actornet.self()
        True
        >>> global_.unregister_name("doc_re")
    """
    run(re_register_name_steps(name, pid, resolve), "global_.re_register_name()",
        "await actornet.aio.global_.re_register_name(name, pid)")


def re_register_name_steps(name: Any, pid: Pid, resolve: Resolve | str | None = None,
                           ) -> Steps[None]:
    """`re_register_name` as steps (`actornet._steps`)."""
    _check_name(name)
    method = _method_ref(resolve)
    home = _server_node().whereis(SERVER)

    def register(servers: list[Any], holders: list[Any]) -> Steps[_Wrote[None]]:
        return None, (yield MultiCall(servers, ("register", name, pid, method, home),
                                      _LOCK_TIMEOUT))

    yield from _with_locks(name, _LOCK_TIMEOUT, register)


def unregister_name(name: Any) -> None:
    """Remove `name` from every node (no error if it was not registered).

    Example:
        >>> from actornet import global_
        >>> global_.unregister_name("doc_never_registered")
    """
    run(unregister_name_steps(name), "global_.unregister_name()",
        "await actornet.aio.global_.unregister_name(name)")


def unregister_name_steps(name: Any) -> Steps[None]:
    """`unregister_name` as steps (`actornet._steps`)."""

    def unregister(servers: list[Any], holders: list[Any]) -> Steps[_Wrote[None]]:
        return None, (yield MultiCall(servers, ("unregister", name), _LOCK_TIMEOUT))

    yield from _with_locks(name, _LOCK_TIMEOUT, unregister)


def _table() -> dict[Any, Pid]:
    return _server().names  # type: ignore[no-any-return]


def whereis_name(name: Any) -> Pid | None:
    """The pid registered as `name` in the cluster, or None; a local lookup.

    Example:
        >>> from actornet import global_
        >>> global_.whereis_name("nobody") is None
        True
    """
    return _table().get(name)


def registered_names() -> list[Any]:
    """Every globally registered name.

    Example:
        >>> import actornet
        >>> from actornet import global_
        >>> global_.register_name("doc_listed", actornet.self())
        'yes'
        >>> "doc_listed" in global_.registered_names()
        True
        >>> global_.unregister_name("doc_listed")
    """
    return list(_table())


def send(name: Any, msg: Any) -> Pid:
    """Send `msg` to the process globally registered as `name`; return its pid.

    Raises `NoProc` (a `KeyError`) if the name is not registered.

    Example:
        >>> import actornet
        >>> from actornet import global_
        >>> global_.register_name("doc_inbox", actornet.self())
        'yes'
        >>> global_.send("doc_inbox", "hi") == actornet.self()
        True
        >>> actornet.receive(timeout=1)
        'hi'
        >>> global_.unregister_name("doc_inbox")
    """
    pid = whereis_name(name)
    if pid is None:
        raise NoProc(f"no process is globally registered as {name!r}")
    current_node().send(pid, msg)
    return pid


_registry.use_global(_registry.GlobalNames(whereis_name, register_name_steps))
