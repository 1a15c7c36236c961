"""Aliases: where the replies of a node's pending calls land (OTP 24's process aliases).

A request files a slot (`actornet._callslot`) under a fresh ref; the reply to
that ref, or the DOWN of the monitor filed under it, pops the slot and sets it.
Anything later finds no slot and is dropped: a reply after a timeout never
reaches a mailbox.
"""

from __future__ import annotations

from typing import Any, TypeVar

from actornet._callslot import REPLY, TaskSlot, ThreadSlot
from actornet._ids import Pid, Ref
from actornet._signals import Signals
from actornet._terms import check_term

__all__ = ["Aliases"]

_Slot = TypeVar("_Slot", ThreadSlot, TaskSlot)


class Aliases(Signals):
    """The alias table of a node, and `reply`."""

    def new_alias(self, slot: _Slot) -> tuple[Ref, _Slot]:
        """File `slot` under a new ref (see `actornet._callslot`)."""
        ref = self.make_ref()
        self._aliases[ref] = slot
        return ref, slot

    def deliver_alias(self, ref: Ref, value: Any) -> None:
        """A reply for the pending call `ref` (transport entry); late ones are dropped."""
        slot = self._aliases.pop(ref, None)
        if slot is not None:
            # The call's monitor is over: a DOWN racing this reply is dropped.
            if slot.watcher is not None:
                slot.watcher.pop_monitor(ref)
            slot.set(REPLY, value)

    def drop_alias(self, ref: Ref) -> bool:
        """Forget the slot filed under `ref` (a call that gave up); True if it was there."""
        return self._aliases.pop(ref, None) is not None

    def reply(self, from_: tuple[Pid, Ref], value: Any) -> None:
        """Answer a call whose `from_` a server got in `handle_call`.

        Example:
            >>> import actornet
            >>> class Later(actornet.GenServer):
            ...     def handle_call(self, request, from_):
            ...         self.gen_node.reply(from_, "later")
            ...         return actornet.NOREPLY
            >>> pid = Later.start()
            >>> actornet.call(pid, "now?")
            'later'
            >>> actornet.GenServer.stop(pid)
        """
        pid, ref = from_
        if pid.node == self.name:
            check_term(value)
            self.deliver_alias(ref, value)
        else:
            check_term(value)
            self.transport().alias_send(pid, ref, value)
