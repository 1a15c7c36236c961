"""The soak's controller: set up the clusters, inject faults, check, and summarize.

This process is a hidden actornet node (the controller: it sees every child but is
no member of their cluster, so the children's pg and global run among the three of
them). It starts three workload nodes (``python -m actornet node``) and deploys
`tests.soak._remote` on them, and unless ``--no-chat`` a chat cluster of three chat
nodes with a client each (`tests.soak.chat`). Then, until the time is up, one fault
at a time, drawn from a seeded `random.Random` (every kind once per round, in a
shuffled order):

- ``kill``: SIGKILL a workload node, restart it under the same name and port;
- ``stop``: SIGSTOP a workload node for 1-6 s (often past the tick time), SIGCONT;
- ``cut``: cut the links of one node to the others, or of one pair, both ways
  (`actornet.testing.partition(..., heal_after=...)`), or one pair from one side
  only (`actornet.testing.cut(..., heal_after)` on one node); each heals by itself;
- ``chat_kill`` / ``chat_stop``: the same for a chat node; ``chat_cut``: one chat node
  cut from the two others, healed after 1-5 s (see `tests.soak.chat`).

With ``--hosts netns`` every node runs on a test host of its own (`tests.netns`: network
namespaces on one switch, each host with its port mapper on the standard port; the
workload nodes find each other by name), this controller on one more, and two more kinds
of fault drop packets silently, so that only the missing ticks tell:

- ``netcut``: one workload host's packets dropped to the two others, or one way between
  two of them, healed after 1-8 s; the load's own traffic reconnects the nodes;
- ``chat_netcut``: a chat host's packets dropped (see `tests.soak.chat`).

After each fault: wait (bounded) until the three nodes are connected again and no
nodeup/nodedown has been seen among them for a while, pause the pg and global
workers, wait (bounded) until pg members and the global table are equal on every
node (and equal to the union of each node's local members; every globally
registered pid alive), and resume. At the end: stop the load, check stream tails,
outstanding monitors and the chat deliveries, print the summary, exit 1 on any
finding.

So that one finding does not spoil the rest of the run, a link that keeps going
down and up after a fault is stopped with `actornet.disconnect_node` from the end
that sees it flap, the controller re-makes its own link to a node whose rpcs time
out while connected, and a divergence is reported once (later checks ignore it).
Every child's output, the controller's actornet log and ``findings.txt`` (findings,
faults, unexplained nodedowns) are in the run's log directory, kept when the run
found something.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import actornet
from actornet import testing
from tests.cluster import free_port
from tests.netns import Net, filter_unavailable

from . import _remote
from .chat import ChatLoad
from .ledger import FINDING_KINDS, Ledger
from .procs import HOST, HOSTS, Place, Proc, WorkNode, start_epmd

TICK = 3.0  # tick time of the workload nodes and the controller
RECOVER_TIMEOUT = 20.0  # seconds for the nodes to reconnect after a fault
QUIET = TICK + 1.5  # seconds without nodeup/nodedown that make the connections stable
CONVERGE_TIMEOUT = 15.0  # seconds for pg and global to agree after a fault
STATUS_EVERY = 10.0


class Soak:
    """One soak run."""

    def __init__(self, minutes: float, seed: int, chat: bool, keep_logs: bool = False,
                 place: Place | None = None, rounds: int | None = None) -> None:
        self.place = place or Place()
        self.minutes = minutes
        self.rounds = rounds  # stop after this many rounds of every fault kind (or the time)
        self.seed = seed
        self.with_chat = chat
        self.keep_logs = keep_logs
        self.t0 = time.monotonic()
        self.rng = random.Random(seed)  # the fault schedule
        self.seeds = random.Random(seed ^ 0x5EED)  # the workers' seeds
        self.print_lock = threading.Lock()
        self.logdir = Path(tempfile.mkdtemp(prefix=f"actornet-soak-{seed}-"))
        self.ledger = Ledger(self.t0, TICK, self.out)
        self.tag = f"sk{os.getpid() % 100000}"
        self.cookie = f"soak-{seed}-{os.getpid()}"
        self.epmd: Proc | None = None
        self.node: actornet.Node | None = None
        self.ctl_addr = ""
        self.nodes: list[WorkNode] = []
        self.chat: ChatLoad | None = None
        self.done = threading.Event()
        self.fault_phase_end = 0.0
        self.known_problems: set[str] = set()  # divergences reported already
        self.log_handler: logging.Handler | None = None

    def out(self, line: str) -> None:
        with self.print_lock:
            print(line, flush=True)

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    # -- controller helpers ------------------------------------------------------------------

    def rpc(self, node: str, fn: Any, *args: Any, timeout: float = 5.0) -> Any:
        """`actornet.rpc.call`, itself checked for overrunning its timeout."""
        start = time.monotonic()
        try:
            return actornet.rpc.call(node, fn, *args, timeout=timeout)
        finally:
            took = time.monotonic() - start
            if took > timeout + _remote.CALL_MARGIN:
                self.ledger.finding("deadlocks", f"controller rpc {fn.__name__} on {node}: "
                                    f"{took:.1f} s with timeout {timeout} s")

    def _ctl_loop(self) -> None:
        while True:
            self.ledger.handle(actornet.receive())

    def _status_loop(self) -> None:
        while not self.done.wait(STATUS_EVERY):
            self.ledger.judge_gaps()
            if self.chat is not None:
                self.ledger.chat = self.chat.counts()
            self.ledger.say(self.ledger.status())

    # -- setup -------------------------------------------------------------------------------------

    def setup(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.place.net is None:  # one private port mapper on loopback for everything
            epmd_port = free_port()
            env["ACTORNET_EPMD_PORT"] = str(epmd_port)
            self.epmd = start_epmd(epmd_port, env, self.logdir / "epmd.log")
            os.environ["ACTORNET_EPMD_PORT"] = str(epmd_port)  # lookups here: ours only
        else:  # each host's own port mapper, on the standard port
            env.pop("ACTORNET_EPMD_PORT", None)
            os.environ.pop("ACTORNET_EPMD_PORT", None)
        handler = logging.FileHandler(self.logdir / "controller.log")
        handler.setFormatter(logging.Formatter("%(created).3f %(name)s %(levelname)s %(message)s"))
        logging.getLogger("actornet").addHandler(handler)
        logging.getLogger("actornet").setLevel(logging.INFO)
        self.log_handler = handler
        ctl_name = f"{self.tag}ctl@{self.place.host('ctl')}"
        self.node = actornet.start_node(ctl_name, self.cookie, port=0, tick_time=TICK,
                                        hidden=True)
        self.ctl_addr = f"{ctl_name}:{self.node.port}"
        actornet.register(_remote.CTL, actornet.spawn(self._ctl_loop))
        if self.place.net is None:
            ports: set[int] = set()
            while len(ports) < 3:
                ports.add(free_port())
            self.nodes = [WorkNode(f"{self.tag}n{i}@{HOST}", port, self.cookie, TICK, env,
                                   self.logdir / f"n{i}.log")
                          for i, port in enumerate(sorted(ports), 1)]
        else:  # registered with their hosts' port mappers: found by name
            self.nodes = [WorkNode(f"{self.tag}n{i}@w{i}", None, self.cookie, TICK, env,
                                   self.logdir / f"n{i}.log", self.place, f"w{i}")
                          for i in (1, 2, 3)]
        for n in self.nodes:
            n.launch()
        for n in self.nodes:
            if not n.wait_ready():
                raise RuntimeError(f"node {n.name} did not start")
        for n in self.nodes:
            self._join(n)
        if self.with_chat:
            chat_env = {**env, "ACTORNET_COOKIE": f"{self.cookie}-chat",
                        "CHATTY_DATA_DIR": str(self.logdir / "chat-data")}
            self.chat = ChatLoad(self.tag, chat_env, self.logdir, random.Random(self.seed + 1),
                                 self.ledger, self.place)
            self.chat.start()
        self.ledger.say(f"setup done: workload nodes {', '.join(self.names)}"
                        + (f"; chat nodes {', '.join(self.chat.names)}" if self.chat else ""))

    def _join(self, n: WorkNode) -> None:
        """Connect the controller to `n`, `n` to the other nodes, and deploy the workload."""
        deadline = time.monotonic() + 15
        while actornet.ping(n.address, timeout=3) != "pong":
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot reach {n.address}")
            time.sleep(0.2)
        self.rpc(n.name, _remote.connect, [o.address for o in self.nodes if o is not n],
                 timeout=15)
        self.rpc(n.name, _remote.deploy, self.ctl_addr, self.names,
                 self.seeds.randrange(1 << 30), timeout=15)

    # -- recovery and convergence ---------------------------------------------------------------

    def _views(self) -> dict[str, Any]:
        views: dict[str, Any] = {}
        for n in self.nodes:
            try:
                views[n.name] = self.rpc(n.name, actornet.nodes, timeout=2)
            except Exception as e:
                views[n.name] = f"unreachable: {type(e).__name__}"
        return views

    def _relink(self, n: WorkNode, why: str) -> None:
        """The controller's own link to `n` is broken one way (its rpcs time out while it
        counts as connected): drop it and connect again, so the run can go on."""
        self.ledger.finding("reconnect", f"the controller's link to {n.name}: {why}; "
                            "dropping it (disconnect_node) and connecting again")
        actornet.disconnect_node(n.name)
        time.sleep(0.5)
        with contextlib.suppress(Exception):
            actornet.ping(n.address, timeout=3)

    def _meshed(self, views: dict[str, Any]) -> bool:
        return all(isinstance(v, list) and set(self.names) - {name} <= set(v)
                   for name, v in views.items())

    def recover(self, label: str) -> str:
        """Wait (bounded) until every workload node is connected to the two others and
        the connections are stable: no nodeup/nodedown among them for a while."""
        start = time.monotonic()
        timeouts: Counter[str] = Counter()
        while True:
            views = self._views()
            meshed = self._meshed(views)
            for n in self.nodes:
                if views[n.name] == "unreachable: Timeout":
                    timeouts[n.name] += 1
                    if timeouts[n.name] == 5:
                        self._relink(n, "rpc times out (5 in a row) while connected")
            last = self.ledger.last_net_event(set(self.names))
            if meshed and time.monotonic() - last >= QUIET:
                return f"reconnected and quiet {time.monotonic() - start:.1f} s later"
            if time.monotonic() - start > RECOVER_TIMEOUT:
                break
            time.sleep(0.3)
        if meshed:
            with self.ledger.lock:
                flaps = sorted((t, n, what, peer) for pair, events in self.ledger.net.items()
                               for t, n, what in events for peer in pair - {n}
                               if t > time.monotonic() - 12 and pair <= set(self.names))
            self.ledger.finding("reconnect", f"{label}: connections still going up and down "
                                f"{RECOVER_TIMEOUT:.0f} s later (flapping):\n  " + "\n  ".join(
                                    f"[{self.ledger.rel(t)}] {n} saw {what} {p}"
                                    for t, n, what, p in flaps[-12:]))
            return self._repair({(n, p) for _, n, what, p in flaps if what == "nodedown"})
        self.ledger.finding("reconnect", f"{label}: not reconnected {RECOVER_TIMEOUT:.0f} s "
                            f"later: {views}")
        for n in self.nodes:  # help, so the run can go on
            with contextlib.suppress(Exception):
                actornet.ping(n.address, timeout=3)
                self.rpc(n.name, _remote.connect, [o.address for o in self.nodes if o is not n],
                         timeout=15)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self._meshed(self._views()):
            time.sleep(0.2)
        return "reconnected only when asked to"

    def _repair(self, flapping: set[tuple[str, str]]) -> str:
        """Stop a flapping link so the run can go on: the node that keeps seeing its peer
        go down disconnects it (a GOODBYE: both ends drop the link, then reconnect)."""
        for node, peer in sorted(flapping):
            with contextlib.suppress(Exception):
                self.rpc(node, actornet.disconnect_node, peer)
        deadline = time.monotonic() + RECOVER_TIMEOUT
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if (self._meshed(self._views())
                    and time.monotonic() - self.ledger.last_net_event(set(self.names)) >= QUIET):
                return f"flapping; repaired by disconnect_node on {sorted(flapping)}"
        return f"flapping; disconnect_node on {sorted(flapping)} did not repair it"

    def converge(self, label: str) -> None:
        """Pause pg/global churn; wait (bounded) for equal tables on every node; resume."""
        for n in self.nodes:
            with contextlib.suppress(Exception):
                self.rpc(n.name, _remote.set_paused, True)
        time.sleep(0.3)
        start = time.monotonic()
        try:
            while True:
                snaps: dict[str, Any] = {}
                problems: list[str] = []
                suspects: set[actornet.Pid] = set()
                for n in self.nodes:
                    try:
                        snaps[n.name] = self.rpc(n.name, _remote.snapshot, timeout=5)
                    except Exception as e:
                        problems.append(f"{n.name}: snapshot failed: {e!r}")
                if not problems:
                    problems = self._compare(snaps, suspects)
                old = [p for p in problems if p in self.known_problems]
                problems = [p for p in problems if p not in self.known_problems]
                if not problems:
                    took = time.monotonic() - start
                    self.ledger.convergence.append(took)
                    self.ledger.say(f"  pg and global converged in {took:.1f} s ({label})"
                                    + (f", but for {len(old)} differences reported before"
                                       if old else ""))
                    return
                if time.monotonic() - start > CONVERGE_TIMEOUT:
                    self.known_problems.update(p for p in problems if "snapshot failed" not in p)
                    self.ledger.finding("divergence", f"{label}: pg/global not equal on all "
                                        f"nodes {CONVERGE_TIMEOUT:.0f} s later:\n  "
                                        + "\n  ".join(problems[:12])
                                        + self._explain(snaps, suspects))
                    return
                time.sleep(0.25)
        finally:
            for n in self.nodes:
                with contextlib.suppress(Exception):
                    self.rpc(n.name, _remote.set_paused, False)

    def _explain(self, snaps: dict[str, Any], suspects: set[actornet.Pid]) -> str:
        """What the nodes did with the pids of a divergence, and who their pg peers are."""
        lines = []
        for name, s in snaps.items():
            lines.append(f"pg peers of {name}: {s.get('pg_peers')}")
        by_node: dict[str, list[actornet.Pid]] = {}
        for pid in sorted(suspects)[:10]:
            by_node.setdefault(pid.node, []).append(pid)
        for node, pids in by_node.items():
            try:
                for line in self.rpc(node, _remote.history, pids):
                    lines.append(f"{node}: {line}")
            except Exception as e:
                lines.append(f"{node}: history unavailable: {e!r}")
        with self.ledger.lock:
            recent = sorted((t, n, what, peer) for pair, events in self.ledger.net.items()
                            for t, n, what in events for peer in pair - {n}
                            if time.monotonic() - t < 90)
        for t, n, what, peer in recent[-20:]:
            lines.append(f"[{self.ledger.rel(t)}] {n} saw {what} {peer}")
        return "\n  " + "\n  ".join(lines)

    def _compare(self, snaps: dict[str, Any], suspects: set[actornet.Pid]) -> list[str]:
        problems = []
        for name, s in snaps.items():
            missing = set(self.names) - {name} - set(s["nodes"])
            if missing:
                problems.append(f"{name} is not connected to {sorted(missing)}")
        for i, group in enumerate(_remote.GROUPS):
            truth: Counter[Any] = Counter()
            for s in snaps.values():
                truth.update(s["pg"][i][1])
            for name, s in snaps.items():
                view = Counter(s["pg"][i][2])
                if view != truth:
                    extra, missing_ = (view - truth).elements(), (truth - view).elements()
                    suspects.update(view - truth)
                    suspects.update(truth - view)
                    problems.append(f"pg {group} on {name}: extra {sorted(extra)}"
                                    f" missing {sorted(missing_)}")
        tables = {name: {k if isinstance(k, str) else repr(k): pid for k, pid, _ in s["global"]}
                  for name, s in snaps.items()}
        first = self.names[0]
        for name, table in tables.items():
            if table != tables[first]:
                diff = {k: (tables[first].get(k), table.get(k))
                        for k in set(table) | set(tables[first])
                        if tables[first].get(k) != table.get(k)}
                suspects.update(p for pair in diff.values() for p in pair if p is not None)
                problems.append(f"global table on {name} differs from {first}'s: {diff}")
        for name, s in snaps.items():
            for key, pid, alive in s["global"]:
                if alive is False:
                    suspects.add(pid)
                    problems.append(f"global {key!r} on every node -> {pid!r}, dead on {name}")
                elif pid.node not in self.names:
                    problems.append(f"global {key!r} on {name} -> {pid!r} of no running node")
        return problems

    # -- faults ----------------------------------------------------------------------------------

    def fault_kill(self) -> None:
        n = self.rng.choice(self.nodes)
        down = self.rng.uniform(0.5, 3.0)
        fault = self.ledger.begin("kill", f"SIGKILL {n.name}, restart after {down:.1f} s",
                                  nodes={n.name})
        n.kill()
        time.sleep(down)
        n.launch()
        if not n.wait_ready():
            self.ledger.finding("errors", f"{n.name} did not restart on port {n.port}; "
                                "trying another port")
            n.kill()
            n.port = None if n.port is None else free_port()
            n.launch()
            if not n.wait_ready():
                raise RuntimeError(f"{n.name} did not restart")
        self._join(n)
        note = self.recover(f"fault #{fault.number}")
        self.ledger.end(fault, note)
        self.converge(f"after fault #{fault.number}")

    def fault_stop(self) -> None:
        n = self.rng.choice(self.nodes)
        pause = self.rng.uniform(1.0, 6.0)
        fault = self.ledger.begin("stop", f"SIGSTOP {n.name} for {pause:.1f} s", nodes={n.name})
        start = time.monotonic()
        n.signal(signal.SIGSTOP)
        time.sleep(pause)
        n.signal(signal.SIGCONT)
        self.ledger.stopped(n.name, start, time.monotonic())
        note = self.recover(f"fault #{fault.number}")
        self.ledger.end(fault, note)
        self.converge(f"after fault #{fault.number}")

    def fault_cut(self) -> None:
        """Cut one node from the two others, or one pair, both ways (`testing.partition`);
        or one pair from one side only (`testing.cut` on one node: the other end sees
        only silence). Every cut heals by itself after 1-5 s."""
        r = self.rng.random()
        heal = self.rng.uniform(1.0, 5.0)
        if r < 0.45:
            a = self.rng.choice(self.names)
            side_a, side_b = [a], [n for n in self.names if n != a]
            what = f"cut {side_a} | {side_b} both ways"
        else:
            a, b = self.rng.sample(self.names, 2)
            side_a, side_b = [a], [b]
            what = f"cut {a} | {b} " + ("both ways" if r < 0.75 else f"from {a}'s side only")
        pairs = {frozenset((x, y)) for x in side_a for y in side_b}
        fault = self.ledger.begin("cut", f"{what}, heal after {heal:.1f} s", pairs=pairs)
        try:
            if r < 0.75:
                testing.partition(side_a, side_b, heal_after=heal)
            else:
                self.rpc(side_a[0], testing.cut, side_b[0], heal)
        except Exception as e:
            self.ledger.finding("errors", f"cutting {what} failed: {e!r}")
        time.sleep(heal)
        note = self.recover(f"fault #{fault.number}")
        self.ledger.end(fault, note)
        self.converge(f"after fault #{fault.number}")

    def fault_netcut(self) -> None:
        """Drop packets between workload hosts, silently: one host's to the two others,
        or one way between two; heal after 1-8 s. Nothing reconnects the nodes but the
        load's own traffic."""
        net = self.place.net
        assert net is not None
        roles = {n.name: n.role for n in self.nodes}
        heal = self.rng.uniform(1.0, 8.0)
        if self.rng.random() < 0.6:
            a = self.rng.choice(self.names)
            others = [n for n in self.names if n != a]
            pairs = {frozenset((a, o)) for o in others}
            what = f"drop {roles[a]}'s packets to {', '.join(roles[o] for o in others)}"
            fault = self.ledger.begin("netcut", f"{what}, heal after {heal:.1f} s", pairs=pairs)
            net.partition([roles[a]], [roles[o] for o in others])
        else:
            a, b = self.rng.sample(self.names, 2)
            what = f"drop {roles[a]}'s packets to {roles[b]} (one way)"
            fault = self.ledger.begin("netcut", f"{what}, heal after {heal:.1f} s",
                                      pairs={frozenset((a, b))})
            net.drop(roles[a], roles[b])
        time.sleep(heal)
        net.heal()
        note = self.recover(f"fault #{fault.number}")
        self.ledger.end(fault, note)
        self.converge(f"after fault #{fault.number}")

    def fault_chat_netcut(self) -> None:
        assert self.chat is not None
        self.chat.netcut()

    def fault_chat_kill(self) -> None:
        assert self.chat is not None
        self.chat.kill_and_restart()

    def fault_chat_stop(self) -> None:
        assert self.chat is not None
        self.chat.pause()

    def fault_chat_cut(self) -> None:
        assert self.chat is not None
        self.chat.cut()

    def inject(self) -> None:
        """Faults, one at a time, until the time is up (or `rounds` rounds are done: each
        round injects every kind once, in a shuffled order)."""
        kinds = ["kill", "stop", "cut"]
        if self.chat:
            kinds += ["chat_kill", "chat_stop", "chat_cut"]
        if self.place.net is not None:
            kinds += ["netcut", "netcut"] + (["chat_netcut"] if self.chat else [])
        bag: list[str] = []
        rounds = 0
        self.fault_phase_end = self.t0 + self.minutes * 60
        while time.monotonic() < self.fault_phase_end - 3:
            if not bag:
                if rounds == self.rounds:
                    break
                rounds += 1
                bag = list(kinds)
                self.rng.shuffle(bag)
            getattr(self, f"fault_{bag.pop()}")()
            idle = self.rng.uniform(1.0, 4.0)
            time.sleep(max(0.0, min(idle, self.fault_phase_end - time.monotonic())))

    # -- the end ---------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """Settle, stop the load, run the final checks; the chat figures.

        A node the controller cannot reach any more is left out of the later checks
        (each would only wait out its timeout again); that is a finding already."""
        self.ledger.say("no more faults: final checks")
        self.recover("final")
        self.converge("final")
        settled = time.monotonic()
        finals: dict[str, Any] = {}
        gone: set[str] = set()
        for n in self.nodes:
            try:
                finals[n.name] = self.rpc(n.name, _remote.stop_load, timeout=10)
            except Exception as e:
                gone.add(n.name)
                self.ledger.finding("errors", f"stop_load on {n.name}: {e!r}; "
                                    "the final checks leave it out")
        self._check_tails(finals, settled, gone)
        self._check_monitors(gone)
        chat = self.chat.finish() if self.chat is not None else {}
        time.sleep(1.5)  # the last counters
        self.ledger.judge_gaps(final=True)
        return chat

    def _check_tails(self, finals: dict[str, Any], settled: float, gone: set[str]) -> None:
        """Every stream's last message reached its sink (the load ran on, fault-free, after
        the last heal: a tail missing now was lost on a quiet link)."""
        deadline = time.monotonic() + 10
        while True:
            short = []
            states: dict[str, dict[Any, int]] = {}
            for n in self.nodes:
                if n.name not in gone:
                    try:
                        states[n.name] = {s: q for s, _, q in self.rpc(n.name,
                                                                       _remote.sink_state)}
                    except Exception as e:
                        gone.add(n.name)
                        self.ledger.finding("errors", f"sink_state on {n.name}: {e!r}")
            for src, streams in finals.items():
                for dst, (stream, next_seq) in streams.items():
                    if dst in states:
                        got = states[dst].get(stream, -1)
                        if got < next_seq - 1:
                            short.append((src, dst, got, next_seq))
            if not short or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        for src, dst, got, next_seq in short:
            pair = frozenset((src, dst))
            if self.ledger.disturbed(pair, settled - 5, time.monotonic()):
                continue
            self.ledger.finding("gaps", f"{src}->{dst}: the stream ends at #{got}, "
                                f"#{next_seq - 1} was sent last (after the last fault)")

    def _check_monitors(self, gone: set[str]) -> None:
        """Every monitor set fired (targets live at most 6 s; the load has stopped)."""
        deadline = time.monotonic() + _remote.DOWN_BOUND + 10
        left: dict[str, list[tuple[str, float]]] = {}
        while True:
            left = {}
            for n in self.nodes:
                if n.name not in gone:
                    try:
                        left[n.name] = self.rpc(n.name, _remote.outstanding_monitors)
                    except Exception as e:
                        gone.add(n.name)
                        self.ledger.finding("errors", f"outstanding_monitors on {n.name}: "
                                            f"{e!r}")
            if not any(left.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        for name, refs in left.items():
            for item, at in refs[:10]:
                self.ledger.finding("missing_downs", f"on {name}: no DOWN for monitor {item}, "
                                    f"set at {self.ledger.rel(at)} "
                                    f"({self.ledger.faults_at(at) or 'no fault then'})")
            if len(refs) > 10:
                self.ledger.finding("missing_downs", f"on {name}: ... and {len(refs) - 10} more")

    def summary(self, chat: dict[str, Any]) -> dict[str, Any]:
        led = self.ledger
        t = led.totals()
        faults = led.fault_counts()
        findings = led.finding_counts()
        elapsed = (time.monotonic() - self.t0) / 60
        with led.lock:
            details = list(led.findings)
        if details:
            self.out("\n==== findings ====")
            for f in details[:60]:
                self.out(f"[{led.rel(f.t)}] {f.kind}: {f.detail}")
            if len(details) > 60:
                self.out(f"... and {len(details) - 60} more (see {self.logdir}/findings.txt)")
        result: dict[str, Any] = {
            "seed": self.seed,
            "minutes": round(elapsed, 2),
            "faults": dict(faults),
            "messages": {"sent": t["sent"], "received": t["received"],
                         "dropped_during_faults": led.info["dropped_during_faults"],
                         "lost": led.info["lost_messages"]},
            "calls": {k: t[f"calls{k}"] for k in ("", "_ok", "_timeout", "_nodedown",
                                                    "_noproc", "_callerror")},
            "monitors": {"set": t["mon_set"], "down": t["mon_down"],
                         "demonitored": t["mon_demonitor"], "late": t["mon_late"],
                         "spawn_failed": t["mon_spawn_failed"]},
            "pg_ops": {"join": t["pg_join"], "leave": t["pg_leave"], "exit": t["pg_exit"]},
            "global_ops": {"yes": t["global_yes"], "no": t["global_no"],
                           "unregister": t["global_unregister"], "exit": t["global_exit"],
                           "error": t["global_error"]},
            "convergence": {"checks": len(led.convergence),
                            "slowest_s": round(max(led.convergence, default=0.0), 2)},
            "spurious_nodedowns": len(led.spurious),
            "chat": chat,
            "findings": {k: findings.get(k, 0) for k in FINDING_KINDS},
        }
        calls = result["calls"]
        lines = [
            "",
            f"==== soak summary: seed {self.seed}, {elapsed:.1f} minutes ====",
            "faults: " + ", ".join(f"{k} {v}" for k, v in sorted(faults.items()))
            + f" (total {sum(faults.values())})",
            f"messages: sent {t['sent']}, received {t['received']}, dropped during faults "
            f"{led.info['dropped_during_faults']} (excused), lost {led.info['lost_messages']}",
            f"calls: {calls['']} (ok {calls['_ok']}, timeout {calls['_timeout']}, nodedown "
            f"{calls['_nodedown']}, noproc {calls['_noproc']}, callerror {calls['_callerror']})",
            "monitors: " + ", ".join(f"{k} {v}" for k, v in result["monitors"].items()),
            "pg ops: " + ", ".join(f"{k} {v}" for k, v in result["pg_ops"].items())
            + "; global ops: " + ", ".join(f"{k} {v}" for k, v in result["global_ops"].items()),
            f"convergence checks: {len(led.convergence)}, slowest "
            f"{result['convergence']['slowest_s']} s; nodedowns no fault explains: "
            f"{len(led.spurious)}",
        ]
        if chat:
            lines.append("chat: " + ", ".join(f"{k} {v}" for k, v in chat.items()))
        lines.append("findings: " + ", ".join(f"{k} {v}" for k, v in result["findings"].items())
                     + f" (total {sum(findings.values())})")
        lines.append(f"RESULT: {'FAIL' if details else 'PASS'} (seed {self.seed})")
        for line in lines:
            self.out(line)
        with contextlib.suppress(OSError), (self.logdir / "findings.txt").open("w") as fh:
            for f in details:
                fh.write(f"[{led.rel(f.t)}] {f.kind}: {f.detail}\n")
            fh.write("\nfaults:\n")
            for fault in led.faults:
                fh.write(f"#{fault.number} {led.rel(fault.start)} {fault.kind}: {fault.what}\n")
            fh.write("\nspurious nodedowns:\n" + "\n".join(led.spurious) + "\n")
        self.out("SOAK-RESULT " + json.dumps(result, sort_keys=True))
        return result

    # -- run ------------------------------------------------------------------------------------

    def run(self) -> int:
        self.setup()
        threading.Thread(target=self._status_loop, daemon=True, name="soak-status").start()
        self.inject()
        chat = self.finish()
        result = self.summary(chat)
        failed = any(result["findings"].values())
        if failed or self.keep_logs:
            self.out(f"logs: {self.logdir}")
        return 1 if failed else 0

    def close(self) -> None:
        """Kill every child, stop the controller node; drop the logs of a clean run."""
        self.done.set()
        if self.chat is not None:
            self.chat.close()
        for n in self.nodes:
            n.close()
        if self.node is not None:
            with contextlib.suppress(Exception):
                self.node.stop(timeout=2)
        if self.epmd is not None:
            self.epmd.close()
        if self.log_handler is not None:
            logging.getLogger("actornet").removeHandler(self.log_handler)
            self.log_handler.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.soak --minutes N [--seed S] [--no-chat] [--hosts netns]``; 1 on any
    finding."""
    p = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=5.0, help="how long to inject faults")
    p.add_argument("--seed", type=int, default=None, help="replay the faults of this seed")
    p.add_argument("--rounds", type=int, default=None,
                   help="end the faults after this many rounds of every kind, if sooner")
    p.add_argument("--no-chat", action="store_true", help="no chat cluster")
    p.add_argument("--keep-logs", action="store_true", help="keep the logs of a clean run")
    p.add_argument("--hosts", choices=["loopback", "netns"], default="loopback",
                   help="every node on loopback (default), or each on a test host of its own "
                   "(network namespaces, silent cuts among the faults; needs root)")
    p.add_argument("--inside", default=None, help=argparse.SUPPRESS)  # the hosts, made by us
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**9)
    flags = (" --no-chat" if args.no_chat else "") + (
        f" --rounds {args.rounds}" if args.rounds is not None else "") + (
        " --hosts netns" if args.hosts == "netns" else "")
    if args.inside is None:
        print(f"soak: seed {seed} (replay: python -m tests.soak --minutes {args.minutes:g} "
              f"--seed {seed}{flags})", flush=True)
        if args.hosts == "netns":
            return _on_test_hosts(args, seed)
    place = Place(None if args.inside is None else Net.attach(args.inside))
    soak = Soak(args.minutes, seed, not args.no_chat, args.keep_logs, place, args.rounds)
    code = 2
    try:
        code = soak.run()
    except KeyboardInterrupt:
        print("soak: interrupted", flush=True)
        code = 130
    except Exception:
        traceback.print_exc()
        print("soak: the run itself failed (not a finding about actornet)", flush=True)
        code = 2
    finally:
        soak.close()
        if code == 0 and not args.keep_logs:
            shutil.rmtree(soak.logdir, ignore_errors=True)
        elif code not in (0, 1):
            print(f"soak: logs in {soak.logdir}", flush=True)
    return code


def _on_test_hosts(args: argparse.Namespace, seed: int) -> int:
    """Make the test hosts, run the soak's controller on one of them (it must be inside
    their network), and remove the hosts when it ends, however it ends."""
    reason = filter_unavailable()
    if reason is not None:
        print(f"soak: cannot make test hosts: {reason}", flush=True)
        return 2
    with Net(HOSTS) as net:
        inner = [sys.executable, "-m", "tests.soak", "--minutes", str(args.minutes), "--seed",
                 str(seed), "--inside", net.describe()]
        inner += ["--no-chat"] if args.no_chat else []
        inner += ["--rounds", str(args.rounds)] if args.rounds is not None else []
        inner += ["--keep-logs"] if args.keep_logs else []
        proc = net["ctl"].spawn(inner, stdout=None, stderr=None)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            return proc.wait(60)
