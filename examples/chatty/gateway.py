"""A chat node's gateway: its client port, one lightweight session process per connection.

``python -m examples.chatty node --gateway PORT`` listens on a TCP port of its own
(not the distribution port) and speaks the plain client's line protocol to users
who are not members of the cluster: they never get the cookie, and reach no
process but their own session (`examples.chatty.session`). The acceptor is a
lightweight process running an asyncio server on the node's scheduler; each
accepted connection gets a `TcpLink` and a session process.

What one connection may cost is bounded here:

- a line is at most `MAX_INPUT` characters (4 bytes each at most): a longer one is
  skipped as it arrives, in memory that does not grow with it, and refused;
- bytes that are not UTF-8 are refused, line by line;
- at most `Limits.rate` commands a second (a burst of `Limits.burst`): more are
  refused one by one, and a connection that keeps flooding (`Limits.flood` refused,
  refilled at the same rate) is disconnected;
- at most `Limits.backlog` bytes wait for a reader: a slower reader is
  disconnected (its session lingers, to be resumed), never waited for;
- a connection must say HELLO (or RESUME) within `SessionConfig.hello_timeout`;
  TCP keepalive finds a peer that vanished without closing;
- at most `Limits.max_connections` connections: one more is told the gateway is
  full, and closed.

Example (on a running chat node)::

    port = gateway.start("127.0.0.1", 0, session.SessionConfig(key))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import time
from dataclasses import dataclass
from typing import Any

import actornet
from actornet import aio

from . import session
from .requests import MAX_INPUT

__all__ = ["Limits", "TcpLink", "start"]

log = logging.getLogger("chatty.gateway")

MAX_LINE_BYTES = 4 * MAX_INPUT + 2  # the longest line of MAX_INPUT characters, and CR LF


@dataclass
class Limits:
    """What one connection may cost a gateway."""

    max_connections: int = 20_000
    backlog: int = 256 * 1024  # bytes written and not yet read by the peer
    rate: float = 20.0  # commands a second, on average
    burst: int = 60  # commands at once
    flood: int = 200  # commands refused for flooding (refilled at `rate`) before disconnecting


class _Bucket:
    """A token bucket: `rate` a second, `burst` at most."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.when = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.when) * self.rate)
        self.when = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class _Count:
    """The connections a gateway holds (a shared, mutable count)."""

    def __init__(self) -> None:
        self.open = 0


class TcpLink:
    """One TCP connection: lines in (to its session, one at a time), batches of lines out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 limits: Limits, count: _Count) -> None:
        self.reader, self.writer, self.limits, self.count = reader, writer, limits, count
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer = f"{peer[0]}:{peer[1]}"
        self._want = asyncio.Event()
        self._buf = bytearray()
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        count.open += 1

    def start(self, pid: actornet.Pid) -> None:
        self._task = asyncio.get_running_loop().create_task(self._pump(pid))

    def write(self, lines: list[str]) -> bool:
        if self.closed:
            return True
        if self.writer.transport.get_write_buffer_size() > self.limits.backlog:
            return False
        self.writer.write(("\n".join(lines) + "\n").encode())
        return True

    def next(self) -> None:
        self._want.set()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.count.open -= 1
        self.writer.close()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    async def _pump(self, pid: actornet.Pid) -> None:
        """Hand the session one line at a time, each once it is done with the last."""
        bucket = _Bucket(self.limits.rate, self.limits.burst)
        # lines refused for flooding, refilled at the same rate: a client that keeps
        # flooding runs out of them and is disconnected
        patience = _Bucket(self.limits.rate, self.limits.flood)
        why = "closed by the client"
        try:
            while True:
                await self._want.wait()
                self._want.clear()
                msg = await self._read_line()
                if msg is None:
                    break
                if msg[0] == "line" and not bucket.take():
                    if not patience.take():
                        why = f"flooding: more than {self.limits.rate:g} commands a second"
                        self.write([f"ERROR disconnected for {why}"])
                        log.warning("gateway: %s: disconnected for %s", self.peer, why)
                        break
                    msg = ("input_error", f"too many commands: at most {self.limits.rate:g} "
                                          "a second; this one was dropped")
                actornet.send(pid, msg)
        except (ConnectionError, OSError) as e:
            why = f"connection lost: {e}"
        actornet.send(pid, ("closed", why))

    async def _read_line(self) -> tuple[str, str] | None:
        """The next line (or what is wrong with it), or None at the end of the input."""
        skipped = 0
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                raw = bytes(self._buf[:end]).rstrip(b"\r")
                del self._buf[:end + 1]
                if skipped:
                    return ("input_error", f"line too long ({skipped + end} bytes, at most "
                                           f"{MAX_INPUT} characters): ignored")
                try:
                    text = raw.decode()
                except UnicodeDecodeError as e:
                    return ("input_error", f"a line is UTF-8 text: byte {e.start} is not "
                                           "UTF-8: ignored")
                if len(text) > MAX_INPUT:
                    return ("input_error", f"line too long ({len(text)} characters, at most "
                                           f"{MAX_INPUT}): ignored")
                return ("line", text)
            if len(self._buf) > MAX_LINE_BYTES:  # the rest of this line is dropped as it comes
                skipped += len(self._buf)
                self._buf.clear()
            data = await self.reader.read(65536)
            if not data:
                return None
            self._buf += data


def _keepalive(writer: asyncio.StreamWriter) -> None:
    """Probe a silent peer after 30 s, every 10 s, 3 times: a vanished one is dropped."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


def raise_fd_limit() -> int:
    """Raise this process's limit of open files to its hard limit (a gateway holds one a
    connection); the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


async def _acceptor(host: str, port: int, config: session.SessionConfig, limits: Limits,
                    parent: actornet.Pid) -> None:
    count = _Count()

    def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if count.open >= limits.max_connections:
            writer.write(f"ERROR this gateway is full ({count.open} connections): try "
                         "another\n".encode())
            writer.close()
            log.warning("gateway: refused a connection: %d open, the limit", count.open)
            return
        _keepalive(writer)
        link = TcpLink(reader, writer, limits, count)
        link.start(actornet.spawn(session.serve, link, config))

    try:
        server = await asyncio.start_server(accepted, host, port, backlog=1024,
                                            limit=MAX_LINE_BYTES)
    except OSError as e:
        actornet.send(parent, ("gateway", "error", f"cannot listen on {host}:{port}: {e}"))
        return
    bound = server.sockets[0].getsockname()[1]
    address = f"{host}:{bound}"
    await aio.pg.join((session.GATEWAYS, address), actornet.self())
    actornet.send(parent, ("gateway", "ok", bound))
    try:
        while True:
            match await aio.receive():
                case ("$gen_call", from_, "info"):
                    actornet.reply(from_, {"address": address, "connections": count.open})
                case _:
                    pass
    finally:
        server.close()


def start(host: str, port: int, config: session.SessionConfig,
          limits: Limits | None = None) -> int:
    """Start this node's gateway on `host`:`port` (0: any free port); the port it listens on.

    Raises OSError if it cannot listen there.
    """
    raise_fd_limit()
    actornet.spawn(_acceptor, host, port, config, limits or Limits(), actornet.self())
    reply: Any = actornet.receive(lambda m: isinstance(m, tuple) and m[:1] == ("gateway",),
                                  timeout=10)
    if reply[1] != "ok":
        raise OSError(reply[2])
    return int(reply[2])
