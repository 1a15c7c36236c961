"""Process groups, as Erlang's `pg` (OTP 23+).

A *scope* is a server registered under the scope's name on each node that runs
it (``pg.start(scope)``; the default scope ``"pg"`` starts on first use). The
scope server owns the node's *local* memberships and a replica of every other
node's, so `get_members` and friends read a local snapshot with no round trip.

Consistency: eventual. A join or leave is applied locally before `join`
returns, then sent to every peer scope; each peer applies one node's changes
in the order that node made them (per-pair FIFO), so all nodes converge to the
same multiset of members.

Exchange protocol, between the scope servers of one scope:
- ``("discover", scope_pid, PROTOCOL)``: sent to the same scope on every node at
  start and on every nodeup. The receiver answers with ``("sync", its_pid,
  local_groups)`` and, the first time it hears of that peer, monitors it and
  sends its own ``discover`` back. A discover of another protocol version is
  logged (once per node) and not answered: the two share no memberships.
- ``("sync", peer, groups)``: replaces everything known of `peer`'s members.
- ``("join", peer, group, pids)`` / ``("leave", peer, pids, groups)``: one change.
- When a peer scope server goes down (its node is down: ``noconnection``, or it
  stopped), all of that node's members are dropped. A change from a peer not
  yet known (its discover is still in flight) is dropped: the ``sync`` that
  follows the discover carries the same state.

Members are removed when they exit. A pid may join a group several times and
then appears that many times. `monitor(group)` returns the current members and
then delivers ``("pg", ref, "join" | "leave", group, pids)`` for every change.
"""

from __future__ import annotations

import logging
from typing import Any

from actornet import _system
from actornet._ids import Pid, Ref
from actornet._runtime import current_node
from actornet._steps import Call, Steps, run
from actornet._wire import shown
from actornet.errors import NoProc
from actornet.gen_server import GenServer

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
# The version of the exchange below, in every discover: a scope server shares
# memberships only with those of its own version (and says which it ignores), so
# a change to these messages never refuses a node at the connection's handshake.
PROTOCOL = 2

log = logging.getLogger("actornet.pg")


