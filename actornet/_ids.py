"""Process identifiers and references: the names that travel between nodes.

A `Pid` names one process of one *incarnation* of one node. The incarnation
(``creation``) changes every time a node with a given name starts, so a pid of a
node that died never reaches a process of the node that replaced it.
"""

from __future__ import annotations

import itertools
from typing import Any, Final

__all__ = ["Pid", "Ref", "next_ref_id"]


class Pid:
    """A process identifier, as returned by `spawn` and `self`.

    Pids are immutable, hashable and comparable; they can be sent in messages,
    to the same node or across nodes.

    Example:
        >>> p = Pid("a@127.0.0.1", 42, 1)
        >>> p.node, p.id
        ('a@127.0.0.1', 42)
        >>> p == Pid("a@127.0.0.1", 42, 1)
        True
    """

    __slots__ = ("_hash", "creation", "id", "node")

    node: str
    id: int
    creation: int

    def __init__(self, node: str, id: int, creation: int = 0) -> None:  # noqa: A002
        # The slots' own setters: `__setattr__` refuses (immutable), and they are fast.
        _set_pid_node(self, node)
        _set_pid_id(self, id)
        _set_pid_creation(self, creation)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Pid is immutable")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Pid:
            return NotImplemented
        return (
            self.id == other.id
            and self.node == other.node
            and self.creation == other.creation
        )

    def __hash__(self) -> int:
        try:
            return self._hash  # type: ignore[attr-defined,no-any-return]
        except AttributeError:  # hashed on first use: most pids never are
            h = hash((self.node, self.id, self.creation, "pid"))
            _set_pid_hash(self, h)
            return h

    def __lt__(self, other: Pid) -> bool:
        return (self.node, self.creation, self.id) < (other.node, other.creation, other.id)

    def __repr__(self) -> str:
        return f"<{self.node}.{self.id}.{self.creation}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Pid, (self.node, self.id, self.creation))


class Ref:
    """A unique reference, as returned by `make_ref` and `monitor`.

    Example:
        >>> r = Ref("a@127.0.0.1", 7, 1)
        >>> r == Ref("a@127.0.0.1", 7, 1), r == Ref("a@127.0.0.1", 8, 1)
        (True, False)
    """

    __slots__ = ("_hash", "creation", "id", "node")

    node: str
    id: int
    creation: int

    def __init__(self, node: str, id: int, creation: int = 0) -> None:  # noqa: A002
        # The slots' own setters: `__setattr__` refuses (immutable), and they are fast.
        _set_ref_node(self, node)
        _set_ref_id(self, id)
        _set_ref_creation(self, creation)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Ref is immutable")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Ref:
            return NotImplemented
        return (
            self.id == other.id
            and self.node == other.node
            and self.creation == other.creation
        )

    def __hash__(self) -> int:
        try:
            return self._hash  # type: ignore[attr-defined,no-any-return]
        except AttributeError:
            h = hash((self.node, self.id, self.creation, "ref"))
            _set_ref_hash(self, h)
            return h

    def __repr__(self) -> str:
        return f"#Ref<{self.node}.{self.id}.{self.creation}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Ref, (self.node, self.id, self.creation))


_set_pid_node = Pid.node.__set__  # type: ignore[attr-defined,misc]
_set_pid_id = Pid.id.__set__  # type: ignore[attr-defined,misc]
_set_pid_creation = Pid.creation.__set__  # type: ignore[attr-defined,misc]
_set_pid_hash = Pid._hash.__set__  # type: ignore[attr-defined]
_set_ref_node = Ref.node.__set__  # type: ignore[attr-defined,misc]
_set_ref_id = Ref.id.__set__  # type: ignore[attr-defined,misc]
_set_ref_creation = Ref.creation.__set__  # type: ignore[attr-defined,misc]
_set_ref_hash = Ref._hash.__set__  # type: ignore[attr-defined]

# One counter per interpreter for refs: refs only need to be unique per node
# incarnation, and a shared counter keeps several in-process nodes simple.
_ref_ids: Final = itertools.count(1)


def next_ref_id() -> int:
    """A number no other reference made in this OS process has."""
    return next(_ref_ids)
