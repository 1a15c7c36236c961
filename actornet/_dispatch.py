"""Ops from a peer, handed to the node's entry points (one clause per op, as Erlang's
``dist_util`` handles its control messages). Runs on the I/O thread; no I/O of its own.

The session (`_session`) has already checked each op's shape (`_wire.decode_op`) and taken
the ops that are the connection's own (TICK, GOODBYE, NODES); what is left is for the node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from actornet import _wire as w

if TYPE_CHECKING:
    from actornet._process import NodeApi

__all__ = ["dispatch"]


def dispatch(node: NodeApi, op: list[Any]) -> Sequence[str]:
    """Run one op on `node`; what was malformed in it (each part then dropped)."""
    match op:
        case [w.SEND, id_, creation, msg]:
            node.deliver(id_, creation, msg)
        case [w.SEND_MANY, targets, msg]:
            return _send_many(node, targets, msg)
        case [w.REG_SEND, _, name, msg]:
            node.deliver_name(name, msg)
        case [w.ALIAS, _, ref, msg]:
            node.deliver_alias(ref, msg)
        case [w.LINK, from_, to]:
            node.signal_link(to, from_)
        case [w.UNLINK, from_, to]:
            node.signal_unlink(to, from_)
        case [w.EXIT, from_, to, reason]:
            node.signal_exit(to, from_, reason, linked=True)
        case [w.EXIT2, from_, to, reason]:
            node.signal_exit(to, from_, reason, linked=False)
        case [w.MONITOR, watcher, target, ref]:
            node.signal_monitor(target, watcher, ref)
        case [w.DEMONITOR, _, target, ref]:
            node.signal_demonitor(target, ref)
        case [w.DOWN, watcher, ref, item, reason]:
            node.signal_down(watcher, ref, item, reason)
        case [w.SPAWN, *args]:
            node.spawn_request(*args)
        case [w.SPAWN_REPLY, *args]:
            node.spawn_reply(*args)
    return ()


def _send_many(node: NodeApi, targets: list[Any], msg: Any) -> list[str]:
    """Deliver `msg` to each local ``[id, creation]`` of `targets`, in their order (one op of
    `pg.broadcast`); a malformed target is skipped, and said."""
    deliver = node.deliver
    bad = []
    for target in targets:
        match target:
            case [int() as id_, int() as creation]:
                deliver(id_, creation, msg)
            case _:
                bad.append(f"a bad pid in a SEND_MANY: {w.shown(target, 60)}")
    return bad
