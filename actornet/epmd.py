"""The port mapper: actornet's equivalent of Erlang's ``epmd``.

Nodes are named ``name@host`` and listen on a dynamically chosen TCP port. One
port mapper per host maps each short name to its port, so peers find a node by
name alone. Run it in the foreground with ``python -m actornet.epmd``; nodes
start it detached on demand with `ensure_running`. Other modes:
``--names`` (list registered nodes, exit 1 if no port mapper runs), ``--kill``,
``--port N`` (default: env ``ACTORNET_EPMD_PORT``, else 4370) and
``--address A`` (listen address, default ``0.0.0.0``).

Protocol: TCP, one UTF-8 JSON object per newline-terminated line (at most
4 KiB), each request answered by one response line::

    {"op": "register", "name": "a", "port": 40123}  ->  {"ok": true}
    {"op": "unregister"}                            ->  {"ok": true}
    {"op": "lookup", "name": "a"}                   ->  {"ok": true, "port": 40123}
    {"op": "names"}                                 ->  {"ok": true, "names": [["a", 40123]]}
    {"op": "kill"}                                  ->  {"ok": true}  (then the daemon stops)

Any failure is ``{"ok": false, "error": "<message>"}``, e.g. ``"name 'a' is
already in use on this host (port 40123)"`` or ``"no node named 'a' on this
host"``. A registration lives exactly as long as the TCP connection that made
it (like epmd's ALIVE2): the node keeps the connection open, and when the node
stops or dies, even by SIGKILL, the kernel closes the socket and the entry goes.
``unregister`` ends it explicitly on that same connection. Only loopback peers
may ``register`` or ``kill``. Malformed requests get an error reply; an
over-long line also closes its connection. Idle connections without a
registration are closed after `IDLE_TIMEOUT` seconds.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ipaddress
import json
import logging
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from actornet.errors import ActornetError, AlreadyRegistered

__all__ = [
    "DEFAULT_PORT",
    "EpmdError",
    "NameInUse",
    "Registration",
    "ensure_running",
    "epmd_port",
    "kill",
    "lookup",
    "names",
    "register",
    "serve",
]

DEFAULT_PORT: int = 4370
MAX_LINE = 4096
MAX_CONNECTIONS = 512
IDLE_TIMEOUT = 30.0
log = logging.getLogger("actornet.epmd")
_spawned: list[subprocess.Popen[bytes]] = []  # daemons we started, to reap when they exit


@atexit.register
def _reap() -> None:
    _spawned[:] = [p for p in _spawned if p.poll() is None]


class EpmdError(ActornetError, ConnectionError):
    """No port mapper answers, or it refused or garbled a request."""


class NameInUse(AlreadyRegistered):
    """The node name is already registered with this host's port mapper."""


def epmd_port() -> int:
    """The port mapper's port: env ``ACTORNET_EPMD_PORT``, else `DEFAULT_PORT`.

    Example:
        >>> epmd_port()  # with ACTORNET_EPMD_PORT unset  # doctest: +SKIP
        4370
    """
    value = os.environ.get("ACTORNET_EPMD_PORT", "").strip()
    if not value:
        return DEFAULT_PORT
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"ACTORNET_EPMD_PORT must be a TCP port number, not {value!r}")
    return int(value)


def _resolve(port: int | None) -> int:
    return epmd_port() if port is None else port


# --------------------------------------------------------------------------- client


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise EpmdError(
            f"no actornet port mapper answers on {host}:{port} ({e.strerror or e}); "
            f"start one with `python -m actornet.epmd --port {port}`"
        ) from None


def _request(sock: socket.socket, where: str, **request: Any) -> dict[str, Any]:
    """Send one request line on `sock` and return the decoded response."""
    data = b""
    try:
        sock.sendall(json.dumps(request).encode() + b"\n")
        while not data.endswith(b"\n") and len(data) <= 64 * MAX_LINE:
            chunk = sock.recv(MAX_LINE)
            if not chunk:
                break
            data += chunk
        complete = data.endswith(b"\n")
        reply = json.loads(data) if complete else None
    except (OSError, ValueError) as e:
        raise EpmdError(f"port mapper at {where} failed: {e}") from None
    if not complete:
        raise EpmdError(f"port mapper at {where} closed the connection without a full reply")
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise EpmdError(f"port mapper at {where} sent an invalid reply: {reply!r}")
    return reply


