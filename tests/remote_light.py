"""Lightweight (``async def``) processes and servers the tests run, on this node or a child
node (importable there as ``tests.remote_light``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import actornet
from actornet import aio


async def echo() -> None:
    """Reply ``("echo", x)`` to ``(sender, x)``, forever."""
    while True:
        sender, payload = await aio.receive()
        actornet.send(sender, ("echo", payload))


async def start_echo(name: str) -> actornet.Pid:
    pid = actornet.spawn(echo)
    actornet.register(name, pid)
    return pid


async def wait_forever() -> None:
    await aio.receive(lambda m: False)


async def crash_with(text: str) -> None:
    await asyncio.sleep(0)
    raise ValueError(text)


async def exit_with(reason: Any) -> None:
    actornet.exit(actornet.self(), reason)
    await aio.receive(lambda m: False)


async def add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


async def trap_and_forward(report_to: actornet.Pid, peer: actornet.Pid) -> None:
    """Trap exits, link to `peer`, and forward every message to `report_to`."""
    actornet.trap_exit(True)
    actornet.link(peer)
    actornet.send(report_to, ("linked", actornet.self()))
    while True:
        actornet.send(report_to, ("got", await aio.receive()))


async def link_and_wait(peer: actornet.Pid, report_to: actornet.Pid) -> None:
    actornet.link(peer)
    actornet.send(report_to, ("linked", actornet.self()))
    await aio.receive(lambda m: False)


async def monitor_and_report(target: actornet.Pid, report_to: actornet.Pid) -> None:
    ref = actornet.monitor(target)
    actornet.send(report_to, ("monitoring", actornet.self()))
    down = await aio.receive(lambda m: m[:2] == ("DOWN", ref))
    actornet.send(report_to, ("down", down[4]))


async def call_and_report(server: Any, request: Any, report_to: actornet.Pid) -> None:
    try:
        actornet.send(report_to, ("answer", await aio.call(server, request)))
    except Exception as e:
        actornet.send(report_to, ("error", type(e).__name__, str(e)))


async def busy_for(seconds: float, report_to: actornet.Pid) -> None:
    """Hold the scheduler without yielding (a CPU loop), then report."""
    actornet.send(report_to, ("busy", actornet.self()))
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    actornet.send(report_to, ("done", n))


class Counter(actornet.GenServer):
    """A lightweight server: its callbacks are `async def`."""

    async def init(self, start: int = 0) -> None:
        self.n = start

    async def handle_call(self, request: Any, from_: Any) -> Any:
        match request:
            case "get":
                return self.n
            case "crash":
                raise ValueError("light crash")
            case "kind":
                return actornet.process_info(actornet.self())["kind"]
            case "node":
                return actornet.node()
            case ("sleep", seconds):
                await asyncio.sleep(seconds)
                return "slept"
            case ("later", value):
                actornet.spawn(_reply_later, from_, value)
                return actornet.NOREPLY
        return ("unknown", request)

    async def handle_cast(self, request: Any) -> None:
        self.n += 1

    async def terminate(self, reason: Any) -> None:
        await asyncio.sleep(0)


async def _reply_later(from_: Any, value: Any) -> None:
    await asyncio.sleep(0.01)
    actornet.reply(from_, value)


def start_counter(name: str, start: int = 0) -> actornet.Pid:
    return Counter.start(start, name=name)


async def join_group(group: str, report_to: actornet.Pid) -> None:
    await aio.pg.join(group, actornet.self())
    actornet.send(report_to, ("joined", actornet.self()))
    await aio.receive(lambda m: m == "stop")


async def register_global(name: str, report_to: actornet.Pid) -> None:
    said = await aio.global_.register_name(name, actornet.self())
    actornet.send(report_to, ("registered", said, actornet.self()))
    await aio.receive(lambda m: m == "stop")
