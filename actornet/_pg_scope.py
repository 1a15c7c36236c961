"""A `pg` scope's server: this node's memberships and a replica of every other node's.

The exchange protocol, between the scope servers of one scope:
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
"""

from __future__ import annotations

import logging
from typing import Any

from actornet import _system, process
from actornet._ids import Pid, Ref
from actornet._wire import shown
from actornet.gen_server import GenServer, badarg

__all__ = ["PROTOCOL", "ScopeServer"]

# The version of the exchange below, in every discover: a scope server shares
# memberships only with those of its own version (and says which it ignores), so
# a change to these messages never refuses a node at the connection's handshake.
PROTOCOL = 2

log = logging.getLogger("actornet.pg")


class ScopeServer(GenServer):
    """A scope's server: this node's members, and a replica of every other node's."""

    def init(self, scope: str) -> None:
        self.scope = scope
        self.local: dict[Any, list[Pid]] = {}
        self.peers: dict[Pid, dict[Any, list[Pid]]] = {}
        self.members: dict[Any, tuple[Pid, ...]] = {}
        self.local_members: dict[Any, tuple[Pid, ...]] = {}
        self.member_refs: dict[Pid, Ref] = {}
        self.subscribers: dict[Ref, tuple[Pid, Any]] = {}
        self.subscriber_refs: dict[Pid, Ref] = {}
        self.gen_node.pg_scopes[scope] = self
        self.gen_node.monitor_nodes(True)
        self.other_versions: set[str] = set()  # nodes whose scope speaks another version
        for peer in process.nodes():
            process.send((scope, peer), ("discover", self.gen_pid, PROTOCOL), noconnect=True)
        _system.announce()

    def terminate(self, reason: Any) -> None:
        if self.gen_node.pg_scopes.get(self.scope) is self:
            del self.gen_node.pg_scopes[self.scope]

    # -- local requests --------------------------------------------------------------

    def handle_call(self, request: Any, from_: Any) -> Any:
        match request:
            case ("join", group, list() as pids) if _hashable(group):
                for pid in pids:
                    if pid not in self.member_refs:  # a pid dead by now: DOWN removes it
                        self.member_refs[pid] = process.monitor(pid)
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
                    self.subscriber_refs[who] = process.monitor(who)
                return (ref, list(self.members.get(group, ())))
            case ("demonitor", ref):
                return "ok" if self.subscribers.pop(ref, None) else "false"
        self._not_understood("call", request)
        return badarg(f"unknown pg request {shown(request, 200)}")

    def handle_cast(self, request: Any) -> None:
        self._not_understood("cast", request)

    # -- peers and exits ---------------------------------------------------------------

    def handle_info(self, msg: Any) -> None:
        # Any node may send anything here: what is not one of these is logged and dropped.
        match msg:
            case ("discover" | "sync" | "join" | "leave", Pid() as peer, *_) if (
                    peer.node not in process.nodes()):
                # In flight from a node we are no longer connected to (a disconnect or a
                # cut raced it): acting on it would monitor that scope and so reconnect.
                pass
            case ("discover", Pid() as peer, int() as version) if version == PROTOCOL:
                process.send(peer, ("sync", self.gen_pid, self._local_groups()), noconnect=True)
                if peer not in self.peers:
                    self._add_peer(peer)
                    process.send(peer, ("discover", self.gen_pid, PROTOCOL), noconnect=True)
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
                process.send((self.scope, node), ("discover", self.gen_pid, PROTOCOL),
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
        self.peers[peer] = {}
        process.monitor(peer)

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
        for pid in set(pids):
            if not any(pid in members for members in self.local.values()):
                ref = self.member_refs.pop(pid, None)
                if ref is not None:
                    process.demonitor(ref)

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
        for ref, (who, watched) in list(self.subscribers.items()):
            if watched == group:
                process.send(who, ("pg", ref, what, group, list(pids)))

    def _local_groups(self) -> list[tuple[Any, list[Pid]]]:
        return [(g, list(p)) for g, p in self.local.items()]

    def _broadcast(self, msg: Any) -> None:
        for peer in self.peers:
            process.send(peer, msg, noconnect=True)


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
