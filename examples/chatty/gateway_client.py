"""The client through a gateway: a user outside the cluster, with no cookie.

``python -m examples.chatty client --server HOST:PORT --nick NICK`` connects to a
chat node's gateway (`examples.chatty.gateway`) over TCP and speaks its line
protocol; it shows the plain client's lines, so scripts read it alike. What only
the gateway protocol has stays here: the session token (``SESSION``), the list of
gateways (``GATEWAYS``) and each room's resume point (``SEQ``).

When its gateway's connection ends (the chat node died, or the network cut it),
it says ``DISCONNECTED``, then tries every gateway it knows (those given, then
those listed) with ``RESUME <token> ...``, the way the node client resumes: the
new session publishes a ``move`` in every room and replays what the client
missed, from the last event it saw, so nothing is lost and nothing shown twice.
Room event lines are held until their ``SEQ`` line: an event cut off before it
is shown again after the resume, never twice.

No actornet node is started: the client process and its socket readers run on a
local, unnamed node, and nothing of the cluster is reachable from here.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

import actornet

from . import terminal
from .commands import HELP
from .requests import MAX_INPUT
from .session import EVENT_LINES

__all__ = ["GatewayClient", "main", "parse_address"]

RESUME_TIMEOUT = 40.0  # a backstop: a resume answers within about two ticks


def parse_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of a gateway given as ``host:port``.

    Example:
        >>> parse_address("127.0.0.1:7000")
        ('127.0.0.1', 7000)
    """
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a gateway is HOST:PORT, not {address!r}")
    return host, int(port)


