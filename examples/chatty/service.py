"""The chat service on one node: a supervised `ChatServer` and the room servers.

Process tree of a chat node (``python -m examples.chatty node``)::

    chatty.sup (Supervisor, one_for_one)
    ├── chatty.rooms  Supervisor of Room servers, one per room used here
    ├── chatty.peers  Peers: remembers the other chat nodes, reconnects to them
    └── chatty        ChatServer: clients of this node, nicknames, commands

Nicknames are unique in the cluster: a client's process is registered under the
global name ``("chatty.nick", nick)``. Chat servers join the pg group
``"chatty.servers"`` so any node can list the others. A request is checked
field by field (`examples.chatty.requests`); a room command then goes to this
node's replica of the room, which passes it to the room's sequencer (see
`examples.chatty.room`); the sequencer answers the client itself once the
room's replicas have the event.

The chat server never waits on another node in its own loop: what could
(starting a room's replica, resuming a client, checking that a client whose
node went silent is really gone) runs in a helper process that answers the
client itself.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import actornet
from actornet import NOREPLY, GenServer, Supervisor, child_spec, global_, pg

from . import liveness, requests
from . import room as rooms
from .history import SAME_USER
from .requests import MAX_TEXT, NICK, last_seen_problem, text_problem

__all__ = ["ChatServer", "MAX_ROOMS_PER_USER", "MAX_TEXT", "NICK", "SERVERS", "last_seen_problem",
           "nick_name", "start", "text_problem"]

log = logging.getLogger("chatty")

SERVERS = "chatty.servers"
MAX_ROOMS_PER_USER = 50  # rooms one user may be in through one chat node


def nick_name(nick: str) -> tuple[str, str]:
    """The global name a client's process is registered under: its nickname, cluster-wide.

    Example:
        >>> nick_name("ann")
        ('chatty.nick', 'ann')
    """
    return ("chatty.nick", nick)


def _say(line: str) -> None:
    print(line, flush=True)


class ChatServer(GenServer):
    """Serves the clients connected to this node."""

    def init(self, config: rooms.RoomConfig | None = None,
             max_rooms_per_user: int = MAX_ROOMS_PER_USER) -> None:
        actornet.trap_exit(True)
        self.config = config or rooms.RoomConfig()
        self.max_rooms_per_user = max_rooms_per_user
        self.clients: dict[str, tuple[actornet.Pid, actornet.Ref]] = {}
        # the rooms each client is in here, as this node's room replicas report them
        self.rooms_of: dict[actornet.Pid, set[str]] = {}
        # joins passed on and not reported yet: pid -> {room: when}
        self.joining: dict[actornet.Pid, dict[str, float]] = {}
        # clients whose node went silent, being checked: pid -> nick
        self.suspects: dict[actornet.Pid, str] = {}
        for room in rooms.local_rooms():  # after a restart of this server: who is where
            actornet.send(rooms.local_name(room), ("tell_members", self.gen_pid))
        pg.join(SERVERS, self.gen_pid)

    # -- helpers ------------------------------------------------------------------------

    def _nick_of(self, pid: actornet.Pid) -> str | None:
        return next((n for n, (p, _) in self.clients.items() if p == pid), None)

    def _rooms_of(self, pid: actornet.Pid) -> list[str]:
        return sorted(self.rooms_of.get(pid, ()))

    def _room_count(self, pid: actornet.Pid) -> int:
        now = time.monotonic()
        joining = self.joining.get(pid, {})
        for room in [r for r, t in joining.items() if now - t > 4 * self.config.call_timeout]:
            del joining[room]  # never reported: that join failed
        return len(self.rooms_of.get(pid, set()) | set(joining))

    def _to_room(self, room: str, event: tuple[Any, ...], from_: Any) -> Any:
        """Hand the client's call to this node's replica of `room`, which passes it to
        the sequencer (or holds it during an election); the sequencer answers it."""
        local = actornet.whereis(rooms.local_name(room))
        if local is not None:
            actornet.send(local, ("$gen_call", from_, ("publish", event)))
            return NOREPLY
        if event[0] != "join" and global_.whereis_name(rooms.leader_name(room)) is None:
            return ("error", f"no room named {room}")  # only /join creates a room
        if len(rooms.local_rooms()) >= self.config.max_rooms:
            return ("error", f"this chat node already serves {self.config.max_rooms} rooms, "
                             "its limit: join this room through another chat node")
        # Starting a replica syncs it from the sequencer: done aside, not in this loop.
        actornet.spawn(_start_and_publish, room, self.config, event, from_)
        return NOREPLY

    def _room_info(self, room: str) -> dict[str, Any] | None:
        target = (actornet.whereis(rooms.local_name(room))
                  or global_.whereis_name(rooms.leader_name(room)))
        if target is None:
            return None
        try:
            info = actornet.call(target, ("info",), timeout=self.config.call_timeout)
        except (actornet.NoProc, actornet.NodeDown, actornet.CallError, TimeoutError):
            return None
        return info if isinstance(info, dict) else None

    # -- requests from clients ------------------------------------------------------------

    def handle_call(self, request: Any, from_: Any) -> Any:
        match request:
            case ("serves", list(pids)):  # from a room's sequencer: is a member still here?
                mine = {p for p, _ in self.clients.values()}
                return [p for p in pids if isinstance(p, actornet.Pid) and p in mine]
        why = requests.problem(request)
        if why is not None:
            return ("error", why)
        caller = from_[0]
        match request:
            case ("connect", nick):
                return self._connect(nick, caller)
            case ("resume", nick, last_seen):
                return self._resume(nick, [tuple(e) for e in last_seen], caller, from_)
            case ("resume_session", nick, last_seen):  # a new process of the same user
                return self._resume(nick, [tuple(e) for e in last_seen], caller, from_, True)
        nick = self._nick_of(caller)
        if nick is None:
            return ("error", "not connected: connect with a nickname first")
        here = self.gen_node.name
        match request:
            case ("join", room):
                if self._room_count(caller) >= self.max_rooms_per_user and \
                        room not in self.rooms_of.get(caller, ()):
                    return ("error", f"you are in {self.max_rooms_per_user} rooms, the most "
                                     "one user may be in: /leave one first")
                self.joining.setdefault(caller, {})[room] = time.monotonic()
                return self._to_room(room, ("join", nick, caller, here), from_)
            case ("leave", room):
                return self._to_room(room, ("leave", nick, caller), from_)
            case ("say", room, text):
                return self._to_room(room, ("msg", nick, text, time.time()), from_)
            case ("kick", room, target):
                return self._to_room(room, ("kick", target, nick, caller), from_)
            case (("like" | "unlike") as op, room, msg_id):
                return self._to_room(room, (op, msg_id, nick), from_)
            case ("history", room, n):
                return self._history(room, n)
            case ("who", room):
                info = self._room_info(room)
                if info is None:
                    return ("error", f"no room named {room}")
                return ("who", room, info["members"], info["owner"])
            case ("rooms",):
                return ("rooms", self._rooms())
            case ("servers",):
                return ("servers", sorted({p.node for p in pg.get_members(SERVERS)}))
            case ("dm", target, text):
                pid = global_.whereis_name(nick_name(target))
                if pid is None:
                    return ("error", f"no user named {target}")
                actornet.send(pid, ("dm", nick, text))
                return ("ok", f"sent to {target}")
            case ("nick", new):
                return self._rename(nick, new, caller, from_)
            case ("nick_conflict",):
                return self._lost_nick(nick, caller, from_)
            case ("quit",):
                entry = self.clients.pop(nick)
                actornet.demonitor(entry[1])
                actornet.spawn(_leave_all, nick, caller, self._rooms_of(caller), "quit",
                               self.config, from_)
                self._forget(caller)
                return NOREPLY
            case ("detach",):  # the client resumed through another node on purpose
                entry = self.clients.pop(nick)
                actornet.demonitor(entry[1])
                self._forget(caller)
                _say(f"[EXIT] {nick} (moved to another chat node)")
                return ("ok", "detached")
        return ("error", f"unknown request {request[0]!r}")

    def _history(self, room: str, n: int) -> Any:
        target = (actornet.whereis(rooms.local_name(room))
                  or global_.whereis_name(rooms.leader_name(room)))
        if target is None:
            return ("error", f"no room named {room}")
        try:
            return ("history", room, actornet.call(target, ("history", n),
                                                   timeout=self.config.call_timeout))
        except (actornet.NoProc, actornet.NodeDown, actornet.CallError, TimeoutError):
            return ("error", f"the history of room {room} is not available right now; retry")

    def _connect(self, nick: str, pid: actornet.Pid) -> Any:
        if self._nick_of(pid) is not None:
            return ("error", f"already connected as {self._nick_of(pid)}")
        if global_.register_name(nick_name(nick), pid) != "yes":
            return ("error", f"nickname {nick} is taken")
        self.clients[nick] = (pid, actornet.monitor(pid))
        _say(f"[JOIN] {nick} ({pid.node})")
        return ("ok", self.gen_node.name)

    def _resume(self, nick: str, last_seen: list[tuple[str, int]], pid: actornet.Pid,
                from_: Any, same_user: bool = False) -> Any:
        """A client whose chat node died carries on here, keeping its nick and rooms.

        It is answered ok only once every room has its ``move`` (or, if its place
        there ran out, its join again) in the room's history; else it is told which
        room could not be resumed, and tries again.
        """
        if len(last_seen) > self.max_rooms_per_user:
            return ("error", f"resume: {len(last_seen)} rooms, more than the "
                             f"{self.max_rooms_per_user} one user may be in")
        holder = global_.whereis_name(nick_name(nick))
        if holder is None:
            if global_.register_name(nick_name(nick), pid) != "yes":
                return ("error", f"nickname {nick} is taken")
        elif holder != pid:
            return ("error", f"nickname {nick} is taken")
        other = self._nick_of(pid)
        if other is not None:  # resuming here again (this server restarted, or /connect)
            actornet.demonitor(self.clients.pop(other)[1])
        self.clients[nick] = (pid, actornet.monitor(pid))
        self.suspects.pop(pid, None)
        actornet.spawn(_resume_rooms, nick, pid, last_seen, self.gen_node.name, self.config,
                       self.gen_pid, from_, same_user)
        return NOREPLY

    def _rename(self, old: str, new: str, pid: actornet.Pid, from_: Any,
                answer: Any = None, free_old: bool = True) -> Any:
        """Take `new` for `pid`, free `old` (with `free_old`); the rename is published in
        each of its rooms before the client is answered (`answer`), so what it says next
        comes after."""
        if new == old:
            return ("error", f"you are {old} already")
        if global_.register_name(nick_name(new), pid) != "yes":
            return ("error", f"nickname {new} is taken")
        if free_old and global_.whereis_name(nick_name(old)) == pid:  # else another user's
            global_.unregister_name(nick_name(old))
        self.clients[new] = self.clients.pop(old)
        _say(f"[NICK] {old} is now {new}")
        actornet.spawn(_publish_all, self._rooms_of(pid), ("rename", old, new, pid),
                       self.config, from_, answer or ("ok", f"you are now {new}"))
        return NOREPLY

    def _lost_nick(self, nick: str, pid: actornet.Pid, from_: Any) -> Any:
        """Two users took `nick` on the two sides of a partition; global_ kept the other.

        This one is renamed to the first free ``nick-2``, ``nick-3``...; the rule
        that picks who keeps the name is global_'s: the client whose node name
        sorts first (see docs/chatty-design.md).

        The client's exit signal is global_'s decision, and this node's table may not
        have it yet: the decider tells the loser and the nodes separately (this node
        perhaps only once it connects to the decider, after the heal), so the table
        here may still give `nick` to this client. The old name is left to global_,
        which gives it to the other user on every node: unregistering it here would
        take it from that user on every node that has the decision already.
        """
        for n in range(2, 1000):
            suffix = f"-{n}"
            new = nick[: 20 - len(suffix)] + suffix
            if global_.whereis_name(nick_name(new)) is not None:
                continue
            why = (f"{nick} was also taken on the other side of a network partition that "
                   "has healed")
            if self._rename(nick, new, pid, from_, ("renamed", new, why),
                            free_old=False) is NOREPLY:
                _say(f"[NICK] {nick} was taken on both sides of a partition: "
                     f"{pid} is now {new}")
                return NOREPLY
        return ("error", f"no free nickname like {nick}")

    def _rooms(self) -> list[tuple[str, list[str]]]:
        out = []
        for name in global_.registered_names():
            if isinstance(name, tuple) and len(name) == 2 and name[0] == "chatty.room":
                info = self._room_info(name[1])
                if info is not None:
                    out.append((name[1], info["members"]))
        return sorted(out)

    def _forget(self, pid: actornet.Pid) -> None:
        self.joining.pop(pid, None)
        self.suspects.pop(pid, None)

    def _lost(self, nick: str, pid: actornet.Pid, why: str) -> None:
        """Client `pid` is gone for good: it leaves its rooms here, its nickname is freed."""
        self.clients.pop(nick, None)
        self._forget(pid)
        actornet.spawn(_leave_all, nick, pid, self._rooms_of(pid), why, self.config, None)

    # -- other messages -------------------------------------------------------------------

    def handle_cast(self, request: Any) -> None:
        log.warning("chatty: dropped an unexpected cast %.200r", request)

    def handle_info(self, msg: Any) -> None:
        match msg:
            case ("DOWN", ref, _, pid, reason):
                nick = self._nick_of(pid)
                if nick is None or self.clients[nick][1] != ref:
                    return
                if reason != "noconnection":  # its process ended: it is gone
                    self._lost(nick, pid, f"connection lost: {reason}")
                    return
                # Its node went silent: dead, or cut off from us (then it resumes
                # elsewhere). Ask before removing anyone.
                self.suspects[pid] = nick
                self.clients.pop(nick)
                liveness.spawn_check(self.gen_pid, ("alive", nick, pid), liveness.client_alive,
                                     pid, self.config.call_timeout)
            case ("alive", nick, pid, verdict):
                if self.suspects.get(pid) != nick:
                    return  # it resumed (here or elsewhere) meanwhile
                if verdict is False:
                    self._lost(nick, pid, "connection lost: its node is gone")
                elif verdict is True:
                    del self.suspects[pid]
                    _say(f"[EXIT] {nick} (its node cannot reach this one; it carries on "
                         "through another)")
                else:  # cannot tell yet: ask again after a while
                    actornet.send_after(self.config.grace, self.gen_pid, ("recheck", nick, pid))
            case ("recheck", nick, pid):
                if self.suspects.get(pid) == nick:
                    liveness.spawn_check(self.gen_pid, ("alive", nick, pid),
                                         liveness.client_alive, pid, self.config.call_timeout)
            case ("membership", str(room), actornet.Pid() as pid, bool(member)):
                self.joining.get(pid, {}).pop(room, None)
                rooms_of = self.rooms_of.setdefault(pid, set())
                if member:
                    rooms_of.add(room)
                else:
                    rooms_of.discard(room)
                    if not rooms_of:
                        del self.rooms_of[pid]
            case ("resume_failed", nick, pid):
                entry = self.clients.get(nick)
                if entry is not None and entry[0] == pid:  # it tries again, maybe elsewhere
                    actornet.demonitor(self.clients.pop(nick)[1])
            case ("EXIT", *_):
                pass
            case _:
                log.warning("chatty: dropped an unexpected message %.200r", msg)


# -- helper processes: what may wait on other nodes --------------------------------------


def _publish(room: str, event: tuple[Any, ...], config: rooms.RoomConfig) -> Any:
    """Publish `event` through this node's replica of `room`; its reply, or None if the
    replica could not be reached (or did not answer in time)."""
    try:
        return actornet.call(rooms.local_name(room), ("publish", event),
                             timeout=4 * config.call_timeout)
    except (actornet.NoProc, actornet.NodeDown, actornet.CallError, TimeoutError) as e:
        log.warning("room %s: could not publish %r: %s", room, event[0], e)
        return None


def _publish_all(rooms_in: list[str], event: tuple[Any, ...], config: rooms.RoomConfig,
                 from_: Any, answer: Any) -> None:
    """Publish `event` in each of `rooms_in`, one after the other; then answer `from_`."""
    for room in rooms_in:
        _publish(room, event, config)
    actornet.reply(from_, answer)


def _start_and_publish(room: str, config: rooms.RoomConfig, event: tuple[Any, ...],
                       from_: Any) -> None:
    """Start this node's replica of `room`, then hand it the client's call."""
    try:
        local = rooms.ensure(room, config)
    except actornet.ActornetError as e:
        log.warning("room %s: no replica here: %s", room, e)
        actornet.reply(from_, ("error", f"room {room} is not available right now ({e}); "
                                        "retry"))
        return
    actornet.send(local, ("$gen_call", from_, ("publish", event)))


def _resume_rooms(nick: str, pid: actornet.Pid, last_seen: list[tuple[str, int]], here: str,
                  config: rooms.RoomConfig, server: actornet.Pid, from_: Any,
                  same_user: bool = False) -> None:
    """Publish a `move` in every room of a resuming client; answer it ok only if all did."""
    if global_.whereis_name(nick_name(nick)) == pid:
        # This node is its home from now on: a registration's home speaks for it when
        # tables are exchanged, and the old home may be cut off rather than dead.
        # (Here, not in the chat server: a hung peer holds the lock round for a tick.)
        global_.re_register_name(nick_name(nick), pid)
    deadline = time.monotonic() + 2 * config.tick_time + 4 * config.call_timeout
    failed: list[str] = []
    for room, seq in last_seen:
        why = _move(nick, pid, room, seq, here, config, deadline, same_user)
        if why is not None:
            failed.append(f"{room} ({why})")
    if failed:
        actornet.send(server, ("resume_failed", nick, pid))
        actornet.reply(from_, ("error", "could not resume room " + ", ".join(failed)))
        return
    _say(f"[JOIN] {nick} ({pid.node}, resumed)")
    actornet.reply(from_, ("ok", here))


def _move(nick: str, pid: actornet.Pid, room: str, seq: int, here: str,
          config: rooms.RoomConfig, deadline: float, same_user: bool = False) -> str | None:
    """Move `nick`'s place in `room` here (or join it again); why not, or None."""
    leader = global_.whereis_name(rooms.leader_name(room))
    if leader is None or leader.node not in (here, *actornet.nodes()):
        # The race of a resume with its room's election (the sequencer died with the node
        # the client came from): the move waits for the new sequencer, never skips it.
        _say(f"[RESUME] {nick} #{room}: no sequencer yet (an election is under way); "
             "the move waits for it")
    why = "no answer"
    while time.monotonic() < deadline:
        try:
            rooms.ensure(room, config)
        except actornet.ActornetError as e:
            return str(e)
        move = ("move", nick, pid, here, seq, *([SAME_USER] if same_user else []))
        reply = _publish(room, move, config)
        if reply is not None and reply[0] == "error" and " is not in room " in reply[1]:
            # its grace period ran out (or the room lost it): it joins again
            reply = _publish(room, ("join", nick, pid, here), config)
            if reply is not None and reply[0] == "error" and "already in room" in reply[1]:
                return None
        if reply is not None and reply[0] == "ok":
            return None
        why = reply[1] if reply is not None else "the room's replica did not answer"
        _say(f"[RESUME] {nick} #{room}: {why}; trying again")
        time.sleep(0.1)  # an election is under way: give it a moment, then try again
    return why


