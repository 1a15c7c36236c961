"""Chat traffic through the real chat CLI, and its check: no acknowledged message lost.

Three chat nodes (``python -m examples.chatty node``) and one plain-mode client on
each, all in the room ``soak``, each client typing a line every few tenths of a
second. A client answers each line with exactly one ``OK sent soak <id>`` or
``ERROR ...``, in order, so the k-th answer belongs to the k-th line typed. At the
end every acknowledged id must have been shown (``MSG soak <id> ...``) by every
client still running (clients fail over when their node dies), with the same
nick and text everywhere.

Faults on the chat cluster are the ones its design claims to survive
(docs/chatty-design.md): a node SIGKILLed and restarted (the clients fail over),
and a node SIGSTOPped for less than half its tick time. Partitions are "not built
yet" there, so the chat cluster is never cut.
"""

from __future__ import annotations

import random
import re
import signal
import threading
import time
from pathlib import Path

from .ledger import Ledger
from .procs import HOST, Proc, python

ROOM = "soak"
TICK = 3.0
_OK = re.compile(rf"^OK sent {ROOM} (\d+)$")
_MSG = re.compile(rf"^MSG {ROOM} (\d+) (\S+) \d+ (.*)$")
_GAVE_UP = "is down and no other chat node answered"


class ChatClient:
    """One plain-mode client: what it typed, what it was answered, what it was shown."""

    def __init__(self, nick: str, server: str, env: dict[str, str], log: Path) -> None:
        self.nick = nick
        self.lock = threading.Lock()
        self.loaded = False  # answers count from the first line of load on
        self.sent: list[str] = []
        self.answers: list[tuple[str, int | str]] = []
        self.shown: dict[int, tuple[str, str]] = {}
        self.shown_order: list[int] = []
        self.reconnects = 0
        self.gave_up = False
        self.proc = Proc(nick, python("-m", "examples.chatty", "client", "--server",
                                      f"{server}@{HOST}", "--nick", nick),
                         env, log, stdin=True, on_line=self._line)

    def _line(self, line: str) -> None:
        with self.lock:
            m = _MSG.match(line)
            if m:
                seq = int(m.group(1))
                self.shown[seq] = (m.group(2), m.group(3))
                self.shown_order.append(seq)
            elif line.startswith("RECONNECTED"):
                self.reconnects += 1
            elif _GAVE_UP in line:
                self.gave_up = True
            elif self.loaded and (m := _OK.match(line)):
                self.answers.append(("ok", int(m.group(1))))
            elif self.loaded and line.startswith("ERROR"):
                self.answers.append(("error", line))

    def say(self, text: str) -> bool:
        with self.lock:
            self.sent.append(text)
        return self.proc.write(text)

    def acked(self) -> dict[int, str]:
        """``id -> text`` of every line this client got ``OK sent`` for."""
        with self.lock:
            return {seq: self.sent[k] for k, (kind, seq) in enumerate(self.answers)
                    if kind == "ok" and isinstance(seq, int) and k < len(self.sent)}

    def pending(self) -> int:
        with self.lock:
            return len(self.sent) - len(self.answers)

    @property
    def connected(self) -> bool:
        return self.proc.alive and not self.gave_up


