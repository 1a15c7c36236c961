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
released everywhere and retried after a random back-off.

A name disappears everywhere when its process dies (the node hosting it
broadcasts the removal) or when its node goes down (every node drops the names
of pids on that node). When nodes connect, their servers exchange tables. Two
partitions that registered the same name meanwhile hold two pids for it; on
merge the node with the smaller name among the two resolves the conflict:
by default the pid on the smaller node name (then the smaller pid) keeps the
name and the other process gets an exit signal with reason
``("global_name_conflict", name)``; a `resolve` function given to
`register_name` on that node decides instead (it returns the pid to keep, or
None to drop the name), and the decision is sent to every node.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from actornet import _gen
from actornet._ids import Pid, Ref
from actornet._runtime import current_node
from actornet.errors import ActornetError, NoProc, Timeout
from actornet.gen_server import GenServer

__all__ = [
    "register_name",
    "unregister_name",
    "re_register_name",
    "whereis_name",
    "registered_names",
    "send",
    "SERVER",
]

log = logging.getLogger("actornet.global")

SERVER = "global_name_server"
_LOCK_TIMEOUT = 10.0

Resolve = Callable[[Any, Pid, Pid], "Pid | None"]


class _NameServer(GenServer):
    """One node's replica of the global table, and its lock table."""

    def init(self) -> None:
        import actornet

        actornet.trap_exit(True)
        self.names: dict[Any, Pid] = {}
        self.locks: dict[Any, tuple[Pid, Ref]] = {}
        self.resolvers: dict[Any, Resolve] = {}
        self.watched: dict[Pid, Ref] = {}
        self.gen_node._global = self
        self.gen_node.monitor_nodes(True)
        for peer in actornet.nodes():
            self._send_table(peer)

    # -- requests from registering processes -------------------------------------------

    def handle_call(self, request: Any, from_: Any) -> Any:
        op = request[0]
        if op == "lock":
            _, name, owner = request
            holder = self.locks.get(name)
            if holder is not None and holder != owner:
                return ("busy", None)
            self.locks[name] = owner
            self._watch(owner[0])
            return ("ok", self.names.get(name))
        if op == "register":
            _, name, pid = request
            self._set(name, pid)
            return "ok"
        if op == "unregister":
            self._drop(request[1])
            return "ok"
        if op == "resolver":
            _, name, fn = request
            self.resolvers[name] = fn
            return "ok"
        return ("error", f"unknown request {request!r}")

    def handle_cast(self, request: Any) -> None:
        if request[0] == "unlock":
            _, name, owner = request
            if self.locks.get(name) == owner:
                del self.locks[name]

    def handle_info(self, msg: Any) -> None:
        kind = msg[0]
        if kind == "DOWN":
            pid = msg[3]
            self.watched.pop(pid, None)
            self._forget_pid(pid)
        elif kind == "nodeup":
            self._send_table(msg[1])
        elif kind == "nodedown":
            self._node_gone(msg[1])
        elif kind == "table":
            self._merge(msg[1], msg[2])
        elif kind == "dead":
            _, name, pid = msg
            if self.names.get(name) == pid:
                self._drop(name)
        elif kind == "resolved":
            _, name, keep = msg
            if keep is None:
                self._drop(name)
            else:
                self._set(name, keep)
        elif kind != "EXIT":
            super().handle_info(msg)

    # -- the table -------------------------------------------------------------------

    def _set(self, name: Any, pid: Pid) -> None:
        self.names = {**self.names, name: pid}
        if self.gen_node.is_local(pid):
            self._watch(pid)

    def _drop(self, name: Any) -> None:
        if name in self.names:
            names = dict(self.names)
            del names[name]
            self.names = names
        self.resolvers.pop(name, None)

    def _watch(self, pid: Pid) -> None:
        if pid not in self.watched and pid.node == self.gen_node.name:
            import actornet

            self.watched[pid] = actornet.monitor(pid)

    def _forget_pid(self, pid: Pid) -> None:
        """`pid` died: drop its names everywhere, and any lock it held here."""
        import actornet

        for name in [n for n, p in self.names.items() if p == pid]:
            self._drop(name)
            for peer in actornet.nodes():
                # "if it is still this pid's": a conflict resolved meanwhile may
                # have given the name to another pid, which must keep it.
                # connecting if need be: global_ has no full resync that would repair a
                # lost removal, so this one must arrive
                actornet.send((SERVER, peer), ("dead", name, pid))
        for name in [n for n, (owner, _) in self.locks.items() if owner == pid]:
            del self.locks[name]

    def _node_gone(self, node: str) -> None:
        names = {n: p for n, p in self.names.items() if p.node != node}
        if len(names) != len(self.names):
            self.names = names
        for name in [n for n, (owner, _) in self.locks.items() if owner.node == node]:
            del self.locks[name]

    def _send_table(self, peer: str) -> None:
        import actornet

        table = ("table", self.gen_node.name, list(self.names.items()))
        actornet.send((SERVER, peer), table, noconnect=True)

    def _merge(self, peer: str, table: list[tuple[Any, Pid]]) -> None:
        import actornet

        for name, pid in table:
            mine = self.names.get(name)
            if mine is None:
                if pid.node == self.gen_node.name and not self.gen_node.is_local(pid):
                    continue  # a pid of our previous incarnation
                self._set(name, pid)
            elif mine != pid and self.gen_node.name < peer:
                keep = self._resolve(name, mine, pid)
                log.warning("global name conflict for %r between %r and %r: keeping %r",
                            name, mine, pid, keep)
                if keep is None:
                    self._drop(name)
                else:
                    self._set(name, keep)
                for other in actornet.nodes():
                    actornet.send((SERVER, other), ("resolved", name, keep))

    def _resolve(self, name: Any, a: Pid, b: Pid) -> Pid | None:
        fn = self.resolvers.get(name)
        if fn is not None:
            try:
                return fn(name, a, b)
            except Exception:
                log.exception("global: resolve function for %r failed", name)
                return None
        keep, lose = sorted((a, b), key=lambda p: (p.node, p.creation, p.id))
        import actornet

        actornet.exit(lose, ("global_name_conflict", name))
        return keep


