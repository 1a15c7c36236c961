"""Profile actornet's hot paths: ``python -m benchmarks.profiling [NAME ...]``.

Runs a workload (``local_send``, ``local_call``, ``remote_send``,
``remote_call``, ``fanout``, ``chat``) in a loop while py-spy samples every
thread of this process and, for remote workloads, of the child node too (for
``chat``: the three chat nodes and one sender client; ``chat_many``: the three
chat nodes and the load node of its lightweight publishers). Prints, per process:
the CPU it used (in cores, from /proc), where the samples were by thread kind,
and the top functions by own (self) time and by inclusive time. Raw py-spy
stacks are kept in ``--out``.

Needs ``py-spy`` (``pip install py-spy``) and permission to ptrace the
processes (root, or kernel.yama.ptrace_scope = 0).
"""

from __future__ import annotations

import argparse
import collections
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import actornet
from benchmarks import _remote
from benchmarks._common import ActornetChild, Children, connect, local_node

__all__ = ["WORKLOADS", "summarize", "main"]

Ready = Callable[[dict[str, int]], None]
Workload = Callable[[threading.Event, Ready], None]
_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _is(want: Any) -> Callable[[Any], bool]:
    """A receive match for messages equal to `want`."""
    return lambda m: bool(m == want)


def _sender(pid: actornet.Pid, batch: int, msg: Any, stop: threading.Event) -> None:
    send = actornet.send
    while not stop.is_set():
        for _ in range(batch):
            send(pid, msg)
        actornet.receive(lambda m: m == "batch", timeout=60)


def local_send(stop: threading.Event, ready: Ready) -> None:
    with actornet.Node("prof@localhost"):
        pid = actornet.spawn(_remote.batch_sink, actornet.self(), 10_000)
        ready({"this process": os.getpid()})
        _sender(pid, 10_000, ("msg", 1), stop)


def local_call(stop: threading.Event, ready: Ready) -> None:
    with actornet.Node("prof@localhost"):
        pid = _remote.Echo.start()
        ready({"this process": os.getpid()})
        while not stop.is_set():
            for i in range(1000):
                actornet.call(pid, ("call", i))


@contextmanager
def _remote_pair(prefix: str) -> Iterator[tuple[ActornetChild, dict[str, int]]]:
    with Children() as kids, local_node(prefix):
        far = ActornetChild(kids, f"{prefix}_far")
        connect(far.address)
        yield far, {"this process (sender/caller)": os.getpid(),
                    "child node (receiver/server)": far.child.proc.pid}


def remote_send(stop: threading.Event, ready: Ready) -> None:
    with _remote_pair("profsend") as (far, pids):
        pid = actornet.spawn(_remote.batch_sink, actornet.self(), 10_000, node=far.name)
        ready(pids)
        _sender(pid, 10_000, ("msg", 1, bytes(100)), stop)


def remote_call(stop: threading.Event, ready: Ready) -> None:
    with _remote_pair("profcall") as (far, pids):
        server = actornet.rpc.call(far.name, _remote.start_echo)
        ready(pids)
        while not stop.is_set():
            for i in range(200):
                actornet.call(server, ("call", i))


def fanout(stop: threading.Event, ready: Ready) -> None:
    with _remote_pair("proffan") as (far, pids):
        me = actornet.self()
        _, sinks = actornet.rpc.call(far.name, _remote.fanout_sinks, me, 1000, timeout=120)
        ready(pids)
        rnd = 0
        while not stop.is_set():
            rnd += 1
            for pid in sinks:
                actornet.send(pid, ("round", 20, rnd))
            for i in range(20):
                msg = ("msg", i, bytes(100))
                for pid in sinks:
                    actornet.send(pid, msg)
            actornet.receive(_is(("fanout_done", rnd)), timeout=120)


def chat(stop: threading.Event, ready: Ready) -> None:
    """The chat figure's load: 3 senders and 3 receivers in one room of 3 chat nodes."""
    from benchmarks.chat import chat_cluster

    with chat_cluster() as cluster:
        cluster.run(1.0, -1)
        ready(cluster.pids())
        rep = 0
        while not stop.is_set():
            sample = cluster.run(5.0, rep, stop)
            print(f"   chat: {sample['rate']:.0f} messages/s, {sample['lost']:.0f} lost",
                  file=sys.stderr, flush=True)
            rep += 1


def chat_many(stop: threading.Event, ready: Ready) -> None:
    """The chat figure's many-publishers load: lightweight publishers with several messages
    in flight each, in a room of 3 chat nodes (the load node is profiled too)."""
    from benchmarks.chat import CHAT_TICK, ManyPublishers, chat_cluster

    with chat_cluster() as cluster, Children() as kids, local_node("prof_chat",
                                                                  tick_time=CHAT_TICK):
        many = ManyPublishers(kids, cluster)
        many.run(1.0, -1)
        pids = {k: v for k, v in cluster.pids().items() if k.startswith("chat node")}
        ready({**pids, "load node (publishers, receivers)": many.load.child.proc.pid})
        rep = 0
        while not stop.is_set():
            sample = many.run(5.0, rep)
            print(f"   chat_many: {sample['rate']:.0f} messages/s, {sample['lost']:.0f} lost",
                  file=sys.stderr, flush=True)
            rep += 1


