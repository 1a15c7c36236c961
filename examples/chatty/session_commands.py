"""A gateway session's commands: the plain client's, each asked of the chat server.

`SessionCommands` is mixed into `examples.chatty.session.Session` (which holds the
connection, the rooms and the identity); it is kept apart only to be read in one
sitting. Each command checks its words (`examples.chatty.commands.ARGS`, the same
as the node client's) and answers with the plain protocol's lines, always built
with the session's own nickname: nothing in a line names its sender.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .commands import ARGS, HELP, _usage
from .render import render

__all__ = ["Closed", "SessionCommands"]


class Closed(Exception):
    """The session ends: its connection is gone (or was cut), or the user quit."""


class SessionCommands:
    """The commands of a gateway session (`examples.chatty.session.Session`)."""

    # The session's, used here.
    nick: str
    sid: str
    room: str | None
    show: Callable[[str], None]
    error: Callable[[str], None]
    _call: Callable[..., Any]
    _enter: Callable[..., None]
    _leave: Callable[[str], None]
    _final_flush: Callable[[], None]
    _password_problem: Callable[[str, str | None], str | None]
    _new_token: Callable[[], None]


    async def _command(self, line: str) -> None:
        line = line.strip()
        if not line:
            return
        if not line.startswith("/"):
            if self.room is None:
                self.error("join a room first: /join ROOM")
                return
            reply = await self._call("say", self.room, line)
            self._answer(reply, f"sent {self.room} {reply[1]}")
            return
        name, _, rest = line.partition(" ")
        command = name[1:].lower()
        if command not in ARGS or command == "connect":
            self.error(f"unknown command {name[:40]} (try /help)")
            return
        least, most = ARGS[command]
        args = rest.split()
        if len(args) < least or (most is not None and len(args) > most):
            self.error(f"usage: {_usage(name)}")
            return
        room = (args[-1] if command in ("kick", "like", "unlike") and len(args) == 2
                else args[0] if command in ("leave", "who") and args else self.room)
        if command in ("leave", "who", "history", "kick", "like", "unlike") and room is None:
            self.error("join a room first: /join ROOM")
            return
        await getattr(self, f"_cmd_{command}")(args, rest.strip(), room)

    def _answer(self, reply: Any, ok: str) -> bool:
        if reply[0] == "error":
            self.error(reply[1])
            return False
        self.show(f"OK {ok}")
        return True

    async def _cmd_help(self, args: list[str], rest: str, room: Any) -> None:
        for line in HELP.splitlines():
            if not line.strip().startswith("/connect"):
                self.show(f"INFO {line.strip()}")

    async def _cmd_join(self, args: list[str], rest: str, room: Any) -> None:
        room = args[0]
        reply = await self._call("join", room)
        if reply == ("error", f"you are already in room {room}"):
            self._enter(room)
            self.show(f"OK already in {room}")
        elif self._answer(reply, f"joined {room}"):
            self._enter(room)
            await self._cmd_who([room], room, room)

    async def _cmd_leave(self, args: list[str], rest: str, room: Any) -> None:
        reply = await self._call("leave", room)
        if reply[0] == "error" and reply[1].endswith(f" is not in room {room}"):
            self._leave(room)
        if self._answer(reply, f"left {room}"):
            self._leave(room)

    async def _cmd_msg(self, args: list[str], rest: str, room: Any) -> None:
        target, _, text = rest.partition(" ")
        reply = await self._call("dm", target, text.strip())
        self._answer(reply, str(reply[1]))

    async def _cmd_rooms(self, args: list[str], rest: str, room: Any) -> None:
        reply = await self._call("rooms")
        if reply[0] == "error":
            self.error(reply[1])
        else:
            listing = " ".join(f"{r}={','.join(m)}" for r, m in reply[1])
            self.show(f"ROOMS {listing}".rstrip())

    async def _cmd_who(self, args: list[str], rest: str, room: Any) -> None:
        reply = await self._call("who", room)
        if reply[0] == "error":
            self.error(reply[1])
        else:
            _, room, members, owner = reply
            self.show(" ".join(["WHO", room, owner or "-", *members]))

    async def _cmd_history(self, args: list[str], rest: str, room: Any) -> None:
        if args and not re.fullmatch(r"-?\d{1,9}", args[0]):
            self.error(f"usage: {_usage('/history')}")
            return
        n = int(args[0]) if args else 20
        if n < 1:
            self.error(f"/history N: N must be a number of messages, 1 or more, not {n}")
            return
        reply = await self._call("history", room, n)
        if reply[0] == "error":
            self.error(reply[1])
            return
        for event in reply[2]:
            self.show(render(("hist", *event[1:]), True))
        self.show(f"OK history {room} {len(reply[2])}")

    async def _cmd_kick(self, args: list[str], rest: str, room: Any) -> None:
        self._answer(await self._call("kick", room, args[0]), f"kicked {args[0]} from {room}")

    async def _cmd_like(self, args: list[str], rest: str, room: Any, what: str = "like") -> None:
        if not re.fullmatch(r"\d{1,18}", args[0]):
            self.error(f"usage: {_usage('/' + what)}")
            return
        self._answer(await self._call(what, room, int(args[0])), f"{what}d {args[0]}")

    async def _cmd_unlike(self, args: list[str], rest: str, room: Any) -> None:
        await self._cmd_like(args, rest, room, "unlike")

    async def _cmd_servers(self, args: list[str], rest: str, room: Any) -> None:
        reply = await self._call("servers")
        if reply[0] == "error":
            self.error(reply[1])
        else:
            self.show(f"SERVERS {' '.join(reply[1])}")

    async def _cmd_nick(self, args: list[str], rest: str, room: Any) -> None:
        new = args[0]
        if new == self.nick:
            self.error(f"you are {new} already")
            return
        why = self._password_problem(new, None)
        if why is not None:
            self.error(f"nickname {new} has a password: connect with it to use it")
            return
        if self._answer(await self._call("nick", new), f"you are now {new}"):
            self.nick = new
            self._new_token()

    async def _cmd_quit(self, args: list[str], rest: str, room: Any) -> None:
        await self._call("quit")
        self.show("BYE")
        self._final_flush()
        raise Closed("quit")
