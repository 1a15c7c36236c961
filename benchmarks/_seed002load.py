"""The load side of `benchmarks.seed002` and `benchmarks.chat`: chat clients as lightweight
processes.

Runs in a child actornet node that reaches the chat nodes through their port
mapper. Each client is one ``async def`` process that does what
``python -m examples.chatty client`` does for a user: connect with a nickname
to one chat node's server, join the room, then take what the room delivers.

A round's messages carry a tag, their publisher's key and their index
(``<tag><key>:<index>.``); a client counts, per publisher, the round's messages
it sees, checks they come once each and in order, and reports once it has all it
was told to expect. A publisher is one more client that says its messages in
order with up to `window` of them unanswered (1: each acknowledged before the
next, as a user would), each answered with its number in the room's order.

Every member of a room hears every join, so filling a room with n clients
delivers n²/2 join notices. A client started *parked* (seed 002's experiment 2,
thousands of subscribers) waits on its node's gate instead of its mailbox
while the others join: a notice to a process that is not waiting is one list
append, where waking one costs a task switch. It takes its backlog once the
gate opens (`open_gate`), before it answers the next round; ``"park"`` sends it
back to the gate (`close_gate` first).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import actornet
from actornet import aio

__all__ = ["ROOM", "close_gate", "expect", "open_gate", "publish", "publish_for",
           "start_clients", "stop_clients"]

ROOM = "seed002"
WAIT = 60.0  # seconds any one call of the setup may take


async def _connect(server: str, nick: str, room: str) -> tuple[Any, ...]:
    chat = ("chatty", server)
    for request in (("connect", nick), ("join", room)):
        answer = await aio.call(chat, request, timeout=WAIT)
        if answer[0] != "ok":
            return ("client_failed", nick, f"{request[0]}: {answer}")
    return ("client_ready", actornet.self())


def _text(tag: str, key: str, index: int, size: int) -> str:
    text = f"{tag}{key}:{index}."
    return text + "x" * (size - len(text))


_gate: list[asyncio.Event] = []  # this node's gate, made on its loop when first needed


def _the_gate() -> asyncio.Event:
    if not _gate:
        _gate.append(asyncio.Event())
    return _gate[0]


async def _client(server: str, nick: str, starter: actornet.Pid, room: str,
                  parked: bool = False) -> None:
    """A member of `room`: per round, counts the round's messages it sees, per publisher."""
    actornet.send(starter, await _connect(server, nick, room))
    if parked:
        await _the_gate().wait()
    tag: str | None = None
    seen: dict[str, int] = {}
    expected: dict[str, int] | None = None
    in_order, report_to = True, None

    def report_if_done() -> None:
        nonlocal expected
        if expected is not None and report_to is not None and all(
                seen.get(k, 0) >= n for k, n in expected.items()):
            actornet.send(report_to, ("client_done", tag, sum(seen.values()), in_order,
                                      time.time()))
            expected = None

    while True:
        msg = await aio.receive()
        match msg:
            case ("round", str() as t, dict() | None as want, actornet.Pid() as to):
                tag, seen, expected, in_order, report_to = t, {}, want, True, to
                actornet.send(to, ("round_ok", tag))
            case ("expect", str() as t, dict() as want) if t == tag:
                expected = want
                report_if_done()
            case ("room_msg", _, _, _, str() as text, *_) if tag and text.startswith(tag):
                key, _, rest = text[len(tag):].partition(":")
                index = int(rest.split(".", 1)[0])
                in_order = in_order and index == seen.get(key, 0)
                seen[key] = seen.get(key, 0) + 1
                report_if_done()
            case "park":
                await _the_gate().wait()
            case "stop":
                await aio.call(("chatty", server), ("quit",), timeout=WAIT)
                return
            case _:
                pass  # joins, history, the previous round's stragglers


def start_clients(servers: list[str], count: int, prefix: str, room: str = ROOM,
                  window: int = 1, parked: bool = False) -> list[actornet.Pid]:
    """Start `count` clients, spread over `servers` in turn, each connected and in `room`,
    up to `window` of them joining at once (the first alone: if `room` is new, it is made
    on the first server); `parked`: each waits at the gate once in."""
    me = actornet.self()
    pids: list[actornet.Pid] = []
    started = 0
    while len(pids) < count:
        while started < count and started - len(pids) < (window if pids else 1):
            actornet.spawn(_client, servers[started % len(servers)], f"{prefix}{started}", me,
                           room, parked)
            started += 1
        match actornet.receive(lambda m: m[0] in ("client_ready", "client_failed"),
                               timeout=WAIT):
            case ("client_ready", pid):
                pids.append(pid)
            case ("client_failed", nick, why):
                raise RuntimeError(f"chat client {nick} could not start: {why}")
    return pids


async def _open() -> None:
    _the_gate().set()


async def _close() -> None:
    _the_gate().clear()


def open_gate() -> None:
    """Let this node's parked clients take their mailboxes."""
    _run_async(_open)


def close_gate() -> None:
    """Make ``"park"`` send this node's clients back to the gate."""
    _run_async(_close)


def stop_clients(pids: list[actornet.Pid]) -> None:
    for pid in pids:
        actornet.send(pid, "stop")


def expect(pids: list[actornet.Pid], tag: str, counts: dict[str, int]) -> None:
    """Tell the clients how many messages of round `tag` each publisher's acknowledgements
    counted (for a round whose length was not known when it started)."""
    for pid in pids:
        actornet.send(pid, ("expect", tag, counts))


