"""The sequencer's half of a room server: the election, and numbering, replicating, merging.

`Sequencer` is mixed into `examples.chatty.room.Room` (which holds the replica's half:
applying records, delivering them, answering requests); it is kept apart only to
be read in one sitting. Its rules are in the docstring of `examples.chatty.room`.

A room's replicas elect their sequencer through the global name
``("chatty.room", room)``: whoever registers it (`Sequencer._claim`) collects every
replica's state, keeps the most advanced, and hands it to the others (``rebase``).
It numbers each event and answers it once every replica has it, with several
rounds in flight (`examples.chatty.replication`): acknowledged means replicated. A replica
that is not the sequencer passes publishes on (`_forward`), holds them while no
sequencer is known (`_hold`), and answers those passed on when the sequencer
goes ("may have been delivered", `_sequencer_gone`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import actornet
from actornet import NOREPLY, global_, pg

from . import liveness
from .history import RoomState
from .replication import Item, Replication
from .window import Window

__all__ = ["RoomConfig", "Sequencer", "group", "leader_name", "local_name"]

log = logging.getLogger("chatty")

_FORWARDED_KEPT = 10_000  # publishes remembered as passed on (a bound, far above a round)


@dataclass(frozen=True)
class RoomConfig:
    """What every room server of a node is started with."""

    history_on_join: int = 50  # messages a joiner gets
    grace: float = 10.0  # seconds a member whose node went down has to resume elsewhere
    tick_time: float = 4.0  # the node's failure detection: how long a peer may be silent
    max_rooms: int = 1000  # room servers this node runs at most
    window: int = 8  # replication rounds a sequencer has in flight at most

    @property
    def call_timeout(self) -> float:
        """How long a room server waits for another: a little over the failure detection,
        so a hung replica holds a room up about as long as a dead one."""
        return max(2.0, 1.5 * self.tick_time)


def group(room: str) -> tuple[str, str]:
    return ("chatty.room", room)


def leader_name(room: str) -> tuple[str, str]:
    return ("chatty.room", room)


def local_name(room: str) -> str:
    return f"chatty.room:{room}"


class Sequencer(Replication):
    """Election and sequencing, for a room server (`examples.chatty.room.Room`)."""

    # Set by the room server (see Room.init), or by its GenServer base.
    room: str
    config: RoomConfig
    state: RoomState
    leader: actornet.Pid | None
    leader_ref: actornet.Ref | None
    synced: set[actornet.Pid]
    pending: list[Item]
    window: Window
    flush_queued: bool
    held: list[tuple[tuple[Any, ...], Any, float]]
    forwarded: deque[tuple[str, Any, float]]
    expiring: set[str]
    seen_down: set[str]
    unnamed: int
    check_ref: actornet.Ref
    gen_pid: actornet.Pid

    # The replica's half, in the room server.
    def _adopt(self, theirs: RoomState) -> None:
        raise NotImplementedError

    # -- sequencer election ----------------------------------------------------------

    def _elect(self) -> None:
        """Follow (and catch up with) the sequencer, or become it if there is none.

        A new replica waits a while for a takeover under way (replicas exist but
        nobody holds the name) rather than sequence from what may be nothing; it
        never gives up: if nothing settles, it starts following nobody, and the
        periodic check settles it.
        """
        patience = time.monotonic() + 2 * self.config.tick_time
        deadline = patience + 2 * self.config.tick_time
        while time.monotonic() < deadline:
            leader = global_.whereis_name(leader_name(self.room))
            if leader is None:
                if not pg.get_members(group(self.room)) or time.monotonic() > patience:
                    if self._claim():
                        return
                    continue
            elif leader == self.gen_pid or self._sync_from(leader):
                self._follow(leader)
                return
            time.sleep(0.05)  # a takeover under way, or that sequencer just died
        log.warning("room %s: no sequencer settled within %.0f s; the periodic check will "
                    "find one", self.room, 4 * self.config.tick_time)

    def _sync_from(self, leader: actornet.Pid) -> bool:
        """Give `leader` the events only we have, then take its history; False if it went."""
        timeout = self.config.call_timeout
        try:
            # What only we have (we came back from the other side of a split, or
            # from a crash) goes to the sequencer before we take its history.
            theirs = RoomState.from_wire(actornet.call(leader, ("state",), timeout=timeout))
            extras = self.state.unknown_to(theirs)
            if extras:
                actornet.call(leader, ("merge", extras), timeout=timeout)
            self._adopt(RoomState.from_wire(actornet.call(leader, ("sync",), timeout=timeout)))
        except (actornet.NoProc, actornet.NodeDown, actornet.CallError, TimeoutError):
            return False
        return True

    def _claim(self) -> bool:
        """Take the global name and sequence, starting from the most advanced replica.

        The other replicas are idle at that moment (they wait for a sequencer), so
        collecting their states cannot deadlock. The members of every home get the
        grace period: whoever the last sequencer was, we do not know which of them
        are still there.
        """
        if global_.register_name(leader_name(self.room), self.gen_pid) != "yes":
            return False
        self._follow(self.gen_pid)
        others = self._followers()
        best = self.state
        for kind, value in actornet._gen.multi_call(others, ("state",),
                                                    self.config.call_timeout):
            if kind == "reply" and isinstance(value, dict) and value.get("seq", 0) > best.seq:
                best = RoomState.from_wire(value)
        if best is not self.state:
            self._adopt(best)
        self._rebase_all(others)
        for home in {h for _, h in self.state.members.values()}:
            self._grace_for(home)
        log.warning("room %s: %r sequences from #%d", self.room, self.gen_pid, self.state.seq)
        self._release_held()
        return True

    def _take_over(self) -> None:
        """No sequencer (it died, or the name is free): claim it, or follow whoever won."""
        if self._claim():
            return
        leader = global_.whereis_name(leader_name(self.room))
        if leader is not None and leader != self.gen_pid:
            self._follow(leader)  # it rebases us soon; watch it meanwhile
        else:  # the name was freed again meanwhile: try once more shortly
            actornet.send_after(0.2, self.gen_pid, ("elect",))

    def _lost_name(self) -> None:
        """A healed partition had two sequencers; global_ kept the other one."""
        log.warning("room %s: %r is no longer the sequencer (a partition healed); "
                    "handing over to the one kept", self.room, self.gen_pid)
        self._commit()  # what we numbered goes to our side first, then to the winner
        followers = self._followers()
        self.leader = None
        self._rejoin(followers, 50)

    def _rejoin(self, followers: list[actornet.Pid], tries: int) -> None:
        winner = global_.whereis_name(leader_name(self.room))
        if winner is not None and winner != self.gen_pid:
            self._follow(winner)
            # it takes in what only our side has, and rebases us and our followers
            actornet.send(winner, ("rejoin", [self.gen_pid, *followers]))
        elif tries > 0:
            actornet.send_after(0.1, self.gen_pid, ("find_winner", followers, tries - 1))
        else:
            self._take_over()

    def _follow(self, leader: actornet.Pid) -> None:
        """Follow `leader` (ourselves: sequence); publishes held meanwhile go to another
        leader at once, while a claim releases them once it has the best state."""
        if leader != self.leader or (self.leader_ref is None and leader != self.gen_pid):
            if self.leader_ref is not None:
                actornet.demonitor(self.leader_ref)
            self.leader = leader
            self.leader_ref = None if leader == self.gen_pid else actornet.monitor(leader)
        if leader != self.gen_pid:
            self._release_held()

    def _arm_check(self) -> None:
        self.check_ref = actornet.make_ref()
        actornet.send_after(self.config.tick_time, self.gen_pid, ("check", self.check_ref))

    def _check(self) -> None:
        """Once a tick: mend any difference between whom we follow and the global name."""
        holder = global_.whereis_name(leader_name(self.room))
        me = self.gen_pid
        if holder is not None:
            self.unnamed = 0
        if self.leader == me:
            if holder is None:  # our registration was lost (a merge of tables): take it back
                if global_.register_name(leader_name(self.room), me) != "yes":
                    self._lost_name()
            elif holder != me:  # the cluster says another sequences: hand over to it
                self._lost_name()
        elif holder is None:
            self.unnamed += 1
            if self.leader is None or self.unnamed > 1:  # not a conflict being settled
                self._take_over()
        elif holder != self.leader:
            log.warning("room %s: following %r, which the cluster names as sequencer "
                        "(was %r)", self.room, holder, self.leader)
            self._follow(holder)
            actornet.send(holder, ("rejoin", [me]))
        self._expire_held()

    def _followers(self) -> list[actornet.Pid]:
        listed = set(pg.get_members(group(self.room)))
        self.synced -= listed  # pg knows those now
        return sorted(p for p in listed | self.synced if p != self.gen_pid)

    # -- publishes passed on, and those waiting for a sequencer ------------------------

    def _forward(self, event: tuple[Any, ...], from_: Any) -> None:
        """Pass a client's publish to the sequencer, which answers it; remember it until
        the sequencer could have, to say "may have gone through" if the sequencer goes."""
        assert self.leader is not None
        now = time.monotonic()
        keep = 4 * self.config.call_timeout  # it answers well within this, or is down
        while self.forwarded and (now - self.forwarded[0][2] > keep
                                  or len(self.forwarded) > _FORWARDED_KEPT):
            self.forwarded.popleft()
        self.forwarded.append((str(event[0]), from_, now))
        actornet.send(self.leader, ("$gen_call", from_, ("forwarded", event)))

    def _sequencer_gone(self, why: str) -> None:
        """The sequencer we passed publishes to is gone: their callers hear that each may
        or may not have been done (an answer already given makes this one dropped)."""
        forwarded, self.forwarded = self.forwarded, deque()
        for kind, from_, _ in forwarded:
            if kind == "msg":
                text = (f"your message to {self.room} may have been delivered: the room's "
                        f"sequencer {why} before confirming it (it is not sent again)")
            else:
                text = (f"/{kind} in {self.room} may or may not have been done: the room's "
                        f"sequencer {why} before confirming it")
            actornet.reply(from_, ("error", text))

    def _hold(self, event: tuple[Any, ...], from_: Any) -> None:
        wait = 2 * self.config.tick_time + 1.0
        self.held.append((event, from_, time.monotonic() + wait))
        actornet.send_after(0.05, self.gen_pid, ("held",))

    def _release_held(self) -> None:
        """A sequencer is known again: pass on what waited for one."""
        if self.leader is None or not self.held:
            return
        held, self.held = self.held, []
        for event, from_, _ in held:
            if self.leader == self.gen_pid:
                answer = self._publish(event, from_)
                if answer is not NOREPLY:
                    actornet.reply(from_, answer)
            else:
                self._forward(event, from_)

    def _expire_held(self) -> None:
        now = time.monotonic()
        for event, from_, until in [h for h in self.held if h[2] <= now]:
            self.held.remove((event, from_, until))
            actornet.reply(from_, ("error", f"room {self.room} has no sequencer right now "
                                            "(an election is under way); retry"))
        if self.held:
            actornet.send_after(0.05, self.gen_pid, ("held",))

    # -- members whose node went down ------------------------------------------------------

    def _grace_for(self, home: str) -> None:
        """Members who joined through `home` have a while to come back elsewhere."""
        if home not in self.expiring:
            self.expiring.add(home)
            actornet.send_after(self.config.grace, self.gen_pid, ("expire", home))

    def _expire(self, home: str) -> None:
        """The grace period of the members of `home` is over: are they really gone?"""
        self.expiring.discard(home)
        pids = [p for p, (_, h) in self.state.members.items() if h == home]
        if self.leader == self.gen_pid and pids:
            liveness.spawn_check(self.gen_pid, ("verdict", home, pids), liveness.gone_members,
                                 home, pids, self.config.call_timeout)

    def _verdict(self, home: str, pids: list[actornet.Pid],
                 verdict: tuple[set[actornet.Pid], set[actornet.Pid]] | None) -> None:
        if self.leader != self.gen_pid:
            return  # the sequencer now is another, which runs its own grace periods
        gone, unknown = verdict if verdict is not None else (set(), set(pids))
        for pid in pids:
            entry = self.state.members.get(pid)
            if entry is None or entry[1] != home:
                continue  # it left, or resumed elsewhere, meanwhile
            if pid in gone:
                self._publish(("gone", entry[0], pid, home))
            elif pid not in unknown and home in self.seen_down:  # said when in question
                print(f"[#{self.room}] {entry[0]} stays: still connected", flush=True)
        if not unknown & set(self.state.members):
            self.seen_down.discard(home)  # settled
        if unknown & set(self.state.members):
            print(f"[#{self.room}] keeping {len(unknown)} member(s) of {home}: their clients "
                  "cannot be reached to confirm they are gone; asking again later", flush=True)
            self._grace_for(home)