class _Connection:
    """One TCP connection to a gateway; a thread hands its lines to the client process."""

    count = 0

    def __init__(self, address: str, owner: actornet.Pid, timeout: float = 2.0) -> None:
        _Connection.count += 1
        self.id = _Connection.count
        self.address = address
        self.sock = socket.create_connection(parse_address(address), timeout=timeout)
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        threading.Thread(target=self._read, args=(owner,), daemon=True).start()

    def _read(self, owner: actornet.Pid) -> None:
        why = "closed by the gateway"
        try:
            with self.sock.makefile("rb") as stream:
                for raw in stream:
                    actornet.send(owner, ("net", self.id, raw.decode("utf-8", "replace")
                                          .rstrip("\r\n")))
        except OSError as e:
            why = f"connection lost ({e})"
        actornet.send(owner, ("net_closed", self.id, why))

    def send(self, line: str) -> bool:
        try:
            self.sock.sendall((line + "\n").encode())
            return True
        except OSError:
            return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class GatewayClient:
    """Runs inside the client process: commands in, the gateway's lines out."""

    def __init__(self, servers: list[str], nick: str, password: str | None,
                 out: Callable[[str], None], handled: Callable[[], None] = lambda: None,
                 ) -> None:
        self.gateways = list(dict.fromkeys(servers))
        self.nick, self.password = nick, password
        self.out, self.handled = out, handled
        self.conn: _Connection | None = None
        self.token: str | None = None
        self.room: str | None = None  # the current room, for a resume
        self.seq: dict[str, int] = {}  # room -> the last event shown: where to resume
        self.held: list[str] = []  # a room event's lines, until its SEQ
        self.running = True
        self.connected = False
        self.quitting = False
        self.attempt = 0

    # -- connecting -------------------------------------------------------------------

    def _open(self, address: str, greeting: str) -> tuple[str, str]:
        """Connect to `address`, greet; ``("ok", first line)`` or ``("error", why)``."""
        try:
            conn = _Connection(address, actornet.self())
        except (OSError, ValueError) as e:
            return ("error", f"cannot reach gateway {address} ({e})")
        conn.send(greeting)
        while True:
            try:
                msg = actornet.receive(lambda m: isinstance(m, tuple) and m[0] in (
                    "net", "net_closed") and m[1] == conn.id, timeout=RESUME_TIMEOUT)
            except TimeoutError:
                msg = None
            if msg is None or msg[0] == "net_closed":
                conn.close()
                return ("error", f"gateway {address}: "
                                 f"{'no answer' if msg is None else msg[2]}")
            line = msg[2]
            if line.startswith(("CONNECTED ", "RECONNECTED ")):
                if self.conn is not None:
                    self.conn.close()
                self.conn = conn
                self.connected = True
                return ("ok", line)
            if line.startswith("ERROR "):
                conn.close()
                return ("error", f"gateway {address}: {line[6:]}")

    def connect(self) -> bool:
        hello = f"HELLO {self.nick}" + (f" {self.password}" if self.password else "")
        why = "no gateway given"
        for address in self.gateways:
            result, line = self._open(address, hello)
            if result == "ok":
                self.out(line)
                return True
            why = line
            if "cannot reach" not in line and "no answer" not in line:
                break  # the cluster refused (a nickname taken, a wrong password): say so
        self.out(f"ERROR {why}")
        return False

    def _resume_line(self) -> str:
        rooms = " ".join(f"{room}={seq}" for room, seq in sorted(self.seq.items()))
        return f"RESUME {self.token} {self.room or '-'} {rooms}".rstrip()

    def lost(self, why: str) -> None:
        if not self.connected:
            return
        self.connected = False
        self.held.clear()  # their SEQ never came: the resume shows them again
        dead = self.conn.address if self.conn else "-"
        self.out(f"DISCONNECTED {dead} {why}")
        self.attempt = 0
        self.reconnect()

    def reconnect(self) -> None:
        """One round over the gateways we know, the lost one last; else another round
        later (0.5 s, 1 s, 2 s... at most 5 s apart)."""
        if self.connected or not self.running:
            return
        self.attempt += 1
        dead = self.conn.address if self.conn else None
        candidates = [g for g in self.gateways if g != dead] + ([dead] if dead else [])
        why = "no gateway answered"
        for address in candidates:
            result, line = self._open(address, self._resume_line())
            if result == "ok":
                self.out(line)
                return
            why = line
        if self.attempt & (self.attempt - 1) == 0:
            self.out(f"RECONNECTING {self.attempt} {why}")
        actornet.send_after(min(5.0, 0.25 * 2 ** self.attempt), actornet.self(), ("reconnect",))

    # -- the loop ---------------------------------------------------------------------

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
                self.out(f"ERROR line too long ({n} characters, at most {MAX_INPUT}): ignored")
                self.handled()
            case ("eof",):
                self.command("/quit")
                self.handled()
            case ("net", int(cid), str(line)) if self.conn and cid == self.conn.id:
                self.line(line)
            case ("net_closed", int(cid), str(why)) if self.conn and cid == self.conn.id:
                if self.quitting:
                    self.running = False
                else:
                    self.lost(why)
            case ("reconnect",):
                self.reconnect()
            case _:
                pass  # a line of a connection given up

    def line(self, line: str) -> None:
        """A line from the gateway: shown, or kept (session, gateways, resume points)."""
        kind, _, rest = line.partition(" ")
        if kind in EVENT_LINES:
            self.held.append(line)
            return
        self._release()
        words = rest.split()
        match kind, words:
            case "SEQ", [room, "-"]:
                self.seq.pop(room, None)
            case "SEQ", [room, seq] if seq.isdigit():
                self.seq[room] = int(seq)
            case "SESSION", [token]:
                self.token = token
            case "GATEWAYS", addresses:
                self.gateways = list(dict.fromkeys([*self.gateways, *addresses]))
            case _:
                if kind == "OK" and words[:1] in (["joined"], ["already"]):
                    self.room = words[-1]
                elif kind == "CURRENT" and words:
                    self.room = None if words[0] == "-" else words[0]
                self.out(line)
                if kind == "BYE":
                    self.running = False

    def _release(self) -> None:
        for held in self.held:
            self.out(held)
        self.held.clear()

    def command(self, line: str) -> None:
        word = line.strip().split(" ")[0].lower()
        if word == "/connect":
            self._switch(line.split()[1:])
        elif self.connected and self.conn is not None:
            self.quitting = self.quitting or word == "/quit"
            self.conn.send(line)
        elif word == "/quit":
            self.out("ERROR quitting while not connected to a gateway: your rooms keep your "
                     "place until the chat nodes find you gone")
            self.running = False
        elif word == "/help":
            for text in HELP.splitlines():
                self.out(f"INFO {text.strip()}")
        else:
            self.out("ERROR not connected to a gateway (reconnecting): "
                     f"{'message not sent' if not word.startswith('/') else word + ' not done'}")

    def _switch(self, args: list[str]) -> None:
        """``/connect HOST:PORT``: carry on through another gateway, on purpose."""
        if len(args) != 1 or self.token is None:
            self.out("ERROR usage: /connect HOST:PORT")
            return
        self.held.clear()
        self._release()
        result, line = self._open(args[0], self._resume_line())
        if result == "ok":
            self.gateways = list(dict.fromkeys([*self.gateways, args[0]]))
            self.out(f"OK connected to {line.split()[1]}")
        else:
            self.out(f"ERROR {line}")


def main(servers: list[str], nick: str, password: str | None, plain: bool | None) -> int:
    """Chat through the gateways `servers` (``host:port``, tried in turn); the exit status:
    0 after /quit or the end of input, 1 if no gateway took us or we ended disconnected."""
    try:
        for address in servers:
            parse_address(address)
    except ValueError as e:
        print(f"ERROR {e}", flush=True)
        return 1
    if plain is None:
        plain = not sys.stdin.isatty()
    front = terminal.Plain() if plain else terminal.Prompt()
    ready, done = threading.Event(), threading.Event()
    status = [0]

    def client_process() -> None:
        client = GatewayClient(servers, nick, password, front.out, front.handled)
        try:
            if not client.connect():
                status[0] = 1
                return
            ready.set()
            client.run()
            if not client.connected:
                status[0] = 1
        finally:
            if client.conn is not None:
                client.conn.close()
            done.set()

    front.run(actornet.spawn(client_process), ready, done)
    done.wait()
    return status[0]
