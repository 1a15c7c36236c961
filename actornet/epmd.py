"""The port mapper: actornet's equivalent of Erlang's ``epmd``.

Nodes are named ``name@host`` and listen on a dynamically chosen TCP port. One
port mapper per host maps each short name to its port, so peers find a node by
name alone. Run it in the foreground with ``python -m actornet.epmd``; nodes
start it detached on demand with `ensure_running`. Other modes:
``--names`` (list registered nodes, exit 1 if no port mapper runs), ``--kill``
(refused while nodes are registered), ``--port N`` (default: env
``ACTORNET_EPMD_PORT``, else 4370) and ``--address A`` (listen address, default
``0.0.0.0``: other hosts look names up here; a single address other than loopback
is listened on together with 127.0.0.1, through which nodes register).

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
``unregister`` ends it explicitly on that same connection; a node watches it
(`Registration.watch`) and registers again if the port mapper goes away. Only
loopback peers may ``register`` or ``kill``, and ``kill`` is refused while any
name is registered. Malformed requests get an error reply; an over-long line
also closes its connection. The daemon's limits (a deadline per request,
connection caps per remote address) are described in `actornet._epmd_server`.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
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

from actornet._epmd_server import MAX_LINE, serve
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
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise EpmdError(f"cannot find the port mapper of host {host!r}: the name does not "
                        f"resolve ({e.strerror or e})") from None
    address = str(infos[0][4][0])
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        where = f"{host}:{port}" + (f" ({address})" if address != host else "")
        why = (f"no answer within {timeout:g} s" if isinstance(e, TimeoutError)
               else e.strerror or str(e))
        raise EpmdError(
            f"no actornet port mapper answers on {where}: {why}; "
            f"start one there with `python -m actornet.epmd --port {port}`"
        ) from None


def _request(sock: socket.socket, where: str, timeout: float, **request: Any) -> dict[str, Any]:
    """Send one request line on `sock` and return the decoded response, all within
    `timeout` seconds (a port mapper that answers a byte at a time gains nothing)."""
    deadline = time.monotonic() + timeout
    data = b""
    try:
        sock.settimeout(timeout)
        sock.sendall(json.dumps(request).encode() + b"\n")
        while not data.endswith(b"\n") and len(data) <= 64 * MAX_LINE:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no whole reply within {timeout:g} s")
            sock.settimeout(remaining)
            chunk = sock.recv(MAX_LINE)
            if not chunk:
                break
            data += chunk
        complete = data.endswith(b"\n")
        reply = json.loads(data) if complete else None
    except ConnectionError as e:  # reset or closed under us: it may have been evicted
        raise _Closed(f"port mapper at {where} failed: {e}") from None
    except (OSError, ValueError) as e:
        raise EpmdError(f"port mapper at {where} failed: {e}") from None
    if not complete:
        raise _Closed(f"port mapper at {where} closed the connection without a full reply")
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise EpmdError(f"port mapper at {where} sent an invalid reply: {reply!r}")
    return reply


class _Closed(EpmdError):
    """The port mapper closed a request's connection before answering it."""


_ATTEMPTS = 3


def _call(host: str, port: int | None, timeout: float, **request: Any) -> dict[str, Any]:
    """One request, asked again (up to `_ATTEMPTS` times, within `timeout`) if the port
    mapper closed its connection unanswered: it closes the oldest connections of an
    address that holds too many, so a client sharing an address with a flood of idle
    connections can lose a fresh one to the next of them."""
    port = _resolve(port)
    deadline = time.monotonic() + timeout
    attempt = 1
    while True:
        with _connect(host, port, max(0.001, deadline - time.monotonic())) as sock:
            try:
                return _request(sock, f"{host}:{port}",
                                max(0.001, deadline - time.monotonic()), **request)
            except _Closed:
                if attempt == _ATTEMPTS or time.monotonic() >= deadline:
                    raise
        attempt += 1