class _Scope(GenServer):
    def init(self, scope: str) -> None:
        import actornet

        self.scope = scope
        self.local: dict[Any, list[Pid]] = {}
        self.peers: dict[Pid, dict[Any, list[Pid]]] = {}
        self.members: dict[Any, tuple[Pid, ...]] = {}
        self.local_members: dict[Any, tuple[Pid, ...]] = {}
        self.member_refs: dict[Pid, Ref] = {}
        self.subscribers: dict[Ref, tuple[Pid, Any]] = {}
        self.subscriber_refs: dict[Pid, Ref] = {}
        self.gen_node._pg_scopes[scope] = self
        self.gen_node.monitor_nodes(True)
        self.other_versions: set[str] = set()  # nodes whose scope speaks another version
        for peer in actornet.nodes():
            actornet.send((scope, peer), ("discover", self.gen_pid, PROTOCOL), noconnect=True)
        _system.announce()

    def terminate(self, reason: Any) -> None:
        if self.gen_node._pg_scopes.get(self.scope) is self:
            del self.gen_node._pg_scopes[self.scope]

    # -- local requests --------------------------------------------------------------

    def handle_call(self, request: Any, from_: Any) -> Any:
        import actornet

        match request:
            case ("join", group, list() as pids) if _hashable(group):
                for pid in pids:
                    if pid not in self.member_refs:  # a pid dead by now: DOWN removes it
                        self.member_refs[pid] = actornet.monitor(pid)
                self.local[group] = [*self.local.get(group, []), *pids]
                self._changed(group, "join", pids)
                self._broadcast(("join", self.gen_pid, group, pids))
                return "ok"
            case ("leave", group, list() as pids) if _hashable(group):
                current = list(self.local.get(group, []))
                gone = []
                for pid in pids:
                    if pid in current:
                        current.remove(pid)
                        gone.append(pid)
                if not gone:
                    return "not_joined"
                self._set_local(group, current)
                self._unwatch_if_idle(gone)
                self._changed(group, "leave", gone)
                self._broadcast(("leave", self.gen_pid, gone, [group]))
                return "ok"
            case ("monitor", group, Pid() as who) if _hashable(group):
                ref = self.gen_node.make_ref()
                self.subscribers[ref] = (who, group)
                if who not in self.subscriber_refs:
                    self.subscriber_refs[who] = actornet.monitor(who)
                return (ref, list(self.members.get(group, ())))
            case ("demonitor", ref):
                return "ok" if self.subscribers.pop(ref, None) else "false"
        self._not_understood("call", request)
        return ("error", f"unknown pg request {shown(request, 200)}")

    def handle_cast(self, request: Any) -> None:
        self._not_understood("cast", request)

    # -- peers and exits ---------------------------------------------------------------

    def handle_info(self, msg: Any) -> None:
        import actornet

        # Any node may send anything here: what is not one of these is logged and dropped.
        match msg:
            case ("discover" | "sync" | "join" | "leave", Pid() as peer, *_) if (
                    peer.node not in actornet.nodes()):
                # In flight from a node we are no longer connected to (a disconnect or a
                # cut raced it): acting on it would monitor that scope and so reconnect.
                pass
            case ("discover", Pid() as peer, int() as version) if version == PROTOCOL:
                actornet.send(peer, ("sync", self.gen_pid, self._local_groups()), noconnect=True)
                if peer not in self.peers:
                    self._add_peer(peer)
                    actornet.send(peer, ("discover", self.gen_pid, PROTOCOL), noconnect=True)
            case ("discover", Pid() as peer, *rest):
                self._other_version(peer, rest[0] if rest else 1)
            case ("sync", Pid() as peer, list() as groups) if all(
                    _is_group(entry) for entry in groups):
                if peer not in self.peers:
                    self._add_peer(peer)
                self._replace_peer(peer, {g: list(pids) for g, pids in groups})
            case ("join", Pid() as peer, group, list() as pids) if (
                    _hashable(group) and _all_pids(pids)):
                if peer in self.peers:  # else: its sync, still to come, has this join
                    state = self.peers[peer]
                    state[group] = [*state.get(group, []), *pids]
                    self._changed(group, "join", pids)
            case ("leave", Pid() as peer, list() as pids, list() as groups) if (
                    _all_pids(pids) and all(_hashable(g) for g in groups)):
                if peer in self.peers:
                    for group in groups:
                        members = list(self.peers[peer].get(group, []))
                        gone = []
                        for pid in pids:
                            if pid in members:
                                members.remove(pid)
                                gone.append(pid)
                        self._store_peer_group(peer, group, members)
                        if gone:
                            self._changed(group, "leave", gone)
            case ("DOWN", Ref() as ref, "process", Pid() as pid, _):
                self._down(ref, pid)
            case ("nodeup", str() as node):
                self.other_versions.discard(node)  # it may have been upgraded meanwhile
                actornet.send((self.scope, node), ("discover", self.gen_pid, PROTOCOL),
                              noconnect=True)
            case ("nodedown", str()):
                pass  # the peer scope's DOWN (noconnection) does the work
            case _:
                self._not_understood("message", msg)

    def _other_version(self, peer: Pid, version: Any) -> None:
        if peer.node not in self.other_versions:
            self.other_versions.add(peer.node)
            log.warning("pg: scope %r on %s ignores the scope on %s: it speaks pg protocol "
                        "%s, this node %d; their memberships are not shared", self.scope,
                        self.gen_node.name, peer.node, shown(version, 20), PROTOCOL)

    def _not_understood(self, what: str, msg: Any) -> None:
        log.warning("pg: scope %r on %s dropped a %s it does not understand: %s", self.scope,
                    self.gen_node.name, what, shown(msg, 200))

    def _add_peer(self, peer: Pid) -> None:
        import actornet

        self.peers[peer] = {}
        actornet.monitor(peer)

    def _down(self, ref: Ref, pid: Pid) -> None:
        if pid in self.peers:
            state = self.peers.pop(pid)
            for group, pids in state.items():
                self._recompute(group)
                if pids:
                    self._notify(group, "leave", pids)
            return
        if self.member_refs.get(pid) == ref:
            del self.member_refs[pid]
            for group, pids in list(self.local.items()):
                if pid in pids:
                    gone = [p for p in pids if p == pid]  # every copy: it may have joined twice
                    self._set_local(group, [p for p in pids if p != pid])
                    self._changed(group, "leave", gone)
                    self._broadcast(("leave", self.gen_pid, gone, [group]))
            return
        if self.subscriber_refs.get(pid) == ref:
            del self.subscriber_refs[pid]
            for r in [r for r, (who, _) in self.subscribers.items() if who == pid]:
                del self.subscribers[r]

    def _replace_peer(self, peer: Pid, groups: dict[Any, list[Pid]]) -> None:
        old = self.peers[peer]
        self.peers[peer] = {g: p for g, p in groups.items() if p}
        for group in set(old) | set(groups):
            before, after = list(old.get(group, [])), list(groups.get(group, []))
            removed = _minus(before, after)
            added = _minus(after, before)
            self._recompute(group)
            if removed:
                self._notify(group, "leave", removed)
            if added:
                self._notify(group, "join", added)

    # -- state and notifications ---------------------------------------------------------

    def _store_peer_group(self, peer: Pid, group: Any, members: list[Pid]) -> None:
        if members:
            self.peers[peer][group] = members
        else:
            self.peers[peer].pop(group, None)

    def _set_local(self, group: Any, members: list[Pid]) -> None:
        if members:
            self.local[group] = members
        else:
            self.local.pop(group, None)

    def _unwatch_if_idle(self, pids: list[Pid]) -> None:
        import actornet

        for pid in set(pids):
            if not any(pid in members for members in self.local.values()):
                ref = self.member_refs.pop(pid, None)
                if ref is not None:
                    actornet.demonitor(ref)

    def _recompute(self, group: Any) -> None:
        """Rebuild the read snapshots of `group` (readers see whole tuples, never halves)."""
        local = tuple(self.local.get(group, ()))
        everyone = list(local)
        for state in self.peers.values():
            everyone.extend(state.get(group, ()))
        members = dict(self.members)
        local_members = dict(self.local_members)
        if everyone:
            members[group] = tuple(everyone)
        else:
            members.pop(group, None)
        if local:
            local_members[group] = local
        else:
            local_members.pop(group, None)
        self.members, self.local_members = members, local_members

    def _changed(self, group: Any, what: str, pids: list[Pid]) -> None:
        self._recompute(group)
        self._notify(group, what, pids)

    def _notify(self, group: Any, what: str, pids: list[Pid]) -> None:
        import actornet

        for ref, (who, watched) in list(self.subscribers.items()):
            if watched == group:
                actornet.send(who, ("pg", ref, what, group, list(pids)))

    def _local_groups(self) -> list[tuple[Any, list[Pid]]]:
        return [(g, list(p)) for g, p in self.local.items()]

    def _broadcast(self, msg: Any) -> None:
        import actornet

        for peer in self.peers:
            actornet.send(peer, msg, noconnect=True)