class ChatLoad:
    """The chat cluster, its clients and their senders."""

    def __init__(self, tag: str, env: dict[str, str], logdir: Path, rng: random.Random,
                 ledger: Ledger) -> None:
        self.env = env
        self.logdir = logdir
        self.rng = rng
        self.ledger = ledger
        self.names = [f"{tag}c{i}" for i in (1, 2, 3)]
        self.nodes: dict[str, Proc] = {}
        self.clients: list[ChatClient] = []
        self.stop = threading.Event()
        self.senders: list[threading.Thread] = []
        self.errors = 0

    # -- life cycle ----------------------------------------------------------------------------

    def _node(self, name: str, join: str | None) -> Proc | None:
        old = self.nodes.get(name)
        if old is not None:
            old.close()  # the previous incarnation, killed by now
        args = ["-m", "examples.chatty", "node", "--name", name, "--tick-time", str(TICK)]
        if join:
            args += ["--join", f"{join}@{HOST}"]
        proc = Proc(name, python(*args), self.env, self.logdir / f"{name}.log")
        self.nodes[name] = proc
        if proc.expect(r"ready on", 40) is None:
            return None
        return proc

    def start(self) -> None:
        """Three chat nodes, a client on each, all in the room; then the senders."""
        first = self.names[0]
        if self._node(first, None) is None:
            raise RuntimeError(f"chat node {first} did not start")
        others = [Proc(n, python("-m", "examples.chatty", "node", "--name", n, "--tick-time",
                                 str(TICK), "--join", f"{first}@{HOST}"),
                       self.env, self.logdir / f"{n}.log") for n in self.names[1:]]
        for name, proc in zip(self.names[1:], others, strict=True):
            self.nodes[name] = proc
            if proc.expect(r"ready on", 40) is None:
                raise RuntimeError(f"chat node {name} did not start")
        self.clients = [ChatClient(f"u{i}", name, self.env, self.logdir / f"u{i}.log")
                        for i, name in enumerate(self.names, 1)]
        for c in self.clients:
            if c.proc.expect("^CONNECTED", 40) is None:
                raise RuntimeError(f"chat client {c.nick} did not connect")
        for c in self.clients:
            mark = c.proc.mark()
            c.proc.write(f"/join {ROOM}")
            if c.proc.expect(f"^OK joined {ROOM}", 40, since=mark) is None:
                raise RuntimeError(f"chat client {c.nick} could not join the room")
            c.loaded = True
        for c in self.clients:
            t = threading.Thread(target=self._send_loop, args=(c, self.rng.randrange(1 << 30)),
                                 daemon=True, name=f"chat-{c.nick}")
            t.start()
            self.senders.append(t)

    def _send_loop(self, client: ChatClient, seed: int) -> None:
        rng = random.Random(seed)
        k = 0
        while not self.stop.is_set() and client.connected:
            if client.pending() < 20:  # do not pile up lines while its node fails over
                client.say(f"{client.nick} m{k}")
                k += 1
            self.stop.wait(rng.uniform(0.2, 0.6))

    def close(self) -> None:
        self.stop.set()
        for c in self.clients:
            c.proc.close()
        for proc in self.nodes.values():
            proc.close()

    # -- faults ------------------------------------------------------------------------------

    def kill_and_restart(self) -> None:
        """SIGKILL a chat node, wait a little, restart it (same name, same data dir)."""
        name = self.rng.choice(self.names)
        down = self.rng.uniform(1.0, 3.0)
        fault = self.ledger.begin("chat_kill", f"SIGKILL chat node {name}, restart after "
                                  f"{down:.1f} s")
        self.nodes[name].kill()
        time.sleep(down)
        join = self.rng.choice([n for n in self.names if n != name])
        if self._node(name, join) is None:
            self.ledger.finding("errors", f"chat node {name} did not restart:\n"
                                + "\n".join(self.nodes[name].lines[-30:]))
        self.ledger.end(fault)

    def pause(self) -> None:
        """SIGSTOP a chat node for less than half its tick time, then SIGCONT."""
        name = self.rng.choice(self.names)
        pause = self.rng.uniform(0.3, TICK / 2 - 0.2)
        fault = self.ledger.begin("chat_stop", f"SIGSTOP chat node {name} for {pause:.1f} s")
        self.nodes[name].signal(signal.SIGSTOP)
        time.sleep(pause)
        self.nodes[name].signal(signal.SIGCONT)
        self.ledger.end(fault)

    # -- status and the final check ----------------------------------------------------------

    def counts(self) -> dict[str, int]:
        acked = sum(len(c.acked()) for c in self.clients)
        sent = sum(len(c.sent) for c in self.clients)
        return {"sent": sent, "acked": acked, "failovers": sum(c.reconnects for c in self.clients)}

    def finish(self) -> dict[str, int]:
        """Stop the senders, let everything land, probe, and check deliveries."""
        self.stop.set()
        for t in self.senders:
            t.join(5)
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline and any(
                c.pending() for c in self.clients if c.connected):
            time.sleep(0.2)
        for c in self.clients:
            if c.connected and c.pending():
                self.ledger.finding("chat_stalled", f"{c.nick} has {c.pending()} lines "
                                    "without an answer at the end")
        # one last message from everyone: the service must still acknowledge
        for c in self.clients:
            if c.connected:
                c.say(f"{c.nick} final")
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline and any(
                c.pending() for c in self.clients if c.connected):
            time.sleep(0.2)
        for c in self.clients:
            if not c.connected:
                self.ledger.finding("chat_disconnected", f"{c.nick} is gone (gave up: "
                                    f"{c.gave_up}, exit {c.proc.proc.poll()}):\n"
                                    + "\n".join(c.proc.lines[-15:]))
            elif f"{c.nick} final" not in c.acked().values():
                self.ledger.finding("chat_stalled", f"{c.nick}'s final message was not "
                                    f"acknowledged: {c.answers[-3:]}")
        acked: dict[int, tuple[str, str]] = {}
        for c in self.clients:
            for seq, text in c.acked().items():
                if seq in acked and acked[seq] != (c.nick, text):
                    self.ledger.finding("chat_order", f"id {seq} acknowledged to "
                                        f"{acked[seq]} and to {(c.nick, text)}")
                acked[seq] = (c.nick, text)
        alive = [c for c in self.clients if c.connected]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(set(acked) - set(c.shown) for c in alive):
            time.sleep(0.2)
        delivered = 0
        for c in alive:
            missing = sorted(set(acked) - set(c.shown))
            delivered += len(set(acked) & set(c.shown))
            for seq in missing[:20]:
                self.ledger.finding("lost", f"chat id {seq} {acked[seq]} acknowledged, "
                                    f"never shown to {c.nick}")
            if len(missing) > 20:
                self.ledger.finding("lost", f"... and {len(missing) - 20} more lost for "
                                    f"{c.nick}")
            for seq in set(acked) & set(c.shown):
                if c.shown[seq] != acked[seq]:
                    self.ledger.finding("chat_order", f"{c.nick} shows id {seq} as "
                                        f"{c.shown[seq]}, acknowledged as {acked[seq]}")
            if c.shown_order != sorted(c.shown_order):
                self.ledger.finding("chat_order", f"{c.nick} shows ids out of order")
        views = [c.shown for c in alive]
        for seq in set().union(*views) if views else set():
            texts = {v[seq] for v in views if seq in v}
            if len(texts) > 1:
                self.ledger.finding("chat_order", f"id {seq} shown differently: {texts}")
        return {"sent": sum(len(c.sent) for c in self.clients), "acked": len(acked),
                "errors": sum(1 for c in self.clients for kind, _ in c.answers
                              if kind == "error"),
                "delivered": delivered, "expected": len(acked) * len(alive),
                "failovers": sum(c.reconnects for c in self.clients)}
