"""A gateway session: the lightweight process that speaks for one connected user.

One session per connection (`examples.chatty.gateway` for TCP lines,
`examples.chatty.web` for a browser's WebSocket), on the chat node itself. To the
`ChatServer` a session *is* the client: the chat server attributes every request
to the process that calls it, and that is the session, which builds each request
from the user's command and its own nickname. So a user is who the session says:
nothing a user sends can name another sender, reach another process, or run code.

The connection's reader (a task of the link) hands the session one input line at
a time as ``("line", text)``; the session answers each, turns room events and
direct messages into protocol lines (`examples.chatty.render`, the plain client's
format), and writes them to the link, which holds at most a bounded backlog: a
reader too slow for its rooms is disconnected, it never holds a room back.

A connection that ends without ``/quit`` leaves the session *lingering* for the
grace period, keeping the user's nickname and rooms: a client that reconnects (to
any chat node's gateway) with its session token takes it over and resumes with no
gap and no duplicate. A session whose node dies is gone with it; then the client
resumes through another gateway as a client whose chat node died (the service's
``resume``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import actornet
from actornet import aio, global_, pg

from . import tokens
from .render import render
from .requests import last_seen_problem, nick_problem
from .service import nick_name
from .session_commands import Closed, SessionCommands

__all__ = ["GATEWAYS", "Link", "SessionConfig", "gateways", "serve"]

log = logging.getLogger("chatty.gateway")

GATEWAYS = "chatty.gateway"  # pg groups (GATEWAYS, "host:port"), (WEB, "host:port")
WEB = "chatty.web"
SEEN_LIMIT = 100_000  # event ids remembered per room to drop duplicates
# Lines that belong to a room event: a client holds them until the SEQ line that
# follows, so that a connection cut in between shows the event once, after the resume.
EVENT_LINES = ("MSG", "HIST", "JOIN", "LEAVE", "KICK", "OWNER", "LIKES", "NICK", "MOVED")


@dataclass
class SessionConfig:
    """What every session of a gateway shares."""

    key: bytes  # signs session tokens (`examples.chatty.tokens.gateway_key`)
    grace: float = 10.0  # seconds a session whose connection ended waits to be taken over
    hello_timeout: float = 10.0  # seconds to say HELLO (or RESUME) after connecting
    call_timeout: float = 17.0  # a backstop: the chat service answers within about a tick
    passwords: dict[str, str] = field(default_factory=dict)  # nick -> scrypt hash


class Link(Protocol):
    """A connection, as a session sees it."""

    peer: str

    def write(self, lines: list[str]) -> bool:
        """Queue `lines` as one batch; False if the backlog is over its bound (too slow)."""
        ...

    def next(self) -> None:
        """The line handed over is done: the reader may hand over the next."""
        ...

    def close(self) -> None:
        ...


def gateways(group: str = GATEWAYS) -> list[str]:
    """``host:port`` of every gateway (of `group`) in the cluster, as pg lists them."""
    return sorted(g[1] for g in pg.which_groups()
                  if isinstance(g, tuple) and len(g) == 2 and g[0] == group)


async def serve(link: Link, config: SessionConfig, group: str = GATEWAYS) -> None:
    """The session's process: HELLO or RESUME, then commands and events until the end."""
    actornet.trap_exit(True)  # a nickname lost across a healed partition: an exit signal
    await Session(link, config, group).run()


_Closed = Closed