async def _say(server: str, nick: str, room: str, texts: Iterator[str], window: int,
               joined: Callable[[], Awaitable[None]] | None = None) -> dict[str, Any]:
    """Connect as `nick`, join `room` (then await `joined()`: a start signal), say each of
    `texts` in order with up to `window` unanswered, quit; the acknowledged numbers' order
    and count, and when the first was said."""
    chat = ("chatty", server)
    for request in (("connect", nick), ("join", room)):
        answer = await aio.call(chat, request, timeout=WAIT)
        if answer[0] != "ok":
            raise RuntimeError(f"publisher {nick}: {request[0]}: {answer}")
    if joined is not None:
        await joined()
    started = time.time()  # the clients' reports are stamped with this clock too
    t0 = time.perf_counter()
    inflight: deque[asyncio.Future[Any]] = deque()
    seqs: list[int] = []

    def take(answer: Any) -> None:
        if answer[0] != "ok":
            raise RuntimeError(f"publisher {nick}: message {len(seqs)}: {answer}")
        seqs.append(answer[1])

    # Tasks run their first step (the call's send) in the order they were made, so
    # the chat server gets the messages in order.
    for text in texts:
        if len(inflight) >= window:
            take(await inflight.popleft())
        inflight.append(asyncio.ensure_future(aio.call(chat, ("say", room, text),
                                                       timeout=WAIT)))
    while inflight:
        take(await inflight.popleft())
    seconds = time.perf_counter() - t0
    await aio.call(chat, ("quit",), timeout=WAIT)
    return {"started": started, "seconds": seconds, "ordered": seqs == sorted(seqs),
            "count": len(seqs)}


def reports(tag: str, clients: int, expected: int, timeout: float,
            ) -> tuple[list[float], int, int]:
    """On the controller: each client's ``client_done`` report for round `tag`.

    Returns when every client reported, or had `timeout` seconds to: the time each
    finished, the deliveries missing (a client that never reported misses one), and how
    many clients saw their messages out of order."""
    ends: list[float] = []
    lost = disorder = 0
    for _ in range(clients):
        try:
            _, _, seen, in_order, at = actornet.receive(
                lambda x: x[0] == "client_done" and x[1] == tag, timeout=timeout)
        except actornet.Timeout:
            lost += 1
            continue
        ends.append(at)
        lost += expected - seen
        disorder += not in_order
    return ends, lost, disorder


def _run_async(main: Any) -> Any:
    """Run coroutine function `main` in a lightweight process; its result here."""
    me = actornet.self()
    ref = actornet.make_ref()

    async def runner() -> None:
        try:
            actornet.send(me, (ref, True, await main()))
        except Exception as e:  # handed to the caller
            actornet.send(me, (ref, False, f"{type(e).__name__}: {e}"))

    actornet.spawn(runner)
    _, ok, value = actornet.receive(lambda m: m[0] == ref, timeout=WAIT * 10)
    if not ok:
        raise RuntimeError(value)
    return value


def publish(server: str, nick: str, tag: str, count: int, size: int,
            window: int = 1, room: str = ROOM) -> dict[str, Any]:
    """Say `count` messages of `size` characters in `room` through `server`, in order, up to
    `window` unanswered; the acknowledged sequence numbers' order and the time it took."""
    texts = (_text(tag, "", i, size) for i in range(count))
    return _run_async(lambda: _say(server, nick, room, texts, window))  # type: ignore[no-any-return]


def publish_for(servers: list[str], prefix: str, publishers: int, tag: str, seconds: float,
                size: int, window: int, room: str = ROOM) -> dict[str, Any]:
    """`publishers` clients, spread over `servers`, say messages in `room` for `seconds`,
    each with up to `window` unanswered; per publisher key, the messages acknowledged."""
    me = actornet.self()
    ref = actornet.make_ref()
    for i in range(publishers):
        actornet.spawn(_timed_publisher, servers[i % len(servers)], f"{prefix}{i}", room,
                       tag, f"p{i}", size, window, me, ref)
    pids = [actornet.receive(lambda m: m[:2] == ("joined", ref), timeout=WAIT)[2]
            for _ in range(publishers)]
    started = time.time()
    stop_at = time.perf_counter() + seconds
    for pid in pids:
        actornet.send(pid, ("go", stop_at))
    counts: dict[str, int] = {}
    ordered = True
    for _ in pids:
        _, _, key, out = actornet.receive(lambda m: m[:2] == ("said", ref), timeout=WAIT * 2)
        if isinstance(out, str):
            raise RuntimeError(out)
        counts[key] = out["count"]
        ordered = ordered and out["ordered"]
    return {"started": started, "counts": counts, "ordered": ordered}


async def _timed_publisher(server: str, nick: str, room: str, tag: str, key: str, size: int,
                           window: int, parent: actornet.Pid, ref: actornet.Ref) -> None:
    stop_at = [0.0]

    async def wait_go() -> None:
        actornet.send(parent, ("joined", ref, actornet.self()))
        _, stop_at[0] = await aio.receive(lambda m: m[0] == "go", timeout=WAIT)

    def texts() -> Iterator[str]:
        i = 0
        while time.perf_counter() < stop_at[0]:
            yield _text(tag, key, i, size)
            i += 1

    try:
        out: Any = await _say(server, nick, room, texts(), window, wait_go)
    except Exception as e:  # handed to the parent
        out = f"publisher {nick}: {type(e).__name__}: {e}"
    actornet.send(parent, ("said", ref, key, out))