def _server_node() -> Any:
    """The current node's name server, started on first use."""
    node = current_node()
    server = getattr(node, "_global", None)
    if server is None or not node.whereis(SERVER):
        with _start_lock:
            if not node.whereis(SERVER):
                start_server(node)
    return node


def start_server(node: Any) -> None:
    """Start `node`'s name server (done by `start_node`, or on first use)."""
    _NameServer._gen_start((), {}, SERVER, link=False, node=node)


_start_lock = threading.Lock()


def _servers() -> list[Any]:
    node = _server_node()
    return [(SERVER, n) for n in [node.name, *node._dist.nodes()]] if node._dist else [SERVER]


def _with_locks(name: Any, timeout: float, action: Callable[[list[Any], list[Any]], Any]) -> Any:
    """Hold `name`'s lock on every connected node while `action(servers, holders)` runs."""
    node = _server_node()
    me = node.current().pid
    owner = (me, node.make_ref())
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        servers = _servers()
        results = _gen.multi_call(servers, ("lock", name, owner), timeout)
        granted = [s for s, (kind, value) in zip(servers, results, strict=True)
                   if kind == "reply" and value[0] == "ok"]
        refused = any(kind == "reply" and value[0] == "busy" for kind, value in results)
        try:
            if not refused:
                holders = [value[1] for kind, value in results
                           if kind == "reply" and value[1] is not None]
                return action(servers, holders)
        finally:
            for server in granted:
                _gen.cast(server, ("unlock", name, owner))
        attempt += 1
        if time.monotonic() > deadline:
            raise Timeout(f"could not lock global name {name!r} within {timeout} s")
        time.sleep(random.uniform(0.001, 0.005) * min(attempt, 20))  # back off, then retry


def _check_name(name: Any) -> None:
    from actornet._terms import check_term

    check_term(name)
    hash(name)


def register_name(name: Any, pid: Pid, resolve: Resolve | None = None) -> str:
    """Register `pid` under `name` across the cluster: ``"yes"``, or ``"no"`` if taken.

    `resolve(name, pid1, pid2)` picks the pid that keeps the name when two
    partitions that both registered it merge (see the module docstring).

    Example:
        >>> import actornet
        >>> from actornet import global_
        >>> global_.register_name("doc_global", actornet.self())
        'yes'
        >>> global_.whereis_name("doc_global") == actornet.self()
        True
        >>> global_.unregister_name("doc_global")
    """
    _check_name(name)
    if not isinstance(pid, Pid):
        raise TypeError(f"register_name needs a Pid, got {type(pid).__name__!r}")
    node = _server_node()
    if node.is_local(pid) and node._local(pid) is None:
        raise NoProc(f"cannot register {name!r}: process {pid!r} is not alive")

    def register(servers: list[Any], holders: list[Any]) -> str:
        if holders:
            return "no"
        for kind, value in _gen.multi_call(servers, ("register", name, pid), _LOCK_TIMEOUT):
            if kind == "down" and value not in ("noconnection", "noproc"):
                raise ActornetError(f"global registration of {name!r} failed: {value}")
        return "yes"

    result = _with_locks(name, _LOCK_TIMEOUT, register)
    if result == "yes" and resolve is not None:
        _gen.call_any(SERVER, ("resolver", name, resolve), 5.0, check=False)
    return str(result)


def re_register_name(name: Any, pid: Pid) -> None:
    """Register `pid` under `name` even if the name is taken (Erlang `re_register_name/2`)."""
    _check_name(name)

    def register(servers: list[Any], holders: list[Any]) -> None:
        _gen.multi_call(servers, ("register", name, pid), _LOCK_TIMEOUT)

    _with_locks(name, _LOCK_TIMEOUT, register)


def unregister_name(name: Any) -> None:
    """Remove `name` from every node (no error if it was not registered)."""

    def unregister(servers: list[Any], holders: list[Any]) -> None:
        _gen.multi_call(servers, ("unregister", name), _LOCK_TIMEOUT)

    _with_locks(name, _LOCK_TIMEOUT, unregister)


def _table() -> dict[Any, Pid]:
    server = getattr(_server_node(), "_global", None)
    return server.names if server is not None else {}


def whereis_name(name: Any) -> Pid | None:
    """The pid registered as `name` in the cluster, or None; a local lookup.

    Example:
        >>> from actornet import global_
        >>> global_.whereis_name("nobody") is None
        True
    """
    return _table().get(name)


def registered_names() -> list[Any]:
    """Every globally registered name."""
    return list(_table())


def send(name: Any, msg: Any) -> Pid:
    """Send `msg` to the process globally registered as `name`; return its pid.

    Raises `NoProc` (a `KeyError`) if the name is not registered.
    """
    pid = whereis_name(name)
    if pid is None:
        raise NoProc(f"no process is globally registered as {name!r}")
    current_node().send(pid, msg)
    return pid
