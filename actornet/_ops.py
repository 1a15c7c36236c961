"""What a node sends to another node, as ops: one method per control message of the
distribution protocol (Erlang's ``SEND``, ``REG_SEND``, ``LINK``, ``EXIT``, ``MONITOR``,
``SPAWN_REQUEST``, ...; the list is in `_wire`).

Runs in the caller's thread: each op is encoded here, so an unsendable value raises
`TypeError` (and one over the limit `PayloadTooLarge`) at the send itself, then queued for
the I/O thread with its peer (`_sendqueue`, which also makes a sender to a busy peer wait).
`Transport` is an `Ops`: the node calls these methods on it.
"""

from __future__ import annotations

from actornet import _wire as w
from actornet._ids import Pid, Ref
from actornet._peers import Peers
from actornet._sendqueue import SendQueue

__all__ = ["NoConnect", "Ops"]


class NoConnect(bytes):
    """An encoded op sent noconnect: dropped, not connected for, if its peer is down."""

    __slots__ = ()


class Ops:
    """Builds the ops a node sends and queues them for their peer.

    Args:
        peers: the node's peers (one is made for a node not seen before).
        sendq: the outbox to the I/O thread.
        max_message_size: the largest op this node sends, encoded.
    """

    def __init__(self, peers: Peers, sendq: SendQueue, max_message_size: int) -> None:
        self.peers = peers
        self.sendq = sendq
        self.max_message_size = max_message_size

    def _enqueue(self, node: str, op: list[object], connect: bool = True,
                 address: bool = False) -> None:
        """Queue `op` for `node`: a node name (a pid's), or with `address` one a caller gave
        (``name@host:port`` too). `ValueError` if it is neither."""
        peer = self.peers.by_name.get(node)  # the common case: a plain name we know
        if peer is None:
            # A pid's node is a name: one with a port (a peer may send any) is not dialled.
            peer = self.peers.at(node)[0] if address else self.peers.peer(node)
        data = w.encode_op(op, self.max_message_size)
        if not connect:
            if peer.idle:
                return  # noconnect: no connection is made for it (one being made is used)
            data = NoConnect(data)  # checked again when drained: the link may go meanwhile
        self.sendq.put(peer, data)

    def send(self, pid: Pid, msg: object, connect: bool = True) -> None:
        self._enqueue(pid.node, [w.SEND, pid.id, pid.creation, msg], connect)

    def send_many(self, node: str, pids: list[Pid], msg: object) -> None:
        """Send `msg` to each of `pids` (all of `node`) as one op: one copy of `msg` on the
        wire, delivered on arrival in the order of `pids` (`pg.broadcast`)."""
        self._enqueue(node, [w.SEND_MANY, [[p.id, p.creation] for p in pids], msg])

    def send_name(self, from_: Pid, name: str, node: str, msg: object,
                  connect: bool = True) -> None:
        self._enqueue(node, [w.REG_SEND, from_, name, msg], connect, address=True)

    def link(self, from_: Pid, to: Pid) -> None:
        self._enqueue(to.node, [w.LINK, from_, to])

    def unlink(self, from_: Pid, to: Pid) -> None:
        self._enqueue(to.node, [w.UNLINK, from_, to])

    def exit(self, from_: Pid, to: Pid, reason: object, *, linked: bool) -> None:
        self._enqueue(to.node, [w.EXIT if linked else w.EXIT2, from_, to, reason])

    def monitor(self, watcher: Pid, target: Pid | tuple[str, str], ref: Ref) -> None:
        node, what = _target(target)
        self._enqueue(node, [w.MONITOR, watcher, what, ref], address=not isinstance(target, Pid))

    def demonitor(self, watcher: Pid, target: Pid | tuple[str, str], ref: Ref) -> None:
        node, what = _target(target)
        if isinstance(what, str) and what.startswith("$"):
            return  # the monitor of a pending remote spawn: nothing to undo remotely
        self._enqueue(node, [w.DEMONITOR, watcher, what, ref],
                      address=not isinstance(target, Pid))

    def down(self, watcher: Pid, ref: Ref, item: object, reason: object) -> None:
        self._enqueue(watcher.node, [w.DOWN, watcher, ref, item, reason])

    def alias_send(self, to: Pid, ref: Ref, msg: object) -> None:
        self._enqueue(to.node, [w.ALIAS, to, ref, msg])

    def spawn_request(self, node: str, requester: Pid, ref: Ref, module: str, qualname: str,
                      args: tuple[object, ...], flags: int) -> None:
        self._enqueue(node, [w.SPAWN, requester, ref, module, qualname, args, flags],
                      address=True)

    def spawn_reply(self, requester: Pid, ref: Ref, result: object, flags: int) -> None:
        self._enqueue(requester.node, [w.SPAWN_REPLY, requester, ref, result, flags])


def _target(target: Pid | tuple[str, str]) -> tuple[str, Pid | str]:
    """The node a monitor's `target` is on, and what it monitors there (a pid or a name)."""
    if isinstance(target, Pid):
        return target.node, target
    name, node = target
    return node, name
