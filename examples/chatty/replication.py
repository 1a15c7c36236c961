"""The sequencer's replication: numbering events, and several rounds in flight.

`Replication` is mixed into the room server through `examples.chatty.sequencer`;
it holds the part of the sequencer that numbers events and hands them to the
replicas. It is written as an Erlang gen_server would be: the sequencer never
blocks on a replica. It numbers a publish at once (`_publish`) and answers it
later (``NOREPLY``, then `actornet.reply`), once every replica has it.

The protocol, plain messages between the room servers of one room::

    sequencer -> replica    ("replicate", sequencer, round, records, prev)
    replica -> sequencer    ("replicated", round, replica, answer)

`records` is a batch of ``(seq, eid, event)`` in sequence order, `prev` names the
record before it ``(seq, eid)``; `answer` is ``("ok", seq)`` once the replica has
applied the batch and fsynced it, ``("gap", seq)`` when it lacks records before
the batch (it applies nothing then), ``("diverged", seq)`` when its history parted
from ours before the batch, ``("error", why)`` for a malformed batch.

Up to `RoomConfig.window` rounds are in flight at once (`examples.chatty.window`).
What is numbered while the window is full waits, and goes out as one round when
a round leaves the window (group commit: one fsync and one message per replica
for the lot). A round is done once each replica it went to has answered, or is
given up (its process went down, or it did not answer within the call timeout);
rounds are acknowledged strictly in the order they were opened, so callers hear
"ok" in sequence order. Each replica applies rounds in order: messages from one
process to another arrive in the order sent, and a replica that finds records
missing before a batch (it joined late, a link dropped messages) answers ``gap``
and is sent what it lacks, up to the end of that round, before that round counts
as answered for it.

The rare paths that need every numbered event replicated before they go on (a
merge, a handover, a rebase) wait for the window to empty (`_commit`), in a
selective receive that takes only the replicas' answers, their DOWNs and the
rounds' timers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import actornet
from actornet import NOREPLY

from .history import Record, RoomState, new_eid
from .window import Round, Window

if TYPE_CHECKING:
    from .sequencer import RoomConfig

__all__ = ["Replication"]

log = logging.getLogger("chatty")

_REPAIRS = 3  # times a lagging replica is sent what it lacks for one round
Item = tuple[Record, list[tuple[actornet.Pid, str]], Any]  # record, members it removed, caller


class Replication:
    """Numbering and replicating, for a room server (`examples.chatty.room.Room`)."""

    # Set by the room server (see Room.init), or by its GenServer base.
    room: str
    config: RoomConfig
    state: RoomState
    synced: set[actornet.Pid]
    pending: list[Item]
    flush_queued: bool
    window: Window
    watched: dict[actornet.Pid, actornet.Ref]  # replicas we monitor, for the rounds
    diverged: set[actornet.Pid]
    draining: bool
    gen_pid: actornet.Pid

    # Elsewhere in the room server.
    def _apply(self, seq: int, eid: int, event: tuple[Any, ...],
               deliver: bool = True) -> list[tuple[actornet.Pid, str]]:
        raise NotImplementedError

    def _deliver(self, seq: int, eid: int, event: tuple[Any, ...],
                 gone: list[tuple[actornet.Pid, str]]) -> None:
        raise NotImplementedError

    def _sync_log(self) -> None:
        raise NotImplementedError

    def _followers(self) -> list[actornet.Pid]:
        raise NotImplementedError

    # -- numbering ---------------------------------------------------------------------

    def _publish(self, event: tuple[Any, ...], from_: Any = None) -> Any:
        """Number `event`; a caller (`from_`) is answered ``("ok", seq)`` once every replica
        has it (``NOREPLY`` now), an error at once if the room refuses it.

        The round goes out at the next flush, which runs after the publishes already
        waiting in the mailbox: they share one round (group commit)."""
        numbered, error = self.state.prepare(event, self.room)
        if numbered is None:
            return ("error", error)
        record = (self.state.seq + 1, new_eid(), numbered)
        gone = self._apply(*record, deliver=False)
        self.pending.append((record, gone, from_))
        if not self.flush_queued:
            self.flush_queued = True
            actornet.send(self.gen_pid, ("flush",))
        return NOREPLY

    def _flush(self) -> None:
        """Hand what was numbered since the last round to every replica, if the window has
        room (else it goes when a round is done)."""
        if not self.pending or self.window.full():
            return
        pending, self.pending = self.pending, []
        self._sync_log()  # on our disk before on anyone else's
        followers = self._followers()
        first, last = pending[0][0][0], pending[-1][0][0]
        round_ = self.window.open(pending, first, last, followers)
        batch = [record for record, _, _ in pending]
        prev = (first - 1, self.state.eid_at(first - 1))
        for pid in followers:
            if pid not in self.watched:
                self.watched[pid] = actornet.monitor(pid)
            actornet.send(pid, ("replicate", self.gen_pid, round_.number, batch, prev))
        if followers:
            actornet.send_after(self.config.call_timeout, self.gen_pid,
                                ("round_timeout", round_.number))
        self._release()

    # -- the replicas' answers ------------------------------------------------------------

    def _replicated(self, number: int, pid: actornet.Pid, answer: Any) -> None:
        """Replica `pid` answered round `number`."""
        round_ = self.window.get(number)
        if round_ is None or pid not in round_.waiting:
            return  # a round already done or given up: a late or repeated answer
        match answer:
            case ("ok", int()):
                pass
            case ("gap", int(since)) if self._repair(round_, pid, since):
                return  # it counts once it answers the repair
            case ("gap" | "diverged", int()):
                self.diverged.add(pid)  # rebased next, once the rounds in flight are done
            case _:
                log.warning("room %s: replica %r refused round %d: %.200r", self.room, pid,
                            number, answer)
                self.synced.discard(pid)
        self.window.answered(number, pid)
        self._release()

    def _repair(self, round_: Round, pid: actornet.Pid, since: int) -> bool:
        """Send `pid`, which has records up to `since`, those it lacks up to the end of
        `round_`; False if we no longer hold them (it is rebased instead)."""
        tries = round_.repairs.get(pid, 0)
        batch = [r for r in self.state.records if since < r[0] <= round_.last]
        if tries >= _REPAIRS or not batch or batch[0][0] != since + 1:
            return False
        round_.repairs[pid] = tries + 1
        actornet.send(pid, ("replicate", self.gen_pid, round_.number, batch,
                            (since, self.state.eid_at(since))))
        return True

    def _replica_down(self, pid: actornet.Pid) -> None:
        """A replica's process is gone: no round waits for it."""
        self.watched.pop(pid, None)
        self.synced.discard(pid)
        self.window.gone(pid)
        self._release()

    def _round_timeout(self, number: int) -> None:
        """Round `number` waited the call timeout: it no longer waits for the replicas that
        have not answered (as for a dead one; a hung replica is rebased when it is back)."""
        late = self.window.expire(number)
        if late:
            log.warning("room %s: round %d: no answer from %s within %.1f s; going on "
                        "without", self.room, number, sorted(map(str, late)),
                        self.config.call_timeout)
            self.synced.difference_update(late)
        self._release()

    def _release(self) -> None:
        """Show and acknowledge the rounds done, oldest first; then send the next round."""
        for round_ in self.window.done():
            for (seq, eid, event), gone, from_ in round_.items:
                # Shown here only now: had this node died before, a client of it could have
                # seen an event that no survivor has, and that a new sequencer renumbers.
                self._deliver(seq, eid, event, gone)
                if from_ is not None:
                    actornet.reply(from_, ("ok", seq))
        if self.diverged and not self.draining:  # a rare path: it waits for the window
            diverged, self.diverged = sorted(self.diverged), set()
            self._rebase_all(diverged)
        self._flush()

    def _is_round_news(self, msg: Any) -> bool:
        return isinstance(msg, tuple) and len(msg) > 1 and (
            msg[0] in ("replicated", "round_timeout")
            or (msg[0] == "DOWN" and len(msg) == 5 and self.watched.get(msg[3]) == msg[1]))

    def _round_news(self, msg: Any) -> None:
        """Act on a replica's answer, the DOWN of one we watch, or a round's timer (the
        room server's clauses for them, while it waits for the window)."""
        match msg:
            case ("replicated", int(number), actornet.Pid() as pid, answer):
                self._replicated(number, pid, answer)
            case ("round_timeout", int(number)):
                self._round_timeout(number)
            case ("DOWN", ref, _, actornet.Pid() as pid, _) if self.watched.get(pid) == ref:
                self._replica_down(pid)
            case _:
                log.warning("room %s: dropped a malformed answer %.200r", self.room, msg)

    # -- waiting for the window: merges, handovers, rebases -------------------------------

    def _drain(self) -> list[actornet.Pid]:
        """Replicate everything numbered, waiting here until every round is done; returns
        the replicas whose history differs (for the caller to rebase)."""
        self.draining = True
        try:
            self._flush()
            while not self.window.empty():
                try:
                    msg = actornet.receive(self._is_round_news,
                                           timeout=2 * self.config.call_timeout)
                except actornet.Timeout:  # the rounds' own timers should have come
                    for number in list(self.window.rounds):
                        self._round_timeout(number)
                    continue
                self._round_news(msg)
        finally:
            self.draining = False
        diverged, self.diverged = sorted(self.diverged), set()
        return diverged

    def _commit(self) -> None:
        """`_drain`, then rebase the replicas whose history turned out to differ."""
        diverged = self._drain()
        if diverged:
            self._rebase_all(diverged)

    def _take_in(self, records: list[Any]) -> list[actornet.Pid]:
        """Number, after ours, the events of `records` we lack, and replicate them; returns
        the replicas whose history differs."""
        diverged = self._drain()
        taken = 0
        for _, eid, event in records:
            if eid not in self.state.seq_of:
                record = (self.state.seq + 1, eid, tuple(event))
                self.pending.append((record, self._apply(*record, deliver=False), None))
                taken += 1
        if taken:
            log.warning("room %s: merged %d events from the other side of a split (now #%d)",
                        self.room, taken, self.state.seq)
        return diverged + self._drain()

    def _rebase_all(self, pids: list[actornet.Pid]) -> None:
        """Make the history of each replica in `pids` ours, first taking in what only it has."""
        pids = sorted(set(pids) | set(self._drain()))
        for _ in range(5):
            if not pids:
                return
            wire = self.state.to_wire()
            again: list[actornet.Pid] = []
            diverged: list[actornet.Pid] = []
            replies = actornet._gen.multi_call(pids, ("rebase", wire), self.config.call_timeout)
            for pid, (kind, value) in zip(pids, replies, strict=True):
                if kind == "reply" and value[0] == "extras":
                    diverged += self._take_in(value[1])
                    again.append(pid)
            pids = sorted(set(again) | set(diverged))
