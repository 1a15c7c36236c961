"""``python -m examples.chatty demo``: three chat nodes and scripted clients on loopback.

It starts a private port mapper, three chat nodes and four plain-mode clients,
each in its own OS process; chats across nodes, shows a direct message, history
on join, likes and a kick; then kills one node with SIGKILL: its client fails
over to another node and everyone carries on. It prints the transcript and
exits 0 when every step showed what it should (1 otherwise), leaving no
process behind.
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
COOKIE = "chatty-demo"
STEP_TIMEOUT = 20.0


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
                if remaining <= 0 or (self.proc.poll() is not None and not self._more()):
                    raise DemoFailed(f"{self.label} never printed /{pattern}/")
                self.cond.wait(min(remaining, 0.5))

    def _more(self) -> bool:
        return False

    def mark(self) -> int:
        with self.cond:
            return len(self.lines)

    def say(self, line: str) -> None:
        self.echo(self.label, f"<< {line}")
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

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


def main(verbose: bool = False) -> int:
    lock = threading.Lock()
    t0 = time.monotonic()

    def echo(label: str, line: str) -> None:
        if verbose or not label.startswith("chatty") or "[" in line[:2]:
            with lock:
                print(f"{time.monotonic() - t0:6.2f}  {label:>8} | {line}", flush=True)

    def step(text: str) -> None:
        with lock:
            print(f"\n== {text}", flush=True)

    epmd_port = _free_port()
    data = tempfile.TemporaryDirectory(prefix="chatty-demo-")
    env = {**os.environ, "ACTORNET_EPMD_PORT": str(epmd_port), "ACTORNET_COOKIE": COOKIE,
           "PYTHONUNBUFFERED": "1", "CHATTY_DATA_DIR": data.name}
    children: list[Child] = []

    def start(label: str, *args: str) -> Child:
        child = Child(label, list(args), env, echo)
        children.append(child)
        return child

    try:
        step("three chat nodes on loopback (each an OS process), joined into one cluster")
        n1 = start("chatty1", "node", "--name", "chatty1", "--tick-time", "2")
        n1.expect("ready")
        n2 = start("chatty2", "node", "--name", "chatty2", "--join", f"chatty1@{HOST}",
                   "--tick-time", "2")
        n3 = start("chatty3", "node", "--name", "chatty3", "--join", f"chatty1@{HOST}",
                   "--tick-time", "2")
        n2.expect("ready")
        n3.expect("ready")

        step("alice on chatty1, bob on chatty2, carol on chatty3 (plain-mode clients)")
        alice = start("alice", "client", "--server", f"chatty1@{HOST}", "--nick", "alice")
        bob = start("bob", "client", "--server", f"chatty2@{HOST}", "--nick", "bob")
        carol = start("carol", "client", "--server", f"chatty3@{HOST}", "--nick", "carol")
        for c in (alice, bob, carol):
            c.expect("^CONNECTED")

        step("everyone joins #lobby; alice created it, so alice owns it")
        alice.say("/join lobby")
        alice.expect("^OK joined lobby")
        for c in (bob, carol):
            c.say("/join lobby")
            c.expect("^OK joined lobby")
        alice.expect("^JOIN lobby carol")

        step("messages cross nodes, in one order for everyone")
        alice.say("hello from chatty1")
        first = int(alice.expect(r"^OK sent lobby (\d+)").group(1))
        bob.expect(rf"^MSG lobby {first} alice 0 hello from chatty1")
        carol.expect(rf"^MSG lobby {first} alice 0 hello from chatty1")
        bob.say("hi alice, bob here on chatty2")
        carol.expect("^MSG lobby \\d+ bob 0 hi alice")
        carol.say("carol on chatty3")
        alice.expect("^MSG lobby \\d+ carol 0 carol on chatty3")

        step("a direct message goes to whichever node the user is on")
        carol.say("/msg alice psst: this one is just for you")
        alice.expect("^DM carol psst: this one is just for you")

        step("dave joins later on chatty2 and gets the history")
        dave = start("dave", "client", "--server", f"chatty2@{HOST}", "--nick", "dave")
        dave.expect("^CONNECTED")
        dave.say("/join lobby")
        dave.expect(rf"^HIST lobby {first} alice 0 \S+ hello from chatty1")
        dave.expect("^HIST lobby \\d+ carol 0 \\S+ carol on chatty3")

        step("likes are counted per message, the same on every node")
        mark = carol.mark()
        bob.say(f"/like {first}")
        dave.say(f"/like {first}")
        carol.expect(rf"^LIKES lobby {first} 2", since=mark)

        step("only the owner may kick")
        bob.say("/kick dave")
        bob.expect("^ERROR only the owner of lobby \\(alice\\) can kick")
        alice.say("/kick dave")
        dave.expect("^KICK lobby dave alice")
        bob.expect("^KICK lobby dave alice")

        step("bad input gets a clear answer")
        bob.say("/frobnicate")
        bob.expect("^ERROR unknown command /frobnicate")
        bob.say("/msg nobody hello?")
        bob.expect("^ERROR no user named nobody")
        bob.say("/join Not A Room!")
        bob.expect("^ERROR invalid room name")

        step("rooms and servers")
        alice.say("/rooms")
        alice.expect("^ROOMS lobby=alice,bob,carol")
        alice.say("/servers")
        alice.expect(f"^SERVERS chatty1@{HOST} chatty2@{HOST} chatty3@{HOST}")

        step("chatty3 is killed with SIGKILL: carol fails over to another node, keeping "
             "her nickname and room, and everyone carries on")
        n3.kill(signal.SIGKILL)
        carol.expect(f"^RECONNECTED chatty[12]@{HOST}")
        alice.expect("^MOVED lobby carol")
        carol.say("carol again, through another node")
        alice.expect("^MSG lobby \\d+ carol 0 carol again, through another node")
        alice.say("/servers")
        alice.expect(f"^SERVERS chatty1@{HOST} chatty2@{HOST}$")
        alice.say("still here after chatty3 died")
        bob.expect("^MSG lobby \\d+ alice 0 still here after chatty3 died")
        bob.say("me too")
        alice.expect("^MSG lobby \\d+ bob 0 me too")

        step("everyone quits")
        for c in (alice, bob, carol, dave):
            c.say("/quit")
            c.expect("^BYE")
        print("\nchatty demo: every step showed what it should", flush=True)
        return 0
    except DemoFailed as e:
        print(f"\nchatty demo FAILED: {e}", flush=True)
        return 1
    finally:
        for child in reversed(children):
            child.kill(signal.SIGTERM if child.proc.poll() is None else signal.SIGKILL)
        _stop_port_mapper(epmd_port)
        data.cleanup()


def _stop_port_mapper(port: int) -> None:
    from actornet import epmd

    with contextlib.suppress(Exception):  # nothing may be running
        epmd.kill(epmd_port=port, timeout=2.0)


if __name__ == "__main__":
    sys.exit(main())
