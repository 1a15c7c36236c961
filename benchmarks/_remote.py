"""Functions the benchmarks run on child actornet nodes (importable there by name)."""

from __future__ import annotations

from typing import Any

import actornet
from actornet import pg


def sink(report_to: actornet.Pid, count: int) -> None:
    """Receive `count` messages, then send ``("sink_done", self())`` to `report_to`."""
    receive = actornet.receive
    for _ in range(count):
        receive()
    actornet.send(report_to, ("sink_done", actornet.self()))


def named_sink(report_to: actornet.Pid, count: int, name: str) -> None:
    """`sink`, registered as `name` first (and saying so with ``("sink_ready", self())``),
    for sends to ``(name, node)``."""
    actornet.register(name, actornet.self())
    actornet.send(report_to, ("sink_ready", actornet.self()))
    sink(report_to, count)


def batch_sink(report_to: actornet.Pid, batch: int) -> None:
    """Forever: receive `batch` messages, then send ``"batch"`` to `report_to`."""
    receive = actornet.receive
    while True:
        for _ in range(batch):
            receive()
        actornet.send(report_to, "batch")


def _round_collector(report_to: actornet.Pid, k: int) -> None:
    counts: dict[Any, int] = {}
    while True:
        msg = actornet.receive()
        if msg == "stop":
            return
        tag = msg[1]
        counts[tag] = counts.get(tag, 0) + 1
        if counts[tag] == k:
            del counts[tag]
            actornet.send(report_to, ("fanout_done", tag))


def _round_sink(collector: actornet.Pid) -> None:
    receive = actornet.receive
    while True:
        msg = receive()
        if msg == "stop":
            return
        _, count, tag = msg
        for _ in range(count):
            receive()
        actornet.send(collector, ("got", tag))


def fanout_sinks(report_to: actornet.Pid, k: int) -> tuple[actornet.Pid, list[actornet.Pid]]:
    """Start a collector and `k` sinks; returns ``(collector, sinks)``.

    A round: each sink gets ``("round", count, tag)``, then `count` messages;
    once all `k` have theirs, ``("fanout_done", tag)`` goes to `report_to`.
    ``"stop"`` ends a sink or the collector.
    """
    collector = actornet.spawn(_round_collector, report_to, k)
    return collector, [actornet.spawn(_round_sink, collector) for _ in range(k)]


async def _round_sink_light(collector: actornet.Pid) -> None:
    receive = actornet.aio.receive
    while True:
        msg = await receive()
        if msg == "stop":
            return
        _, count, tag = msg
        for _ in range(count):
            await receive()
        actornet.send(collector, ("got", tag))


def fanout_sinks_light(report_to: actornet.Pid, k: int,
                       ) -> tuple[actornet.Pid, list[actornet.Pid]]:
    """`fanout_sinks`, with lightweight sinks."""
    collector = actornet.spawn(_round_collector, report_to, k)
    return collector, [actornet.spawn(_round_sink_light, collector) for _ in range(k)]


def fanout_sinks_group(report_to: actornet.Pid, k: int, group: Any,
                       ) -> tuple[actornet.Pid, list[actornet.Pid]]:
    """`fanout_sinks_light`, every sink a member of `group` (for `pg.broadcast`)."""
    collector, pids = fanout_sinks_light(report_to, k)
    pg.join(group, pids)
    return collector, pids


class Echo(actornet.GenServer):
    """Answers every call with the request itself."""

    def handle_call(self, request: Any, from_: Any) -> Any:
        return request


def start_echo() -> actornet.Pid:
    """Start an `Echo` server on this node."""
    return Echo.start()


def pg_watch(report_to: actornet.Pid, group: Any, count: int) -> None:
    """Tell `report_to` ``("pg_watching", group)``, then ``("pg_seen", group, n)``
    once `group` has `count` members visible here."""
    ref, members = pg.monitor(group)
    seen = len(members)
    actornet.send(report_to, ("pg_watching", group))
    while seen < count:
        msg = actornet.receive(lambda m: m[0] == "pg" and m[1] == ref, timeout=120)
        if msg[2] == "join":
            seen += len(msg[4])
        else:
            seen -= len(msg[4])
    pg.demonitor(ref)
    actornet.send(report_to, ("pg_seen", group, seen))


def idle() -> None:
    """Wait for any message, then end."""
    actornet.receive()
