"""The chat client: a node of its own, one process that talks to a chat server.

The client process owns the connection: it receives room events and direct
messages, and it runs the user's commands (each a `call` to the chat server).
Lines typed by the user reach it as ``("input", line)`` messages, one at a time
(`examples.chatty.terminal`): the next line is handed over only once the last
command is done, so room events never wait behind a queue of typed-ahead lines.

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
    LIKES <room> <id> <count> <nick> like|unlike  who liked (or unliked) message <id>
    NICK <room> <old> <new>
    CURRENT <room>                             the current room, after leaving (or being kicked
                                               from) the one that was; `-` when in none
    RENAMED <old> <new> <why>                  our nickname was also taken across a healed partition
    MOVED <room> <nick>                        a member's client resumed (failover, /connect)
    DISCONNECTED <server-node> <why>           our chat server went down: we keep trying the others
    RECONNECTING <attempt> <why>               still trying (said at attempts 1, 2, 4, 8...)
    RECONNECTED <server-node>                  we go on through this one, every room resumed
    DM <from> <text>
    WHO <room> <owner> <nick>...               also printed after joining a room: who is there
                                               (an empty room: WHO <room> -)
    ROOMS <room>=<nick>,<nick> ...
    SERVERS <node>...
    OK <text> | ERROR <text> | BYE
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import sys
import threading
from collections.abc import Callable
from typing import Any

import actornet

from . import terminal
from .commands import HELP, Commands
from .render import history_block, render
from .requests import MAX_INPUT

__all__ = ["Client", "HELP", "main", "plain_node", "render"]

SEEN_LIMIT = 100_000  # event ids remembered per room to drop duplicates


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


def full_node(node: str, host: str) -> str:
    """`node` with a host part: a short name (``chatty3``) takes `host`, as ``--name`` does.

    Example:
        >>> full_node("chatty3", "127.0.0.1"), full_node("chatty3@beta.lan", "127.0.0.1")
        ('chatty3@127.0.0.1', 'chatty3@beta.lan')
    """
    return node if "@" in node else f"{node}@{host}"


class Client(Commands):
    """Runs inside the client process: commands in, events out."""

    def __init__(self, server: str, nick: str, plain: bool, out: Callable[[str], None],
                 servers: list[str] | None = None, tick_time: float = 4.0,
                 handled: Callable[[], None] = lambda: None) -> None:
        self.server = plain_node(server)  # always a plain name, as in nodedown
        self.nick = nick
        self.plain = plain
        self.out = out
        self.handled = handled  # the front end may hand over the next line
        self.tick_time = tick_time
        self.room: str | None = None
        self.rooms: list[str] = []  # in the order joined: the last is the next current room
        self.running = True
        self.connected = False
        self.attempt = 0  # reconnection attempts since the server was lost
        self.last_seq: dict[str, int] = {}  # room -> seq of the last event seen (to resume)
        self.seen: dict[str, set[int]] = {}  # room -> eids shown: each event shows once
        # chat nodes to resume through if ours goes down (those given, then those it lists),
        # one entry per node, in the form given (a ":port" form reaches it without epmd)
        self.servers: list[str] = []
        self._add_servers([*(servers or []), server])
        self.server_ref: actornet.Ref | None = None  # monitors the chat server process
        self.watched: set[str] = set()  # chat nodes we monitor

    # -- output ---------------------------------------------------------------------------

    def show(self, line: str) -> None:
        self.out(line)

    def ok(self, text: str) -> None:
        self.show(f"OK {text}" if self.plain else f"* {text}")

    def error(self, text: str) -> None:
        self.show(f"ERROR {text}" if self.plain else f"! {text}")

    def status(self, plain: str, terminal: str) -> None:
        """A change of the connection's state: one short line."""
        self.show(plain if self.plain else f"* {terminal}")

    # -- talking to the chat server -------------------------------------------------------

    @property
    def call_timeout(self) -> float:
        """A backstop only: the chat service answers (or says it cannot be sure) within
        about a tick of any failure; this covers a hung chat node."""
        return 3 * self.tick_time + 5.0

    def call(self, *request: Any, timeout: float | None = None) -> Any:
        """Call our chat server; its reply, or ``("error", why)``. A failure says what
        may have happened to a change in flight (`_uncertain`), never that it failed."""
        timeout = timeout or self.call_timeout
        try:
            return actornet.call(("chatty", self.server), request, timeout=timeout)
        except actornet.NodeDown:
            return self._uncertain(request, f"chat node {self.server} went down")
        except actornet.NoProc:
            return ("error", f"no chat server on {self.server}")
        except TimeoutError:
            return self._uncertain(request, f"no answer from {self.server} in {timeout:.0f} s")
        except actornet.CallError as e:  # it went down while serving us: we resume shortly
            return self._uncertain(request, f"the chat server on {self.server} failed ({e})")

    @staticmethod
    def _uncertain(request: tuple[Any, ...], why: str) -> tuple[str, str]:
        """The error for a request that failed with `why`: a change in flight may or may
        not have happened, and is never said to have failed.

        Example:
            >>> Client._uncertain(("say", "lobby", "hi"), "chat node n1 went down")[1]
            'your message to lobby may have been delivered: chat node n1 went down before confirming it (it is not sent again)'
        """  # noqa: E501
        if request[0] == "say":
            return ("error", f"your message to {request[1]} may have been delivered: {why} "
                             "before confirming it (it is not sent again)")
        if request[0] in ("join", "leave", "kick", "like", "unlike", "nick"):
            return ("error", f"/{request[0]} may or may not have been done: {why} before "
                             "confirming it")
        return ("error", why)

    def connect(self) -> bool:
        reply = self.call("connect", self.nick)
        if reply[0] != "ok":
            self.error(reply[1])
            return False
        self.connected = True
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
        previous, self.server = self.server, plain_node(candidate)
        last = [(room, self.last_seq.get(room, 0)) for room in sorted(self.rooms)]
        reply = self.call("resume", self.nick, last)
        if reply[0] != "ok":
            self.server = previous
            return reply
        self.server = plain_node(reply[1])
        self.connected = True
        self._watch_server()
        return reply

    def cmd_connect(self, args: list[str], rest: str) -> None:
        # As given (a ":port" form reaches a node without the port mapper); a short name
        # takes the host of the chat node we talk to.
        target = full_node(args[0], self.server.partition("@")[2])
        old = self.server
        if plain_node(target) == old and self.connected:
            self.ok(f"connected to {old} already")
            return
        if actornet.ping(target, timeout=2) != "pong":
            self.error(f"cannot reach chat node {target}")
            return
        was_connected = self.connected
        reply = self._expect(self._resume_on(target), "resumed")
        if reply:
            self._add_servers([target])
            if was_connected and self.server != old:  # never detach from the one that took us
                with contextlib.suppress(actornet.ActornetError, TimeoutError):
                    actornet.call(("chatty", old), ("detach",), timeout=5)  # best effort
            self.ok(f"connected to {self.server}")

    # -- losing the server, and finding another --------------------------------------------

    def lost(self, why: str, restarted: bool = False) -> None:
        """Our chat server is gone (its node, or only its process): say so once, then keep
        trying every chat node we know, the restarted server first if it was only that."""
        if not self.connected:
            return
        self.connected = False
        self.server_ref = None
        self.attempt = 0
        dead = self.server
        self.status(f"DISCONNECTED {dead} {why}", f"lost {dead} ({why}); reconnecting...")
        self.reconnect(first=dead if restarted else None)

    def reconnect(self, first: str | None = None) -> None:
        """One round over the chat nodes we know; if none takes us on, another round later
        (0.5 s, 1 s, 2 s... at most 5 s apart). Commands are answered meanwhile."""
        if self.connected or not self.running:
            return
        self.attempt += 1
        dead = self.server
        candidates = [s for s in self.servers if plain_node(s) != dead]
        # The lost node too (it may come back): first if only its server restarted, else
        # last, as a hung node makes the attempt wait for the ping's timeout.
        candidates.insert(0 if first else len(candidates), first or dead)
        why = "no chat node answered"
        for candidate in candidates:
            if actornet.ping(candidate, timeout=min(2.0, self.tick_time)) != "pong":
                why = f"{plain_node(candidate)} does not answer"
                continue
            reply = self._resume_on(candidate)
            if reply[0] == "ok":
                self.status(f"RECONNECTED {reply[1]}",
                            f"reconnected through {reply[1]}: nickname and rooms kept")
                return
            why = f"{plain_node(candidate)}: {reply[1]}"
        if self.attempt & (self.attempt - 1) == 0:  # 1, 2, 4, 8...: visible, not a flood
            self.status(f"RECONNECTING {self.attempt} {why}",
                        f"still reconnecting (attempt {self.attempt}): {why}")
        delay = min(5.0, 0.25 * 2 ** self.attempt)
        actornet.send_after(delay, actornet.self(), ("reconnect",))

    # -- the loop -----------------------------------------------------------------------------

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
            self.handle(actornet.receive())

    def handle(self, msg: Any) -> None:
        match msg:
            case ("input", str(line)):
                try:
                    self.command(line)
                finally:
                    self.handled()
            case ("too_long", int(n)):
                self.error(f"line too long ({n} characters, at most {MAX_INPUT}): ignored")
                self.handled()
            case ("eof",):
                self.command("/quit")
                self.handled()
            case ("history", str(room), list(events)):
                events = [e for e in events if self.fresh(e)]
                if self.plain:
                    for event in events:
                        self.show(render(("hist", *event[1:]), True))
                else:
                    for line in history_block(room, events, "before you joined"):
                        self.show(line)
            case ("catchup", _, list(events)):
                for event in events:
                    self._event(event)
            case ("merged", str(room), list(events), int(last)):
                # a partition healed: the room's history, renumbered; we are a member
                for event in events:
                    self._event(event)
                self.last_seq[room] = last
                if room not in self.rooms:
                    self._enter(room, current=self.room is None)
            case ("EXIT", _, reason):
                self._exit_signal(reason)
            case ("nodedown", node):
                self.watched.discard(node)
                if node == self.server:
                    self.lost("node down")
            case ("DOWN", ref, _, _, reason) if ref == self.server_ref:
                # our chat server process died but not its node (that is "nodedown")
                if reason != "noconnection":
                    self.lost("its chat server restarted", restarted=True)
            case ("reconnect",):
                self.reconnect()
            case (str(kind), *_) if kind.startswith("room_"):
                self._event(msg)
            case ("dm", _, _):
                self.show(render(msg, self.plain))
            case _:
                pass  # a late reply or a monitor of no interest any more

    def _event(self, event: tuple[Any, ...]) -> None:
        if not self.fresh(event):
            return
        self.show(render(event, self.plain))
        if event[0] in ("room_kick", "room_leave", "room_gone") and event[3] == self.nick:
            self._leave(event[1])

    def _enter(self, room: str, current: bool = True) -> None:
        if room in self.rooms:
            self.rooms.remove(room)
        self.rooms.append(room)
        if current:
            self.room = room

    def _leave(self, room: str) -> None:
        """We are out of `room`: if it was the current one, the last joined of the others
        is current now (and we say which)."""
        if room in self.rooms:
            self.rooms.remove(room)
        if self.room == room:
            self.room = self.rooms[-1] if self.rooms else None
            self.show(f"CURRENT {self.room or '-'}" if self.plain
                      else f"* current room: #{self.room}" if self.room
                      else "* you are in no room now (/join ROOM)")

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

    # -- commands --------------------------------------------------------------------