def _leave_all(nick: str, pid: actornet.Pid, rooms_in: list[str], why: str,
               config: rooms.RoomConfig, from_: Any) -> None:
    """A client quit (or is gone): it leaves every room, and its nickname is freed."""
    here = actornet.node()
    for room in rooms_in:
        event = ("leave", nick, pid) if why == "quit" else ("gone", nick, pid, here)
        _publish(room, event, config)
    if global_.whereis_name(nick_name(nick)) == pid:
        global_.unregister_name(nick_name(nick))
    _say(f"[EXIT] {nick} ({why})")
    if from_ is not None:
        actornet.reply(from_, ("ok", "bye"))


def start(history_on_join: int = 50, data_dir: str | None = None, fsync: bool = True,
          grace: float = 10.0, tick_time: float = 4.0, max_rooms: int = 1000,
          max_rooms_per_user: int = MAX_ROOMS_PER_USER) -> actornet.Pid:
    """Start the chat service's supervision tree on the current node.

    With `data_dir`, room history is logged there and the rooms found there are
    recovered (synced from their current sequencers) before the chat server
    starts, so a restarted node serves no client before it has caught up (see
    `examples.chatty.storage`).
    """
    from . import peers, storage

    storage.configure(data_dir, fsync)
    config = rooms.RoomConfig(history_on_join, grace, tick_time, max_rooms)
    sup = Supervisor.start(
        [child_spec("rooms", Supervisor, [], name="chatty.rooms"),
         child_spec("peers", peers.Peers, data_dir, tick_time, name="chatty.peers")],
        strategy="one_for_one",
        name="chatty.sup",
    )
    for room in storage.rooms_on_disk():
        rooms.ensure(room, config)
    Supervisor.start_child("chatty.sup", child_spec(
        "chatty", ChatServer, config, max_rooms_per_user, name="chatty"))
    return sup
