"""``python -m examples.chatty node|client|demo``: the chat service's command line."""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
from pathlib import Path

import actornet


def _host_default() -> str:
    return "127.0.0.1"


_SHORT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")


def node_name(name: str, host: str) -> str:
    """The full name ``name@host`` of a node given as ``name`` or ``name@host``.

    Raises ValueError, saying what is wrong, for a name no node can have.

    Example:
        >>> node_name("chatty1", "127.0.0.1"), node_name("chatty2@beta.lan", "127.0.0.1")
        ('chatty1@127.0.0.1', 'chatty2@beta.lan')
        >>> node_name("bad name", "127.0.0.1")
        Traceback (most recent call last):
        ...
        ValueError: invalid node name 'bad name': letters, digits, _ . or -, then @host
    """
    short, at, given_host = name.partition("@")
    host = given_host if at else host
    if not _SHORT.fullmatch(short):
        raise ValueError(f"invalid node name {short!r}: letters, digits, _ . or -, then @host")
    if not _HOST.fullmatch(host):
        raise ValueError(f"invalid host {host!r} in node name {name!r}: a host name or an "
                         "IPv4 address")
    return f"{short}@{host}"


def _data_dir(args: argparse.Namespace, node: str) -> str | None:
    base = os.environ.get("CHATTY_DATA_DIR") or Path.home() / ".local" / "state" / "chatty"
    if args.data_dir == "none":
        return None
    return str(args.data_dir or Path(base) / node)


def cmd_node(args: argparse.Namespace) -> int:
    from . import peers, service

    try:
        name = node_name(args.name, args.host)
        joins = [node_name(j, args.host) if ":" not in j.partition("@")[2] else j
                 for j in args.join]
    except ValueError as e:
        print(f"chatty: {e}", file=sys.stderr, flush=True)
        return 2
    try:
        node = actornet.start_node(name, args.cookie, port=args.port, tick_time=args.tick_time)
    except (actornet.ActornetError, ValueError, OSError) as e:
        print(f"chatty: cannot start node {name}: {e}", file=sys.stderr, flush=True)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        for peer in joins:
            print(f"chatty: {peer}: {actornet.ping(peer)}", flush=True)
        data_dir = _data_dir(args, node.name)
        # Before serving anyone: find the cluster (the nodes given, and those it knew),
        # so that rooms recovered from disk sync with it instead of sequencing alone.
        known = [n for n in peers.remembered(data_dir) if n != node.name]
        candidates = list(dict.fromkeys([*joins, *known]))
        peers.find_cluster(candidates, args.tick_time, args.wait_for_peers,
                           lambda line: print(f"chatty: {line}", flush=True))
        service.start(history_on_join=args.history, data_dir=data_dir,
                      fsync=args.fsync == "always", grace=args.grace,
                      tick_time=args.tick_time, max_rooms=args.max_rooms,
                      max_rooms_per_user=args.max_rooms_per_user)
        print(f"chatty node {node.name} ready on {node.dist.endpoint}", flush=True)
        if args.gateway is not None or args.web is not None:
            _start_gateway(args, node.name.partition("@")[2])
        stop.wait()
    finally:
        node.stop()
    return 0


def _start_gateway(args: argparse.Namespace, host: str) -> None:
    """The node's client port: users chat through it without the cookie."""
    from . import gateway, session, tokens

    config = session.SessionConfig(
        key=tokens.gateway_key(actornet.net_kernel.load_cookie(args.cookie)),
        grace=args.grace, call_timeout=3 * args.tick_time + 5.0,
        passwords=_passwords(args.passwords))
    config.hello_timeout = args.gateway_hello_timeout
    limits = gateway.Limits(max_connections=args.gateway_max_connections,
                            backlog=args.gateway_backlog)
    if args.gateway is not None:
        port = gateway.start(host, args.gateway, config, limits)
        print(f"chatty gateway {host}:{port}", flush=True)
    if args.web is not None:
        from . import web

        port = web.start(host, args.web, config, limits)
        print(f"chatty web http://{host}:{port}/", flush=True)


def _passwords(path: str | None) -> dict[str, str]:
    """``nick scrypt$...`` lines (`python -m examples.chatty passwd NICK` makes one)."""
    if path is None:
        return {}
    out = {}
    for line in Path(path).read_text().splitlines():
        words = line.split()
        if len(words) == 2 and not line.startswith("#"):
            out[words[0]] = words[1]
    return out


def cmd_client(args: argparse.Namespace) -> int:
    from . import client

    plain = True if args.plain else None
    through_node = ["@" in s or ":" not in s for s in args.server]  # HOST:PORT: a gateway
    if any(through_node) != all(through_node):
        print("ERROR --server: gateways (HOST:PORT) or chat nodes (NAME@HOST), not both",
              flush=True)
        return 1
    if not any(through_node):
        from . import gateway_client

        return gateway_client.main(args.server, args.nick, args.password, plain)
    return client.main(args.server, args.nick, args.cookie, args.host, plain, args.tick_time,
                       args.verbose, args.log)


