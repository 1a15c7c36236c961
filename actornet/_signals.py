"""Signals: links, exit signals, monitors and node monitors, with Erlang's rules.

Each signal has one entry point taking pids (`signal_exit`, `signal_down`,
...), which the local API and the distribution layer both call, so a remote
pid behaves like a local one; `_route_*` sends a signal to a pid wherever it
lives. A process that dies (`end_process`) fires its links and monitors once.
"""

from __future__ import annotations

from typing import Any

from actornet._callslot import DOWN
from actornet._ids import Pid, Ref
from actornet._process import Process
from actornet._registry import Registry
from actornet._terms import check_term
from actornet.errors import NoProc

__all__ = ["Signals"]


class Signals(Registry):
    """Links, exits, monitors and node monitors of a node's processes."""

    def end_process(self, proc: Process, reason: Any) -> bool:
        """Mark `proc` dead with `reason` and fire its links and monitors. Once."""
        with self.lock:
            if not proc.alive:
                return False
            proc.alive = False
            proc.exit_reason = reason
            self.procs.pop(proc.pid.id, None)
            if proc.name is not None:
                self._names.pop(proc.name, None)
            links, mine, watchers = proc.take_links_and_monitors()
        proc.mailbox.closed = True
        pid = proc.pid
        for ref, target in mine.items():
            self.demonitor_target(target, ref, pid)
        for other in links:
            self._route_exit(other, pid, reason, linked=True)
        for ref, watcher in watchers.items():
            self._route_down(watcher, ref, pid, reason)
        return True

    def _kill(self, proc: Process, reason: Any) -> None:
        """End `proc` by an exit signal and stop its thread.

        When the signal is handled in the victim's own thread (it linked to a
        dead pid, say), nothing is raised here, mid-bookkeeping: the API call
        in progress ends with `check_alive`, and a receive wakes and raises.
        """
        if self.end_process(proc, reason):
            proc.interrupt()

    def link(self, pid: Pid) -> None:
        """Link the calling process and `pid` (Erlang `link/1`).

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     worker = n.spawn(n.receive)
            ...     n.link(worker)
            ...     n.process_info(worker)["links"] == [n.current().pid]
            True
        """
        _require_pid(pid, "link")
        me = self.current()
        if pid == me.pid:
            return
        if pid.node != self.name:
            remote = self.transport()  # no distribution: refused before any bookkeeping
            with self.lock:
                me.add_link(pid)
            remote.link(me.pid, pid)
            return
        with self.lock:
            other = self.local_process(pid)
            if other is not None:
                me.add_link(pid)
                other.add_link(me.pid)
                return
        # Linking to a dead process: an exit signal with reason noproc.
        self.signal_exit(me.pid, pid, "noproc", linked=True, force=True)
        me.check_alive()

    def unlink(self, pid: Pid) -> None:
        """Remove the link between the calling process and `pid`, if any.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     worker = n.spawn_link(n.receive)
            ...     n.unlink(worker)
            ...     n.process_info(worker)["links"]
            []
        """
        _require_pid(pid, "unlink")
        me = self.current()
        with self.lock:
            me.remove_link(pid)
            other = self.local_process(pid)
            if other is not None:
                other.remove_link(me.pid)
        if pid.node != self.name:
            self.transport().unlink(me.pid, pid)

    def signal_link(self, to: Pid, from_: Pid) -> None:
        """A remote process `from_` linked to local `to` (transport entry)."""
        with self.lock:
            proc = self.local_process(to)
            if proc is not None:
                proc.add_link(from_)
                return
        self._route_exit(from_, to, "noproc", linked=True)

    def signal_unlink(self, to: Pid, from_: Pid) -> None:
        """`from_` unlinked from local `to` (transport entry)."""
        with self.lock:
            proc = self.local_process(to)
            if proc is not None:
                proc.remove_link(from_)

    def exit(self, pid: Pid, reason: Any) -> None:
        """Send an exit signal to `pid` from the calling process (Erlang `exit/2`).

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     pid, ref = n.spawn_monitor(n.receive)
            ...     n.exit(pid, "stop")
            ...     n.receive(timeout=5)[4]
            'stop'
        """
        _require_pid(pid, "exit")
        check_term(reason)
        me = self.current()
        if pid.node == self.name:  # of an earlier incarnation: dead, the signal is void
            self.signal_exit(pid, me.pid, reason, linked=False)
        else:
            self.transport().exit(me.pid, pid, reason, linked=False)
        me.check_alive()

    def _route_exit(self, to: Pid, from_: Pid, reason: Any, *, linked: bool) -> None:
        if self.is_local(to):
            self.signal_exit(to, from_, reason, linked=linked)
        elif self.dist is not None:
            self.dist.exit(from_, to, reason, linked=linked)

    def signal_exit(
        self, to: Pid, from_: Pid, reason: Any, *, linked: bool, force: bool = False
    ) -> None:
        """Exit signal from `from_` to local `to`, with Erlang's rules (transport entry).

        `linked` signals come from a link and are void once the link is gone
        (`force` skips that check, for the noproc of linking to a dead pid).
        """
        proc = self.local_process(to)
        if proc is None:
            return
        if linked and not force:
            with self.lock:
                if from_ not in proc.links:
                    return  # unlinked meanwhile: the signal is void
                proc.remove_link(from_)
        if reason == "kill" and not linked:
            self._kill(proc, "killed")
        elif proc.trap_exit:
            proc.mailbox.put(("EXIT", from_, reason))
        elif reason == "normal":
            if from_ == to and not linked:
                self._kill(proc, "normal")
        else:
            self._kill(proc, reason)

    def trap_exit(self, flag: bool) -> bool:
        """Set the calling process's trap_exit flag; return the old value.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     n.trap_exit(True)
            False
        """
        if not isinstance(flag, bool):
            raise TypeError(f"trap_exit needs True or False, got {flag!r}")
        me = self.current()
        old, me.trap_exit = me.trap_exit, flag
        return old

    def monitor(self, target: Any) -> Ref:
        """Monitor a process (pid, name or (name, node)); DOWN arrives once.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     ref = n.monitor(n.spawn(lambda: None))
            ...     n.receive(timeout=5)[:3] == ("DOWN", ref, "process")
            True
        """
        me = self.current()
        ref = self.make_ref()
        self.monitor_as(me, target, ref)
        return ref

    def monitor_as(self, me: Process, target: Any, ref: Ref) -> None:
        """`me` monitors `target` under `ref` (a call monitors its server under the
        call's own ref); a target that does not exist is DOWN at once, ``noproc``."""
        try:
            resolved = self.resolve(target)
        except NoProc:
            item = (target, self.name) if isinstance(target, str) else target
            me.add_monitor(ref, item)
            self.signal_down(me.pid, ref, item, "noproc")
            return
        # A pid of this node's name is local even from an earlier incarnation (then dead).
        if resolved.__class__ is Pid and resolved.node == self.name:
            with self.lock:
                me.add_monitor(ref, resolved)
                proc = self.local_process(resolved)
                if proc is not None:
                    proc.add_watcher(ref, me.pid)
                    return
            self.signal_down(me.pid, ref, resolved, "noproc")
            return
        remote = self.transport()  # no distribution: refused before any bookkeeping
        with self.lock:
            me.add_monitor(ref, resolved)
        remote.monitor(me.pid, resolved, ref)

    def demonitor(self, ref: Ref) -> bool:
        """Stop a monitor; no DOWN for it arrives afterwards. True if it was active.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     ref = n.monitor(n.spawn(n.receive))
            ...     n.demonitor(ref)
            True
        """
        if not isinstance(ref, Ref):
            raise TypeError(f"demonitor needs a Ref, got {type(ref).__name__!r}")
        me = self.current()
        with self.lock:
            target = me.pop_monitor(ref)
        if target is None:
            return False
        self.demonitor_target(target, ref, me.pid)
        return True

    def demonitor_target(self, target: Any, ref: Ref, watcher: Pid) -> None:
        """Tell `target`'s side that `watcher` dropped its monitor `ref`."""
        if target.__class__ is Pid and self.is_local(target):
            self.signal_demonitor(target, ref)
        elif self.dist is not None:
            self.dist.demonitor(watcher, target, ref)

    def signal_monitor(self, target: Any, watcher: Pid, ref: Ref) -> None:
        """A remote `watcher` monitors local `target` (pid or name) (transport entry)."""
        with self.lock:
            proc = self._watched(target)
            if proc is not None:
                proc.add_watcher(ref, watcher)
                return
        item = (target, self.name) if isinstance(target, str) else target
        self._route_down(watcher, ref, item, "noproc")

    def _watched(self, target: Any) -> Process | None:
        """The live local process a monitor's `target` (a pid or a registered name) is."""
        return self._names.get(target) if isinstance(target, str) else self.local_process(target)

    def signal_demonitor(self, target: Any, ref: Ref) -> None:
        """A watcher dropped its monitor `ref` of local `target` (transport entry)."""
        with self.lock:
            proc = self._watched(target)
            if proc is not None:
                proc.pop_watcher(ref)

    def _route_down(self, watcher: Pid, ref: Ref, item: Any, reason: Any) -> None:
        if self.is_local(watcher):
            self.signal_down(watcher, ref, item, reason)
        elif self.dist is not None:
            self.dist.down(watcher, ref, item, reason)

    def signal_down(self, watcher: Pid, ref: Ref, item: Any, reason: Any) -> None:
        """Monitor `ref` of local `watcher` fired (transport entry)."""
        slot = self._aliases.pop(ref, None)
        if slot is not None:
            # a pending call's monitor: the DOWN goes to the call, not the mailbox
            if slot.watcher is not None:
                slot.watcher.pop_monitor(ref)
            slot.set(DOWN, reason)
            return
        proc = self.local_process(watcher)
        if proc is None:
            return
        with self.lock:
            if proc.pop_monitor(ref) is None:
                return  # demonitored meanwhile
        proc.mailbox.put(("DOWN", ref, "process", item, reason))

    def monitor_node(self, node: str, flag: bool = True) -> None:
        """Get `("nodedown", node)` in the calling process's mailbox when `node` goes down.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     n.monitor_node("b@localhost")  # not distributed: down at once
            ...     n.receive(timeout=5)
            ('nodedown', 'b@localhost')
        """
        me = self.current()
        address, node = node, _base_node_name(node)
        with self.lock:
            subs = self._node_monitors.setdefault(node, [])
            if flag:
                subs.append(me.pid)
            elif me.pid in subs:
                subs.remove(me.pid)
        if flag and node != self.name and (
            self.dist is None or not self.dist.connect(address)
        ):
            # The failed attempt may have told us already (it fires every
            # subscription of `node`): say it once.
            with self.lock:
                subs = self._node_monitors.get(node, [])
                still = me.pid in subs
                if still:
                    subs.remove(me.pid)
            if still:
                self.deliver(me.pid.id, me.pid.creation, ("nodedown", node))

    def monitor_nodes(self, flag: bool = True) -> None:
        """``("nodeup", n)`` and ``("nodedown", n)`` for every node, to the caller.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     n.monitor_nodes(True)  # ("nodeup", name) / ("nodedown", name) from now on
            ...     n.monitor_nodes(False)
        """
        me = self.current()
        with self.lock:
            if flag:
                self._nodes_watchers.append(me.pid)
            elif me.pid in self._nodes_watchers:
                self._nodes_watchers.remove(me.pid)

    def node_up(self, node: str) -> None:
        """A connection to `node` came up (transport entry)."""
        for pid in list(self._nodes_watchers):
            self.deliver(pid.id, pid.creation, ("nodeup", node))

    def node_down(self, node: str, was_up: bool = True) -> None:
        """Every link, monitor and call towards `node` fires with noconnection."""
        with self.lock:
            subscribers = self._node_monitors.pop(node, [])
            procs = list(self.procs.values())
            self._nodes_watchers = [p for p in self._nodes_watchers if p.node != node]
            watchers = list(self._nodes_watchers) if was_up else []
        for pid in subscribers:
            self.deliver(pid.id, pid.creation, ("nodedown", node))
        for pid in watchers:
            self.deliver(pid.id, pid.creation, ("nodedown", node))
        for proc in procs:
            with self.lock:
                dead_links = [p for p in proc.links if p.node == node]
                dead_mons = [
                    (ref, t) for ref, t in proc.monitors.items() if _node_of(t) == node
                ]
                for ref in [r for r, w in proc.monitored_by.items() if w.node == node]:
                    proc.pop_watcher(ref)
            for ref, target in dead_mons:
                self.signal_down(proc.pid, ref, target, "noconnection")
            for other in dead_links:
                self.signal_exit(proc.pid, other, "noconnection", linked=True)


def _base_node_name(address: str) -> str:
    """``name@host`` of ``name@host:port``."""
    name, _, host = address.partition("@")
    return f"{name}@{host.split(':')[0]}"


def _node_of(target: Any) -> str:
    if target.__class__ is Pid:
        return target.node
    # (name, "node@host:port") is filed under the node, whatever address reached it
    return _base_node_name(target[1]) if isinstance(target, tuple) else ""


def _require_pid(pid: Any, what: str) -> None:
    if pid.__class__ is not Pid:
        raise TypeError(f"{what} needs a Pid, got {type(pid).__name__!r}")
