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
    from actornet.node import Node

__all__ = ["dispatch"]


def dispatch(node: Node, op: list[Any]) -> Sequence[str]:
    """Run one op on `node`; what was malformed in it (each part then dropped)."""
    match op:
        case [w.SEND, id_, creation, msg]:
            proc = node._procs.get(id_)
            if proc is not None and proc.pid.creation == creation:
                proc.mailbox.put(msg)
        case [w.SEND_MANY, targets, msg]:
            return _send_many(node, targets, msg)
        case [w.REG_SEND, _, name, msg]:
            node._deliver_name(name, msg)
        case [w.ALIAS, _, ref, msg]:
            node._deliver_alias(ref, msg)
        case [w.LINK, from_, to]:
            node._signal_link(to, from_)
        case [w.UNLINK, from_, to]:
            node._signal_unlink(to, from_)
        case [w.EXIT, from_, to, reason]:
            node._signal_exit(to, from_, reason, linked=True)
        case [w.EXIT2, from_, to, reason]:
            node._signal_exit(to, from_, reason, linked=False)
        case [w.MONITOR, watcher, target, ref]:
            node._signal_monitor(target, watcher, ref)
        case [w.DEMONITOR, _, target, ref]:
            node._signal_demonitor(target, ref)
        case [w.DOWN, watcher, ref, item, reason]:
            node._signal_down(watcher, ref, item, reason)
        case [w.SPAWN, *args]:
            node._spawn_request(*args)
        case [w.SPAWN_REPLY, *args]:
            node._spawn_reply(*args)
    return ()


def _send_many(node: Node, targets: list[Any], msg: Any) -> list[str]:
    """Deliver `msg` to each local ``[id, creation]`` of `targets`, in their order (one op of
    `pg.broadcast`); a malformed target is skipped, and said."""
    procs = node._procs
    bad = []
    for target in targets:
        match target:
            case [int() as id_, int() as creation]:
                proc = procs.get(id_)
                if proc is not None and proc.pid.creation == creation:
                    proc.mailbox.put(msg)
            case _:
                bad.append(f"a bad pid in a SEND_MANY: {w.shown(target, 60)}")
    return bad