def _log_to(verbose: bool, log_file: str | None) -> None:
    """A client's logs go to `log_file`, or with `verbose` to stderr, else nowhere:
    the user sees one status line per change of the connection instead."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    fmt = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
    sink: logging.Handler
    if log_file is not None:
        sink = logging.FileHandler(log_file)
    elif verbose:
        sink = logging.StreamHandler(sys.stderr)
    else:
        sink = logging.NullHandler()
    sink.setFormatter(fmt)
    root.addHandler(sink)
    root.setLevel(logging.INFO if verbose or log_file else logging.WARNING)


def main(server: str | list[str], nick: str, cookie: str | None, host: str,
         plain: bool | None, tick_time: float = 4.0, verbose: bool = False,
         log_file: str | None = None) -> int:
    """Run a client against chat node `server` (or the first of a list that answers);
    returns the exit status: 0 after /quit or the end of input, 1 if it could not
    start (no chat node answers, a nickname taken or invalid) or ended while not
    connected.

    The other nodes listed are also where the client resumes if its node goes
    down. `tick_time` should match the chat nodes' (a longer one there makes them
    quiet for longer than this client would wait).

    Example (a chat node must be running)::

        main(["chatty1@alpha.lan", "chatty2@beta.lan"], "alice", None, "gamma.lan", None)
    """
    servers = [full_node(s, host) for s in ([server] if isinstance(server, str) else server)]
    if plain is None:
        plain = not sys.stdin.isatty()
    _log_to(verbose, log_file)
    # The chat server judges the nickname; the node name must be valid whatever it is.
    me = f"{re.sub(r'[^A-Za-z0-9_-]', '_', nick)[:20] or 'client'}-{secrets.token_hex(3)}@{host}"
    with contextlib.ExitStack() as stack:
        if not plain:  # what is typed while we connect is kept for the prompt, not echoed
            stack.enter_context(terminal.held_input())
        try:
            # hidden, like `erl -hidden`: clients do not join the chat nodes' mesh
            # (registered with the port mapper: a chat node answers us by name)
            node = actornet.start_node(me, cookie, hidden=True, tick_time=tick_time)
        except (actornet.ActornetError, ValueError, OSError) as e:
            print(f"ERROR cannot start the client node: {e}", flush=True)
            return 1
        stack.callback(node.stop)
        first = next((s for s in servers if actornet.ping(s) == "pong"), None)
        if first is None:
            print(f"ERROR cannot reach chat node {' or '.join(servers)}", flush=True)
            return 1
        front = terminal.Plain() if plain else terminal.Prompt()
        ready, done = threading.Event(), threading.Event()
        status = [0]

        def client_process() -> None:
            actornet.trap_exit(True)  # a nickname conflict arrives as an exit signal
            client = Client(first, nick, plain, front.out, servers, tick_time, front.handled)
            try:
                if not client.connect():
                    status[0] = 1
                    return
                ready.set()
                client.run()
                if not client.connected:
                    status[0] = 1  # it ended without its chat node: what it sent may be lost
            finally:
                done.set()

        pid = actornet.spawn(client_process)
        front.run(pid, ready, done)
        done.wait()
        return status[0]
    return 1  # not reached: the block returns