def _hashable(group: Any) -> bool:
    try:
        hash(group)
    except TypeError:
        return False
    return True


def _all_pids(pids: list[Any]) -> bool:
    return all(isinstance(pid, Pid) for pid in pids)


def _is_group(entry: Any) -> bool:
    """Whether `entry` of a sync is (group, [pid, ...])."""
    match entry:
        case (group, list() as pids) if _hashable(group) and _all_pids(pids):
            return True
    return False


def _minus(a: list[Pid], b: list[Pid]) -> list[Pid]:
    """Multiset difference a - b."""
    rest = list(b)
    out = []
    for x in a:
        if x in rest:
            rest.remove(x)
        else:
            out.append(x)
    return out


def start(scope: str = DEFAULT_SCOPE) -> Pid:
    """Start the scope server for `scope` on this node (OTP ``pg:start(Scope)``).

    Example:
        >>> from actornet import pg
        >>> pid = pg.start("doc_scope")
        >>> pg.which_groups("doc_scope")
        []
    """
    return _Scope.start(scope, name=scope)


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
    return _Scope.start_link(scope, name=scope)


def start_on(node: Any, scope: str = DEFAULT_SCOPE) -> Pid:
    """Start `scope` on a given node object (used by `start_node`)."""
    return _Scope._gen_start((scope,), {}, scope, link=False, node=node)


def _scope(scope: str | None) -> _Scope:
    name = scope or DEFAULT_SCOPE
    node = current_node()

    def ready() -> _Scope | None:
        server: _Scope | None = node._pg_scopes.get(name)
        return server if server is not None and node._local(server.gen_pid) else None

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
        if node._local(pid) is None:
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
    return (yield Call(_scope(scope).gen_pid, ("demonitor", ref))) == "ok"
