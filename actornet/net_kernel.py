"""Named nodes: starting one, the cookie, and the node BIFs (`node`, `nodes`, `ping`).

``start_node("a@127.0.0.1", cookie="secret")`` is ``erl -name a@127.0.0.1
-setcookie secret``: the node listens on a free port of the address its host
part names (loopback for ``127.0.0.1`` or ``localhost``), registers that port
with the local port mapper (starting one if none runs, as ``erl`` starts
epmd), and connects to other nodes on first use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import stat
import tempfile
from pathlib import Path

from actornet import _address, _kernel, _wire, epmd
from actornet._transport import Transport
from actornet.errors import ActornetError
from actornet.node import Node, current_node
from actornet.process import node, nodes

__all__ = [
    "start_node",
    "node",
    "nodes",
    "ping",
    "monitor_node",
    "disconnect_node",
    "monitor_nodes",
    "load_cookie",
    "COOKIE_FILE",
]

COOKIE_FILE = Path("~/.actornet.cookie")

log = logging.getLogger("actornet.dist")


def load_cookie(cookie: str | bytes | None = None) -> bytes:
    """The cookie to use: `cookie`, else ``$ACTORNET_COOKIE``, else the cookie file.

    The file (``~/.actornet.cookie``) is created with a random cookie and mode
    0600 on first use, like ``~/.erlang.cookie``; a file that others can read
    is refused.

    Example:
        >>> load_cookie("secret")
        b'secret'
    """
    if cookie is None:
        cookie = os.environ.get("ACTORNET_COOKIE") or _cookie_file()
    raw = cookie.encode() if isinstance(cookie, str) else bytes(cookie)
    if not raw:
        raise ValueError("the cookie must not be empty")
    return raw


def _cookie_file() -> bytes:
    path = COOKIE_FILE.expanduser()
    if not path.exists():
        _create_cookie_file(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ActornetError(
            f"cookie file {path} is readable by others (mode {mode:04o}); "
            f"fix it with: chmod 600 {path}"
        )
    return path.read_bytes().strip()


def _create_cookie_file(path: Path) -> None:
    """Write a random cookie to a private temporary file, then link it into place: a
    concurrent first user sees no file or the whole cookie, never an empty one, and
    whoever links first wins (the others keep its cookie)."""
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24))
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


def start_node(
    name: str,
    cookie: str | bytes | None = None,
    *,
    port: int | None = None,
    insecure: bool = False,
    tick_time: float = 4.0,
    handshake_timeout: float = 5.0,
    max_message_size: int = _wire.DEFAULT_MAX_MESSAGE_SIZE,
    mesh: bool = True,
    hidden: bool = False,
) -> Node:
    """Start a named node in this OS process and return it.

    Args:
        name: ``"name@host"``; the node listens on the address of `host`.
        cookie: shared secret of the cluster (see `load_cookie` for the default).
        port: listen on this port and skip the port mapper (0: any free port).
        insecure: connect in plain text. By default every connection is encrypted and
            authenticated with CurveZMQ, keys derived from the cookie, and only nodes
            with the cookie get past its handshake. A plain node trusts the network:
            whoever can read it reads every message, and may try cookies offline
            against a handshake it recorded (a MAC still binds every message to the
            connection that authenticated). Every node of a cluster uses the same
            setting. See docs/untrusted-networks.md.
        tick_time: a peer silent for this many seconds is declared down.
        handshake_timeout: seconds a connection may take to authenticate.
        max_message_size: bytes; a larger message raises `PayloadTooLarge` at the
            send, and one arriving is dropped (logged), the connection going on.
        mesh: connect to the peers of every node we connect to, and tell our peers
            of each other, as Erlang does. False affects this node only: give it
            to every node for a cluster of only the connections made.
        hidden: like ``erl -hidden``: connect only where asked, stay out of
            other nodes' `nodes()`, their mesh and their `monitor_nodes` (a
            client, a tool, a shell).

    Raises:
        AlreadyRegistered: a node with this name already runs on this host.
        ActornetError: the address cannot be listened on, or the cookie file is unsafe.

    Example:
        >>> import actornet
        >>> with actornet.start_node("doc@127.0.0.1", cookie="secret", port=0) as n:
        ...     actornet.node()
        'doc@127.0.0.1'
    """
    _address.check_name(name)
    short, _, host = name.partition("@")
    raw_cookie = load_cookie(cookie)
    bind_ip = _address_of(name, host)
    use_epmd = port is None
    # Imported here: `python -m actornet.epmd` must not find itself half-imported.
    if use_epmd:
        epmd.ensure_running()
        _check_name_free(short)
    n = Node(name)
    try:
        transport = Transport(
            n,
            bind_ip=bind_ip,
            advertise_host=host,
            port=port or 0,
            cookie=raw_cookie,
            secure=not insecure,
            tick_time=tick_time,
            handshake_timeout=handshake_timeout,
            max_message_size=max_message_size,
            mesh=mesh,
            hidden=hidden,
            resolve=_lookup,
        )
        n.dist = transport
        # Like kernel's global and pg, the name server and default scope always run,
        # supervised.
        _kernel.start(n)
        if use_epmd:
            registration = epmd.register(short, transport.port)
            n.closers.append(registration.close)
            registration.watch(f"node {name}")
        # Said once the node can be found by name: scripts and tests wait for this line.
        reach = ("loopback only: other hosts cannot connect" if bind_ip.startswith("127.")
                 else f"on {bind_ip}, the address of {host}")
        found = "; registered with the port mapper" if use_epmd else ""
        if insecure:
            log.warning("node %s: insecure=True: its connections are not encrypted; anyone "
                        "who can read the network between nodes reads every message (see "
                        "docs/untrusted-networks.md)", name)
        log.info("node %s listening on tcp://%s:%d (%s%s%s)", name, bind_ip, transport.port,
                 reach, found, "; plain text" if insecure else "")
    except BaseException:
        n.stop()
        raise
    return n


def _check_name_free(short: str) -> None:
    if epmd.lookup(short, "127.0.0.1") is not None:
        raise epmd.NameInUse(
            f"a node named {short!r} is already running on this host "
            "(see `python -m actornet.epmd --names`)"
        )


def _address_of(name: str, host: str) -> str:
    """The address the node listens on: what `host` resolves to here. It must be one of
    this host's; one that only this host can reach gets a warning."""
    try:
        address = socket.gethostbyname(host)
    except OSError as e:
        raise ActornetError(f"cannot resolve the host part {host!r} of the node name: {e}") from e
    try:
        with socket.socket() as probe:
            probe.bind((address, 0))
    except OSError as e:
        raise ActornetError(
            f"node {name}: {host!r} resolves to {address} here, which is not an address of "
            f"this host ({e.strerror or e}); fix the name or its entry in /etc/hosts or DNS"
        ) from None
    if address.startswith("127.") and host != "localhost" and host != address:
        log.warning("node %s: %s resolves to %s here, a loopback address: other hosts cannot "
                    "connect to this node (name it after an address they can reach, e.g. "
                    "by fixing %s's entry in /etc/hosts)", name, host, address, host)
    elif address == "0.0.0.0":
        log.warning("node %s: 0.0.0.0 is no address another host can dial: nodes that "
                    "connect to %s reach their own host instead", name, name)
    return address


