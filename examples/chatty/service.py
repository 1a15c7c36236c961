"""The chat service on one node: a supervised `ChatServer` and the room servers.

Process tree of a chat node (``python -m examples.chatty node``)::

    chatty.sup (Supervisor, one_for_one)
    ├── chatty        ChatServer: clients of this node, nicknames, commands
    └── chatty.rooms  Supervisor of Room servers, one per room used here

Nicknames are unique in the cluster: a client's process is registered under the
global name ``("chatty.nick", nick)``. Chat servers join the pg group
``"chatty.servers"`` so any node can list the others. A room command is checked
here, then the client's call is handed to the room's sequencer (see
`examples.chatty.room`), which answers the client itself once the room's
replicas have the event.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from typing import Any

import actornet
from actornet import NOREPLY, GenServer, Supervisor, child_spec, global_, pg

from . import room as rooms
from .storage import ROOM

log = logging.getLogger("chatty")

NICK = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,19}$")
MAX_TEXT = 2000  # characters in one message
SERVERS = "chatty.servers"


def nick_name(nick: str) -> tuple[str, str]:
    return ("chatty.nick", nick)


def text_problem(text: Any) -> str | None:
    r"""Why `text` cannot be a message (None if it can).

    Control characters (ESC starts a terminal escape sequence, CR moves the
    cursor) and the characters ``str.splitlines`` breaks lines at would reach
    other users' terminals and split the plain client's one-event-per-line
    output, so they are refused; a tab is the one control character allowed.

    Example:
        >>> text_problem("hello") is None
        True
        >>> text_problem("red \x1b[31m")
        'message contains a control character (U+001B); send plain text'
    """
    if not isinstance(text, str) or not text.strip():
        return "empty message"
    if len(text) > MAX_TEXT:
        return f"message too long: {len(text)} characters, the limit is {MAX_TEXT}"
    for ch in text:
        if ch != "\t" and unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            return (f"message contains a control character (U+{ord(ch):04X}); "
                    "send plain text")
    return None


def last_seen_problem(last_seen: Any) -> str | None:
    """Why `last_seen`, a resuming client's ``[(room, seq), ...]``, is malformed (None if not).

    Example:
        >>> last_seen_problem([("lobby", 12), ("dev", 0)]) is None
        True
        >>> last_seen_problem([("../x", 1)])
        "resume: invalid room name '../x'"
        >>> last_seen_problem([("lobby", "12")])
        "resume: the last event seen in lobby must be a number, 0 or more, not '12'"
    """
    if not isinstance(last_seen, (list, tuple)):
        return f"resume: expected a list of (room, seq) pairs, not {last_seen!r}"
    for entry in last_seen:
        if not isinstance(entry, (list, tuple)) or len(entry) != 2:
            return f"resume: expected a (room, seq) pair, not {entry!r}"
        room, seq = entry
        if not isinstance(room, str) or not ROOM.fullmatch(room):
            return f"resume: invalid room name {room!r}"
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            return (f"resume: the last event seen in {room} must be a number, 0 or more, "
                    f"not {seq!r}")
    return None


# Requests a client may make, and how many elements each has (its name included).
ARITY = {"connect": 2, "resume": 3, "join": 2, "leave": 2, "say": 3, "kick": 3, "like": 3,
         "unlike": 3, "history": 3, "who": 2, "rooms": 1, "servers": 1, "dm": 3, "nick": 2,
         "nick_conflict": 1, "quit": 1, "detach": 1}


def _say(line: str) -> None:
    print(line, flush=True)


class ChatServer(GenServer):
    """Serves the clients connected to this node."""

    def init(self, history_on_join: int = 50, grace: float = 10.0) -> None:
        actornet.trap_exit(True)
        self.history_on_join = history_on_join
        self.grace = grace  # seconds the clients of a node that went down keep their place
        self.clients: dict[str, tuple[actornet.Pid, actornet.Ref]] = {}
        pg.join(SERVERS, self.gen_pid)

    # -- helpers ------------------------------------------------------------------------

    def _nick_of(self, pid: actornet.Pid) -> str | None:
        return next((n for n, (p, _) in self.clients.items() if p == pid), None)

    def _leader(self, room: str, wait: float = 5.0) -> actornet.Pid | None:
        """The room's sequencer; during a takeover (no holder for a moment), wait for it."""
        deadline = time.monotonic() + wait
        while True:
            leader = global_.whereis_name(rooms.leader_name(room))
            if leader is not None or time.monotonic() > deadline:
                return leader
            time.sleep(0.01)  # an election is in progress: poll the local table

    def _to_sequencer(self, room: str, event: tuple[Any, ...], from_: Any) -> Any:
        """Hand the client's call to the room's sequencer, which will answer it."""
        if (event[0] != "join" and actornet.whereis(rooms.local_name(room)) is None
                and global_.whereis_name(rooms.leader_name(room)) is None):
            return ("error", f"no room named {room}")  # only /join creates a room
        problem = self._ensure(room)
        if problem is not None:
            return ("error", problem)
        leader = self._leader(room)
        if leader is None:
            return ("error", f"room {room} has no sequencer right now; retry")
        actornet.send(leader, ("$gen_call", from_, ("publish", event)))
        return NOREPLY

    def _ensure(self, room: str) -> str | None:
        """Start this node's replica of `room` if needed; why it could not be (or None)."""
        try:
            rooms.ensure(room, self.history_on_join, self.grace)
        except actornet.ActornetError as e:
            log.warning("room %s: no replica here: %s", room, e)
            return f"room {room} is not available right now ({e}); retry"
        return None

    def _room_info(self, room: str) -> dict[str, Any] | None:
        leader = global_.whereis_name(rooms.leader_name(room))
        if leader is None:
            return None
        try:
            return actornet.call(leader, ("info",), timeout=5)  # type: ignore[no-any-return]
        except (actornet.NoProc, actornet.NodeDown, actornet.CallError, TimeoutError):
            return None

    # -- requests from clients ------------------------------------------------------------

    def handle_call(self, request: Any, from_: Any) -> Any:
        if not isinstance(request, tuple) or not request or not isinstance(request[0], str):
            return ("error", f"malformed request {request!r}")
        op = request[0]
        if op in ARITY and len(request) != ARITY[op]:
            return ("error", f"malformed request {request!r}: {op} takes "
                             f"{ARITY[op] - 1} arguments")
        caller = from_[0]
        if op == "connect":
            return self._connect(request[1], caller)
        if op == "resume":
            return self._resume(request[1], request[2], caller)
        nick = self._nick_of(caller)
        if nick is None:
            return ("error", "not connected: connect with a nickname first")
        here = self.gen_node.name
        if op in ("join", "leave", "say", "kick", "like", "unlike", "history", "who"):
            room = request[1]
            if not isinstance(room, str) or not ROOM.fullmatch(room):
                return ("error", f"invalid room name {room!r}: 1-30 of a-z 0-9 _ -, "
                                 "starting with a letter or digit")
        if op == "join":
            return self._to_sequencer(room, ("join", nick, caller, here), from_)
        if op == "leave":
            return self._to_sequencer(room, ("leave", nick, caller), from_)
        if op == "say":
            problem = text_problem(request[2])
            if problem is not None:
                return ("error", problem)
            return self._to_sequencer(room, ("msg", nick, request[2], time.time()), from_)
        if op == "kick":
            return self._to_sequencer(room, ("kick", request[2], nick, caller), from_)
        if op in ("like", "unlike"):
            return self._to_sequencer(room, (op, request[2], nick), from_)
        if op == "history":
            n = request[2]
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                return ("error", f"/history N: N must be a number of messages, 1 or more, "
                                 f"not {n!r}")
            local = actornet.whereis(rooms.local_name(room))
            target = local or global_.whereis_name(rooms.leader_name(room))
            if target is None:
                return ("error", f"no room named {room}")
            try:
                return ("history", room, actornet.call(target, ("history", n), timeout=5))
            except (actornet.NoProc, actornet.NodeDown, actornet.CallError, TimeoutError):
                return ("error", f"the history of room {room} is not available right now; "
                                 "retry")
        if op == "who":
            info = self._room_info(room)
            if info is None:
                return ("error", f"no room named {room}")
            return ("who", room, info["members"], info["owner"])
        if op == "rooms":
            return ("rooms", self._rooms())
        if op == "servers":
            return ("servers", sorted({p.node for p in pg.get_members(SERVERS)}))
        if op == "dm":
            target, text = request[1], request[2]
            pid = global_.whereis_name(nick_name(target))
            if pid is None:
                return ("error", f"no user named {target}")
            problem = text_problem(text)
            if problem is not None:
                return ("error", problem)
            actornet.send(pid, ("dm", nick, text))
            return ("ok", f"sent to {target}")
        if op == "nick":
            return self._rename(nick, request[1], caller)
        if op == "nick_conflict":
            return self._lost_nick(nick, caller)
        if op == "quit":
            self._disconnect(nick, "quit")
            return ("ok", "bye")
        if op == "detach":  # the client resumed through another node on purpose
            entry = self.clients.pop(nick)
            actornet.demonitor(entry[1])
            _say(f"[EXIT] {nick} (moved to another chat node)")
            return ("ok", "detached")
        return ("error", f"unknown request {op!r}")

    def _connect(self, nick: Any, pid: actornet.Pid) -> Any:
        if not isinstance(nick, str) or not NICK.fullmatch(nick):
            return ("error", f"invalid nickname {nick!r}: 1-20 letters, digits, _ or -, "
                             "starting with a letter")
        if self._nick_of(pid) is not None:
            return ("error", f"already connected as {self._nick_of(pid)}")
        if global_.register_name(nick_name(nick), pid) != "yes":
            return ("error", f"nickname {nick} is taken")
        self.clients[nick] = (pid, actornet.monitor(pid))
        _say(f"[JOIN] {nick} ({pid.node})")
        return ("ok", self.gen_node.name)

    def _resume(self, nick: Any, last_seen: Any, pid: actornet.Pid) -> Any:
        """A client whose chat node died carries on here, keeping its nick and rooms."""
        if not isinstance(nick, str) or not NICK.fullmatch(nick):
            return ("error", f"invalid nickname {nick!r}: 1-20 letters, digits, _ or -, "
                             "starting with a letter")
        problem = last_seen_problem(last_seen)
        if problem is not None:
            return ("error", problem)
        holder = global_.whereis_name(nick_name(nick))
        if holder is None:
            if global_.register_name(nick_name(nick), pid) != "yes":
                return ("error", f"nickname {nick} is taken")
        elif holder != pid:
            return ("error", f"nickname {nick} is taken")
        if nick in self.clients:  # resuming here again (this server restarted, or /connect)
            actornet.demonitor(self.clients[nick][1])
        self.clients[nick] = (pid, actornet.monitor(pid))
        here = self.gen_node.name
        for room, seq in last_seen:
            if self._ensure(room) is not None:
                continue  # that room is not reachable from here now; the rest still are
            reply = self._publish_now(room, ("move", nick, pid, here, seq))
            if reply is not None and reply[0] == "error":  # its grace ran out: join again
                self._publish_now(room, ("join", nick, pid, here))
        _say(f"[JOIN] {nick} ({pid.node}, resumed)")
        return ("ok", here)

    def _rename(self, old: str, new: Any, pid: actornet.Pid) -> Any:
        if not isinstance(new, str) or not NICK.fullmatch(new):
            return ("error", f"invalid nickname {new!r}")
        if global_.register_name(nick_name(new), pid) != "yes":
            return ("error", f"nickname {new} is taken")
        if global_.whereis_name(nick_name(old)) == pid:  # else it went to another user
            global_.unregister_name(nick_name(old))
        self.clients[new] = self.clients.pop(old)
        for room in self._rooms_of(pid):
            self._publish_now(room, ("rename", old, new, pid))
        _say(f"[NICK] {old} is now {new}")
        return ("ok", f"you are now {new}")

    def _lost_nick(self, nick: str, pid: actornet.Pid) -> Any:
        """Two users took `nick` on the two sides of a partition; global_ kept the other.

        This one is renamed to the first free ``nick-2``, ``nick-3``...; the rule
        that picks who keeps the name is global_'s: the client whose node name
        sorts first (see docs/chatty-design.md).
        """
        holder = global_.whereis_name(nick_name(nick))
        if holder == pid:
            return ("ok", nick)  # no conflict (or already settled): nothing to do
        for n in range(2, 1000):
            suffix = f"-{n}"
            new = nick[: 20 - len(suffix)] + suffix
            if global_.whereis_name(nick_name(new)) is None and self._rename(
                    nick, new, pid)[0] == "ok":
                _say(f"[NICK] {nick} was taken on both sides of a partition: "
                     f"{pid} is now {new}")
                return ("renamed", new, f"{nick} was also taken on the other side of "
                                        "a network partition that has healed")
        return ("error", f"no free nickname like {nick}")

    def _rooms(self) -> list[tuple[str, list[str]]]:
        out = []
        for name in global_.registered_names():
            if isinstance(name, tuple) and len(name) == 2 and name[0] == "chatty.room":
                info = self._room_info(name[1])
                if info is not None:
                    out.append((name[1], info["members"]))
        return sorted(out)

    def _rooms_of(self, pid: actornet.Pid) -> list[str]:
        names = [n for n in actornet.registered() if n.startswith("chatty.room:")]
        result = []
        for name in names:
            try:
                member = actornet.call(name, ("member", pid), timeout=5)
            except (actornet.NoProc, actornet.CallError, TimeoutError):
                continue
            if member is True:
                result.append(name.split(":", 1)[1])
        return result

    def _publish_now(self, room: str, event: tuple[Any, ...]) -> Any:
        """Publish `event` and wait for the sequencer; its reply, or None on failure."""
        leader = self._leader(room)
        if leader is None:
            return None
        try:
            return actornet.call(leader, ("publish", event), timeout=5)
        except (actornet.NoProc, actornet.NodeDown, actornet.CallError, TimeoutError) as e:
            log.warning("room %s: could not publish %r: %s", room, event[0], e)
            return None

    def _disconnect(self, nick: str, why: str) -> None:
        entry = self.clients.pop(nick, None)
        if entry is None:
            return
        actornet.demonitor(entry[1])
        for room in self._rooms_of(entry[0]):
            self._publish_now(room, ("leave", nick, entry[0]))
        if global_.whereis_name(nick_name(nick)) == entry[0]:
            global_.unregister_name(nick_name(nick))
        _say(f"[EXIT] {nick} ({why})")

    def handle_info(self, msg: Any) -> None:
        if msg[0] == "DOWN":
            nick = self._nick_of(msg[3])
            if nick is not None:
                self._disconnect(nick, f"connection lost: {msg[4]}")
        elif msg[0] != "EXIT":
            super().handle_info(msg)


def start(history_on_join: int = 50, data_dir: str | None = None,
          fsync: bool = True, grace: float = 10.0) -> actornet.Pid:
    """Start the chat service's supervision tree on the current node.

    With `data_dir`, room history is logged there and the rooms found there are
    recovered now (see `examples.chatty.storage`).
    """
    from . import storage

    storage.configure(data_dir, fsync)
    sup = Supervisor.start(
        [
            child_spec("rooms", Supervisor, [], name="chatty.rooms"),
            child_spec("chatty", ChatServer, history_on_join, grace, name="chatty"),
        ],
        strategy="one_for_one",
        name="chatty.sup",
    )
    for room in storage.rooms_on_disk():
        rooms.ensure(room, history_on_join, grace)
    return sup