def _call(host: str, port: int | None, timeout: float, **request: Any) -> dict[str, Any]:
    port = _resolve(port)
    with _connect(host, port, timeout) as sock:
        return _request(sock, f"{host}:{port}", **request)


class Registration:
    """A live registration: holds the open connection that keeps the name registered.

    Example:
        >>> reg = register("a", 40123)  # doctest: +SKIP
        >>> reg.close()                 # doctest: +SKIP
    """

    def __init__(self, sock: socket.socket, name: str, port: int, epmd_port: int) -> None:
        self.name, self.port, self.epmd_port = name, port, epmd_port
        self._sock: socket.socket | None = sock
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        """True once `close` has been called."""
        return self._sock is None

    def close(self) -> None:
        """Unregister (synchronously when the port mapper answers) and close; idempotent."""
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is None:
            return
        with contextlib.suppress(EpmdError, OSError):
            sock.settimeout(2.0)
            _request(sock, "127.0.0.1", op="unregister")
        sock.close()

    def __enter__(self) -> Registration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Registration {self.name!r} -> port {self.port} ({state})>"


def register(
    name: str, port: int, *, epmd_port: int | None = None, timeout: float = 5.0
) -> Registration:
    """Register `name` at `port` with the local port mapper, until the result is closed.

    Raises `NameInUse` when the name is taken and `EpmdError` when no port
    mapper answers. Example:
        >>> with register("a", 40123) as reg:  # doctest: +SKIP
        ...     lookup("a", "127.0.0.1")
        40123
    """
    epmd = _resolve(epmd_port)
    sock = _connect("127.0.0.1", epmd, timeout)
    try:
        reply = _request(sock, f"127.0.0.1:{epmd}", op="register", name=name, port=port)
    except BaseException:
        sock.close()
        raise
    if not reply["ok"]:
        sock.close()
        error = str(reply.get("error"))
        if error.startswith(f"name {name!r} is already in use"):
            raise NameInUse(error)
        raise EpmdError(f"port mapper refused to register {name!r}: {error}")
    sock.settimeout(None)
    return Registration(sock, name, port, epmd)


def lookup(
    name: str, host: str, *, epmd_port: int | None = None, timeout: float = 5.0
) -> int | None:
    """The port of node `name` on `host`, or None if no such node is registered.

    Example:
        >>> lookup("a", "127.0.0.1")  # doctest: +SKIP
        40123
    """
    reply = _call(host, epmd_port, timeout, op="lookup", name=name)
    if reply["ok"] and isinstance(reply.get("port"), int):
        return int(reply["port"])
    if not reply["ok"] and str(reply.get("error")).startswith("no node named"):
        return None
    raise EpmdError(f"port mapper on {host} failed to look up {name!r}: {reply}")


def names(
    host: str = "127.0.0.1", *, epmd_port: int | None = None, timeout: float = 5.0
) -> list[tuple[str, int]]:
    """All ``(name, port)`` pairs registered with the port mapper on `host`.

    Example:
        >>> names()  # doctest: +SKIP
        [('a', 40123)]
    """
    reply = _call(host, epmd_port, timeout, op="names")
    if not reply["ok"]:
        raise EpmdError(f"port mapper on {host} refused to list names: {reply.get('error')}")
    try:
        return [(str(n), int(p)) for n, p in reply["names"]]
    except (KeyError, TypeError, ValueError):
        raise EpmdError(f"port mapper on {host} sent an invalid names reply: {reply}") from None


def kill(*, epmd_port: int | None = None, timeout: float = 5.0) -> None:
    """Ask the local port mapper to stop; raises `EpmdError` if none answers.

    Example:
        >>> kill(epmd_port=4370)  # doctest: +SKIP
    """
    reply = _call("127.0.0.1", epmd_port, timeout, op="kill")
    if not reply["ok"]:
        raise EpmdError(f"port mapper refused to stop: {reply.get('error')}")


