"""What every part of a node shares: its identity, its tables and its lock.

A `Node` (actornet's BEAM VM) is assembled from one class per concept, each in
its own module, each building on the one before: this base (the process table
and the identifiers), `Registry` (registered names), `Signals` (links, exits,
monitors, node monitors), `Aliases` (the replies of pending calls), `Info`
(`process_info`, `node_info`), and the `Node` facade (lifecycle, spawning,
messages). The state they share lives here.

Concurrency: process-table and link/monitor bookkeeping is guarded by one node
lock; message delivery to a local pid takes no lock (a dict lookup and a
mailbox put).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from actornet._callslot import TaskSlot, ThreadSlot
from actornet._ids import Pid, Ref, next_ref_id
from actornet._process import Process
from actornet.errors import NodeDown

if TYPE_CHECKING:
    from actornet._light_mailbox import LightMailbox
    from actornet._mailbox import Mailbox
    from actornet._process import NodeApi
    from actornet._scheduler import Scheduler
    from actornet._transport import Transport

__all__ = ["NodeBase", "LOCAL_NODE_NAME"]

LOCAL_NODE_NAME = "nonode@nohost"


class NodeBase:
    """A node's identity, process table, tables and lock (see the module docstring)."""

    def __init__(self, name: str = LOCAL_NODE_NAME, *, creation: int | None = None) -> None:
        if "@" not in name:
            raise ValueError(f"node name must look like 'name@host', got {name!r}")
        self.name = name
        self.creation = creation if creation is not None else _new_creation()
        self.procs: dict[int, Process] = {}
        self._names: dict[str, Process] = {}
        self._aliases: dict[Ref, ThreadSlot | TaskSlot] = {}
        self._node_monitors: dict[str, list[Pid]] = {}
        self._nodes_watchers: list[Pid] = []  # monitor_nodes subscribers
        self.global_server: Any = None  # this node's global_ name server, once started
        self.pg_scopes: dict[str, Any] = {}  # pg scope servers by scope name
        self._ids = itertools.count(1)
        self.lock = threading.RLock()
        self._running = True
        self.dist: Transport | None = None  # the ZeroMQ transport, once distributed
        self.closers: list[Callable[[], None]] = []  # run by stop(), e.g. port-mapper entry
        self._scheduler: Scheduler | None = None  # where lightweight processes run
        self._scheduler_lock = threading.Lock()

    def deliver(self, id_: int, creation: int, msg: Any) -> None:
        """Put `msg` in the mailbox of the local process `id_` of incarnation `creation`,
        if it lives: the one place a message enters a mailbox, whatever sent it (a local
        `send` to a pid or a name, `send_each`, a peer's `SEND`, `REG_SEND` or `SEND_MANY`,
        a node monitor's news); exit signals and monitors' DOWNs become messages in
        `actornet._signals`, after their own rules.
        A message to a dead process is dropped, as in Erlang."""
        proc = self.procs.get(id_)
        if proc is not None and proc.pid.creation == creation:
            proc.mailbox.put(msg)

    def current(self) -> Process:
        """The caller's process on this node (`Node.current`)."""
        raise NotImplementedError

    def make_ref(self) -> Ref:
        """Return a reference unique on this node incarnation (Erlang `make_ref/0`).

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     n.make_ref() == n.make_ref()
            False
        """
        return Ref(self.name, next_ref_id(), self.creation)

    def new_process(self, kind: str, mailbox: Mailbox | LightMailbox | None = None) -> Process:
        """File a new process of `kind` (see `actornet._process`) under a fresh pid."""
        if not self._running:
            raise RuntimeError(f"node {self.name} is stopped")
        pid = Pid(self.name, next(self._ids), self.creation)
        proc = Process(pid, cast("NodeApi", self), kind, mailbox)
        self.procs[pid.id] = proc
        return proc

    def local_process(self, pid: Pid) -> Process | None:
        """The live local process for `pid`, or None (dead, or not ours)."""
        proc = self.procs.get(pid.id)
        if proc is not None and proc.pid.creation == pid.creation and pid.node == self.name:
            return proc
        return None

    def is_local(self, pid: Pid) -> bool:
        """True if `pid` names a process of this node incarnation.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     n.is_local(n.current().pid), n.is_local(actornet.Pid("b@localhost", 1, 1))
            (True, False)
        """
        return pid.node == self.name and pid.creation == self.creation

    def processes(self) -> list[Pid]:
        """Pids of every live process on this node (Erlang `processes/0`).

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     me = n.current().pid
            ...     n.processes() == [me]
            True
        """
        return [p.pid for p in list(self.procs.values())]

    def transport(self) -> Transport:
        """The node's distribution (its ZeroMQ transport); `NodeDown` if it has none.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     try:
            ...         n.transport()
            ...     except actornet.NodeDown as e:
            ...         print(str(e).split(":")[0])
            node doc@localhost is not distributed
        """
        if self.dist is None:
            raise NodeDown(
                f"node {self.name} is not distributed: start it with actornet.start_node("
                "'name@host') to reach other nodes"
            )
        return self.dist


def _new_creation() -> int:
    return int.from_bytes(os.urandom(4), "big") or 1
