"""Chat traffic through the real chat CLI, and its check: no acknowledged message lost.

Three chat nodes (``python -m examples.chatty node``) and one plain-mode client on
each, all in the room ``soak``, each client typing a line every few tenths of a
second. A client answers each line with exactly one ``OK sent soak <id>`` or
``ERROR ...``, in order, so the k-th answer belongs to the k-th line typed. Every
line typed is unique (``<nick> m<k>``). At the end every acknowledged line must
have been shown (``MSG soak <id> <nick> ...``) exactly once by every client still
running (clients fail over when their node dies), and every chat node must hold
the same history of the room, record for record. Ids are not compared: a
partition merge renumbers the losing side's messages.

Faults on the chat cluster are the ones its design claims to survive
(docs/chatty-design.md): a node SIGKILLed and restarted (the clients fail over;
the time from the kill to each of its clients' ``RECONNECTED`` is recorded), a
node SIGSTOPped for less than half its tick time, and a partition (one chat node
cut from the two others, both ways, healed after 1-5 s: both sides chat, the heal
merges them). On test hosts (``--hosts netns``) also a silent cut (`netcut`): a chat
host's packets dropped, to the two other chat hosts only (a partition, as above) or to
every host (its clients fail over too); healed after 1-5 s, then a ping brings the nodes
together, as nothing reconnects them by itself.
"""

from __future__ import annotations

import contextlib
import queue
import random
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import actornet
from actornet import testing

from .ledger import Ledger
from .procs import Place, Proc

ROOM = "soak"
TICK = 3.0
_OK = re.compile(rf"^OK sent {ROOM} (\d+)$")
_MSG = re.compile(rf"^MSG {ROOM} (\d+) (\S+) \d+ (.*)$")


class ChatClient:
    """One plain-mode client: what it typed, what it was answered, what it was shown."""

    def __init__(self, nick: str, server: str, env: dict[str, str], log: Path,
                 place: Place) -> None:
        self.nick = nick
        self.lock = threading.Lock()
        self.loaded = False  # answers count from the first line of load on
        self.sent: list[str] = []
        self.answers: list[tuple[str, int | str]] = []
        self.shown: Counter[tuple[str, str]] = Counter()  # (nick, text) -> times shown
        self.reconnects = 0
        self.reconnected_at: list[float] = []
        self.server = server
        # between its DISCONNECTED and RECONNECTED lines (a client never gives up: it keeps
        # trying, and answers every line meanwhile with an ERROR)
        self.disconnected = False
        role = f"c{server[-1]}"  # chat node <tag>c<i> lives on host c<i>
        self.proc = Proc(nick, place.python(
            "ctl", "-m", "examples.chatty", "client", "--server",
            f"{server}@{place.host(role)}", "--nick", nick, "--host", place.host("ctl")),
            env, log, stdin=True, on_line=self._line)

    def _line(self, line: str) -> None:
        with self.lock:
            m = _MSG.match(line)
            if m:
                self.shown[(m.group(2), m.group(3))] += 1
            elif line.startswith("DISCONNECTED"):
                self.disconnected = True
            elif line.startswith("RECONNECTED"):
                self.disconnected = False
                self.reconnects += 1
                self.reconnected_at.append(time.monotonic())
                self.server = line.split()[1].partition("@")[0]
            elif self.loaded and (m := _OK.match(line)):
                self.answers.append(("ok", int(m.group(1))))
            elif self.loaded and line.startswith("ERROR"):
                self.answers.append(("error", line))

    def say(self, text: str) -> bool:
        with self.lock:
            self.sent.append(text)
        return self.proc.write(text)

    def acked(self) -> set[str]:
        """Every line this client got ``OK sent`` for."""
        with self.lock:
            return {self.sent[k] for k, (kind, _) in enumerate(self.answers)
                    if kind == "ok" and k < len(self.sent)}

    def pending(self) -> int:
        with self.lock:
            return len(self.sent) - len(self.answers)

    @property
    def connected(self) -> bool:
        return self.proc.alive and not self.disconnected


