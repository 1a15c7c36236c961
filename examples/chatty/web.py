"""The web page: ``python -m examples.chatty node --web PORT`` serves a chat to browsers.

``GET /`` is a single page (`page.html`, no build step, no third-party script);
``GET /ws`` is a WebSocket that speaks the gateway's protocol as JSON: the
browser sends ``{"line": "/join lobby"}`` (the same lines a terminal user types,
and ``HELLO``/``RESUME`` first), and receives each batch of the gateway's lines
as one JSON array of objects, one per line, ``{"type": "MSG", "room": "lobby",
"id": 4, "nick": "ann", "likes": 0, "text": "hi"}`` (`to_json`). A batch is one
WebSocket message, so a room event and its ``SEQ`` arrive together or not at all.

Behind the socket is the same session process as for a TCP connection
(`examples.chatty.session`): the same identity rules, rate limit, bounded backlog
and failover (the page is given the web addresses of every chat node, and
resumes through another when its node dies). The server runs on aiohttp (the
``web`` extra), on the node's own scheduler loop.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from pathlib import Path
from typing import Any

import actornet
from actornet import aio

from . import session
from .gateway import Limits, _Bucket, _Count
from .requests import MAX_INPUT

__all__ = ["WsLink", "start", "to_json"]

log = logging.getLogger("chatty.web")

PAGE = Path(__file__).with_name("page.html")

# Each line's fields after its type; the last one named takes the rest of the line
# (a text), except for those ending in "*", a list of the remaining words.
FIELDS: dict[str, tuple[str, ...]] = {
    "CONNECTED": ("nick", "node"), "RECONNECTED": ("node",),
    "SESSION": ("token",), "GATEWAYS": ("addresses*",), "SEQ": ("room", "seq"),
    "MSG": ("room", "id", "nick", "likes", "text"),
    "HIST": ("room", "id", "nick", "likes", "time", "text"),
    "JOIN": ("room", "nick"), "LEAVE": ("room", "nick"), "KICK": ("room", "nick", "by"),
    "OWNER": ("room", "nick"), "LIKES": ("room", "id", "count", "nick", "what"),
    "NICK": ("room", "old", "new"), "CURRENT": ("room",), "RENAMED": ("old", "new", "why"),
    "MOVED": ("room", "nick"), "DM": ("from", "text"), "WHO": ("room", "owner", "members*"),
    "ROOMS": ("rooms*",), "SERVERS": ("nodes*",), "OK": ("text",), "ERROR": ("text",),
    "INFO": ("text",), "BYE": (),
}
_NUMBERS = {"id", "likes", "count", "seq"}


def to_json(line: str) -> dict[str, Any]:
    """A protocol line as the object a browser gets.

    Example:
        >>> to_json("MSG lobby 4 ann 0 hello there")
        {'type': 'MSG', 'room': 'lobby', 'id': 4, 'nick': 'ann', 'likes': 0, 'text': 'hello there'}
        >>> to_json("WHO lobby ann ann bob")
        {'type': 'WHO', 'room': 'lobby', 'owner': 'ann', 'members': ['ann', 'bob']}
        >>> to_json("SEQ lobby -")
        {'type': 'SEQ', 'room': 'lobby', 'seq': None}
    """
    kind, _, rest = line.partition(" ")
    names = FIELDS.get(kind)
    if names is None:
        return {"type": kind, "text": rest}
    out: dict[str, Any] = {"type": kind}
    for i, name in enumerate(names):
        last = i == len(names) - 1
        if name.endswith("*"):
            out[name[:-1]] = rest.split()
            break
        value, _, rest = (rest, "", "") if last else rest.partition(" ")
        out[name] = (int(value) if value.isdigit() else None) if name in _NUMBERS else value
    return out


class WsLink:
    """One WebSocket: JSON lines in (to its session, one at a time), batches out."""

    def __init__(self, ws: Any, peer: str, limits: Limits, count: _Count) -> None:
        self.ws, self.peer, self.limits, self.count = ws, peer, limits, count
        self._want = asyncio.Event()
        self._queue: collections.deque[str] = collections.deque()
        self._queued = 0  # bytes in the queue
        self._ready = asyncio.Event()
        self.closed = False
        count.open += 1
        self._writer = asyncio.get_running_loop().create_task(self._write_out())

    def write(self, lines: list[str]) -> bool:
        if self.closed:
            return True
        if self._queued > self.limits.backlog:
            return False
        data = json.dumps([to_json(line) for line in lines], ensure_ascii=False)
        self._queue.append(data)
        self._queued += len(data)
        self._ready.set()
        return True

    async def _write_out(self) -> None:
        """Send the batches in order; once closed, the last of them (an ERROR, BYE), then
        the close."""
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                while self._queue:
                    data = self._queue.popleft()
                    await self.ws.send_str(data)
                    self._queued -= len(data)
                if self.closed:
                    break
        except (ConnectionError, RuntimeError):
            pass  # the socket is gone: the reader says so to the session
        await self.ws.close()

    def next(self) -> None:
        self._want.set()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.count.open -= 1
            if self._queued > self.limits.backlog:  # a slow reader: what it did not read goes
                self._queue.clear()
            self._ready.set()

    async def pump(self, pid: actornet.Pid) -> None:
        """Hand the session one line at a time; ends with the socket."""
        from aiohttp import WSMsgType

        bucket = _Bucket(self.limits.rate, self.limits.burst)
        # lines refused for flooding, refilled at the same rate: a client that keeps
        # flooding runs out of them and is disconnected
        patience = _Bucket(self.limits.rate, self.limits.flood)
        why = "closed by the browser"
        while True:
            await self._want.wait()
            self._want.clear()
            try:
                frame = await self.ws.receive()
            except (ConnectionError, RuntimeError) as e:
                why = f"connection lost: {e}"
                break
            if frame.type != WSMsgType.TEXT:
                if frame.type == WSMsgType.ERROR:
                    why = f"connection lost: {self.ws.exception()}"
                elif frame.type not in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    actornet.send(pid, ("input_error", "a message is JSON text, not binary"))
                    continue
                break
            msg = _line_of(frame.data)
            if msg[0] == "line" and not bucket.take():
                if not patience.take():
                    why = f"flooding: more than {self.limits.rate:g} commands a second"
                    self.write([f"ERROR disconnected for {why}"])
                    break
                msg = ("input_error", f"too many commands: at most {self.limits.rate:g} "
                                      "a second; this one was dropped")
            actornet.send(pid, msg)
        actornet.send(pid, ("closed", why))


def _line_of(data: str) -> tuple[str, str]:
    """``("line", text)`` from ``{"line": text}``, or ``("input_error", why)``.

    Example:
        >>> _line_of('{"line": "/join lobby"}')
        ('line', '/join lobby')
        >>> _line_of('{"line": 5}')
        ('input_error', 'expected {"line": "<text>"}, got {"line": 5}')
    """
    try:
        value = json.loads(data)
    except ValueError as e:
        return ("input_error", f"malformed JSON: {e}")
    if not isinstance(value, dict) or set(value) != {"line"} or \
            not isinstance(value["line"], str):
        return ("input_error", f'expected {{"line": "<text>"}}, got {data[:100]}')
    line = value["line"]
    if len(line) > MAX_INPUT or "\n" in line:
        return ("input_error", f"line too long or not one line ({len(line)} characters, at "
                               f"most {MAX_INPUT}): ignored")
    return ("line", line)


async def _server(host: str, port: int, config: session.SessionConfig, limits: Limits,
                  parent: actornet.Pid) -> None:
    from aiohttp import web

    count = _Count()

    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(PAGE, headers={"Cache-Control": "no-store"})

    async def socket(request: web.Request) -> web.StreamResponse:
        if count.open >= limits.max_connections:
            return web.Response(status=503, text="this chat node is full: try another")
        ws = web.WebSocketResponse(max_msg_size=4 * MAX_INPUT + 64, heartbeat=30.0)
        await ws.prepare(request)
        link = WsLink(ws, str(request.remote), limits, count)
        pid = actornet.spawn(session.serve, link, config, session.WEB)
        await link.pump(pid)
        return ws

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/ws", socket)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except OSError as e:
        await runner.cleanup()
        actornet.send(parent, ("web", "error", f"cannot listen on {host}:{port}: {e}"))
        return
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await aio.pg.join((session.WEB, f"{host}:{bound}"), actornet.self())
    actornet.send(parent, ("web", "ok", bound))
    try:
        await aio.receive(lambda m: m == "stop")
    finally:
        await runner.cleanup()


def start(host: str, port: int, config: session.SessionConfig,
          limits: Limits | None = None) -> int:
    """Serve the page and its WebSocket on `host`:`port` (0: any free port); the port."""
    import aiohttp.web  # noqa: F401  (here: an import blocks, never on the scheduler)

    actornet.spawn(_server, host, port, config, limits or Limits(), actornet.self())
    reply: Any = actornet.receive(lambda m: isinstance(m, tuple) and m[:1] == ("web",),
                                  timeout=10)
    if reply[1] != "ok":
        raise OSError(reply[2])
    return int(reply[2])