def _lookup(name: str) -> str:
    """The endpoint of node `name`, from the port mapper of its host; raises `EpmdError`
    naming the host (and the address it resolves to) when it cannot be found."""
    short, _, host = name.partition("@")
    port = epmd.lookup(short, host)
    if port is None:
        where = host
        with contextlib.suppress(OSError):
            address = socket.gethostbyname(host)
            if address != host:
                where = f"{host} ({address})"
        raise epmd.EpmdError(f"no node named {short!r} is registered with the port mapper "
                             f"on {where}")
    return f"tcp://{host}:{port}"


def ping(name: str, timeout: float | None = None) -> str:
    """Connect to `name` if needed: ``"pong"`` if it answers, else ``"pang"`` (`net_adm:ping/1`).

    `name` may carry a port (``"b@host:5555"``) to bypass the port mapper. A malformed
    address raises `ValueError`.

    Example:
        >>> import actornet
        >>> with actornet.start_node("pingdoc@127.0.0.1", cookie="c", port=0):
        ...     actornet.ping("nobody@127.0.0.1:1")
        'pang'
    """
    target, _ = _address.parse(name)  # ValueError for a malformed address, here
    here = current_node()
    if target == here.name:
        return "pong"
    if here.dist is None:
        log.warning("ping %s: pang: this node (%s) is not distributed; start_node first",
                    name, here.name)
        return "pang"
    if here.dist.connect(name, timeout):
        return "pong"
    # Said where a user sees it (a warning shows with Python's default logging): a bare
    # "pang" does not tell a missing port mapper from a wrong cookie or a cut network.
    waited = timeout if timeout is not None else here.dist.handshake_timeout + 6.0
    why = here.dist.failure(name) or f"no answer within {waited:g} s; still trying"
    log.warning("node %s: ping %s: pang: %s", here.name, name, why)
    return "pang"


def monitor_node(name: str, flag: bool = True) -> None:
    """``("nodedown", name)`` arrives in the caller's mailbox when `name` goes down.

    Connects first if needed; if that fails the message arrives at once, as in
    Erlang. With `flag` False, one subscription is removed.

    Example:
        >>> import actornet
        >>> with actornet.start_node("mondoc@127.0.0.1", cookie="c", port=0):
        ...     actornet.monitor_node("nobody@127.0.0.1:1")  # nothing listens on port 1
        ...     actornet.receive(timeout=5)
        ('nodedown', 'nobody@127.0.0.1')
    """
    current_node().monitor_node(name, flag)


def monitor_nodes(flag: bool = True) -> None:
    """``("nodeup", node)``/``("nodedown", node)`` for every node, to the caller.

    Erlang's ``net_kernel:monitor_nodes/1``. With `flag` False, the caller
    stops receiving them.

    Example:
        >>> import actornet
        >>> with actornet.start_node("watchdoc@127.0.0.1", cookie="c", port=0):
        ...     actornet.monitor_nodes(True)
        ...     actornet.ping("nobody@127.0.0.1:1")  # no connection: no nodeup
        ...     actornet.monitor_nodes(False)
        'pang'
    """
    current_node().monitor_nodes(flag)


def disconnect_node(name: str) -> None:
    """Drop the connection to `name`: both sides see it go down (`disconnect_node/1`).

    Nothing happens if there is no such connection.

    Example:
        >>> import actornet
        >>> with actornet.start_node("dropdoc@127.0.0.1", cookie="c", port=0):
        ...     actornet.disconnect_node("nobody@127.0.0.1")
        ...     actornet.nodes()
        []
    """
    dist = current_node().dist
    if dist is not None:
        dist.disconnect(name)

