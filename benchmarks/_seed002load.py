"""The load side of `benchmarks.seed002`: chat clients as lightweight processes.

Runs in a child actornet node that reaches the chat nodes through their port
mapper. Each client is one ``async def`` process that does what
``python -m examples.chatty client`` does for a user: connect with a nickname
to one chat node's server, join the room, then take what the room delivers. A
round's messages carry their index; a client checks that it sees each one once,
in order, and reports its count. The publisher is one more client that says
each message and waits for its acknowledgement (a number in the room's order)
before the next, as a user would.
"""

from __future__ import annotations

import time
from typing import Any

import actornet
from actornet import aio

__all__ = ["ROOM", "publish", "start_clients", "stop_clients"]

ROOM = "seed002"
WAIT = 60.0  # seconds any one call of the setup may take


async def _connect(server: str, nick: str) -> tuple[Any, ...]:
    chat = ("chatty", server)
    for request in (("connect", nick), ("join", ROOM)):
        answer = await aio.call(chat, request, timeout=WAIT)
        if answer[0] != "ok":
            return ("client_failed", nick, f"{request[0]}: {answer}")
    return ("client_ready", actornet.self())


async def _client(server: str, nick: str, starter: actornet.Pid) -> None:
    """A member of `ROOM`: per round, counts the round's messages it sees in order."""
    actornet.send(starter, await _connect(server, nick))
    tag, expected, seen, in_order, report_to = None, 0, 0, True, None
    while True:
        msg = await aio.receive()
        match msg:
            case ("round", str() as t, int() as n, actornet.Pid() as to):
                tag, expected, seen, in_order, report_to = t, n, 0, True, to
                actornet.send(to, ("round_ok", tag))
            case ("room_msg", _, _, _, str() as text, *_) if tag and text.startswith(tag):
                index = int(text[len(tag):].split(".", 1)[0])
                in_order = in_order and index == seen
                seen += 1
                if seen == expected and report_to is not None:
                    actornet.send(report_to, ("client_done", tag, seen, in_order, time.time()))
            case "stop":
                await aio.call(("chatty", server), ("quit",), timeout=WAIT)
                return
            case _:
                pass  # joins, history, the previous round's stragglers


def start_clients(servers: list[str], count: int, prefix: str) -> list[actornet.Pid]:
    """Start `count` clients, spread over `servers` in turn, each connected and in `ROOM`."""
    me = actornet.self()
    pids = []
    for i in range(count):
        actornet.spawn(_client, servers[i % len(servers)], f"{prefix}{i}", me)
        match actornet.receive(lambda m: m[0] in ("client_ready", "client_failed"),
                               timeout=WAIT):
            case ("client_ready", pid):
                pids.append(pid)
            case ("client_failed", nick, why):
                raise RuntimeError(f"chat client {nick} could not start: {why}")
    return pids


def stop_clients(pids: list[actornet.Pid]) -> None:
    for pid in pids:
        actornet.send(pid, "stop")


def publish(server: str, nick: str, tag: str, count: int, size: int) -> dict[str, Any]:
    """Say `count` messages of `size` characters in `ROOM` through `server`, one at a time,
    each acknowledged before the next; the acknowledged sequence numbers' order and the
    time it took."""
    chat = ("chatty", server)
    for request in (("connect", nick), ("join", ROOM)):
        answer = actornet.call(chat, request, timeout=WAIT)
        if answer[0] != "ok":
            raise RuntimeError(f"publisher {nick}: {request[0]}: {answer}")
    pad = "x" * size
    seqs = []
    started = time.time()  # the clients' reports are stamped with this clock too
    t0 = time.perf_counter()
    for i in range(count):
        text = f"{tag}{i}."
        answer = actornet.call(chat, ("say", ROOM, text + pad[:size - len(text)]),
                               timeout=WAIT)
        if answer[0] != "ok":
            raise RuntimeError(f"publisher {nick}: message {i}: {answer}")
        seqs.append(answer[1])
    seconds = time.perf_counter() - t0
    actornet.call(chat, ("quit",), timeout=WAIT)
    return {"started": started, "seconds": seconds, "ordered": seqs == sorted(seqs)}
