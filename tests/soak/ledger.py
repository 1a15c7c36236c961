"""The controller's books: faults, connectivity events, counters, and the findings.

Reports from the child nodes (see `tests.soak._remote`) arrive at `Ledger.handle`;
the fault injector records each fault's start and end with `begin`/`end`. A gap in
a stream between two nodes is a finding only if nothing disturbed that pair while
the missing messages were on their way: no fault touching either node or the link
between them, and no nodeup/nodedown between them seen by either end.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

FINDING_KINDS = [
    "lost",  # a chat message acknowledged to its sender and never delivered
    "gaps",  # messages missing between two nodes that stayed connected
    "fifo",  # a message out of order or twice between two nodes
    "duplicate_downs",  # a monitor fired twice
    "missing_downs",  # a monitor never fired
    "stray_downs",  # a DOWN after a successful demonitor, or for no monitor at all
    "deadlocks",  # an operation that neither returned nor raised within its bound
    "divergence",  # pg or global tables not equal on all nodes after a heal
    "reconnect",  # nodes that did not reconnect after a heal or a restart
    "bad_reply",  # a call answered with someone else's reply
    "pg_local",  # pg.leave of a member joined here answered not_joined
    "chat_order",  # two chat clients disagree on a message, or an id on its text
    "chat_stalled",  # a chat client got no acknowledgement at the end
    "chat_disconnected",  # a chat client gave up failing over
    "errors",  # an unexpected exception in the workload or the controller
]

GAP_SETTLE = 20.0  # seconds to wait for late connectivity reports before judging a gap
SLACK = 1.0  # seconds added on each side of a gap's window


@dataclass
class Fault:
    """One injected fault: which nodes or links it disturbs, and when."""

    number: int
    kind: str
    what: str
    nodes: frozenset[str] = frozenset()  # every link of these nodes is disturbed
    pairs: frozenset[frozenset[str]] = frozenset()  # these links are disturbed
    start: float = 0.0
    end: float | None = None

    def touches(self, pair: frozenset[str]) -> bool:
        return bool(self.nodes & pair) or pair in self.pairs


@dataclass
class Finding:
    kind: str
    detail: str
    t: float


@dataclass
class _Gap:
    src: str
    dst: str
    stream: Any
    expected: int
    got: int
    window_start: float
    received: float


@dataclass
class NodeStats:
    """The latest counters of one node incarnation."""

    counters: dict[str, int] = field(default_factory=dict)
    sinks: list[Any] = field(default_factory=list)


class Ledger:
    """Thread-safe: the controller process, the injector and the status thread share it."""

    def __init__(self, t0: float, tick_time: float, out: Any) -> None:
        self.t0 = t0
        self.tick_time = tick_time
        self.out = out  # print-like: one line at a time
        self.lock = threading.RLock()
        self.faults: list[Fault] = []
        self.stops: dict[str, list[list[float]]] = defaultdict(list)  # node -> [[stop, cont]]
        self.net: dict[frozenset[str], list[tuple[float, str, str]]] = defaultdict(list)
        self.stats: dict[tuple[str, int], NodeStats] = {}
        self.gaps: list[_Gap] = []
        self.findings: list[Finding] = []
        self.seen_overdue: set[tuple[Any, ...]] = set()
        self.overdue_monitors: dict[tuple[Any, ...], float] = {}
        self.info: Counter[str] = Counter()
        self.spurious: list[str] = []
        self.convergence: list[float] = []
        self.chat: dict[str, int] = {}

    # -- time and output --------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic()

    def rel(self, t: float) -> str:
        return f"{t - self.t0:7.1f}s"

    def say(self, text: str) -> None:
        self.out(f"[{self.rel(self.now())}] {text}")

    # -- faults -----------------------------------------------------------------------------

    def begin(self, kind: str, what: str, nodes: set[str] | None = None,
              pairs: set[frozenset[str]] | None = None) -> Fault:
        with self.lock:
            fault = Fault(len(self.faults) + 1, kind, what, frozenset(nodes or ()),
                          frozenset(pairs or ()), self.now())
            self.faults.append(fault)
        self.say(f"FAULT #{fault.number} {kind}: {what}")
        return fault

    def end(self, fault: Fault, note: str = "") -> None:
        with self.lock:
            fault.end = self.now()
        self.say(f"  fault #{fault.number} over after {fault.end - fault.start:.1f} s"
                 + (f"; {note}" if note else ""))

    def stopped(self, node: str, start: float, end: float) -> None:
        with self.lock:
            self.stops[node].append([start, end])

    def stopped_overlap(self, node: str, a: float, b: float) -> float:
        """Seconds `node` spent SIGSTOPped between times `a` and `b`."""
        with self.lock:
            return sum(max(0.0, min(b, e) - max(a, s)) for s, e in self.stops.get(node, []))

    def disturbed(self, pair: frozenset[str], a: float, b: float) -> bool:
        """True if a fault or a connectivity event touched `pair` between `a` and `b`."""
        with self.lock:
            for f in self.faults:
                if f.touches(pair) and f.start <= b and (f.end or math.inf) >= a:
                    return True
            return any(a <= t <= b for t, _, _ in self.net.get(pair, ()))

    def faults_at(self, t: float) -> str:
        """The faults in progress at time `t`, in words."""
        with self.lock:
            return "; ".join(f"during fault #{f.number} {f.kind}: {f.what}" for f in self.faults
                             if f.start <= t <= (f.end or math.inf))

    def last_net_event(self, nodes: set[str]) -> float:
        """When the last nodeup/nodedown between two of `nodes` was seen (0: never)."""
        with self.lock:
            return max((t for pair, events in self.net.items() if pair <= nodes
                        for t, _, _ in events), default=0.0)

    def finding(self, kind: str, detail: str) -> None:
        assert kind in FINDING_KINDS, kind
        with self.lock:
            self.findings.append(Finding(kind, detail, self.now()))
        self.say(f"FINDING {kind}: {detail.splitlines()[0] if detail else ''}")

    # -- reports from the nodes ---------------------------------------------------------------

    def handle(self, msg: Any) -> None:
        """One report from a child node (see `tests.soak._remote`)."""
        try:
            self._handle(msg)
        except Exception as e:  # a malformed report must not stop the controller
            self.finding("errors", f"controller could not handle {msg!r}: {e!r}")

    def _handle(self, msg: Any) -> None:
        kind = msg[0]
        if kind == "net":
            _, node, what, peer, t = msg
            pair = frozenset((node, peer))
            with self.lock:
                self.net[pair].append((t, node, what))
            if what == "nodedown" and not self._fault_near(pair, t):
                with self.lock:
                    self.spurious.append(f"{self.rel(t)} {node} saw {peer} go down")
        elif kind == "gap":
            _, src, dst, stream, expected, got, window_start, t = msg
            with self.lock:
                self.gaps.append(_Gap(src, dst, stream, expected, got, window_start, t))
        elif kind == "fifo":
            _, src, dst, stream, last, got, t = msg
            self.finding("fifo", f"{src}->{dst} (stream {stream!r}): got #{got} after "
                         f"#{last} at {self.rel(t)}")
        elif kind == "slow":
            _, node, what, bound, start, end = msg
            self._judge_slow(node, what, bound, start, end, done=True)
        elif kind == "down":
            _, node, what, detail, t = msg
            label = "duplicate_downs" if what == "duplicate" else "stray_downs"
            self.finding(label, f"{what} DOWN on {node} at {self.rel(t)}: {detail}")
        elif kind == "finding":
            _, node, what, detail, t = msg
            self.finding(what if what in FINDING_KINDS else "errors", f"{node}: {detail}")
        elif kind == "stats":
            _, node, creation, counters, sinks, overdue, t = msg
            with self.lock:
                self.stats[(node, creation)] = NodeStats(dict(counters), list(sinks))
            for item in overdue:
                if item[0] == "op":
                    _, what, start, bound = item
                    self._judge_slow(node, what, bound, start, t, done=False)
                else:
                    _, detail, _at, _deadline = item
                    with self.lock:
                        self.overdue_monitors.setdefault((node, creation, detail), t)
        else:
            self.finding("errors", f"unknown report {msg!r}")

    def _fault_near(self, pair: frozenset[str], t: float) -> bool:
        """A nodedown at `t` explained by a fault (detection takes up to a tick time)."""
        a, b = t - 2 * self.tick_time - SLACK, t + SLACK
        with self.lock:
            return any(f.touches(pair) and f.start <= b and (f.end or math.inf) >= a
                       for f in self.faults)

    def _judge_slow(self, node: str, what: str, bound: float, start: float, end: float,
                    *, done: bool) -> None:
        """An operation that took (or has taken so far) longer than `bound` seconds."""
        effective = (end - start) - self.stopped_overlap(node, start, end)
        key = (node, what, start)
        if effective <= bound + (0 if done else 2.0):
            return
        with self.lock:
            if key in self.seen_overdue:
                return
            self.seen_overdue.add(key)
        state = "returned after" if done else "still running after"
        self.finding("deadlocks", f"{what} (started {self.rel(start)}): {state} "
                     f"{effective:.1f} s, bound {bound:.1f} s")

    # -- judging ----------------------------------------------------------------------------------

    def judge_gaps(self, final: bool = False) -> None:
        """Decide on the gaps reported long enough ago (all of them when `final`)."""
        now = self.now()
        with self.lock:
            ready = [g for g in self.gaps if final or now - g.received > GAP_SETTLE]
            self.gaps = [g for g in self.gaps if g not in ready]
        for g in ready:
            n = g.got - g.expected
            pair = frozenset((g.src, g.dst))
            if self.disturbed(pair, g.window_start - SLACK, g.received + SLACK):
                with self.lock:
                    self.info["dropped_during_faults"] += n
                continue
            with self.lock:
                self.info["lost_messages"] += n
            self.finding("gaps", f"{g.src}->{g.dst}: #{g.expected}..#{g.got - 1} ({n} messages) "
                         f"lost, sent between {self.rel(g.window_start)} and "
                         f"{self.rel(g.received)} while no fault or disconnect touched "
                         "the pair")

    # -- counters ----------------------------------------------------------------------------------

    def totals(self) -> Counter[str]:
        """The counters of every node incarnation, added up."""
        total: Counter[str] = Counter()
        with self.lock:
            for s in self.stats.values():
                total.update(s.counters)
        sent = sum(v for k, v in total.items() if k.startswith("sent:"))
        received = sum(v for k, v in total.items() if k.startswith("recv:"))
        total["sent"], total["received"] = sent, received
        return total

    def fault_counts(self) -> Counter[str]:
        with self.lock:
            return Counter(f.kind for f in self.faults)

    def finding_counts(self) -> Counter[str]:
        with self.lock:
            return Counter(f.kind for f in self.findings)

    def status(self) -> str:
        t = self.totals()
        faults = self.fault_counts()
        pg_ops = t["pg_join"] + t["pg_leave"] + t["pg_exit"]
        global_ops = (t["global_yes"] + t["global_no"] + t["global_unregister"]
                      + t["global_exit"] + t["global_error"])
        chat = (f" | chat acked {self.chat.get('acked', 0)}/{self.chat.get('sent', 0)}"
                if self.chat else "")
        return (f"status: faults {sum(faults.values())} | msgs sent {t['sent']} "
                f"recv {t['received']} | calls {t['calls']} | monitors {t['mon_set']} "
                f"| pg {pg_ops} | global {global_ops}{chat} "
                f"| findings {sum(self.finding_counts().values())}")
