"""``python -m examples.chatty demo``: three chat nodes and scripted clients on loopback.

It starts a private port mapper, three chat nodes and plain-mode clients, each in
its own OS process, and walks through the service: rooms across nodes, one order,
a direct message, likes, ``/nick``, history on join and ``/history``, ``/who``,
``/leave``, a kick, bad input; then it kills one node with SIGKILL (its client fails
over, everyone carries on) and restarts it with the same command as at first, no
``--join``: it rejoins by itself, with the room's history kept. Each step waits for
every line it causes on every client, then prints them under its own heading. It
exits 0 when every step showed what it should (1 otherwise), leaving no process
behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
COOKIE = "chatty-demo"
STEP_TIMEOUT = 20.0
TICK = "2"  # seconds: the nodes' and clients' failure detection, short for a demo


class Child:
    """One OS process whose output lines we watch."""

    def __init__(self, label: str, args: list[str], env: dict[str, str], echo: Any) -> None:
        self.label = label
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.echo = echo
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "examples.chatty", *args], cwd=ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
            self.echo(self.label, line)
        with self.cond:
            self.cond.notify_all()

    def expect(self, pattern: str, timeout: float = STEP_TIMEOUT, since: int = 0) -> re.Match[str]:
        """Wait for an output line matching `pattern` (from line `since` on)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[since:]:
                    m = rx.search(line)
                    if m:
                        return m
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    raise DemoFailed(f"{self.label} never printed /{pattern}/")
                self.cond.wait(min(remaining, 0.5))

    def mark(self) -> int:
        with self.cond:
            return len(self.lines)

    def say(self, line: str) -> None:
        self.echo(self.label, f"<< {line}")
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def ask(self, line: str, pattern: str) -> re.Match[str]:
        """Type `line`, and wait for the line after it that matches `pattern`."""
        mark = self.mark()
        self.say(line)
        return self.expect(pattern, since=mark)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


class DemoFailed(Exception):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Transcript:
    """What the clients print, kept per step and printed under the step's heading."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.lock = threading.Lock()
        self.lines: list[tuple[str, str]] = []
        self.t0 = time.monotonic()

    def echo(self, label: str, line: str) -> None:
        client = not label.startswith("chatty")
        if client or self.verbose:
            shown = "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cc", "Cf")
                            else c for c in line)  # as typed, never reordering the screen
            with self.lock:
                self.lines.append((label, shown))

    def step(self, title: str) -> None:
        """Print what the last step caused, then this step's heading."""
        self.flush()
        print(f"\n== {title}", flush=True)

    def flush(self) -> None:
        with self.lock:
            lines, self.lines = self.lines, []
        for label, line in lines:
            print(f"  {label:>8} | {line}", flush=True)