class ChatLoad:
    """The chat cluster, its clients and their senders."""

    def __init__(self, tag: str, env: dict[str, str], logdir: Path, rng: random.Random,
                 ledger: Ledger, place: Place | None = None) -> None:
        self.place = place or Place()
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
        self.failover_s: list[float] = []  # SIGKILL of a client's node -> RECONNECTED
        self.cut_failover_s: list[float] = []  # silent cut of a client's node -> RECONNECTED
        self.control: actornet.Node | None = None  # reaches the chat nodes (their cookie)

    def full(self, name: str) -> str:
        """The node name of chat node `name` (``<tag>c<i>`` runs on host ``c<i>``)."""
        return f"{name}@{self.place.host('c' + name[-1])}"

    # -- life cycle ----------------------------------------------------------------------------

    def _node(self, name: str, join: str | None) -> Proc | None:
        old = self.nodes.get(name)
        if old is not None:
            old.close()  # the previous incarnation, killed by now
        args = ["-m", "examples.chatty", "node", "--name", self.full(name), "--tick-time",
                str(TICK)]
        if join:
            args += ["--join", self.full(join)]
        proc = Proc(name, self.place.python("c" + name[-1], *args), self.env,
                    self.logdir / f"{name}.log")
        self.nodes[name] = proc
        if proc.expect(r"ready on", 40) is None:
            return None
        return proc

    def start(self) -> None:
        """Three chat nodes, a client on each, all in the room; then the senders."""
        first = self.names[0]
        if self._node(first, None) is None:
            raise RuntimeError(f"chat node {first} did not start")
        others = [Proc(n, self.place.python("c" + n[-1], "-m", "examples.chatty", "node",
                                            "--name", self.full(n), "--tick-time", str(TICK),
                                            "--join", self.full(first)),
                       self.env, self.logdir / f"{n}.log") for n in self.names[1:]]
        for name, proc in zip(self.names[1:], others, strict=True):
            self.nodes[name] = proc
            if proc.expect(r"ready on", 40) is None:
                raise RuntimeError(f"chat node {name} did not start")
        self.clients = [ChatClient(f"u{i}", name, self.env, self.logdir / f"u{i}.log",
                                   self.place) for i, name in enumerate(self.names, 1)]
        for c in self.clients:
            if c.proc.expect("^CONNECTED", 40) is None:
                raise RuntimeError(f"chat client {c.nick} did not connect")
        for c in self.clients:
            mark = c.proc.mark()
            c.proc.write(f"/join {ROOM}")
            if c.proc.expect(f"^OK joined {ROOM}", 40, since=mark) is None:
                raise RuntimeError(f"chat client {c.nick} could not join the room")
            c.loaded = True
        self.control = actornet.start_node(f"{self.names[0]}ctl@{self.place.host('ctl')}",
                                           self.env["ACTORNET_COOKIE"], port=0, hidden=True)
        for c in self.clients:
            t = threading.Thread(target=self._send_loop, args=(c, self.rng.randrange(1 << 30)),
                                 daemon=True, name=f"chat-{c.nick}")
            t.start()
            self.senders.append(t)

    def _send_loop(self, client: ChatClient, seed: int) -> None:
        rng = random.Random(seed)
        k = 0
        while not self.stop.is_set() and client.proc.alive:
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
        if self.control is not None:
            self.control.stop()

    def _on_control(self, fn: Any, *args: Any, timeout: float = 15.0) -> Any:
        """Run ``fn(*args)`` in a process of the control node; its result, or raise."""
        assert self.control is not None
        box: queue.Queue[tuple[bool, Any]] = queue.Queue()

        def run() -> None:
            try:
                box.put((True, fn(*args)))
            except BaseException as e:  # handed to the caller
                box.put((False, e))

        self.control.spawn(run)
        ok, value = box.get(timeout=timeout)
        if not ok:
            raise value
        return value

    def _views(self) -> dict[str, Any]:
        """Each chat node's ``nodes()``, through the control node."""
        def ask() -> dict[str, Any]:
            out: dict[str, Any] = {}
            for n in self.names:
                try:
                    out[n] = actornet.rpc.call(self.full(n), actornet.nodes, timeout=3)
                except Exception as e:
                    out[n] = f"unreachable: {type(e).__name__}"
            return out
        return self._on_control(ask)  # type: ignore[no-any-return]

    def _meshed(self) -> bool:
        views = self._views()
        return all(isinstance(v, list) and {self.full(o) for o in self.names if o != n}
                   <= set(v) for n, v in views.items())

    # -- faults ------------------------------------------------------------------------------

    def kill_and_restart(self) -> None:
        """SIGKILL a chat node, wait a little, restart it (same name, same data dir)."""
        name = self.rng.choice(self.names)
        down = self.rng.uniform(1.0, 3.0)
        fault = self.ledger.begin("chat_kill", f"SIGKILL chat node {name}, restart after "
                                  f"{down:.1f} s")
        waiting = [(c, len(c.reconnected_at)) for c in self.clients
                   if c.connected and c.server == name]
        killed = time.monotonic()
        self.nodes[name].kill()
        deadline = killed + 15
        while time.monotonic() < deadline and any(  # its clients fail over meanwhile
                len(c.reconnected_at) == n and c.connected for c, n in waiting):
            time.sleep(0.05)
        for c, n in waiting:
            if len(c.reconnected_at) > n:
                self.failover_s.append(c.reconnected_at[n] - killed)
        time.sleep(max(0.0, killed + down - time.monotonic()))
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

    def cut(self) -> None:
        """Cut one chat node from the two others, both ways; each side keeps chatting (the
        side without the room's sequencer elects one); the cut heals after 1-5 s and the
        room's two histories merge."""
        lonely = self.rng.choice(self.names)
        heal = self.rng.uniform(1.0, 5.0)
        crowd = [self.full(n) for n in self.names if n != lonely]
        fault = self.ledger.begin("chat_cut", f"cut chat node {lonely} from the others, "
                                  f"heal after {heal:.1f} s")
        try:
            self._on_control(testing.partition, [self.full(lonely)], crowd, heal)
        except Exception as e:
            self.ledger.finding("errors", f"cutting chat node {lonely} failed: {e!r}")
        time.sleep(heal)
        deadline = time.monotonic() + 20
        while not self._meshed():
            if time.monotonic() > deadline:
                self.ledger.finding("reconnect", f"chat nodes not meshed 20 s after the cut "
                                    f"healed: {self._views()}")
                break
            time.sleep(0.2)
        self.ledger.end(fault)

    def netcut(self) -> None:
        """Drop a chat host's packets (silently) to the two other chat hosts, or to every
        host (then its clients fail over, and the time to their RECONNECTED is recorded);
        heal after 1-5 s, then ping between the chat nodes (after a healed partition
        nothing reconnects nodes by itself) until they have stayed meshed for a while."""
        net = self.place.net
        assert net is not None
        lonely = self.rng.choice(self.names)
        heal = self.rng.uniform(1.0, 5.0)
        whole = self.rng.random() < 0.5
        fault = self.ledger.begin("chat_netcut", f"drop chat host c{lonely[-1]}'s packets to "
                                  + ("every host" if whole else "the other chat hosts")
                                  + f", heal after {heal:.1f} s")
        waiting = [(c, len(c.reconnected_at)) for c in self.clients
                   if whole and c.connected and c.server == lonely]
        cut_at = time.monotonic()
        if whole:
            net.cut("c" + lonely[-1])
        else:
            net.partition(["c" + lonely[-1]], ["c" + n[-1] for n in self.names if n != lonely])
        time.sleep(heal)
        net.heal()
        for c, n in waiting:
            if len(c.reconnected_at) > n:
                self.cut_failover_s.append(c.reconnected_at[n] - cut_at)
        # As a cluster manager would (libcluster, say): ping until the nodes have stayed
        # meshed for a tick and more. A link can go down a while after the heal: TCP backs
        # off its retries during the cut, so the first one after it may come too late for
        # the tick (Erlang's distribution behaves the same).
        deadline = time.monotonic() + 30
        meshed_since: float | None = None
        while True:
            now = time.monotonic()
            if self._meshed():
                meshed_since = meshed_since or now
                if now - meshed_since >= TICK + 1.5:
                    break
            else:
                meshed_since = None
                for name in self.names:
                    with contextlib.suppress(Exception):
                        self._on_control(_ping_all, self.full(name),
                                         [self.full(n) for n in self.names if n != name])
            if now > deadline:
                self.ledger.finding("reconnect", f"chat nodes not meshed for long 30 s "
                                    f"after a silent cut healed: {self._views()}")
                break
            time.sleep(0.2)
        self.ledger.end(fault)

    # -- status and the final check ----------------------------------------------------------

    def counts(self) -> dict[str, int]:
        acked = sum(len(c.acked()) for c in self.clients)
        sent = sum(len(c.sent) for c in self.clients)
        return {"sent": sent, "acked": acked, "failovers": sum(c.reconnects for c in self.clients)}

    def finish(self) -> dict[str, Any]:
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
                self.ledger.finding("chat_disconnected", f"{c.nick} is not connected at the "
                                    f"end (still reconnecting: {c.disconnected}, exit "
                                    f"{c.proc.proc.poll()}):\n"
                                    + "\n".join(c.proc.lines[-15:]))
            elif f"{c.nick} final" not in c.acked():
                self.ledger.finding("chat_stalled", f"{c.nick}'s final message was not "
                                    f"acknowledged: {c.answers[-3:]}")
        acked = {(c.nick, text) for c in self.clients for text in c.acked()}
        alive = [c for c in self.clients if c.connected]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(acked - set(c.shown) for c in alive):
            time.sleep(0.2)
        delivered = 0
        for c in alive:
            missing = sorted(acked - set(c.shown))
            delivered += len(acked & set(c.shown))
            for item in missing[:20]:
                self.ledger.finding("lost", f"chat message {item} acknowledged, "
                                    f"never shown to {c.nick}")
            if len(missing) > 20:
                self.ledger.finding("lost", f"... and {len(missing) - 20} more lost for "
                                    f"{c.nick}")
            twice = sorted(m for m, n in c.shown.items() if n > 1)
            if twice:
                self.ledger.finding("chat_order", f"{c.nick} was shown {len(twice)} messages "
                                    f"more than once, e.g. {twice[:3]}")
        self._check_histories(acked)
        return {"sent": sum(len(c.sent) for c in self.clients), "acked": len(acked),
                "errors": sum(1 for c in self.clients for kind, _ in c.answers
                              if kind == "error"),
                "delivered": delivered, "expected": len(acked) * len(alive),
                "failovers": sum(c.reconnects for c in self.clients),
                "longest_failover_s": round(max(self.failover_s, default=0.0), 2),
                **({"longest_cut_failover_s": round(max(self.cut_failover_s), 2)}
                   if self.cut_failover_s else {})}

    def _check_histories(self, acked: set[tuple[str, str]]) -> None:
        """Every chat node holds the same history of the room, with every acknowledged
        message in it once, numbered 1, 2, 3... (as far as the replicas keep records)."""
        from examples.chatty import room

        def fetch() -> list[Any]:
            return [actornet.rpc.call(self.full(n), room.records, ROOM, timeout=10)
                    for n in self.names]

        deadline = time.monotonic() + 20
        while True:
            try:
                views = self._on_control(fetch, timeout=40)
            except Exception as e:
                views = [repr(e)]
            if len(views) == 3 and views[0] == views[1] == views[2]:
                break
            if time.monotonic() > deadline:
                self.ledger.finding("chat_order", "the chat nodes' histories of the room "
                                    "differ: " + "; ".join(
                                        f"{n}: {len(v) if isinstance(v, list) else v}"
                                        for n, v in zip(self.names, views, strict=False)))
                return
            time.sleep(0.5)
        history = views[0]
        seqs = [r[0] for r in history]
        if seqs and seqs != list(range(seqs[0], seqs[0] + len(seqs))):
            self.ledger.finding("chat_order", "the room's history has a hole in its numbers")
        msgs = Counter((ev[1], ev[2]) for _, _, ev in history if ev[0] == "msg")
        kept_from = seqs[0] if seqs else 1
        if kept_from == 1:  # the replicas hold the whole history: check it against acks
            for item in sorted(acked - set(msgs))[:20]:
                self.ledger.finding("lost", f"chat message {item} acknowledged, not in the "
                                    "room's history")
        for item, n in msgs.items():
            if n > 1:
                self.ledger.finding("chat_order", f"{item} is {n} times in the history")


def _ping_all(node: str, others: list[str]) -> list[str]:
    """From `node`, ping each of `others` (as `actornet.testing.heal_partition` does)."""
    return [actornet.rpc.call(node, actornet.ping, other, timeout=15) for other in others]