def ensure_running(*, epmd_port: int | None = None, timeout: float = 10.0) -> None:
    """Start a detached local port mapper unless one already answers, and wait for it.

    The daemon runs in its own session, so it outlives the caller. Concurrent
    callers all succeed: the extra daemons fail to bind and exit. Example:
        >>> ensure_running(epmd_port=4370)  # doctest: +SKIP
    """
    port = _resolve(epmd_port)
    with contextlib.suppress(EpmdError):
        names(epmd_port=port, timeout=timeout)
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-m", "actornet.epmd", "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
        start_new_session=True,
        env=env,
        cwd=os.path.abspath(os.sep),
    )
    _spawned.append(proc)
    deadline, delay = time.monotonic() + timeout, 0.005
    while True:
        _reap()
        remaining = deadline - time.monotonic()
        try:
            names(epmd_port=port, timeout=max(0.05, min(1.0, remaining)))
            return
        except EpmdError as e:
            if remaining <= 0:
                status = "running" if proc.poll() is None else f"exited {proc.returncode}"
                raise EpmdError(
                    f"port mapper on port {port} did not start within {timeout}s "
                    f"(daemon {status}): {e}"
                ) from None
        time.sleep(min(delay, max(0.0, remaining)))
        delay = min(delay * 2, 0.2)


# --------------------------------------------------------------------------- daemon