WORKLOADS: dict[str, Workload] = {
    "local_send": local_send,
    "local_call": local_call,
    "remote_send": remote_send,
    "remote_call": remote_call,
    "fanout": fanout,
    "chat": chat,
    "chat_many": chat_many,
}


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds process `pid` has used so far (None: gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_ROOT = str(Path(__file__).resolve().parent.parent) + "/"


def _short(path: str) -> str:
    """A source path without the checkout's or the interpreter's prefix."""
    for marker in ("site-packages/", _ROOT, "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return path


def _thread_kind(frames: list[str]) -> str:
    names = [f.split(" (")[0].rsplit(".", 1)[-1] for f in frames]
    for fn, kind in (("_loop", "I/O thread (_transport._loop)"),
                     ("_actor_loop", "GenServer thread (pykka loop)"),
                     ("_run", "process thread (Node._run)"),
                     ("resolve", "resolver thread")):
        if fn in names[:6]:
            return kind
    if any(n in WORKLOADS or n == "_sender" for n in names[:8]):
        return "workload thread (sender/caller)"
    return "other thread"


def summarize(raw: str, top: int = 12, per: float | None = None) -> str:
    """Text tables of py-spy raw (collapsed) stacks: thread kinds, self and inclusive time.

    Shares are percentages of the samples, or with `per` (samples one thread
    would give over the run) numbers of threads: 1.00 is one thread all the time.
    """
    total = 0
    kinds: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not count_s.isdigit():
            continue
        count = int(count_s)
        if not stack.strip():  # the GIL holder had no Python frame (C code, thread start)
            total += count
            kinds["(no Python stack)"] += count
            continue
        frames = [f for f in stack.split(";") if not f.startswith("thread (")]
        names = []
        for f in frames:
            m = _FRAME.match(f)
            names.append(f"{m.group('fn')} ({_short(m.group('file'))})" if m else f)
        total += count
        kinds[_thread_kind(frames)] += count
        if names:
            own[names[-1]] += count
        for name in set(names):
            incl[name] += count
    if not total:
        return "  (no samples)\n"
    def share(c: int) -> str:
        return f"{c / per:5.2f} thr" if per else f"{100 * c / total:5.1f}%"

    out = [f"  {total} samples" + (" (thr: threads in it on average)" if per else ""),
           "  by thread:"]
    out += [f"    {share(c)}  {k}" for k, c in kinds.most_common()]
    out.append("  top functions by own time:")
    out += [f"    {share(c)}  {k}" for k, c in own.most_common(top)]
    out.append("  top functions by inclusive time "
               "(actornet, examples, pykka, zmq, msgpack, queue):")
    keep = ("actornet/", "examples/", "pykka/", "zmq/", "msgpack/", "queue", "threading")
    if per:  # every thread sits in its loop: keep to the functions that say something
        keep = ("actornet/", "examples/", "zmq/", "msgpack/")
    picked = [(k, c) for k, c in incl.most_common() if any(s in k for s in keep)]
    out += [f"    {share(c)}  {k}" for k, c in picked[:top]]
    return "\n".join(out) + "\n"


def profile(name: str, seconds: float, out_dir: Path, rate: int, gil_only: bool = True,
            idle: bool = False) -> str:
    """Run workload `name` under py-spy for `seconds`; the text summary.

    With `gil_only`, only threads holding the GIL are sampled: the Python work
    itself, without the waits (in a lock, a queue, a poll) in between. With
    `idle`, every thread is sampled, waiting or not: where the time goes.
    """
    gil = ["--idle"] if idle else ["--gil"] if gil_only else []
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    stop = threading.Event()
    ready: queue.Queue[dict[str, int]] = queue.Queue()
    body = threading.Thread(target=WORKLOADS[name], args=(stop, ready.put), daemon=True,
                            name=f"workload {name}")
    body.start()
    pids = ready.get(timeout=120)
    time.sleep(0.5)  # warm up
    spies = {}
    cpu0 = {role: _cpu_seconds(pid) for role, pid in pids.items()}
    t0 = time.monotonic()
    for role, pid in pids.items():
        raw = out_dir / f"{name}-{pid}.txt"
        spies[role] = (raw, subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate",
             str(rate), "--format", "raw", "--function", "--nonblocking", *gil, "-o", str(raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    what = ("every thread, idle or not" if idle
            else "threads holding the GIL" if gil_only else "busy threads")
    report = [f"== {name} ({seconds:.0f} s, {rate} Hz, {what})"]
    errors = {role: proc.communicate(timeout=seconds + 60)[1]
              for role, (_, proc) in spies.items()}
    elapsed = time.monotonic() - t0
    for role, (raw, _) in spies.items():
        before, after = cpu0[role], _cpu_seconds(pids[role])
        cpu = "" if before is None or after is None else (
            f" (CPU: {(after - before) / elapsed:.2f} cores over the {elapsed:.1f} s)")
        if not raw.exists():
            report.append(f"-- {role}: py-spy failed: {errors[role].strip()[-300:]}")
            continue
        report.append(f"-- {role}{cpu}")
        report.append(summarize(raw.read_text(), per=rate * seconds if idle else None))
    stop.set()
    body.join(60)
    return "\n".join(report)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profiling",
                                description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="*", help=f"workloads (default all): {', '.join(WORKLOADS)}")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rate", type=int, default=250, help="samples per second")
    p.add_argument("--out", type=Path, help="keep raw py-spy stacks here")
    p.add_argument("--all-threads", action="store_true",
                   help="sample busy threads too, not only the one holding the GIL")
    p.add_argument("--idle", action="store_true",
                   help="sample every thread, waiting ones too; shares in threads")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in WORKLOADS]
    if unknown:
        p.error(f"unknown workload(s) {unknown}; choose from {', '.join(WORKLOADS)}")
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="actornet-prof-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in args.names or list(WORKLOADS):
        print(profile(name, args.seconds, out_dir, args.rate, not args.all_threads, args.idle),
              flush=True)
    print(f"raw stacks: {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