class Registration:
    """A live registration: holds the open connection that keeps the name registered.

    `watch` makes it register again by itself if the port mapper goes away.

    Example:
        >>> reg = register("a", 40123)  # doctest: +SKIP
        >>> reg.close()                 # doctest: +SKIP
    """

    def __init__(self, sock: socket.socket, name: str, port: int, epmd_port: int) -> None:
        self.name, self.port, self.epmd_port = name, port, epmd_port
        self._sock: socket.socket | None = sock
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._watcher: threading.Thread | None = None

    @property
    def closed(self) -> bool:
        """True once `close` has been called."""
        return self._closing.is_set()

    def watch(self, label: str) -> None:
        """From a thread: if the port mapper closes the registration's connection (it
        was killed, or restarted), log a warning naming `label` and register again,
        starting a port mapper if none comes back (as `start_node` does), until `close`.

        Example:
            >>> register("a", 40123).watch("node a@host")  # doctest: +SKIP
        """
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, args=(label,), daemon=True,
                                             name=f"actornet-epmd-watch {self.name}")
            self._watcher.start()

    def _watch(self, label: str) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._closing.is_set():
                with self._lock:
                    sock = self._sock
                if sock is None:
                    return
                key = sel.register(sock, selectors.EVENT_READ)
                while not any(k.fileobj is sock for k, _ in sel.select()):
                    if self._closing.is_set():
                        return
                sel.unregister(key.fileobj)
                if self._closing.is_set():
                    return
                with contextlib.suppress(OSError):
                    gone = sock.recv(1, socket.MSG_PEEK) == b""
                log.warning("%s: lost its registration as %r with the port mapper on port %d "
                            "(%s): other nodes cannot find it by name; registering again",
                            label, self.name, self.epmd_port,
                            "it closed the connection" if gone else "it sent something unasked")
                with self._lock:
                    if self._sock is sock:
                        self._sock = None
                sock.close()
                self._register_again(label)

    def _register_again(self, label: str) -> None:
        delay, said = 0.05, ""
        while not self._closing.is_set():
            try:
                ensure_running(epmd_port=self.epmd_port, timeout=5.0)
                sock = _register_socket(self.name, self.port, self.epmd_port, 5.0)
            except Exception as e:  # no port mapper yet, the name taken, no descriptor...
                if str(e) != said:  # each new reason once, not every retry
                    said = str(e)
                    log.warning("%s: cannot register %r yet: %s; retrying", label, self.name, e)
            else:
                with self._lock:
                    kept = not self._closing.is_set()
                    if kept:
                        self._sock = sock
                if not kept:  # closed meanwhile: this registration must not outlive it
                    sock.close()
                    return
                log.warning("%s: registered again as %r with the port mapper on port %d",
                            label, self.name, self.epmd_port)
                return
            if self._closing.wait(delay):
                return
            delay = min(delay * 2, 2.0)

    def close(self) -> None:
        """Unregister (synchronously when the port mapper answers) and close; idempotent."""
        with self._lock:
            self._closing.set()
            sock, self._sock = self._sock, None
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(5.0)  # it must not read the unregister's reply
        self._wake_r.close()
        self._wake_w.close()
        if sock is None:
            return
        with contextlib.suppress(EpmdError, OSError):
            _request(sock, "127.0.0.1", 2.0, op="unregister")
        sock.close()

    def __enter__(self) -> Registration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Registration {self.name!r} -> port {self.port} ({state})>"


def _register_socket(name: str, port: int, epmd: int, timeout: float) -> socket.socket:
    """A connection to the local port mapper on which `name` is now registered."""
    sock = _connect("127.0.0.1", epmd, timeout)
    try:
        reply = _request(sock, f"127.0.0.1:{epmd}", timeout, op="register", name=name,
                         port=port)
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
    return sock


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
    return Registration(_register_socket(name, port, epmd, timeout), name, port, epmd)


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
        if proc.poll() is not None:  # it lost the port to another one, or it died:
            deadline = min(deadline, time.monotonic() + 1.0)  # no need to wait long
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
