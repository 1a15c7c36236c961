"""The client's commands (``/join``, ``/leave``, ``/msg``...): checked, then asked of the server.

`Commands` is mixed into `examples.chatty.client.Client` (which holds the
connection and shows what arrives); it is kept apart only to be read in one
sitting. Each command checks its words (`ARGS`) before anything is asked, and
answers with one line: its result, or why not (a usage line, a reason).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .render import history_block, render

__all__ = ["ARGS", "Commands", "HELP", "OFFLINE"]

HELP = """commands:
  /join ROOM           join (or create) a room; it becomes the current room
  /leave [ROOM]        leave a room (default: the current one)
  TEXT                 say TEXT in the current room
  /msg NICK TEXT       direct message
  /rooms               every room and who is in it
  /who [ROOM]          who is in a room
  /history [N]         the last N messages of the current room
  /kick NICK [ROOM]    remove someone (the room's owner only)
  /like ID [ROOM]      like message ID (of the current room, or ROOM)
  /unlike ID [ROOM]    stop liking message ID
  /nick NEW            change nickname
  /servers             chat nodes online
  /connect NODE        carry on through another chat node (NODE or NODE@HOST)
  /help                this list
  /quit                leave (Ctrl-D; on a terminal Ctrl-C clears the line, twice quits)"""

# Each command's number of words after it: (at least, at most); None: the rest is text.
ARGS: dict[str, tuple[int, int | None]] = {
    "help": (0, 0), "join": (1, 1), "leave": (0, 1), "msg": (2, None), "rooms": (0, 0),
    "who": (0, 1), "history": (0, 1), "kick": (1, 2), "like": (1, 2), "unlike": (1, 2),
    "nick": (1, 1), "servers": (0, 0), "connect": (1, 1), "quit": (0, 0),
}
# Commands that work while not connected to a chat node.
OFFLINE = ("help", "connect", "quit")


class NoRoom(Exception):
    """A command that needs a current room, and there is none."""


class Usage(Exception):
    """A command with missing, extra or malformed arguments."""


class Commands:
    """The commands of a client (`examples.chatty.client.Client`)."""

    # The client's, used here.
    server: str
    nick: str
    plain: bool
    connected: bool
    room: str | None
    show: Callable[[str], None]
    ok: Callable[[str], None]
    error: Callable[[str], None]
    call: Callable[..., Any]

    def _enter(self, room: str, current: bool = True) -> None:
        raise NotImplementedError

    def _leave(self, room: str) -> None:
        raise NotImplementedError

    def command(self, line: str) -> None:
        line = line.strip()
        if not line:
            return
        if not line.startswith("/"):
            if self.room is None:
                self.error("join a room first: /join ROOM")
            elif not self.connected:
                self.error("not connected to a chat node (reconnecting): message not sent")
            else:
                self._expect(self.call("say", self.room, line), "sent")
            return
        name, _, rest = line.partition(" ")
        command = name[1:].lower()
        handler = getattr(self, "cmd_" + command, None)
        if handler is None or command not in ARGS:
            self.error(f"unknown command {name} (try /help)")
            return
        if not self.connected and command not in OFFLINE:
            self.error(f"not connected to a chat node (reconnecting): {name} not done")
            return
        least, most = ARGS[command]
        args = rest.split()
        if len(args) < least or (most is not None and len(args) > most):
            self.error(f"usage: {_usage(name)}")
            return
        try:
            handler(args, rest.strip())
        except NoRoom:
            self.error("join a room first: /join ROOM")
        except Usage:
            self.error(f"usage: {_usage(name)}")

    def _expect(self, reply: Any, what: str) -> Any:
        if reply[0] == "error":
            self.error(reply[1])
            return None
        if reply[0] == "ok" and what == "sent":
            self.ok(f"sent {self.room} {reply[1]}")
        return reply

    def _current(self, args: list[str], index: int = 0) -> str:
        room = args[index] if len(args) > index else self.room
        if room is None:
            raise NoRoom()
        return room

    def cmd_help(self, args: list[str], rest: str) -> None:
        for line in HELP.splitlines():
            self.show(line if not self.plain else f"INFO {line.strip()}")

    def cmd_join(self, args: list[str], rest: str) -> None:
        # Asked of the server even for a room we think we are in: we may have missed
        # our own leave (a resume skipped the room, whose grace period then ran out).
        room = args[0]
        reply = self.call("join", room)
        if reply == ("error", f"you are already in room {room}"):
            self._enter(room)
            self.ok(f"already in {room}")
            return
        if self._expect(reply, "joined"):
            self._enter(room)
            self.ok(f"joined {room}")
            self.cmd_who([room], room)  # who is there already

    def cmd_leave(self, args: list[str], rest: str) -> None:
        room = self._current(args)
        reply = self.call("leave", room)
        if reply[0] == "error" and reply[1].endswith(f" is not in room {room}"):
            self._leave(room)  # we missed our own leave: we are out of it anyway
        if self._expect(reply, "left"):
            self.ok(f"left {room}")
            self._leave(room)

    def cmd_msg(self, args: list[str], rest: str) -> None:
        target, _, text = rest.partition(" ")
        reply = self._expect(self.call("dm", target, text.strip()), "dm")
        if reply:
            self.ok(reply[1])

    def cmd_rooms(self, args: list[str], rest: str) -> None:
        reply = self._expect(self.call("rooms"), "rooms")
        if reply:
            listing = " ".join(f"{r}={','.join(m)}" for r, m in reply[1])
            self.show(f"ROOMS {listing}".rstrip() if self.plain
                      else "\n".join(f"#{r}: {', '.join(m)}" for r, m in reply[1]) or "no rooms")

    def cmd_who(self, args: list[str], rest: str) -> None:
        reply = self._expect(self.call("who", self._current(args)), "who")
        if reply:
            _, room, members, owner = reply
            self.show(" ".join(["WHO", room, owner or "-", *members]) if self.plain
                      else f"#{room} (owner {owner or 'none'}): {', '.join(members) or 'empty'}")

    def cmd_history(self, args: list[str], rest: str) -> None:
        if args and not re.fullmatch(r"-?\d{1,9}", args[0]):
            raise Usage()
        n = int(args[0]) if args else 20
        room = self._current([], 0)
        if n < 1:
            self.error(f"/history N: N must be a number of messages, 1 or more, not {n}")
            return
        reply = self._expect(self.call("history", room, n), "history")
        if reply:
            events = reply[2]
            if self.plain:
                for event in events:
                    self.show(render(("hist", *event[1:]), True))
            else:
                for line in history_block(room, events, "/history"):
                    self.show(line)
            self.ok(f"history {room} {len(events)}")

    def cmd_kick(self, args: list[str], rest: str) -> None:
        target = args[0]
        room = self._current(args, 1)
        if self._expect(self.call("kick", room, target), "kicked"):
            self.ok(f"kicked {target} from {room}")

    def cmd_like(self, args: list[str], rest: str) -> None:
        self._like("like", args)

    def cmd_unlike(self, args: list[str], rest: str) -> None:
        self._like("unlike", args)

    def _like(self, what: str, args: list[str]) -> None:
        if not re.fullmatch(r"\d{1,18}", args[0]):
            raise Usage()
        if self._expect(self.call(what, self._current(args, 1), int(args[0])), what):
            self.ok(f"{what}d {args[0]}")

    def cmd_servers(self, args: list[str], rest: str) -> None:
        reply = self._expect(self.call("servers"), "servers")
        if reply:
            self.show(f"SERVERS {' '.join(reply[1])}" if self.plain
                      else "chat nodes: " + ", ".join(reply[1]))

    def cmd_nick(self, args: list[str], rest: str) -> None:
        if args[0] == self.nick:
            self.error(f"you are {self.nick} already")
            return
        reply = self._expect(self.call("nick", args[0]), "nick")
        if reply:
            self.nick = args[0]
            self.ok(reply[1])

    def cmd_quit(self, args: list[str], rest: str) -> None:
        if self.connected:
            self.call("quit")
        else:
            self.error("quitting while not connected to a chat node: your rooms keep your "
                       "place until the chat nodes find you gone")
        self.show("BYE" if self.plain else "* bye")
        self.running = False


def _usage(command: str) -> str:
    for line in HELP.splitlines()[1:]:
        words = line.split()
        if words and words[0] == command.lower():
            return line.strip()
    return command