def _is_loopback(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


class _Server:
    """State of a running port mapper: the name table and the open connections."""

    def __init__(self, max_connections: int) -> None:
        self.table: dict[str, tuple[int, socket.socket]] = {}
        self.conns: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.max_connections = max_connections
        self.stop = threading.Event()
        self.wake_r, self.wake_w = socket.socketpair()

    def handle(self, conn: socket.socket, peer: str) -> None:
        """Serve one connection until EOF, then drop its registration, if any."""
        mine: str | None = None
        try:
            conn.settimeout(IDLE_TIMEOUT)
            with conn.makefile("rb") as rfile:
                while not self.stop.is_set():
                    line = rfile.readline(MAX_LINE + 1)
                    if not line.endswith(b"\n"):
                        if len(line) > MAX_LINE:
                            log.warning("refused over-long line from %s; closing", peer)
                            self.send(conn, {"ok": False, "error": f"line over {MAX_LINE} bytes"})
                        break
                    reply, mine = self.dispatch(line, peer, conn, mine)
                    if reply:
                        self.send(conn, reply)
                    conn.settimeout(None if mine else IDLE_TIMEOUT)
        except OSError as e:
            log.debug("connection from %s ended: %s", peer, e)
        finally:
            self.drop(mine, conn, peer)
            with self.lock:
                self.conns.discard(conn)
            conn.close()

    def dispatch(
        self, line: bytes, peer: str, conn: socket.socket, mine: str | None
    ) -> tuple[dict[str, Any], str | None]:
        """Answer one request line; returns the reply and the connection's registered name."""
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("request is not a JSON object")
        except (ValueError, RecursionError) as e:
            return self.refuse(peer, f"malformed request: {e}"), mine
        op, port = req.get("op"), req.get("port")
        name: Any = req.get("name")
        if op in ("register", "lookup") and not (
            isinstance(name, str)
            and 0 < len(name) <= 255
            and name.isprintable()
            and "@" not in name
            and " " not in name
        ):
            return self.refuse(peer, f"{op}: 'name' must be a non-empty node name"), mine
        if op == "lookup":
            with self.lock:
                entry = self.table.get(name)
            if entry is None:
                return {"ok": False, "error": f"no node named {name!r} on this host"}, mine
            return {"ok": True, "port": entry[0]}, mine
        if op == "names":
            with self.lock:
                listing = sorted([n, p] for n, (p, _) in self.table.items())
            return {"ok": True, "names": listing}, mine
        if op in ("register", "kill") and not _is_loopback(peer.rpartition(":")[0]):
            return self.refuse(peer, f"{op} is only accepted from this host"), mine
        if op == "register":
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                return self.refuse(peer, "register: 'port' must be an integer 1..65535"), mine
            if mine is not None:
                return self.refuse(peer, f"this connection already registered {mine!r}"), mine
            with self.lock:
                taken = self.table.get(name)
                if taken is None:
                    self.table[name] = (port, conn)
            if taken is not None:
                error = f"name {name!r} is already in use on this host (port {taken[0]})"
                return self.refuse(peer, error), mine
            log.info("registered %r at port %d (from %s)", name, port, peer)
            return {"ok": True}, name
        if op == "unregister":
            self.drop(mine, conn, peer)
            return {"ok": True}, None
        if op == "kill":
            log.info("stopping on request from %s", peer)
            self.send(conn, {"ok": True})  # reply first: stopping closes every connection
            self.stop.set()
            self.wake_w.send(b"x")
            return {}, mine
        return self.refuse(peer, f"unknown op {op!r}"), mine

    def drop(self, name: str | None, conn: socket.socket, peer: str) -> None:
        """Remove `name` from the table if `conn` registered it."""
        with self.lock:
            entry = self.table.get(name) if name is not None else None
            if entry is None or entry[1] is not conn:
                return
            del self.table[name]  # type: ignore[arg-type]
        log.info("unregistered %r (port %d, from %s)", name, entry[0], peer)

    @staticmethod
    def refuse(peer: str, error: str) -> dict[str, Any]:
        log.warning("refused request from %s: %s", peer, error)
        return {"ok": False, "error": error}

    @staticmethod
    def send(conn: socket.socket, reply: dict[str, Any]) -> None:
        conn.sendall(json.dumps(reply).encode() + b"\n")


def serve(
    port: int,
    address: str = "0.0.0.0",
    ready: threading.Event | None = None,
    *,
    max_connections: int = MAX_CONNECTIONS,
) -> None:
    """Run the port mapper in the calling thread until a ``kill`` request.

    Raises `OSError` if it cannot bind. `ready` is set once it listens. Example:
        >>> threading.Thread(target=serve, args=(4370,), daemon=True).start()  # doctest: +SKIP
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    server = _Server(max_connections)
    threads: list[threading.Thread] = []
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, port))
        listener.listen(128)
        listener.setblocking(False)
        log.info("listening on %s:%d", address, port)
        if ready is not None:
            ready.set()
        with selectors.DefaultSelector() as sel:
            sel.register(listener, selectors.EVENT_READ)
            sel.register(server.wake_r, selectors.EVENT_READ)
            while not server.stop.is_set():
                sel.select()
                with contextlib.suppress(BlockingIOError, InterruptedError):
                    conn, addr = listener.accept()
                    conn.setblocking(True)
                    peer = f"{addr[0]}:{addr[1]}"
                    with server.lock:
                        full = len(server.conns) >= server.max_connections
                        if not full:
                            server.conns.add(conn)
                    if full:
                        with contextlib.suppress(OSError):
                            conn.settimeout(1.0)
                            server.send(conn, server.refuse(peer, "too many connections"))
                        conn.close()
                        continue
                    t = threading.Thread(target=server.handle, args=(conn, peer), daemon=True)
                    t.start()
                    threads = [*(x for x in threads if x.is_alive()), t]
    finally:
        listener.close()
        with server.lock:
            for conn in server.conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        for t in threads:
            t.join(timeout=2.0)
        server.wake_r.close()
        server.wake_w.close()
        log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m actornet.epmd", description="actornet port mapper"
    )
    parser.add_argument(
        "--port", type=int, default=None, help="port (default: $ACTORNET_EPMD_PORT or 4370)"
    )
    parser.add_argument("--address", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--names", action="store_true", help="list the local registered nodes")
    mode.add_argument("--kill", action="store_true", help="stop the local port mapper")
    args = parser.parse_args(argv)
    try:
        port = _resolve(args.port)
        if args.names:
            listing = names(epmd_port=port)
            print(f"actornet epmd: up and running on port {port} with data:")
            for name, node_port in listing:
                print(f"name {name} at port {node_port}")
        elif args.kill:
            kill(epmd_port=port)
            print(f"actornet epmd: killed the port mapper on port {port}")
        else:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
            serve(port, args.address)
    except (EpmdError, ValueError) as e:
        print(f"actornet epmd: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # bind failed: most likely another port mapper won the port
        print(f"actornet epmd: cannot listen on {args.address}:{port}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
