"""The chat client: a node of its own, one process that talks to a chat server.

The client process owns the connection: it receives room events and direct
messages, and it runs the user's commands (each a `call` to the chat server).
Lines typed by the user reach it as ``("input", line)`` messages from the
thread that reads the terminal.

Two front ends share it:
- interactive (a terminal): a prompt_toolkit prompt; incoming events print
  above the line being typed, never through it;
- plain (stdin is not a terminal, or ``--plain``): one command per line in,
  one event per line out, in this stable format (fields separated by one space;
  the last field, a text, may contain spaces; <time>, when the chat node took
  the message, is UTC ISO 8601 such as 2026-05-01T09:30:00Z, or - if unknown)::

    CONNECTED <nick> <server-node>
    MSG <room> <id> <nick> <likes> <text>      a room message (id: what /like takes)
    HIST <room> <id> <nick> <likes> <time> <text>  a past message: on joining a room, or /history
    OK history <room> <count>                  the end of a /history answer (count: HIST lines)
    JOIN <room> <nick> | LEAVE <room> <nick> | KICK <room> <nick> <by>
    OWNER <room> <nick>                        after the LEAVE, KICK or MOVED of the owner: the
                                               member present longest owns it now (no OWNER
                                               line when the room is left empty)
    LIKES <room> <id> <count>
    NICK <room> <old> <new>
    RENAMED <old> <new> <why>                  our nickname was also taken across a healed partition
    MOVED <room> <nick>                        a member's client resumed (failover, /connect)
    RECONNECTED <server-node>                  our chat server went down; we go on through this one
    DM <from> <text>
    WHO <room> <owner> <nick>...               also printed after joining a room: who is there
                                               (an empty room: WHO <room> -)
    ROOMS <room>=<nick>,<nick> ...
    SERVERS <node>...
    OK <text> | ERROR <text> | BYE
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import re
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import actornet

SEEN_LIMIT = 100_000  # event ids remembered per room to drop duplicates

HELP = """commands:
  /join ROOM           join (or create) a room; it becomes the current room
  /connect NODE        carry on through another chat node
  /leave [ROOM]        leave a room
  TEXT                 say TEXT in the current room
  /msg NICK TEXT       direct message
  /rooms               every room and who is in it
  /who [ROOM]          who is in a room
  /history [N]         the last N messages of the current room
  /kick NICK [ROOM]    remove someone (the room's owner only)
  /like ID, /unlike ID like a message of the current room
  /servers             chat nodes online
  /nick NEW            change nickname
  /quit                leave"""


def _stamp(when: Any, plain: bool) -> str:
    """A message's time: UTC ISO 8601 in plain mode, local HH:MM on a terminal."""
    if not isinstance(when, (int, float)):
        return "-" if plain else ""
    moment = datetime.datetime.fromtimestamp(when, datetime.timezone.utc)
    if plain:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return " " + moment.astimezone().strftime("%H:%M")


def plain_node(node: str) -> str:
    """The plain name ``name@host`` of a chat node given as ``name@host`` or ``name@host:port``.

    Nodes know each other by plain names (a ``nodedown`` carries one); the
    ``:port`` form only says how to reach a node without the port mapper.

    Example:
        >>> plain_node("chatty1@127.0.0.1:4370"), plain_node("chatty1@127.0.0.1")
        ('chatty1@127.0.0.1', 'chatty1@127.0.0.1')
    """
    name, at, host = node.partition("@")
    return f"{name}{at}{host.split(':')[0]}" if host.count(":") == 1 else node


def _owner_line(room: str, new_owner: Any, plain: bool) -> str:
    if not new_owner or new_owner == "-":  # "-": a node of an older version, for nobody
        return ""
    return (f"\nOWNER {room} {new_owner}" if plain
            else f"\n[#{room}] {new_owner} owns the room now")


def render(event: tuple[Any, ...], plain: bool) -> str:
    """The line(s) for an event (see the module docstring for the plain format).

    Example:
        >>> render(("dm", "ann", "hi"), plain=True)
        'DM ann hi'
    """
    kind = event[0]
    if kind in ("room_msg", "hist"):
        _, room, seq, nick, text, likes = event[:6]
        when = event[6] if len(event) > 7 else None
        if plain:
            if kind == "room_msg":
                return f"MSG {room} {seq} {nick} {likes} {text}"
            return f"HIST {room} {seq} {nick} {likes} {_stamp(when, True)} {text}"
        hearts = f"  ♥{likes}" if likes else ""
        return f"[#{room} {seq}{_stamp(when, False)}] {nick}: {text}{hearts}"
    room = event[1] if kind.startswith("room_") else ""
    if kind == "room_join":
        return f"JOIN {room} {event[3]}" if plain else f"[#{room}] {event[3]} joined"
    if kind == "room_leave":
        new_owner = event[4] if len(event) > 5 else None
        return (f"LEAVE {room} {event[3]}" if plain else f"[#{room}] {event[3]} left") + \
            _owner_line(room, new_owner, plain)
    if kind == "room_kick":
        new_owner = event[5] if len(event) > 6 else None
        return (f"KICK {room} {event[3]} {event[4]}" if plain
                else f"[#{room}] {event[3]} was kicked by {event[4]}") + \
            _owner_line(room, new_owner, plain)
    if kind == "room_likes":
        return (f"LIKES {room} {event[3]} {event[4]}" if plain
                else f"[#{room} {event[3]}] ♥{event[4]}")
    if kind == "room_rename":
        return (f"NICK {room} {event[3]} {event[4]}" if plain
                else f"[#{room}] {event[3]} is now {event[4]}")
    if kind == "room_move":
        new_owner = event[4] if len(event) > 5 else None
        return (f"MOVED {room} {event[3]}" if plain
                else f"[#{room}] {event[3]} reconnected through another node") + \
            _owner_line(room, new_owner, plain)
    if kind == "dm":
        return f"DM {event[1]} {event[2]}" if plain else f"[DM from {event[1]}] {event[2]}"
    return f"INFO {event!r}" if plain else repr(event)


class NoRoom(Exception):
    """A command that needs a current room, and there is none."""


class Client:
    """Runs inside the client process: commands in, events out."""

    def __init__(self, server: str, nick: str, plain: bool, out: Any,
                 servers: list[str] | None = None) -> None:
        self.server = plain_node(server)  # always a plain name, as in nodedown
        self.nick = nick
        self.plain = plain
        self.out = out
        self.room: str | None = None
        self.running = True
        self.last_seq: dict[str, int] = {}  # room -> seq of the last event seen (to resume)
        self.seen: dict[str, set[int]] = {}  # room -> eids shown: each event shows once
        self.rooms: set[str] = set()
        # chat nodes to resume through if ours goes down (those given, then those it lists),
        # one entry per node, in the form given (a ":port" form reaches it without epmd)
        self.servers: list[str] = []
        self._add_servers([*(servers or []), server])
        self.server_ref: actornet.Ref | None = None  # monitors the chat server process
        self.watched: set[str] = set()  # chat nodes we monitor

    def show(self, line: str) -> None:
        self.out(line)

    def ok(self, text: str) -> None:
        self.show(f"OK {text}" if self.plain else f"* {text}")

    def error(self, text: str) -> None:
        self.show(f"ERROR {text}" if self.plain else f"! {text}")

    def call(self, *request: Any) -> Any:
        try:
            return actornet.call(("chatty", self.server), request, timeout=10)
        except actornet.NodeDown:
            return ("error", f"chat node {self.server} is down")
        except actornet.NoProc:
            return ("error", f"no chat server on {self.server}")
        except TimeoutError:
            return ("error", "the chat service did not answer in time")
        except actornet.CallError as e:  # it went down while serving us: we resume shortly
            return ("error", f"the chat server on {self.server} failed ({e}); reconnecting")

    def connect(self) -> bool:
        reply = self.call("connect", self.nick)
        if reply[0] != "ok":
            self.error(reply[1])
            return False
        self.show(f"CONNECTED {self.nick} {reply[1]}" if self.plain
                  else f"* connected to {reply[1]} as {self.nick} (/help for commands)")
        self._watch_server()
        return True

    def _add_servers(self, nodes: list[str]) -> None:
        known = {plain_node(s) for s in self.servers}
        for node in nodes:
            if plain_node(node) not in known:
                known.add(plain_node(node))
                self.servers.append(node)

    def _watch_server(self) -> None:
        """Watch the chat node and its chat server process: either going down means resume."""
        if self.server not in self.watched:
            actornet.monitor_node(self.server)
            self.watched.add(self.server)
        if self.server_ref is not None:
            actornet.demonitor(self.server_ref)
        self.server_ref = actornet.monitor(("chatty", self.server))
        reply = self.call("servers")
        if reply[0] == "servers":
            self._add_servers(reply[1])

    def _resume_on(self, candidate: str) -> Any:
        """Ask chat node `candidate` to carry us on (nick, rooms, place); its reply.

        On success we talk to the node the reply names (a plain name) from then on.
        """
        previous, self.server = self.server, candidate
        last = [(room, self.last_seq.get(room, 0)) for room in sorted(self.rooms)]
        reply = self.call("resume", self.nick, last)
        if reply[0] != "ok":
            self.server = previous
            return reply
        self.server = plain_node(reply[1])
        self._watch_server()
        return reply

    def failover(self, node_down: bool = True, timeout: float = 10.0) -> bool:
        """Our chat node is down (or only its chat server, which its supervisor restarts):
        resume through another node (or the same one), keeping nick, rooms and place."""
        dead = self.server
        self.server_ref = None
        candidates = [s for s in self.servers if plain_node(s) != dead]
        if not node_down:
            candidates.insert(0, dead)  # its restarted server knows us no more: resume there
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for candidate in candidates:
                if actornet.ping(candidate, timeout=2) != "pong":
                    continue
                reply = self._resume_on(candidate)
                if reply[0] == "ok":
                    what = "is down" if node_down else "restarted its chat server"
                    self.show(f"RECONNECTED {reply[1]}" if self.plain
                              else f"* {dead} {what}; reconnected through {reply[1]}")
                    return True
            time.sleep(0.2)  # every candidate refused: let the cluster settle, then retry
        self.error(f"chat node {dead} is down and no other chat node answered")
        return False

    def fresh(self, event: tuple[Any, ...]) -> bool:
        """True the first time a room event is seen.

        Events carry their place in the room (seq) and an id of their own (eid,
        the last field) that a partition merge, which may renumber them, keeps.
        """
        room, seq, eid = event[1], event[2], event[-1]
        self.last_seq[room] = max(seq, self.last_seq.get(room, 0))
        seen = self.seen.setdefault(room, set())
        if eid in seen:
            return False
        if len(seen) >= SEEN_LIMIT:  # bounded: forget them all (far older than any replay)
            seen.clear()
        seen.add(eid)
        return True

    def run(self) -> None:
        while self.running:
            msg = actornet.receive()
            kind = msg[0]
            if kind == "input":
                self.command(msg[1])
            elif kind == "history":
                for event in msg[2]:
                    if self.fresh(event):
                        self.show(render(("hist", *event[1:]), self.plain))
            elif kind == "catchup":
                for event in msg[2]:
                    if self.fresh(event):
                        self.show(render(event, self.plain))
            elif kind == "merged":  # a partition healed: the room's history, renumbered
                _, room, events, last = msg
                for event in events:
                    if self.fresh(event):
                        self._track(event)
                        self.show(render(event, self.plain))
                self.last_seq[room] = last
            elif kind == "EXIT":
                self._exit_signal(msg[2])
            elif kind == "nodedown":
                self.watched.discard(msg[1])
                if msg[1] == self.server and not self.failover():
                    self.running = False
            elif kind == "DOWN":
                # our chat server process died but not its node (that is "nodedown")
                if msg[1] == self.server_ref and msg[4] != "noconnection" \
                        and not self.failover(node_down=False):
                    self.running = False
            elif kind == "eof":
                self.command("/quit")
            elif kind.startswith("room_"):
                if self.fresh(msg):
                    self._track(msg)
                    self.show(render(msg, self.plain))
            else:
                self.show(render(msg, self.plain))

    def _track(self, event: tuple[Any, ...]) -> None:
        if event[0] in ("room_kick", "room_leave") and event[3] == self.nick:
            self._forget(event[1])

    def _exit_signal(self, reason: Any) -> None:
        """global_ tells the loser of a nickname taken on both sides of a healed partition
        with an exit signal (trapped); any other exit signal ends the client."""
        match reason:
            case ("global_name_conflict", ("chatty.nick", nick)):
                if nick != self.nick:
                    return  # about a name we no longer hold: already settled
                reply = self.call("nick_conflict")
                if reply[0] == "renamed":
                    old, self.nick = self.nick, reply[1]
                    self.show(f"RENAMED {old} {self.nick} {reply[2]}" if self.plain
                              else f"* {reply[2]}: you are now {self.nick}")
                elif reply[0] == "error":
                    self.error(reply[1])
            case "normal":
                pass
            case _:
                self.error(f"the client got an exit signal: {reason!r}")
                self.running = False

    def command(self, line: str) -> None:
        line = line.strip()
        if not line:
            return
        if not line.startswith("/"):
            if self.room is None:
                self.error("join a room first: /join ROOM")
                return
            self._expect(self.call("say", self.room, line), "sent")
            return
        name, _, rest = line.partition(" ")
        args = rest.split()
        handler = getattr(self, "cmd_" + name[1:].lower(), None)
        if handler is None:
            self.error(f"unknown command {name} (try /help)")
            return
        try:
            handler(args, rest.strip())
        except NoRoom:
            self.error("join a room first: /join ROOM")
        except (IndexError, ValueError):
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

    # -- commands --------------------------------------------------------------------

    def cmd_help(self, args: list[str], rest: str) -> None:
        for line in HELP.splitlines():
            self.show(line if not self.plain else f"INFO {line.strip()}")

    def cmd_join(self, args: list[str], rest: str) -> None:
        # Asked of the server even for a room we think we are in: we may have missed
        # our own leave (a resume skipped the room, whose grace period then ran out).
        room = args[0]
        reply = self.call("join", room)
        if reply == ("error", f"you are already in room {room}"):
            self.room = room
            self.rooms.add(room)
            self.ok(f"already in {room}")
            return
        if self._expect(reply, "joined"):
            self.room = room
            self.rooms.add(room)
            self.ok(f"joined {room}")
            self.cmd_who([room], room)  # who is there already

    def cmd_connect(self, args: list[str], rest: str) -> None:
        target = args[0]  # as given: a ":port" form reaches a node without the port mapper
        old = self.server
        if plain_node(target) == old:
            self.ok(f"connected to {old} already")
            return
        if actornet.ping(target, timeout=2) != "pong":
            self.error(f"cannot reach chat node {target}")
            return
        reply = self._expect(self._resume_on(target), "resumed")
        if reply:
            if self.server != old:  # never detach from the server that just took us on
                with contextlib.suppress(actornet.ActornetError, TimeoutError):
                    actornet.call(("chatty", old), ("detach",), timeout=5)  # best effort
            self.ok(f"connected to {self.server}")

    def cmd_leave(self, args: list[str], rest: str) -> None:
        room = self._current(args)
        reply = self.call("leave", room)
        if reply[0] == "error" and reply[1].endswith(f" is not in room {room}"):
            self._forget(room)  # we missed our own leave: we are out of it anyway
        if self._expect(reply, "left"):
            self.ok(f"left {room}")
            self._forget(room)

    def _forget(self, room: str) -> None:
        self.rooms.discard(room)
        if self.room == room:
            self.room = None

    def cmd_msg(self, args: list[str], rest: str) -> None:
        target, _, text = rest.partition(" ")
        if not target or not text.strip():
            raise ValueError("usage")
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
        n = int(args[0]) if args else 20
        room = self._current([], 0)
        if n < 1:
            self.error(f"/history N: N must be a number of messages, 1 or more, not {n}")
            return
        reply = self._expect(self.call("history", room, n), "history")
        if reply:
            for event in reply[2]:
                self.show(render(("hist", *event[1:]), self.plain))
            self.ok(f"history {room} {len(reply[2])}")

    def cmd_kick(self, args: list[str], rest: str) -> None:
        target = args[0]
        room = self._current(args, 1)
        if self._expect(self.call("kick", room, target), "kicked"):
            self.ok(f"kicked {target} from {room}")

    def cmd_like(self, args: list[str], rest: str) -> None:
        if self._expect(self.call("like", self._current(args, 1), int(args[0])), "liked"):
            self.ok(f"liked {args[0]}")

    def cmd_unlike(self, args: list[str], rest: str) -> None:
        if self._expect(self.call("unlike", self._current(args, 1), int(args[0])), "unliked"):
            self.ok(f"unliked {args[0]}")

    def cmd_servers(self, args: list[str], rest: str) -> None:
        reply = self._expect(self.call("servers"), "servers")
        if reply:
            self.show(f"SERVERS {' '.join(reply[1])}" if self.plain
                      else "chat nodes: " + ", ".join(reply[1]))

    def cmd_nick(self, args: list[str], rest: str) -> None:
        reply = self._expect(self.call("nick", args[0]), "nick")
        if reply:
            self.nick = args[0]
            self.ok(reply[1])

    def cmd_quit(self, args: list[str], rest: str) -> None:
        self.call("quit")
        self.show("BYE" if self.plain else "* bye")
        self.running = False


def main(server: str | list[str], nick: str, cookie: str | None, host: str,
         plain: bool | None, tick_time: float = 4.0) -> int:
    """Run a client against chat node `server` (or the first of a list that answers);
    returns the exit status.

    The other nodes listed are also where the client resumes if its node goes
    down. `tick_time` should match the chat nodes' (a longer one there makes them
    quiet for longer than this client would wait).

    Example (a chat node must be running)::

        main(["chatty1@alpha.lan", "chatty2@beta.lan"], "alice", None, "gamma.lan", None)
    """
    servers = [server] if isinstance(server, str) else list(server)
    if plain is None:
        plain = not sys.stdin.isatty()
    # The chat server judges the nickname; the node name must be valid whatever it is.
    me = f"{re.sub(r'[^A-Za-z0-9_-]', '_', nick)[:20] or 'client'}-{secrets.token_hex(3)}@{host}"
    try:
        # hidden, like `erl -hidden`: clients do not join the chat nodes' mesh
        # (registered with the port mapper: a chat node answers us by name)
        node = actornet.start_node(me, cookie, hidden=True, tick_time=tick_time)
    except (actornet.ActornetError, ValueError) as e:
        print(f"ERROR cannot start the client node: {e}", flush=True)
        return 1
    try:
        server = next((s for s in servers if actornet.ping(s) == "pong"), None)
        if server is None:
            print(f"ERROR cannot reach chat node {' or '.join(servers)}", flush=True)
            return 1
        server_name = plain_node(server)
        out, prompt_loop = _front_end(plain)
        done = threading.Event()
        status = [0]

        def client_process() -> None:
            actornet.trap_exit(True)  # a nickname conflict arrives as an exit signal
            client = Client(server_name, nick, plain, out, servers)
            if not client.connect():
                status[0] = 1
                done.set()
                return
            ready.set()
            try:
                client.run()
            finally:
                done.set()

        ready = threading.Event()
        pid = actornet.spawn(client_process)
        prompt_loop(pid, ready, done)
        done.wait()
        return status[0]
    finally:
        node.stop()


def _front_end(plain: bool) -> tuple[Any, Any]:
    if plain:
        def out(line: str) -> None:
            print(line, flush=True)

        def loop(pid: actornet.Pid, ready: threading.Event, done: threading.Event) -> None:
            if not _wait_either(ready, done):
                return
            for line in sys.stdin:
                if done.is_set():
                    return
                actornet.send(pid, ("input", line.rstrip("\n")))
                if _is_quit(line):
                    return  # don't wait for more input (or EOF) once told to quit
            actornet.send(pid, ("eof",))

        return out, loop

    from prompt_toolkit import PromptSession
    from prompt_toolkit.patch_stdout import patch_stdout

    def tty_out(line: str) -> None:
        print(line, flush=True)

    def tty_loop(pid: actornet.Pid, ready: threading.Event, done: threading.Event) -> None:
        if not _wait_either(ready, done):
            return
        session: PromptSession[str] = PromptSession()
        with patch_stdout(raw=True), _logging_to(sys.stderr):
            while not done.is_set():
                try:
                    line = session.prompt("-> ")
                except (EOFError, KeyboardInterrupt):
                    actornet.send(pid, ("eof",))
                    return
                actornet.send(pid, ("input", line))
                if _is_quit(line):
                    return

    return tty_out, tty_loop


@contextlib.contextmanager
def _logging_to(stream: Any) -> Iterator[None]:
    """Point the log handlers at `stream` (the prompt's patched stderr) for a while.

    Handlers keep the stderr they were created with; without this, a log line
    (say, "node ... is down") would be written through the line being typed.
    """
    handlers = [h for h in logging.getLogger().handlers
                if type(h) is logging.StreamHandler]
    old = [h.setStream(stream) for h in handlers]
    try:
        yield
    finally:
        for handler, previous in zip(handlers, old, strict=True):
            if previous is not None:
                handler.setStream(previous)


def _is_quit(line: str) -> bool:
    return line.strip().split(" ")[0].lower() == "/quit"


def _wait_either(a: threading.Event, b: threading.Event) -> bool:
    """Wait until `a` (connected) or `b` (finished) is set; True if connected."""
    while not (a.is_set() or b.is_set()):
        a.wait(0.05)
    return a.is_set() and not b.is_set()


def _usage(command: str) -> str:
    for line in HELP.splitlines()[1:]:
        words = line.split()
        if words and words[0] == command:
            return line.strip()
    return command
