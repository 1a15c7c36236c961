"""Registered names: a node's table of local names (Erlang's `register/2` and friends).

Names registered cluster-wide, ``("global", name)``, belong to `actornet.global_`,
which is built on the node; it hands the node its lookup with `use_global` when
it is imported, so that the node can resolve them without importing it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from actornet._ids import Pid
from actornet._nodebase import NodeBase
from actornet.errors import ActornetError, AlreadyRegistered, NoProc

if TYPE_CHECKING:
    from actornet._steps import Steps

__all__ = ["Registry", "GlobalNames", "use_global", "global_names"]


class GlobalNames(NamedTuple):
    """What the node needs of `actornet.global_`: its two functions of these names."""

    whereis_name: Callable[[Any], Pid | None]
    register_name_steps: Callable[[Any, Pid], Steps[str]]


_global: GlobalNames | None = None


def use_global(names: GlobalNames) -> None:
    """Resolve ``("global", name)`` through `names` (done by `actornet.global_`)."""
    global _global
    _global = names


def global_names() -> GlobalNames:
    """The cluster-wide names, as `use_global` was given them."""
    if _global is None:
        raise ActornetError("('global', name) needs actornet.global_, which is not loaded")
    return _global


class Registry(NodeBase):
    """A node's registered names; `resolve` turns any destination into a pid."""

    def register(self, name: str, pid: Pid) -> bool:
        """Register `pid` (a live local process) as `name` on this node; True, as in Erlang.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     n.register("doc_me", n.current().pid)
            ...     n.whereis("doc_me") == n.current().pid
            True
            True
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"a registered name is a non-empty str, got {name!r}")
        if not isinstance(pid, Pid):
            raise TypeError(f"register needs a Pid, got {type(pid).__name__!r}")
        if not self.is_local(pid):
            raise ValueError(f"cannot register {pid!r}: it is not a process of {self.name}")
        with self.lock:
            proc = self.local_process(pid)
            if proc is None or not proc.alive:
                raise NoProc(f"cannot register {name!r}: process {pid!r} is not alive")
            holder = self._names.get(name)
            if holder is not None:
                raise AlreadyRegistered(f"name {name!r} is already registered to {holder.pid!r}")
            if proc.name is not None:
                raise AlreadyRegistered(f"process {pid!r} is already registered as {proc.name!r}")
            proc.name = name
            self._names[name] = proc
        return True

    def unregister(self, name: str) -> None:
        """Remove the registered name `name`; raises `NoProc` if not registered.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     _ = n.register("doc_me", n.current().pid)
            ...     n.unregister("doc_me")
            ...     n.registered()
            []
        """
        with self.lock:
            proc = self._names.pop(name, None)
            if proc is None:
                raise NoProc(f"no process is registered as {name!r} on {self.name}")
            proc.name = None

    def whereis(self, name: str) -> Pid | None:
        """The pid registered as `name` on this node, or None.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     n.whereis("nobody") is None
            True
        """
        proc = self._names.get(name)
        return proc.pid if proc is not None else None

    def registered(self) -> list[str]:
        """All locally registered names.

        Example:
            >>> import actornet
            >>> with actornet.Node("doc@localhost") as n:
            ...     _ = n.register("doc_me", n.current().pid)
            ...     n.registered()
            ['doc_me']
        """
        return sorted(self._names)

    def resolve(self, dest: Any) -> Pid | tuple[str, str]:
        """A pid for `dest`, or `(name, node)` for a remote name; raises NoProc."""
        if dest.__class__ is Pid:
            return dest
        if isinstance(dest, str):
            proc = self._names.get(dest)
            if proc is None:
                raise NoProc(f"no process is registered as {dest!r} on {self.name}")
            return proc.pid
        if isinstance(dest, tuple) and len(dest) == 2:
            name, node = dest
            if name == "global":
                pid = global_names().whereis_name(node)
                if pid is None:
                    raise NoProc(f"no process is globally registered as {node!r}")
                return pid
            if isinstance(name, str) and isinstance(node, str):
                return self.resolve(name) if node == self.name else (name, node)
        raise TypeError(
            f"{dest!r} is not a process: expected a Pid, a registered name, (name, node) "
            "or ('global', name)"
        )
