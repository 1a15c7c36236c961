"""The soak's workload, run on its child nodes (importable there as ``tests.soak._remote``).

The controller starts everything with `deploy` through `actornet.rpc.call`. Each
child node then runs, as actornet processes:

- one *sink* (registered ``soak_sink``) that checks the per-sender order of the
  sequence-numbered messages it gets, and one *streamer* per other node;
- a `SoakServer` (registered ``soak_srv``) and two *callers* doing calls with timeouts
  to the servers of every node (echo, slow, and relayed calls);
- a *pg worker* and a *global worker* joining/leaving groups and registering/
  unregistering global names; a *monitorer* monitoring short-lived processes it spawns
  on the other nodes and counting the DOWNs per ref;
- a *netwatch* reporting every nodeup/nodedown, and a *reporter* sending counters.

Everything reports to the controller's ``soak_ctl`` process with plain messages::

    ("net", node, "nodeup" | "nodedown", peer, t)
    ("gap", src, dst, stream, expected, got, window_start, t)
    ("fifo", src, dst, stream, last, got, t)
    ("slow", node, what, bound, t_start, t_end)
    ("down", node, kind, detail, t)                 kind: duplicate | stray | unknown
    ("finding", node, kind, detail, t)              bad_reply, pg_local, errors
    ("stats", node, creation, counters, sinks, overdue, t)

Times are `time.monotonic()`: CLOCK_MONOTONIC, one clock for every process of the
machine, so the controller compares them with its own.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Any

import actornet
from actornet import global_, pg

CTL = "soak_ctl"
SINK = "soak_sink"
SRV = "soak_srv"
GROUPS = [f"soak.g{i}" for i in range(4)]
NAMES = [f"soak.n{i}" for i in range(8)]
CALL_MARGIN = 3.0  # seconds a call may overrun its timeout before it counts as a deadlock
PG_BOUND = 5.0 + CALL_MARGIN  # pg.join/leave: a local call with the default 5 s timeout
GLOBAL_BOUND = 35.0  # global_.register_name/unregister_name: lock round + write round
DOWN_BOUND = 15.0  # seconds after its target's planned end a DOWN must have arrived
BURST = 5  # messages per burst of a streamer
BURST_EVERY = 0.05  # seconds between bursts: 100 messages/s per pair


class _State:
    """What the workload processes of this node share (one per OS process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ctl: str = ""
        self.counters: Counter[str] = Counter()
        self.paused = threading.Event()  # pg and global workers wait (convergence checks)
        self.stopping = threading.Event()  # no new load: the run is ending
        self.inflight: dict[int, tuple[str, float, float]] = {}  # token -> (what, start, bound)
        self.tokens = iter(range(1, 1 << 62))
        self.sinks: dict[Any, tuple[str, int]] = {}  # stream pid -> (src node, last seq)
        self.streams: dict[str, tuple[Any, int]] = {}  # dst -> (stream pid, next seq)
        self.monitors: dict[Any, tuple[Any, str, float, float]] = {}  # ref -> target, when
        self.workers: list[actornet.Pid] = []
        self.trace: deque[tuple[float, str, Any, Any]] = deque(maxlen=5000)  # pg/global ops

    def note(self, op: str, key: Any, value: Any) -> None:
        """Remember one pg or global operation (for the history of a divergence)."""
        self.trace.append((time.monotonic(), op, key, value))

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counters[key] += n

    @contextlib.contextmanager
    def timed(self, what: str, bound: float) -> Iterator[None]:
        """Track an operation that must end within `bound` seconds (else: a deadlock)."""
        token = next(self.tokens)
        start = time.monotonic()
        with self.lock:
            self.inflight[token] = (what, start, bound)
        try:
            yield
        finally:
            end = time.monotonic()
            with self.lock:
                del self.inflight[token]
            if end - start > bound:
                report(("slow", actornet.node(), what, bound, start, end))


_S = _State()


def report(msg: tuple[Any, ...]) -> None:
    """Send `msg` to the controller (dropped, like any message, if it cannot get there)."""
    with contextlib.suppress(Exception):  # never let reporting kill a worker
        actornet.send((CTL, _S.ctl), msg)


def _guarded(name: str, body: Callable[[], None]) -> None:
    """Run a worker loop; an unexpected exception is a finding, then the loop restarts."""
    while not _S.stopping.is_set():
        try:
            body()
            return
        except Exception as e:
            report(("finding", actornet.node(), "errors",
                    f"{name} on {actornet.node()}: {type(e).__name__}: {e}\n"
                    + "".join(traceback.format_exc(limit=6)), time.monotonic()))
            time.sleep(0.5)


def wait_forever() -> None:
    """A process that only waits (pg members, global name holders)."""
    actornet.receive(lambda m: False)


def _target(lifetime: float) -> None:
    """A monitored process: lives `lifetime` seconds, then exits normally."""
    with contextlib.suppress(actornet.Timeout):
        actornet.receive(lambda m: False, timeout=lifetime)


# -- messages: sink and streamers ---------------------------------------------------------


def sink() -> None:
    """Check per-stream order of ``("soak", src, stream, t_start, seq, t_sent, t_prev)``."""
    actornet.register(SINK, actornet.self())
    here = actornet.node()
    born = time.monotonic()
    last: dict[Any, tuple[int, float]] = {}
    while True:
        msg = actornet.receive()
        if not (isinstance(msg, tuple) and msg and msg[0] == "soak"):
            continue
        _, src, stream, t_start, seq, t_sent, t_prev = msg
        now = time.monotonic()
        prev = last.get(stream)
        if prev is None:
            # The first message of this stream here: its predecessors were sent before
            # this sink existed (nothing to check) unless they were sent after it started.
            if seq > 0 and t_prev is not None and t_prev > born + 0.5:
                report(("gap", src, here, stream, 0, seq, max(born, t_start), now))
        elif seq == prev[0] + 1:
            pass
        elif seq <= prev[0]:
            report(("fifo", src, here, stream, prev[0], seq, now))
        else:
            report(("gap", src, here, stream, prev[0] + 1, seq, prev[1], now))
        if prev is None or seq > prev[0]:
            last[stream] = (seq, t_sent)
        with _S.lock:
            _S.counters[f"recv:{src}"] += 1
            _S.sinks[stream] = (src, last[stream][0])


def streamer(dst: str) -> None:
    """Stream sequence-numbered messages to the sink of `dst` until the run ends."""
    me = actornet.self()
    here = actornet.node()
    start = time.monotonic()
    seq = 0
    t_prev: float | None = None
    while not _S.stopping.is_set():
        now = time.monotonic()
        for _ in range(BURST):
            actornet.send((SINK, dst), ("soak", here, me, start, seq, now, t_prev))
            t_prev = now
            seq += 1
        with _S.lock:
            _S.counters[f"sent:{dst}"] += BURST
            _S.streams[dst] = (me, seq)
        time.sleep(BURST_EVERY)


# -- calls ------------------------------------------------------------------------------------


class SoakServer(actornet.GenServer):
    """Answers echo, slow and relayed calls."""

    def handle_call(self, request: Any, from_: Any) -> Any:
        op = request[0]
        if op == "echo":
            return request[1]
        if op == "sleep":
            time.sleep(request[1])
            return request[2]
        if op == "relay":
            _, node, x, inner = request
            try:
                return ("relayed", actornet.call((SRV, node), ("echo", x), timeout=inner))
            except (actornet.ActornetError, TimeoutError) as e:
                return ("relay_err", type(e).__name__)
        return ("unknown", request)


def caller(nodes: list[str], seed: int) -> None:
    """Call the servers of every node with timeouts; check replies and durations."""
    rng = random.Random(seed)
    here = actornet.node()

    def body() -> None:
        while not _S.stopping.is_set():
            target = rng.choice(nodes)
            x = rng.randrange(1 << 30)
            kind = rng.random()
            if kind < 0.6:
                request: tuple[Any, ...] = ("echo", x)
                expect: Any = x
                timeout = rng.choice([0.5, 1.0, 2.0])
            elif kind < 0.8:
                request, timeout, expect = ("sleep", rng.uniform(0, 0.6), x), 0.5, x
            else:
                other = rng.choice(nodes)
                request, timeout = ("relay", other, x, 0.5), rng.choice([1.0, 2.0])
                expect = ("relayed", x)
            what = f"call {request[0]} {here}->{target} timeout {timeout}"
            _S.count("calls")
            try:
                with _S.timed(what, timeout + CALL_MARGIN):
                    answer = actornet.call((SRV, target), request, timeout=timeout)
            except actornet.Timeout:
                _S.count("calls_timeout")
            except actornet.NodeDown:
                _S.count("calls_nodedown")
            except actornet.NoProc:
                _S.count("calls_noproc")
            except actornet.CallError:
                _S.count("calls_callerror")
            else:
                if answer == expect or (request[0] == "relay" and answer[0] == "relay_err"):
                    _S.count("calls_ok")
                else:
                    report(("finding", here, "bad_reply",
                            f"{what}: {request!r} answered {answer!r}", time.monotonic()))
            time.sleep(rng.uniform(0.01, 0.08))

    _guarded("caller", body)


# -- pg and global_ ---------------------------------------------------------------------------


def _idle(rng: random.Random, low: float, high: float) -> None:
    time.sleep(rng.uniform(low, high))
    while _S.paused.is_set() and not _S.stopping.is_set():
        time.sleep(0.05)


def pg_worker(seed: int) -> None:
    """Join and leave the soak's groups with local processes; kill some members."""
    rng = random.Random(seed)
    here = actornet.node()
    members: list[actornet.Pid] = []
    joined: list[tuple[str, actornet.Pid]] = []

    def body() -> None:
        while not _S.stopping.is_set():
            _idle(rng, 0.05, 0.25)
            if _S.stopping.is_set():
                return
            r = rng.random()
            if r < 0.45 and len(joined) < 16:
                if len(members) < 6 and (not members or rng.random() < 0.4):
                    members.append(actornet.spawn(wait_forever))
                pid, group = rng.choice(members), rng.choice(GROUPS)
                with _S.timed(f"pg.join {group} on {here}", PG_BOUND):
                    pg.join(group, pid)
                _S.note("pg.join", group, pid)
                joined.append((group, pid))
                _S.count("pg_join")
            elif r < 0.85 and joined:
                group, pid = joined.pop(rng.randrange(len(joined)))
                with _S.timed(f"pg.leave {group} on {here}", PG_BOUND):
                    answer = pg.leave(group, pid)
                _S.note("pg.leave", group, (pid, answer))
                _S.count("pg_leave")
                if answer != "ok":
                    report(("finding", here, "pg_local",
                            f"pg.leave({group!r}, {pid!r}) of a live member joined here "
                            f"answered {answer!r}", time.monotonic()))
            elif members:
                pid = members.pop(rng.randrange(len(members)))
                joined[:] = [(g, p) for g, p in joined if p != pid]
                actornet.exit(pid, "kill")
                _S.note("pg.kill", None, pid)
                _S.count("pg_exit")

    _guarded("pg_worker", body)


def global_worker(seed: int) -> None:
    """Register fresh processes under the soak's global names; unregister; kill holders."""
    rng = random.Random(seed)
    here = actornet.node()
    mine: dict[str, actornet.Pid] = {}

    def body() -> None:
        while not _S.stopping.is_set():
            _idle(rng, 0.1, 0.4)
            if _S.stopping.is_set():
                return
            r = rng.random()
            try:
                if r < 0.5 or not mine:
                    name = rng.choice(NAMES)
                    pid = actornet.spawn(wait_forever)
                    with _S.timed(f"global register {name} on {here}", GLOBAL_BOUND):
                        answer = global_.register_name(name, pid)
                    _S.note("global.register", name, (pid, answer))
                    _S.count(f"global_{answer}")
                    if answer == "yes":
                        old = mine.pop(name, None)
                        if old is not None:
                            actornet.exit(old, "kill")
                        mine[name] = pid
                    else:
                        actornet.exit(pid, "kill")
                elif r < 0.8:
                    name = rng.choice(sorted(mine))
                    with _S.timed(f"global unregister {name} on {here}", GLOBAL_BOUND):
                        global_.unregister_name(name)
                    _S.note("global.unregister", name, mine[name])
                    actornet.exit(mine.pop(name), "kill")
                    _S.count("global_unregister")
                else:
                    name = rng.choice(sorted(mine))
                    _S.note("global.kill", name, mine[name])
                    actornet.exit(mine.pop(name), "kill")
                    _S.count("global_exit")
            except (actornet.ActornetError, TimeoutError):
                _S.count("global_error")  # a lock round that timed out under a fault

    _guarded("global_worker", body)


# -- monitors -----------------------------------------------------------------------------------


def spawner(monitorer_pid: actornet.Pid, nodes: list[str], seed: int) -> None:
    """Spawn short-lived targets on the other nodes and hand them to the monitorer.

    Apart from the monitorer, so that a spawn stuck on a cut link (it waits its 10 s
    timeout) does not stop the monitors being set meanwhile.
    """
    rng = random.Random(seed)
    here = actornet.node()
    others = [n for n in nodes if n != here]

    def body() -> None:
        while not _S.stopping.is_set():
            life = rng.uniform(0.2, 6.0)
            node = rng.choice(others)
            try:
                with _S.timed(f"spawn on {node} from {here}", 10.0 + CALL_MARGIN):
                    pid = actornet.spawn(_target, life, node=node)
            except (actornet.ActornetError, TimeoutError):
                _S.count("mon_spawn_failed")
            else:
                actornet.send(monitorer_pid, ("target", pid, time.monotonic() + life))
            time.sleep(rng.uniform(0.05, 0.3))

    _guarded("spawner", body)


def monitorer(seed: int) -> None:
    """Monitor the targets the spawner starts: every monitor fires exactly once."""
    rng = random.Random(seed)
    here = actornet.node()
    targets: dict[actornet.Pid, float] = {}  # pid -> when it should be gone
    mons = _S.monitors  # ref -> (pid, node, set at, deadline)
    fired: dict[Any, float] = {}
    demonitored: dict[Any, float] = {}

    def on_down(msg: tuple[Any, ...]) -> None:
        ref, now = msg[1], time.monotonic()
        with _S.lock:
            entry = mons.pop(ref, None)
        if entry is not None:
            fired[ref] = now
            _S.count("mon_down")
            if now > entry[3]:
                _S.count("mon_late")
            return
        kind = ("duplicate" if ref in fired else "stray" if ref in demonitored
                else "unknown")
        report(("down", here, kind, f"{msg!r} (first DOWN at {fired.get(ref)}, "
                f"demonitored at {demonitored.get(ref)})", now))

    def watch(pid: actornet.Pid) -> None:
        now = time.monotonic()
        ref = actornet.monitor(pid)
        with _S.lock:
            mons[ref] = (pid, pid.node, now, max(now, targets[pid]) + DOWN_BOUND)
        _S.count("mon_set")

    def body() -> None:
        while True:
            with contextlib.suppress(actornet.Timeout):
                while True:
                    msg = actornet.receive(timeout=0.05)
                    if not (isinstance(msg, tuple) and msg):
                        continue
                    if msg[0] == "DOWN":
                        on_down(msg)
                    elif msg[0] == "target" and not _S.stopping.is_set():
                        targets[msg[1]] = msg[2]
                        for _ in range(rng.choice([1, 1, 2])):
                            watch(msg[1])
            now = time.monotonic()
            for table in (fired, demonitored):
                for ref in [r for r, t in table.items() if now - t > 300]:
                    del table[ref]
            for pid in [p for p, end in targets.items() if now - end > 60]:
                del targets[pid]
            if _S.stopping.is_set():
                if not mons:
                    return
                continue
            r = rng.random()
            if r < 0.4 and targets:
                pid = rng.choice(list(targets))
                if targets[pid] > now:
                    watch(pid)  # a target spawned earlier, maybe across a fault since
            elif r < 0.45 and targets:
                pid = rng.choice(list(targets))
                actornet.exit(pid, "kill")
                targets[pid] = min(targets[pid], now)
            elif r < 0.55 and mons:
                ref = rng.choice(list(mons))
                if actornet.demonitor(ref):
                    with _S.lock:
                        mons.pop(ref, None)
                    demonitored[ref] = now
                    _S.count("mon_demonitor")
                # else: it fired already; its DOWN is on its way to the mailbox

    _guarded("monitorer", body)


# -- watching and reporting ------------------------------------------------------------------


def netwatch() -> None:
    """Report every nodeup/nodedown this node sees, as it sees it."""
    actornet.monitor_nodes(True)
    here = actornet.node()
    while True:
        msg = actornet.receive()
        if isinstance(msg, tuple) and msg and msg[0] in ("nodeup", "nodedown"):
            report(("net", here, msg[0], msg[1], time.monotonic()))


def reporter() -> None:
    """Send this node's counters to the controller every second."""
    here = actornet.node()
    creation = actornet.node_info()["creation"]
    while True:
        time.sleep(1.0)
        now = time.monotonic()
        with _S.lock:
            counters = dict(_S.counters)
            sinks = [(stream, src, seq) for stream, (src, seq) in _S.sinks.items()]
            overdue = [("op", what, start, bound) for what, start, bound
                       in _S.inflight.values() if now - start > bound]
            overdue += [("monitor", f"{ref!r} on {pid!r}", at, deadline)
                        for ref, (pid, _, at, deadline) in _S.monitors.items()
                        if now > deadline]
        report(("stats", here, creation, counters, sinks, overdue, now))


# -- called by the controller through rpc --------------------------------------------------------


def deploy(ctl: str, nodes: list[str], seed: int) -> dict[str, Any]:
    """Start this node's workload, reporting to `ctl`; `nodes` are the cluster's nodes."""
    _S.ctl = ctl
    here = actornet.node()
    rng = random.Random(seed)
    SoakServer.start(name=SRV)
    spawned = [actornet.spawn(sink)]
    deadline = time.monotonic() + 5
    while actornet.whereis(SINK) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    spawned.append(actornet.spawn(netwatch))
    spawned.append(actornet.spawn(reporter))
    for dst in nodes:
        if dst != here:
            spawned.append(actornet.spawn(streamer, dst))
    for _ in range(2):
        spawned.append(actornet.spawn(caller, nodes, rng.randrange(1 << 30)))
    spawned.append(actornet.spawn(pg_worker, rng.randrange(1 << 30)))
    spawned.append(actornet.spawn(global_worker, rng.randrange(1 << 30)))
    watcher = actornet.spawn(monitorer, rng.randrange(1 << 30))
    spawned.append(watcher)
    spawned.append(actornet.spawn(spawner, watcher, nodes, rng.randrange(1 << 30)))
    _S.workers = spawned
    return {"creation": actornet.node_info()["creation"], "os_pid": os.getpid()}


def connect(addresses: list[str]) -> list[str]:
    """Ping every address (``name@host:port``); the answers."""
    return [actornet.ping(a, timeout=5) for a in addresses]


def set_paused(flag: bool) -> None:
    """Pause (or resume) the pg and global workers."""
    if flag:
        _S.paused.set()
    else:
        _S.paused.clear()


def stop_load() -> dict[str, Any]:
    """Stop making new load; what the streams sent (``dst -> (stream, next seq)``)."""
    _S.stopping.set()
    time.sleep(2 * BURST_EVERY)
    with _S.lock:
        return {dst: list(v) for dst, v in _S.streams.items()}


def sink_state() -> list[tuple[Any, str, int]]:
    """``(stream, src, last seq)`` of every stream this node's sink has seen."""
    with _S.lock:
        return [(stream, src, seq) for stream, (src, seq) in _S.sinks.items()]


def outstanding_monitors() -> list[tuple[str, float]]:
    """The monitors set here whose DOWN has not arrived: ``(description, set at)``."""
    with _S.lock:
        return [(f"{ref!r} on {pid!r}", at) for ref, (pid, _, at, _) in _S.monitors.items()]


def history(pids: list[Any]) -> list[str]:
    """What the workers of this node did with `pids` (pg and global operations)."""
    now = time.monotonic()
    wanted = set(pids)
    out = []
    for t, op, key, value in list(_S.trace):
        vals = value if isinstance(value, tuple) else (value,)
        if any(v in wanted for v in vals if isinstance(v, actornet.Pid)):
            out.append(f"{now - t:6.1f} s ago: {op} {key!r} {value!r}")
    return out


def snapshot() -> dict[str, Any]:
    """This node's view: connected nodes, pg groups (local and all), the global table."""
    node = actornet.node()
    groups = [(g, sorted(pg.get_local_members(g)), sorted(pg.get_members(g))) for g in GROUPS]
    table = []
    for name in sorted(global_.registered_names(), key=repr):
        pid = global_.whereis_name(name)
        if pid is None:
            continue
        alive = actornet.is_alive(pid) if pid.node == node else None
        table.append((name, pid, alive))
    scope = pg._scope(None)
    peers = sorted(repr(p) for p in scope.peers)
    return {"node": node, "nodes": actornet.nodes(), "pg": groups, "global": table,
            "pg_peers": peers}