def main(verbose: bool = False) -> int:
    out = Transcript(verbose)
    epmd_port = _free_port()
    data = tempfile.TemporaryDirectory(prefix="chatty-demo-")
    env = {**os.environ, "ACTORNET_EPMD_PORT": str(epmd_port), "ACTORNET_COOKIE": COOKIE,
           "PYTHONUNBUFFERED": "1", "CHATTY_DATA_DIR": data.name}
    children: list[Child] = []

    def start(label: str, *args: str) -> Child:
        child = Child(label, list(args), env, out.echo)
        children.append(child)
        return child

    def node(name: str, *args: str) -> Child:
        child = start(name, "node", "--name", name, "--tick-time", TICK, *args)
        child.expect("ready")
        return child

    def client(nick: str, server: str) -> Child:
        child = start(nick, "client", "--server", f"{server}@{HOST}", "--nick", nick,
                      "--tick-time", TICK)
        child.expect("^CONNECTED")
        return child

    try:
        out.step("three chat nodes on loopback (each an OS process), joined into one cluster")
        node("chatty1")
        node("chatty2", "--join", f"chatty1@{HOST}")
        n3 = node("chatty3", "--join", f"chatty1@{HOST}")

        out.step("alice on chatty1, bob on chatty2, carol on chatty3 (plain-mode clients)")
        alice, bob, carol = client("alice", "chatty1"), client("bob", "chatty2"), \
            client("carol", "chatty3")

        out.step("everyone joins #lobby; alice created it, so alice owns it; /who")
        alice.ask("/join lobby", "^WHO lobby alice alice$")
        alice.expect("^JOIN lobby alice$")
        bob.ask("/join lobby", "^WHO lobby alice alice bob$")
        for c in (alice, bob):
            c.expect("^JOIN lobby bob$")
        carol.ask("/join lobby", "^WHO lobby alice alice bob carol$")
        for c in (alice, bob, carol):
            c.expect("^JOIN lobby carol$")
        bob.ask("/who", "^WHO lobby alice alice bob carol$")

        out.step("messages cross nodes, in one order for everyone")
        first = int(alice.ask("hello from chatty1", r"^OK sent lobby (\d+)").group(1))
        bob.ask("hi alice, bob here on chatty2", r"^OK sent lobby \d+")
        carol.ask("carol on chatty3", r"^OK sent lobby \d+")
        orders = []
        for c in (alice, bob, carol):
            c.expect(r"^MSG lobby \d+ carol 0 carol on chatty3$")
            with c.cond:
                orders.append([x for x in c.lines if x.startswith("MSG lobby")])
        if not orders[0] == orders[1] == orders[2]:
            raise DemoFailed(f"the clients saw different orders: {orders}")

        out.step("a direct message goes to whichever node the user is on")
        carol.ask("/msg alice psst: this one is just for you", "^OK sent to alice$")
        alice.expect("^DM carol psst: this one is just for you$")

        out.step("likes are counted per message, the same on every node, and say who")
        bob.ask(f"/like {first}", f"^OK liked {first}$")
        carol.ask(f"/like {first}", f"^OK liked {first}$")
        for c in (alice, bob, carol):
            c.expect(f"^LIKES lobby {first} 2 carol like$")
        bob.ask(f"/like {first}", f"^ERROR you like message #{first} in lobby already$")

        out.step("/nick: bob is now bobby, in every room and for direct messages")
        bob.ask("/nick bobby", "^OK you are now bobby$")
        for c in (alice, bob, carol):
            c.expect("^NICK lobby bob bobby$")
        alice.ask("/msg bobby welcome, bobby", "^OK sent to bobby$")
        bob.expect("^DM alice welcome, bobby$")

        out.step("dave joins later, on chatty2, and gets the history first")
        dave = client("dave", "chatty2")
        dave.ask("/join lobby", "^WHO lobby alice alice bobby carol dave$")
        dave.expect(rf"^HIST lobby {first} alice 2 \S+ hello from chatty1$")
        dave.expect(r"^HIST lobby \d+ carol 0 \S+ carol on chatty3$")
        for c in (alice, bob, carol, dave):
            c.expect("^JOIN lobby dave$")

        out.step("/history: the last messages of the current room, with their times")
        dave.ask("/history 2", "^OK history lobby 2$")

        out.step("/leave: carol makes #side, bobby comes and goes; only the owner may kick")
        carol.ask("/join side", "^WHO side carol carol$")
        carol.expect("^JOIN side carol$")
        bob.ask("/join side", "^WHO side carol bobby carol$")
        for c in (bob, carol):
            c.expect("^JOIN side bobby$")
        bob.ask("/leave", "^OK left side$")
        bob.expect("^CURRENT lobby$")
        for c in (bob, carol):
            c.expect("^LEAVE side bobby$")
        bob.ask("/kick dave", r"^ERROR only the owner of lobby \(alice\) can kick$")
        alice.ask("/kick dave", "^OK kicked dave from lobby$")
        for c in (alice, bob, carol, dave):
            c.expect("^KICK lobby dave alice$")
        dave.expect("^CURRENT -$")

        out.step("bad input gets a clear answer")
        bob.ask("/frobnicate", r"^ERROR unknown command /frobnicate \(try /help\)$")
        bob.ask("/msg nobody hello?", "^ERROR no user named nobody$")
        bob.ask("/join Not-A-Room!", "^ERROR invalid room name 'Not-A-Room!'")
        bob.ask("/join two words", "^ERROR usage: /join ROOM")
        bob.ask("red \u202e alert", r"^ERROR message contains an invisible formatting character")

        out.step("chatty3 is killed with SIGKILL: carol fails over to another node, keeping "
                 "her nickname, rooms and place, and everyone carries on")
        n3.kill(signal.SIGKILL)
        carol.expect(f"^DISCONNECTED chatty3@{HOST} node down$")
        carol.expect(f"^RECONNECTED chatty[12]@{HOST}$")
        for c in (alice, bob, carol):
            c.expect("^MOVED lobby carol$")
        carol.expect("^MOVED side carol$")
        carol.ask("/join lobby", "^OK already in lobby$")
        carol.ask("carol again, through another node", r"^OK sent lobby \d+")
        bob.ask("said while chatty3 is down", r"^OK sent lobby \d+")
        for c in (alice, bob, carol):
            c.expect(r"^MSG lobby \d+ carol 0 carol again, through another node$")
            c.expect(r"^MSG lobby \d+ bobby 0 said while chatty3 is down$")

        out.step("chatty3 restarts as it was first started, without --join: it finds its "
                 "cluster by itself and catches up; its history of #lobby is kept")
        n3 = node("chatty3")
        n3.expect(f"^chatty: joined the cluster through .*chatty[12]@{HOST}")
        erin = client("erin", "chatty3")
        erin.ask("/join lobby", "^WHO lobby alice alice bobby carol erin$")
        erin.expect(rf"^HIST lobby {first} alice 2 \S+ hello from chatty1$")
        erin.expect(r"^HIST lobby \d+ bobby 0 \S+ said while chatty3 is down$")
        for c in (alice, bob, carol, erin):
            c.expect("^JOIN lobby erin$")
        erin.ask("/servers", f"^SERVERS chatty1@{HOST} chatty2@{HOST} chatty3@{HOST}$")

        out.step("everyone quits: the room passes to the member present longest")
        present = [alice, bob, carol, erin]
        for c in (alice, bob, carol, dave, erin):
            c.ask("/quit", "^BYE$")
            if c in present:
                present.remove(c)
                for other in present:
                    other.expect(f"^LEAVE lobby {_nick(c)}$")
                    other.expect(f"^OWNER lobby {_nick(present[0])}$")
        out.flush()
        print("\nchatty demo: every step showed what it should", flush=True)
        return 0
    except DemoFailed as e:
        out.flush()
        print(f"\nchatty demo FAILED: {e}", flush=True)
        return 1
    finally:
        for child in reversed(children):
            child.kill(signal.SIGTERM if child.proc.poll() is None else signal.SIGKILL)
        _stop_port_mapper(epmd_port)
        data.cleanup()


def _nick(child: Child) -> str:
    return "bobby" if child.label == "bob" else child.label


def _stop_port_mapper(port: int) -> None:
    from actornet import epmd

    with contextlib.suppress(Exception):  # nothing may be running
        epmd.kill(epmd_port=port, timeout=2.0)


if __name__ == "__main__":
    sys.exit(main())
