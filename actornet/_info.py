"""What a node can say about itself and its processes (Erlang's `process_info/1` and
`erlang:system_info/1`), for people and tools looking at a running node."""

from __future__ import annotations

import threading
from typing import Any

from actornet._aliases import Aliases
from actornet._ids import Pid

__all__ = ["Info"]


class Info(Aliases):
    """`process_info` and `node_info`: read-only snapshots, safe from any thread."""

    def process_info(self, pid: Pid) -> dict[str, Any] | None:
        """What this node knows of its process `pid`, or None if it is not alive.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     n.process_info(n.current().pid)["message_queue_len"]
            0
        """
        proc = self.local_process(pid)
        if proc is None:
            return None
        with self.lock:
            links = sorted(proc.links)
            monitors = [t for t in proc.monitors.values() if t.__class__ is Pid or
                        (isinstance(t, tuple) and not str(t[0]).startswith("$"))]
            monitored_by = sorted(set(proc.monitored_by.values()))
        return {
            "pid": pid,
            "registered_name": proc.name,
            "status": "waiting" if proc.waiting else "running",
            "message_queue_len": len(proc.mailbox),
            "links": links,
            "monitors": monitors,
            "monitored_by": monitored_by,
            "trap_exit": proc.trap_exit,
            "current_function": proc.function,
            "kind": proc.kind,
        }

    def node_info(self) -> dict[str, Any]:
        """A snapshot of this node: processes, names, connections and traffic.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     info = n.node_info()
            ...     info["name"], info["distributed"]
            ('doc@localhost', False)
        """
        procs = list(self.procs.values())
        info: dict[str, Any] = {
            "name": self.name,
            "creation": self.creation,
            "running": self._running,
            "processes": len(procs),
            "registered": self.registered(),
            "message_queue_total": sum(len(p.mailbox) for p in procs),
            "largest_queues": sorted(
                ((len(p.mailbox), p.pid) for p in procs), reverse=True)[:5],
            "threads": threading.active_count(),
            "distributed": self.dist is not None,
        }
        if self.dist is not None:
            info.update(self.dist.info())
        return info
