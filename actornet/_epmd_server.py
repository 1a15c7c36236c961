"""The port mapper's daemon (`actornet.epmd.serve`): one thread, one selector, and limits
that no local or remote program can exhaust.

- **A deadline per request, not per read.** A connection must deliver a whole request line
  and take its reply within `REQUEST_TIMEOUT` seconds, counted from its accept or its
  previous reply (for a registered connection, which may stay idle, from the request's
  first byte); else it is closed. A byte now and then buys nothing.
- **Caps.** At most `MAX_PER_ADDRESS` connections at once from one remote address (an IPv6
  address counts by its /64), and remote connections together leave a quarter of
  ``max_connections`` to this host's own programs, which register through loopback. A
  newcomer over a cap takes the place of the oldest unregistered connection of its kind
  (same address, remote, any) instead of being turned away, so holding the table full
  needs connections faster than a real client sends its request. Only when every
  connection holds a registration is a newcomer refused.
- **Memory.** A connection holds at most one line (`MAX_LINE`) in and, while its replies
  wait to be read, no more is read from it.
- **Stopping.** ``kill`` comes only from loopback, and is refused while nodes are
  registered (as ``epmd -kill`` is): stop the nodes first.
- Running out of descriptors closes the oldest unregistered connection and goes on;
  repeated complaints are logged once per 10 s with a count.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import logging
import resource
import selectors
import socket
import threading
import time
from typing import Any

MAX_LINE = 4096
MAX_CONNECTIONS = 1024
REQUEST_TIMEOUT = 5.0
MAX_PER_ADDRESS = 8
_MAX_PENDING_OUT = 64 * 1024  # reply bytes queued before we stop reading a connection
_LOG_EVERY = 10.0

log = logging.getLogger("actornet.epmd")


def _is_loopback(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def _address_key(host: str) -> str:
    """What the per-address cap counts by: the IPv4 address, or the IPv6 /64."""
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        return str(mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _valid_name(name: Any) -> bool:
    return (isinstance(name, str) and 0 < len(name) <= 255 and name.isprintable()
            and "@" not in name and " " not in name)


class _Conn:
    """One accepted connection."""

    __slots__ = ("closing", "deadline", "inbuf", "key", "local", "name", "outbuf", "peer",
                 "sock")

    def __init__(self, sock: socket.socket, peer: str, local: bool, deadline: float) -> None:
        self.sock = sock
        self.peer = peer
        self.local = local
        self.key = _address_key(peer.rpartition(":")[0])
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.name: str | None = None  # the name it registered
        self.deadline: float | None = deadline
        self.closing = False  # close once the reply is out


class Daemon:
    """The state of a running port mapper; `run` serves until a ``kill``."""

    def __init__(self, listeners: list[socket.socket], *, max_connections: int,
                 request_timeout: float, max_per_address: int) -> None:
        self.listeners = listeners
        self.max_connections = max_connections
        self.max_remote = max_connections - max_connections // 4
        self.request_timeout = request_timeout
        self.max_per_address = max_per_address
        self.conns: dict[int, _Conn] = {}  # by descriptor, oldest first
        self.table: dict[str, tuple[int, _Conn]] = {}
        self.sel = selectors.DefaultSelector()
        self.stopping = False
        self._settling = False
        self._said: dict[str, tuple[float, int]] = {}  # kind -> (last logged, since then)
        self._paused_until = 0.0
        for sock in listeners:
            sock.setblocking(False)
            self.sel.register(sock, selectors.EVENT_READ, None)

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            while not self.stopping:
                now = time.monotonic()
                deadlines = [c.deadline for c in self.conns.values() if c.deadline is not None]
                if self._paused_until:
                    deadlines.append(self._paused_until)
                wait = max(0.0, min(deadlines) - now) if deadlines else None
                for key, mask in self.sel.select(wait):
                    if key.data is None:
                        self._accept(key.fileobj)  # type: ignore[arg-type]
                    elif key.data.sock.fileno() in self.conns:  # not closed meanwhile
                        if mask & selectors.EVENT_WRITE:
                            self._write(key.data)
                        if mask & selectors.EVENT_READ and not key.data.closing:
                            self._read(key.data)
                self._expire(time.monotonic())
        finally:
            for conn in list(self.conns.values()):
                self._close(conn)
            for sock in self.listeners:
                sock.close()
            self.sel.close()

    def _expire(self, now: float) -> None:
        if self._paused_until and now >= self._paused_until:
            self._paused_until = 0.0
            for sock in self.listeners:
                self.sel.register(sock, selectors.EVENT_READ, None)
        late = [c for c in self.conns.values() if c.deadline is not None and c.deadline <= now]
        for conn in late:
            what = "its reply unread" if conn.outbuf else "no whole request"
            self._say("late", "closed a connection from %s: %s within %.0f s", conn.peer, what,
                      self.request_timeout)
            self._close(conn)

    # -- accepting -----------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        if self._paused_until:
            return  # out of descriptors a moment ago (a stale event of the other listener)
        for _ in range(64):  # then let the others have a turn
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._say("fds", "cannot accept a connection: %s; closing the oldest "
                              "unregistered one", e.strerror)
                    if not self._evict(lambda c: True):  # (logged above)
                        self._pause_accepting()
                        return
                    continue
                return  # e.g. ECONNABORTED: that one is gone already
            self._admit(sock, f"{addr[0]}:{addr[1]}")

    def _pause_accepting(self) -> None:
        """Nothing to close and no descriptor left: stop accepting for a moment."""
        for sock in self.listeners:
            self.sel.unregister(sock)
        self._paused_until = time.monotonic() + 0.1

    def _admit(self, sock: socket.socket, peer: str) -> None:
        sock.setblocking(False)
        local = _is_loopback(peer.rpartition(":")[0])
        conn = _Conn(sock, peer, local, time.monotonic() + self.request_timeout)
        if not local:
            same = sum(1 for c in self.conns.values() if not c.local and c.key == conn.key)
            if same >= self.max_per_address:
                self._evict(lambda c: not c.local and c.key == conn.key,
                            f"{self.max_per_address} from one address")
            remote = sum(1 for c in self.conns.values() if not c.local)
            if remote >= self.max_remote:
                self._evict(lambda c: not c.local, f"{self.max_remote} from other hosts")
        full = len(self.conns) >= self.max_connections
        if full and not self._evict(lambda c: True, f"{self.max_connections} in all"):
            self._say("full", "refused a connection from %s: all %d connections hold a "
                      "registration", peer, self.max_connections)
            with contextlib.suppress(OSError):
                sock.send(b'{"ok": false, "error": "too many connections"}\n')
            sock.close()
            return
        self.conns[sock.fileno()] = conn
        self.sel.register(sock, selectors.EVENT_READ, conn)

    def _evict(self, which: Any, cap: str = "no descriptor left") -> bool:
        """Close the oldest unregistered connection that `which` accepts; False if none."""
        for conn in self.conns.values():
            if conn.name is None and which(conn):
                self._say("evicted", "closed the oldest unregistered connection (from %s) to "
                          "make room (%s)", conn.peer, cap)
                self._close(conn)
                return True
        return False

    # -- reading and writing -------------------------------------------------------------------

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(MAX_LINE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            log.debug("connection from %s ended: %s", conn.peer, e)
            data = b""
        if not data:
            self._close(conn)
            return
        if conn.deadline is None:  # a registered connection starts a request
            conn.deadline = time.monotonic() + self.request_timeout
        conn.inbuf += data
        self._serve_lines(conn)

    def _serve_lines(self, conn: _Conn) -> None:
        """Answer the complete lines read so far, while the replies queued stay small."""
        while not conn.closing and len(conn.outbuf) < _MAX_PENDING_OUT:
            end = conn.inbuf.find(b"\n")
            if end < 0:
                if len(conn.inbuf) > MAX_LINE:
                    self._say("refused", "refused an over-long line from %s; closing",
                              conn.peer)
                    self._reply(conn, {"ok": False, "error": f"line over {MAX_LINE} bytes"})
                    conn.closing = True
                break
            line = bytes(conn.inbuf[:end + 1])
            del conn.inbuf[:end + 1]
            if len(line) > MAX_LINE + 1:
                self._reply(conn, {"ok": False, "error": f"line over {MAX_LINE} bytes"})
                conn.closing = True
                break
            reply = self._dispatch(conn, line)
            if reply:
                self._reply(conn, reply)
        self._flush(conn)

    def _reply(self, conn: _Conn, reply: dict[str, Any]) -> None:
        conn.outbuf += json.dumps(reply).encode() + b"\n"

    def _flush(self, conn: _Conn) -> None:
        if conn.outbuf:
            try:
                sent = conn.sock.send(conn.outbuf)
                del conn.outbuf[:sent]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._close(conn)
                return
        if conn.outbuf:
            self.sel.modify(conn.sock, selectors.EVENT_WRITE, conn)
            return
        if conn.closing:
            self._close(conn)
            return
        if conn.sock.fileno() not in self.conns:
            return  # closed while answering (an unregister of a dead one, a kill)
        self.sel.modify(conn.sock, selectors.EVENT_READ, conn)
        if not conn.inbuf:  # answered: an unregistered connection gets a new window
            conn.deadline = (None if conn.name is not None
                             else time.monotonic() + self.request_timeout)

    def _write(self, conn: _Conn) -> None:
        self._flush(conn)
        if not conn.outbuf and conn.sock.fileno() in self.conns and b"\n" in conn.inbuf:
            self._serve_lines(conn)  # lines that waited for the reply to drain

    def _close(self, conn: _Conn) -> None:
        if self.conns.pop(conn.sock.fileno(), None) is None:
            return
        self._drop(conn)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(conn.sock)
        conn.sock.close()

    # -- requests ------------------------------------------------------------------------------

    def _dispatch(self, conn: _Conn, line: bytes) -> dict[str, Any] | None:
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("request is not a JSON object")
        except (ValueError, RecursionError) as e:
            return self._refuse(conn, f"malformed request: {e}")
        op, port, name = req.get("op"), req.get("port"), req.get("name")
        if op in ("register", "lookup") and not _valid_name(name):
            return self._refuse(conn, f"{op}: 'name' must be a non-empty node name")
        match op:
            case "lookup":
                entry = self.table.get(name)  # type: ignore[arg-type]
                if entry is None:
                    return {"ok": False, "error": f"no node named {name!r} on this host"}
                return {"ok": True, "port": entry[0]}
            case "names":
                return {"ok": True, "names": sorted([n, p] for n, (p, _) in self.table.items())}
            case "register" | "kill" if not conn.local:
                return self._refuse(conn, f"{op} is only accepted from this host")
            case "register":
                return self._register(conn, str(name), port)
            case "unregister":
                self._drop(conn)
                return {"ok": True}
            case "kill":
                return self._kill(conn)
        return self._refuse(conn, f"unknown op {op!r}")

    def _register(self, conn: _Conn, name: str, port: Any) -> dict[str, Any]:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            return self._refuse(conn, "register: 'port' must be an integer 1..65535")
        if conn.name is not None:
            return self._refuse(conn, f"this connection already registered {conn.name!r}")
        taken = self.table.get(name)
        if taken is not None:
            error = f"name {name!r} is already in use on this host (port {taken[0]})"
            return self._refuse(conn, error)
        self.table[name] = (port, conn)
        conn.name = name
        log.info("registered %r at port %d (from %s)", name, port, conn.peer)
        return {"ok": True}

    def _drop(self, conn: _Conn) -> None:
        name, conn.name = conn.name, None
        if name is not None and self.table.get(name, (0, None))[1] is conn:
            port = self.table.pop(name)[0]
            log.info("unregistered %r (port %d, from %s)", name, port, conn.peer)

    def _kill(self, conn: _Conn) -> dict[str, Any]:
        if not self._settling:  # first take in what registered nodes have said (or EOF)
            self._settling = True
            try:
                for other in [c for _, c in self.table.values() if c is not conn]:
                    self._read(other)
            finally:
                self._settling = False
        if self.table:
            names = ", ".join(sorted(self.table)[:10]) + (", ..." if len(self.table) > 10
                                                          else "")
            return self._refuse(conn, f"{len(self.table)} node(s) registered ({names}): "
                                "stop them first")
        log.info("stopping on request from %s", conn.peer)
        self.stopping = True
        return {"ok": True}

    def _refuse(self, conn: _Conn, error: str) -> dict[str, Any]:
        self._say("refused", "refused a request from %s: %s", conn.peer, error)
        return {"ok": False, "error": error}

    def _say(self, kind: str, fmt: str, *args: Any) -> None:
        """Log a warning of this kind at most once per `_LOG_EVERY` s, with a count."""
        now = time.monotonic()
        last, since = self._said.get(kind, (-_LOG_EVERY, 0))
        if now - last < _LOG_EVERY:
            self._said[kind] = (last, since + 1)
            return
        if since:
            fmt += " (and %d more like it in the last %.0f s)"
            args = (*args, since, now - last)
        log.warning(fmt, *args)
        self._said[kind] = (now, 0)


def _listen(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def _raise_fd_limit(want: int) -> int:
    """Raise the soft limit on descriptors towards `want`; the limit we got."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return want if soft == resource.RLIM_INFINITY else int(soft)


