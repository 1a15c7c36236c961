"""The `global_` name server: one per node, holding that node's replica of the table.

`actornet.global_` is the API and says how registration, conflicts and resync work;
this module is the server that does it (a GenServer per node, started under the
node's kernel supervisor).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from actornet import _system, process
from actornet._erpc import import_function
from actornet._ids import Pid, Ref
from actornet._wire import shown
from actornet.gen_server import GenServer, badarg

log = logging.getLogger("actornet.global")

SERVER = "global_name_server"
# The version of the name servers' messages to one another, carried in the table each
# sends on connecting (version 1 had none). A server keeps to those of its own version
# (and says once which it leaves out), so a change to these messages never refuses a
# node at the connection's handshake, which covers the framing only. Version 3: an
# unlock names the nodes the round wrote to (a server tells the others again).
PROTOCOL = 3
_DECISIONS_KEPT = 1000  # conflicts the decider remembers, to answer repeated reports alike

__all__ = ["NameServer", "PROTOCOL", "Resolve", "SERVER", "load_resolver", "pid_order"]

Resolve = Callable[[Any, Pid, Pid], "Pid | None"]
# One registration: the pid, its resolve method by reference, and its home: the name
# server of the node (incarnation) that registered it, which settles conflicts over it,
# announces the outcome, and is the authority on whether it still exists.
_Entry = tuple[Pid, "str | None", Pid]
T = TypeVar("T")
_PENDING = "pending"


def pid_order(pid: Pid) -> tuple[str, int, int]:
    """The order conflicts are settled in: node name, then incarnation, then id."""
    return (pid.node, pid.creation, pid.id)


class NameServer(GenServer):
    """One node's replica of the global table, and its lock table."""

    def init(self) -> None:
        process.trap_exit(True)
        self.names: dict[Any, Pid] = {}
        self.methods: dict[Any, str | None] = {}  # each name's resolve method, by reference
        self.homes: dict[Any, Pid] = {}  # each name's home: the name server that registered it
        self.locks: dict[Any, tuple[Pid, Ref]] = {}
        # peers sent this table while a name was locked here: the write the lock guards
        # may come after it, so each is sent the table again when the lock is released
        self.told_while_locked: dict[Any, set[str]] = {}
        # conflicts this node decided (or is deciding): (name, first, second) ->
        # _PENDING, or a 1-tuple of the registration kept (None: the name is dropped)
        self.decisions: OrderedDict[tuple[Any, Pid, Pid], Any] = OrderedDict()
        self.watched: dict[Pid, Ref] = {}
        self.other_versions: set[str] = set()  # nodes whose server speaks another version
        self.gen_node.global_server = self
        self.gen_node.monitor_nodes(True)
        for peer in process.nodes():
            # A first start, or a restart after a crash: either way this table is empty,
            # and every peer's answer fills it (this node's own registrations included).
            self._send_table(peer, reply=True)
        _system.announce()

    # -- requests from registering processes -------------------------------------------

    def handle_call(self, request: Any, from_: Any) -> Any:
        match request:
            case ("lock", name, (Pid(), Ref()) as owner) if _hashable(name):
                holder = self.locks.get(name)
                if holder is not None and holder != owner:
                    return ("busy", None)
                self.locks[name] = owner
                self._watch(owner[0])
                return ("ok", self.names.get(name))
            case ("register", name, Pid() as pid, method, Pid() as home) if (
                    _hashable(name) and (method is None or isinstance(method, str))):
                self._set(name, (pid, method, home))
                return "ok"
            case ("unregister", name) if _hashable(name):
                self._drop(name)
                return "ok"
        self._not_understood("call", request)
        return badarg(f"unknown request {_shown(request)}")

    def handle_cast(self, request: Any) -> None:
        match request:
            case ("unlock", name, owner, written) if _hashable(name) and (
                    written is None or (isinstance(written, list)
                                        and all(isinstance(n, str) for n in written))):
                if self.locks.get(name) == owner:
                    self._release(name, written)
            case _:
                self._not_understood("cast", request)

    def handle_info(self, msg: Any) -> None:
        # Any node of the cluster may send anything here: what is not one of these is
        # logged and dropped (a crash would empty this replica until it resyncs).
        match msg:
            case ("DOWN", _, "process", Pid() as pid, _):
                self.watched.pop(pid, None)
                self._forget_pid(pid)
            case ("nodeup", str() as peer):
                self._send_table(peer, reply=False)
            case ("nodedown", str() as peer):
                self.other_versions.discard(peer)  # it may come back upgraded
                self._node_gone(peer)
            case ("table", str() as peer, list() as table, Pid() as server, list() as locked,
                  bool() as reply, int() as version) if version == PROTOCOL:
                self.other_versions.discard(peer)
                self._merge(peer, self._entries(peer, table), server,
                            [name for name in locked if _hashable(name)])
                if reply:  # it (re)started: it has only what peers tell it
                    self._send_table(peer, reply=False)
            case ("table", str() as peer, _, _, _, _, *version) if (
                    len(version) < 2 and version != [PROTOCOL]):
                self._other_version(peer, version[0] if version else 1)
            case ("dead", name, Pid() as pid) if _hashable(name):
                if self.names.get(name) == pid:
                    self._drop(name)
            case ("conflict", name, first, second) if (
                    _hashable(name) and _is_entry(first) and _is_entry(second)):
                self._decide(name, first, second)
            case ("decided", (name, Pid(), Pid()) as key, kept) if (
                    _hashable(name) and (kept is None or _is_entry(kept))):
                self.decisions[key] = (kept,)
                self._announce(key, kept)
            case ("confirm", name, (Pid(), Pid()) as pids, kept) if (
                    _hashable(name) and (kept is None or _is_entry(kept))):
                self._confirm(name, pids, kept)
            case ("resolved", name, (Pid(), Pid()) as pids, kept) if (
                    _hashable(name) and (kept is None or _is_entry(kept))):
                self._apply(name, pids, kept)
            case ("EXIT", _, _):
                pass  # a registering process's exit: its DOWN does the work
            case _:
                self._not_understood("message", msg)

    def _other_version(self, peer: str, version: Any) -> None:
        """Leave `peer`'s name server out: it speaks another version of these messages."""
        if peer not in self.other_versions:
            self.other_versions.add(peer)
            log.warning("global: the name server on %s leaves out the one on %s: it speaks "
                        "global protocol %s, this node %d; their names are not shared",
                        self.gen_node.name, peer, shown(version, 20), PROTOCOL)

    def _not_understood(self, what: str, msg: Any) -> None:
        log.warning("global: the name server on %s dropped a %s it does not understand: %s",
                    self.gen_node.name, what, _shown(msg))

    def _entries(self, peer: str, table: list[Any]) -> list[tuple[Any, Pid, str | None, Pid]]:
        """The well-formed entries of a table from `peer`; the others are logged, dropped."""
        good = []
        for entry in table:
            match entry:
                case (name, Pid() as pid, method, Pid() as home) if (
                        _hashable(name) and (method is None or isinstance(method, str))):
                    good.append((name, pid, method, home))
                case _:
                    log.warning("global: the name server on %s dropped an entry of %s's "
                                "table it does not understand: %s", self.gen_node.name, peer,
                                _shown(entry))
        return good

    # -- the table -------------------------------------------------------------------

    def _set(self, name: Any, entry: _Entry) -> None:
        pid, self.methods[name], self.homes[name] = entry
        self.names = {**self.names, name: pid}
        if self.gen_node.is_local(pid):
            self._watch(pid)

    def _drop(self, name: Any) -> None:
        if name in self.names:
            names = dict(self.names)
            del names[name]
            self.names = names
        self.methods.pop(name, None)
        self.homes.pop(name, None)

    def _entry(self, name: Any) -> _Entry:
        return (self.names[name], self.methods.get(name),
                self.homes.get(name, self.gen_pid))

    def _watch(self, pid: Pid) -> None:
        if pid not in self.watched and pid.node == self.gen_node.name:
            self.watched[pid] = process.monitor(pid)

    def _forget_pid(self, pid: Pid) -> None:
        """`pid` died: drop its names everywhere, and any lock it held here."""
        for name in [n for n, p in self.names.items() if p == pid]:
            self._drop(name)
            for peer in process.nodes():
                # "if it is still this pid's": a conflict resolved meanwhile may
                # have given the name to another pid, which must keep it.
                # connecting if need be: global_ has no full resync that would repair a
                # lost removal, so this one must arrive
                process.send((SERVER, peer), ("dead", name, pid))
        for name in [n for n, (owner, _) in self.locks.items() if owner == pid]:
            self._release(name, [])  # its round may have written to some nodes only

    def _node_gone(self, node: str) -> None:
        names = {n: p for n, p in self.names.items() if p.node != node}
        if len(names) != len(self.names):
            self.names = names
            self.methods = {n: m for n, m in self.methods.items() if n in names}
            self.homes = {n: h for n, h in self.homes.items() if n in names}
        for name in [n for n, (owner, _) in self.locks.items() if owner.node == node]:
            self._release(name, [])  # its round may have written to some nodes only

    def _release(self, name: Any, written: list[str] | None) -> None:
        """Release `name`'s lock, and tell this table again to each peer whose copy may
        lack the write the lock guarded: one that was sent the table while the name was
        locked (perhaps before the write), and, if the round wrote (to the servers of
        `written`), one connected here that it did not write to: it came (back) up during
        the round, after the round chose its servers or after its lock call was lost."""
        del self.locks[name]
        stale = self.told_while_locked.pop(name, set())
        up = set(process.nodes()) - self.other_versions
        if written is not None:
            stale |= up - set(written)
        for peer in sorted(stale & up):
            self._send_table(peer, reply=False)

    def _send_table(self, peer: str, *, reply: bool) -> None:
        """Send this replica to `peer`'s name server; with `reply`, ask for its own back."""
        # With this server's pid and the names locked here now (registrations in flight),
        # so that the peer can tell which of this node's registrations are gone.
        table = ("table", self.gen_node.name, [(n, *self._entry(n)) for n in self.names],
                 self.gen_pid, list(self.locks), reply, PROTOCOL)
        for name in self.locks:
            self.told_while_locked.setdefault(name, set()).add(peer)
        process.send((SERVER, peer), table, noconnect=True)

    def _merge(self, peer: str, table: list[tuple[Any, Pid, str | None, Pid]], server: Pid,
               locked: list[Any]) -> None:
        if self._home_is_up(server):
            # The peer speaks for the registrations it made: one of them that we hold and it
            # lists neither as registered nor as in flight (locked) was unregistered, or its
            # process died, while a node that told us of it could not hear.
            listed = {entry[0] for entry in table} | set(locked)
            for name in [n for n, h in self.homes.items() if h == server and n not in listed]:
                self._drop(name)

        for name, pid, method, home in table:
            mine = self.names.get(name)
            if mine is None:
                if pid.node == self.gen_node.name and not self.gen_node.is_local(pid):
                    continue  # a pid of our previous incarnation
                if home.node != peer and self._home_is_up(home):
                    # Its home knows best: it told us of it already, or will (its own table
                    # on connecting); a third node's copy may be one the home has since
                    # unregistered while that node was cut off.
                    continue
                self._set(name, (pid, method, home))
            elif mine != pid and self.gen_node.name < peer:
                # Every node of the pair's two sides may find this same conflict: all
                # hand it to one decider, so it is settled once, with one method.
                first, second = sorted([self._entry(name), (pid, method, home)],
                                       key=lambda entry: pid_order(entry[0]))
                log.warning("global name conflict for %r between %r and %r",
                            name, first[0], second[0])
                decider = self._reachable(first[2].node, second[2].node)
                if decider == self.gen_node.name:
                    self._decide(name, first, second)
                else:
                    process.send((SERVER, decider), ("conflict", name, first, second))

    def _reachable(self, *homes: str) -> str:
        """The first of `homes` that is this node or connected to it, else this node."""
        up = {self.gen_node.name, *process.nodes()}
        return next((home for home in homes if home in up), self.gen_node.name)

    def _home_is_up(self, home: Pid) -> bool:
        """True if `home` is this name server, or one on a node connected now in the same
        incarnation (a registration by an earlier one has no live home)."""
        if home.node == self.gen_node.name:
            return home == self.gen_pid
        dist = self.gen_node.dist
        return (dist is not None and dist.creation(home.node) == home.creation
                and home.node in dist.nodes())

    def _dead_here(self, pid: Pid) -> bool:
        """True if `pid` was a process of this node that has ended."""
        return pid.node == self.gen_node.name and self.gen_node.local_process(pid) is None

    def _decide(self, name: Any, first: _Entry, second: _Entry) -> None:
        """Settle a conflict once (this node is the decider `_merge` chose) and announce it."""
        key = (name, first[0], second[0])
        decided = self.decisions.get(key)
        if decided == _PENDING:
            return  # its resolver is running; the answer will be announced
        if decided is not None:
            self._announce(key, decided[0])  # a repeated report: the same answer again
            return
        self.decisions[key] = _PENDING
        if len(self.decisions) > _DECISIONS_KEPT:  # forget the oldest settled ones
            for old in [k for k, v in self.decisions.items() if v is not _PENDING][
                    :len(self.decisions) - _DECISIONS_KEPT]:
                del self.decisions[old]
        if self._dead_here(first[0]):
            # Dead meanwhile (its removal is on its way): the other keeps the name.
            self.decisions[key] = (second,)
            self._announce(key, second)
            return
        method = first[1] if first[1] is not None else second[1]
        server = self.gen_pid

        def resolver() -> None:
            kept = None  # if the method exits this process, the name is dropped
            try:
                keep = _run_resolver(method, name, first[0], second[0])
                kept = first if keep == first[0] else second if keep == second[0] else None
            finally:  # always an answer: else the conflict would stay pending for ever
                process.send(server, ("decided", key, kept))

        process.spawn(resolver)  # user code: never run inside the name server

    def _announce(self, key: tuple[Any, Pid, Pid], kept: _Entry | None) -> None:
        """Have the decision told to every node, by the kept registration's home."""
        name, first, second = key
        pids = (first, second)
        home = self._reachable(kept[2].node) if kept is not None else self.gen_node.name
        if home == self.gen_node.name:
            self._confirm(name, pids, kept)
        else:
            process.send((SERVER, home), ("confirm", name, pids, kept))

    def _confirm(self, name: Any, pids: tuple[Pid, Pid], kept: _Entry | None) -> None:
        """Tell every node the outcome; a kept pid that died here meanwhile keeps nothing."""
        if kept is not None and self._dead_here(kept[0]):
            kept = None
        self._apply(name, pids, kept)
        for other in process.nodes():
            process.send((SERVER, other), ("resolved", name, pids, kept))

    def _apply(self, name: Any, pids: tuple[Pid, Pid], kept: _Entry | None) -> None:
        current = self.names.get(name)
        if current is not None and current not in pids:
            return  # taken meanwhile by another registration
        # (No entry: the loser's exit may have freed it here first; the kept pid's home
        # sent this while it was alive, and would send its death after this.)
        if kept is None:
            self._drop(name)
        else:
            self._set(name, kept)


