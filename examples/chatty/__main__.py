"""``python -m examples.chatty node|client|demo``: the chat service's command line."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import actornet


def _host_default() -> str:
    return "127.0.0.1"


def cmd_node(args: argparse.Namespace) -> int:
    from . import service

    name = args.name if "@" in args.name else f"{args.name}@{args.host}"
    try:
        node = actornet.start_node(name, args.cookie, port=args.port, tick_time=args.tick_time)
    except (actornet.ActornetError, ValueError) as e:
        print(f"chatty: cannot start node {name}: {e}", file=sys.stderr, flush=True)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        for peer in args.join:
            print(f"chatty: {peer}: {actornet.ping(peer)}", flush=True)
        base = os.environ.get("CHATTY_DATA_DIR") or Path.home() / ".local" / "state" / "chatty"
        data_dir = None if args.data_dir == "none" else (
            args.data_dir or str(Path(base) / node.name))
        service.start(history_on_join=args.history, data_dir=data_dir,
                      fsync=args.fsync == "always", grace=args.grace)
        print(f"chatty node {node.name} ready on {node._dist.endpoint}", flush=True)
        stop.wait()
    finally:
        node.stop()
    return 0


def cmd_client(args: argparse.Namespace) -> int:
    from . import client

    plain = True if args.plain else None
    return client.main(args.server, args.nick, args.cookie, args.host, plain, args.tick_time)


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
    node.add_argument("-v", "--verbose", action="store_true")
    node.set_defaults(run=cmd_node)
    client = sub.add_parser("client", help="chat from this terminal")
    client.add_argument("--server", required=True, action="append", metavar="NODE",
                        help="chat node, e.g. chatty1@127.0.0.1; repeat it to name others to "
                        "try in turn (and to resume through if that one goes down)")
    client.add_argument("--nick", required=True)
    client.add_argument("--cookie", help="cluster cookie (default: $ACTORNET_COOKIE or the file)")
    client.add_argument("--host", default=_host_default(), help="host part of this client's node")
    client.add_argument("--tick-time", type=float, default=4.0,
                        help="seconds to declare the chat node down (use the nodes' value)")
    client.add_argument("--plain", action="store_true",
                        help="line protocol even on a terminal (automatic when stdin is not one)")
    client.add_argument("-v", "--verbose", action="store_true")
    client.set_defaults(run=cmd_client)
    demo = sub.add_parser("demo", help="three nodes, scripted clients, a node killed midway")
    demo.add_argument("-v", "--verbose", action="store_true")
    demo.set_defaults(run=cmd_demo)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