def serve(
    port: int,
    address: str = "0.0.0.0",
    ready: threading.Event | None = None,
    *,
    max_connections: int = MAX_CONNECTIONS,
    request_timeout: float = REQUEST_TIMEOUT,
    max_per_address: int = MAX_PER_ADDRESS,
) -> None:
    """Run the port mapper in the calling thread until a ``kill`` request.

    It listens on `address` and, when that is one address other than loopback, on
    127.0.0.1 as well: nodes register through loopback (as Erlang's epmd does).
    Raises `OSError` if it cannot bind. `ready` is set once it listens. Example:
        >>> threading.Thread(target=serve, args=(4370,), daemon=True).start()  # doctest: +SKIP
    """
    addresses = [address]
    if address not in ("0.0.0.0", "::", "") and not _is_loopback(address):
        addresses.append("127.0.0.1")
    listeners: list[socket.socket] = []
    try:
        for a in addresses:
            listeners.append(_listen(a, port))
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    limit = _raise_fd_limit(max_connections + 64)
    if limit < max_connections + 64:
        log.warning("only %d descriptors: serving at most %d connections", limit,
                    max(8, limit - 64))
        max_connections = max(8, limit - 64)
    daemon = Daemon(listeners, max_connections=max_connections,
                    request_timeout=request_timeout, max_per_address=max_per_address)
    log.info("listening on %s", " and ".join(f"{a}:{port}" for a in addresses))
    if ready is not None:
        ready.set()
    daemon.run()
    log.info("stopped")