def cmd_passwd(args: argparse.Namespace) -> int:
    """Print the line of a passwords file (``--passwords``) for a nickname: its hash only."""
    import getpass

    from . import requests, tokens

    why = requests.nick_problem(args.nick)
    if why is not None:
        print(f"ERROR {why}", file=sys.stderr, flush=True)
        return 1
    password = (getpass.getpass(f"password for {args.nick}: ") if sys.stdin.isatty()
                else sys.stdin.readline().rstrip("\n"))
    if not password or " " in password:
        print("ERROR a password is one word, not empty", file=sys.stderr, flush=True)
        return 1
    print(f"{args.nick} {tokens.hash_password(password)}", flush=True)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    return demo.main(verbose=args.verbose)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.chatty",
                                     description="Chatty: a multi-node chat on actornet")
    sub = parser.add_subparsers(dest="command", required=True)
    node = sub.add_parser("node", help="run a chat node")
    node.add_argument("--name", required=True, help="node name (chatty1, or chatty1@host)")
    node.add_argument("--host", default=_host_default(), help="host part of the node name")
    node.add_argument("--cookie", help="cluster cookie (default: $ACTORNET_COOKIE or the file)")
    node.add_argument("--join", action="append", default=[], metavar="NODE",
                      help="connect to this chat node at start (repeatable)")
    node.add_argument("--port", type=int, help="listen port (default: any, via the port mapper)")
    node.add_argument("--history", type=int, default=50, help="messages sent on joining a room")
    node.add_argument("--tick-time", type=float, default=4.0, help="seconds to declare a peer down")
    node.add_argument("--grace", type=float, default=10.0,
                      help="seconds the clients of a node that went down keep their place")
    node.add_argument("--data-dir", help="room logs go here (default: $CHATTY_DATA_DIR/NODE, "
                      "else ~/.local/state/chatty/NODE; 'none': in memory only)")
    node.add_argument("--fsync", choices=("always", "never"), default="always",
                      help="fsync the room logs before acknowledging (default: always)")
    node.add_argument("--wait-for-peers", type=float, default=30.0, metavar="S",
                      help="seconds to wait, at start, for a known chat node that may be "
                      "running but does not answer, before serving alone (default 30)")
    node.add_argument("--max-rooms", type=int, default=1000,
                      help="rooms this node serves at most (default 1000)")
    node.add_argument("--max-rooms-per-user", type=int, default=50,
                      help="rooms one user may be in through this node (default 50)")
    node.add_argument("--gateway", type=int, metavar="PORT",
                      help="serve users outside the cluster (no cookie) on this TCP port "
                      "(0: any free one)")
    node.add_argument("--web", type=int, metavar="PORT",
                      help="serve the web page (and its WebSocket) on this port (0: any free "
                      "one); needs aiohttp, the web extra")
    node.add_argument("--gateway-max-connections", type=int, default=20_000, metavar="N",
                      help="gateway connections held at most (default 20000)")
    node.add_argument("--gateway-backlog", type=int, default=256 * 1024, metavar="BYTES",
                      help="bytes waiting for a slow reader before it is disconnected "
                      "(default 262144)")
    node.add_argument("--gateway-hello-timeout", type=float, default=10.0, metavar="S",
                      help="seconds a new connection has to say HELLO (default 10)")
    node.add_argument("--passwords", metavar="FILE",
                      help="nicknames that need a password: 'NICK HASH' lines (see passwd)")
    node.add_argument("-v", "--verbose", action="store_true")
    node.set_defaults(run=cmd_node)
    client = sub.add_parser("client", help="chat from this terminal")
    client.add_argument("--server", required=True, action="append", metavar="ADDRESS",
                        help="a chat node's gateway, HOST:PORT (no cookie needed), or, as a "
                        "node of the cluster trusted with its cookie, a chat node NAME@HOST; "
                        "repeat it to name others to try in turn (and to resume through if "
                        "that one goes down)")
    client.add_argument("--password", help="the nickname's password, if it has one (gateway)")
    client.add_argument("--nick", required=True)
    client.add_argument("--cookie", help="cluster cookie (default: $ACTORNET_COOKIE or the file)")
    client.add_argument("--host", default=_host_default(), help="host part of this client's node")
    client.add_argument("--tick-time", type=float, default=4.0,
                        help="seconds to declare the chat node down (use the nodes' value)")
    client.add_argument("--plain", action="store_true",
                        help="line protocol even on a terminal (automatic when stdin is not one)")
    client.add_argument("--log", metavar="FILE",
                        help="write the client's log here (default: no log; -v: on stderr)")
    client.add_argument("-v", "--verbose", action="store_true")
    client.set_defaults(run=cmd_client)
    passwd = sub.add_parser("passwd", help="a line for --passwords: a nickname's password, "
                            "hashed (the password is read from stdin)")
    passwd.add_argument("nick")
    passwd.set_defaults(run=cmd_passwd, verbose=False)
    demo = sub.add_parser("demo", help="three nodes, scripted clients, a node killed midway")
    demo.add_argument("-v", "--verbose", action="store_true")
    demo.set_defaults(run=cmd_demo)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