class Session(SessionCommands):
    """The state of one user's session; `run` is its whole life."""

    def __init__(self, link: Link, config: SessionConfig, group: str) -> None:
        self.link = link
        self.config = config
        self.group = group
        self.server = ("chatty", actornet.node())
        self.nick = ""
        self.sid = ""
        self.room: str | None = None
        self.rooms: list[str] = []  # in the order joined: the last is the next current
        self.last_seq: dict[str, int] = {}
        self.seen: dict[str, set[int]] = {}
        self.server_ref: actornet.Ref | None = None
        self.out: list[str] = []  # the batch being built, written at the end of a step

    # -- output -----------------------------------------------------------------------

    def show(self, line: str) -> None:
        self.out.append(line)

    def flush(self) -> None:
        if self.out:
            batch, self.out = self.out, []
            if not self.link.write(batch):
                log.warning("gateway: %s (%s): disconnected: a slow reader (its backlog "
                            "is over the limit)", self.link.peer, self.nick or "-")
                self.link.close()
                raise _Closed("a slow reader")

    def error(self, text: str) -> None:
        self.show(f"ERROR {text}")

    # -- the life of a session --------------------------------------------------------

    async def run(self) -> None:
        try:
            if not await self._hello():
                return
            await self._loop()
        except _Closed as e:
            self.link.close()  # the connection is gone; its place may linger
            if str(e) != "quit":
                await self._linger()
        finally:
            self.link.close()

    async def _hello(self) -> bool:
        """The first line names the user: ``HELLO nick [password]`` or ``RESUME token ...``."""
        self.link.next()
        deadline = time.monotonic() + self.config.hello_timeout
        while True:
            try:
                msg = await aio.receive(timeout=max(deadline - time.monotonic(), 0))
            except TimeoutError:
                msg = None
            match msg:
                case None:
                    self.error(f"no HELLO within {self.config.hello_timeout:g} s: disconnecting")
                    self._final_flush()
                    return False
                case ("closed", _):
                    return False
                case ("input_error", str(text)):
                    self.error(text)
                    self._final_flush()
                    return False
                case ("line", str(line)):
                    ok = await self._greet(line.split())
                    self.flush()
                    if ok:
                        self.link.next()
                        return True
                    return False
                case _:
                    pass  # nothing else is for a session that has no user yet

    def _final_flush(self) -> None:
        with contextlib.suppress(_Closed):
            self.flush()

    async def _greet(self, words: list[str]) -> bool:
        match words:
            case ["HELLO", nick, *password] if len(password) <= 1:
                return await self._connect(nick, password[0] if password else None)
            case ["RESUME", token, current, *rooms]:
                return await self._resume(token, current, rooms)
        self.error("expected HELLO <nick> [<password>] or RESUME <token> <room|-> "
                   "[<room>=<seq>...]")
        return False

    def _password_problem(self, nick: str, password: str | None) -> str | None:
        stored = self.config.passwords.get(nick)
        if stored is None:
            return None
        if password is None:
            return f"nickname {nick} needs its password: HELLO {nick} <password>"
        if not tokens.check_password(stored, password):
            return f"wrong password for {nick}"
        return None

    async def _connect(self, nick: str, password: str | None) -> bool:
        why = nick_problem(nick) or self._password_problem(nick, password)
        reply = ("error", why) if why else await self._call("connect", nick)
        if reply[0] != "ok":
            self.error(reply[1])
            return False
        self.nick, self.sid = nick, tokens.issue(self.config.key, nick).split(".")[1]
        self.show(f"CONNECTED {nick} {reply[1]}")
        self._welcome()
        log.info("gateway: %s connected as %s", self.link.peer, nick)
        return True

    def _new_token(self) -> None:
        """Tell the client its session token (again after a rename: it names the nick)."""
        self.show(f"SESSION {tokens.issue(self.config.key, self.nick, self.sid)}")

    def _welcome(self) -> None:
        self.server_ref = actornet.monitor(self.server)
        self._new_token()
        self.show(f"GATEWAYS {' '.join(gateways(self.group))}".rstrip())

    async def _resume(self, token: str, current: str, rooms: list[str]) -> bool:
        """Carry on a session from another connection (its gateway died, or it was cut)."""
        who = tokens.verify(self.config.key, token)
        if who is None:
            self.error("invalid session token: HELLO again")
            return False
        nick, sid = who
        last_seen: list[tuple[str, int]] = []
        for entry in rooms:
            room, _, seq = entry.partition("=")
            last_seen.append((room, int(seq) if re.fullmatch(r"\d{1,18}", seq) else -1))
        why = last_seen_problem(last_seen)
        if why is not None:
            self.error(why)
            return False
        why = await self._take_over(nick, sid)
        if why is None:
            reply = await self._call("resume_session", nick, last_seen,
                                     timeout=2 * self.config.call_timeout)
            why = None if reply[0] == "ok" else reply[1]
        if why is not None:
            self.error(f"cannot resume: {why}")
            return False
        self.nick, self.sid = nick, sid
        self.rooms = [room for room, _ in last_seen]
        self.last_seq = dict(last_seen)
        self.room = current if current in self.rooms else (self.rooms[-1] if self.rooms else None)
        self.show(f"RECONNECTED {actornet.node()}")
        self._welcome()
        log.info("gateway: %s resumed %s", self.link.peer, nick)
        return True

    async def _take_over(self, nick: str, sid: str) -> str | None:
        """The session holding `nick` gives it up if it is session `sid`; why not, or None."""
        holder = global_.whereis_name(nick_name(nick))
        if holder is None or holder == actornet.self():
            return None
        try:
            reply = await aio.call(holder, ("takeover", sid), timeout=2.0)
        except (actornet.NodeDown, actornet.NoProc, actornet.CallError):
            return f"nickname {nick} is held by a session that went down just now: retry"
        except TimeoutError:
            return f"nickname {nick} is taken"
        return None if reply == ("ok",) else f"nickname {nick} is taken"

    async def _linger(self) -> None:
        """The connection ended without /quit: keep the place for a takeover, for a while.

        Events that come meanwhile are dropped: the resuming session gets them again
        from the rooms (everything after the last event the client saw)."""
        if not self.nick:
            return
        deadline = time.monotonic() + self.config.grace
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await aio.receive(timeout=left)
            except TimeoutError:
                break
            match msg:
                case ("$gen_call", from_, ("takeover", str(sid))):
                    if await self._hand_over(from_, sid):
                        return
        # not taken over: the chat server sees this process end, the user leaves its rooms
        raise actornet.ProcessExit(f"its gateway connection from {self.link.peer} ended")

    async def _hand_over(self, from_: Any, sid: str) -> bool:
        if sid != self.sid:
            actornet.reply(from_, ("error", "not this session"))
            return False
        with contextlib.suppress(actornet.ActornetError, TimeoutError):
            await self._call("detach")
        if global_.whereis_name(nick_name(self.nick)) == actornet.self():
            await aio.global_.unregister_name(nick_name(self.nick))
        actornet.reply(from_, ("ok",))
        log.info("gateway: %s (%s): taken over by a new connection", self.link.peer, self.nick)
        return True

    async def _loop(self) -> None:
        while True:
            msg = await aio.receive()
            try:
                await self._handle(msg)
            finally:
                self.flush()

    async def _handle(self, msg: Any) -> None:
        match msg:
            case ("line", str(line)):
                try:
                    await self._command(line)
                finally:
                    self.link.next()
            case ("input_error", str(text)):
                self.error(text)
                self.link.next()
            case ("closed", str(why)):
                log.info("gateway: %s (%s): connection ended: %s", self.link.peer, self.nick,
                         why)
                raise _Closed(why)
            case ("history", str(room), list(events)):
                self._enter(room, current=False)
                for event in [e for e in events if self._fresh(e)]:
                    self.show(render(("hist", *event[1:]), True))
                self._seq(room)
            case ("catchup", str(room), list(events)):
                for event in events:
                    self._event(event)
            case ("merged", str(room), list(events), int(last)):
                for event in events:
                    self._event(event)
                self.last_seq[room] = last
                self._enter(room, current=self.room is None)
                self._seq(room)
            case (str(kind), *_) if kind.startswith("room_"):
                self._event(msg)
            case ("dm", str(), str()):
                self.show(render(msg, True))
            case ("$gen_call", from_, ("takeover", str(sid))):
                if await self._hand_over(from_, sid):
                    self.error("this session was taken over by a new connection")
                    self._final_flush()
                    raise _Closed("quit")  # it lives on elsewhere: nothing to linger for
            case ("DOWN", ref, *_) if ref == self.server_ref:
                await self._server_restarted()
            case ("EXIT", _, ("global_name_conflict", ("chatty.nick", nick))):
                await self._lost_nick(nick)
            case _:
                pass  # a late reply, or a signal of no interest

    async def _server_restarted(self) -> None:
        """Our chat server crashed and was restarted: resume through it, as a client does."""
        last = [(room, self.last_seq.get(room, 0)) for room in self.rooms]
        for _ in range(20):
            with contextlib.suppress(actornet.ActornetError):
                self.server_ref = actornet.monitor(self.server)
                reply = await self._call("resume", self.nick, last)
                if reply[0] == "ok":
                    return
            await asyncio.sleep(0.25)  # a supervisor restarts it at once: a short wait
        self.error("the chat server of this gateway is gone: disconnecting")
        self._final_flush()
        raise _Closed("no chat server")

    async def _lost_nick(self, nick: str) -> None:
        if nick != self.nick:
            return
        reply = await self._call("nick_conflict")
        if reply[0] == "renamed":
            old, self.nick = self.nick, reply[1]
            self.show(f"RENAMED {old} {self.nick} {reply[2]}")
            self._new_token()

    # -- events -----------------------------------------------------------------------

    def _fresh(self, event: tuple[Any, ...]) -> bool:
        room, seq, eid = event[1], event[2], event[-1]
        self.last_seq[room] = max(seq, self.last_seq.get(room, 0))
        seen = self.seen.setdefault(room, set())
        if eid in seen:
            return False
        if len(seen) >= SEEN_LIMIT:
            seen.clear()
        seen.add(eid)
        return True

    def _event(self, event: tuple[Any, ...]) -> None:
        if len(event) < 4 or not self._fresh(event):
            return
        room = event[1]
        self.show(render(event, True))
        if event[0] in ("room_join", "room_move") and event[3] == self.nick:
            self._enter(room, current=False)
        if event[0] in ("room_kick", "room_leave", "room_gone") and event[3] == self.nick:
            self._leave(room)
        self._seq(room)

    def _seq(self, room: str) -> None:
        """The client's resume point for `room` (`-`: it is out of the room)."""
        self.show(f"SEQ {room} {self.last_seq.get(room, 0) if room in self.rooms else '-'}")

    def _enter(self, room: str, current: bool = True) -> None:
        if room not in self.rooms:
            self.rooms.append(room)
        elif current:
            self.rooms.remove(room)
            self.rooms.append(room)
        if current:
            self.room = room

    def _leave(self, room: str) -> None:
        if room not in self.rooms:
            return
        self.rooms.remove(room)
        self.show(f"SEQ {room} -")
        if self.room == room:
            self.room = self.rooms[-1] if self.rooms else None
            self.show(f"CURRENT {self.room or '-'}")

    async def _call(self, *request: Any, timeout: float | None = None) -> Any:
        timeout = timeout or self.config.call_timeout
        try:
            return await aio.call(self.server, request, timeout=timeout)
        except (actornet.NoProc, actornet.NodeDown, actornet.CallError):
            return ("error", f"the chat server of this gateway failed: /{request[0]} may or "
                             "may not have been done")
        except TimeoutError:
            return ("error", f"no answer from the chat server in {timeout:.0f} s: "
                             f"/{request[0]} may or may not have been done")