def _hashable(name: Any) -> bool:
    """Whether `name` can be a global name (a key of the table)."""
    try:
        hash(name)
    except TypeError:
        return False
    return True


def _is_entry(value: Any) -> bool:
    """Whether `value` is a registration: (pid, resolve method or None, home)."""
    match value:
        case (Pid(), None | str(), Pid()):
            return True
    return False


def _shown(value: Any) -> str:
    return shown(value, 200)


def _run_resolver(method: str | None, name: Any, first: Pid, second: Pid) -> Pid | None:
    """Run one conflict's resolve method: the pid to keep, or None to drop the name."""
    try:
        fn = _exit_loser if method is None else load_resolver(method)
        keep = fn(name, first, second)
    except Exception:
        log.exception("global: resolve method %s for %r failed; dropping the name",
                      method, name)
        return None
    if keep is not None and keep not in (first, second):
        log.error("global: resolve method %s for %r returned %r, neither pid; dropping the "
                  "name", method, name, keep)
        return None
    return keep


def _exit_loser(name: Any, pid1: Pid, pid2: Pid) -> Pid:
    """The default: the pid that sorts first keeps the name, the other gets an exit."""
    keep, lose = sorted((pid1, pid2), key=pid_order)
    process.exit(lose, ("global_name_conflict", name))
    return keep


def load_resolver(ref: str) -> Resolve:
    """The function named by ``"module:qualname"``, imported if need be."""

    module, sep, qualname = ref.partition(":")
    if not sep or not module or not qualname:
        raise ValueError(f"a resolve method is named 'module:qualname', got {ref!r}")
    return import_function(module, qualname)
