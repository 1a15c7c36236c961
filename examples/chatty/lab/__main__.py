"""Run the Chatty lab with one node per terminal, as ``erl -name N -setcookie secret`` does.

  python -m examples.chatty.lab server  --name s@127.0.0.1 --cookie secret
  python -m examples.chatty.lab client  --server s@127.0.0.1 --name Alice --cookie secret
  python -m examples.chatty.lab server2 --name s1@127.0.0.1 --cookie secret
  python -m examples.chatty.lab server2 --name s2@127.0.0.1 --via s1@127.0.0.1 --cookie secret

Nodes find each other by name through the port mapper, started on first use as
``erl`` starts epmd (env ACTORNET_EPMD_PORT sets its port). With ``--port N`` a
node listens on port N without the port mapper; reach it as ``name@host:N``.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
import time

import actornet
from examples.chatty.lab import client, server, server2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    name = args.name if args.command != "client" else args.node or client_node(args)
    try:
        node = actornet.start_node(name, args.cookie, port=args.port)
    except (actornet.ActornetError, ValueError) as e:
        print(f"chatty: cannot start node {name}: {e}", file=sys.stderr)
        return 1
    try:
        return {"server": run_server, "server2": run_server2, "client": run_client}[
            args.command](args)
    except KeyboardInterrupt:
        return 0
    finally:
        node.stop()


def run_server(args: argparse.Namespace) -> int:
    pid = server.start()
    print(f"server {actornet.node()}: myserver started", flush=True)
    return serve(pid)


def run_server2(args: argparse.Namespace) -> int:
    via = None if args.via is None else wait_server(args.via)
    if args.via is not None and via is None:
        return 1
    pid = server2.start(None if via is None else ("myserver", via))
    try:
        server2.servers(pid)  # answered once init is done (and the join, if any)
    except TimeoutError:
        print(f"chatty: could not join the servers through {via}", file=sys.stderr, flush=True)
        return 1
    joined = "first server" if via is None else f"joined via {via}"
    print(f"server2 {actornet.node()}: {joined}", flush=True)
    return serve(pid)


def run_client(args: argparse.Namespace) -> int:
    node = wait_server(args.server)
    if node is None:
        return 1
    if sys.stdin.isatty():
        print(f"{args.name} on {actornet.node()}, server {node}: type a line to send it; "
              "'exit' or '/quit' leaves", flush=True)
    client.repl(("myserver", node), args.name)
    return 0


def serve(pid: actornet.Pid) -> int:
    """Run until SIGTERM or Ctrl-C, or until the server process ends."""
    stop = threading.Event()
    ended: list[object] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    actornet.spawn(_watch, pid, stop, ended)
    stop.wait()
    if ended and ended[0] != "normal":
        print(f"chatty: myserver exited: {ended[0]}", file=sys.stderr, flush=True)
        return 1
    return 0


def _watch(pid: actornet.Pid, stop: threading.Event, ended: list[object]) -> None:
    ref = actornet.monitor(pid)
    ended.append(actornet.receive(lambda m: m[:2] == ("DOWN", ref))[4])
    stop.set()


def wait_server(node: str, tries: int = 50) -> str | None:
    """demo.erl's wait_server: until `node` answers and has `myserver` (bounded).

    Returns the node's name without a ``:port`` suffix, or None.
    """
    base = base_name(node)
    for _ in range(tries):
        try:
            if actornet.ping(node, timeout=2.0) == "pong" and isinstance(
                    actornet.rpc.call(base, actornet.whereis, "myserver"), actornet.Pid):
                return base
        except actornet.ActornetError:
            pass
        time.sleep(0.1)
    print(f"chatty: no myserver on {node}", file=sys.stderr, flush=True)
    return None


def base_name(node: str) -> str:
    """``name@host`` of ``name@host:port``."""
    name, _, host = node.partition("@")
    return f"{name}@{host.split(':')[0]}"


def client_node(args: argparse.Namespace) -> str:
    """The client's default node name: its chat name on the server's host (Alice -> alice@h)."""
    short = re.sub(r"[^a-z0-9_-]", "", args.name.lower()) or "client"
    return f"{short}@{base_name(args.server).partition('@')[2]}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m examples.chatty.lab",
                                description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s1 = sub.add_parser("server", help="the single server (server.py), registered as myserver")
    s2 = sub.add_parser("server2", help="a multi-server server (server2.py)")
    c = sub.add_parser("client", help="a client with a prompt (client.repl)")
    for s in (s1, s2):
        s.add_argument("--name", required=True, help="node name, e.g. s@127.0.0.1")
    s2.add_argument("--via", metavar="NODE", help="join the servers through the one on NODE")
    c.add_argument("--server", required=True, metavar="NODE", help="the server's node")
    c.add_argument("--name", required=True, help="chat name, e.g. Alice")
    c.add_argument("--node", help="this node's name (default: the chat name on the server's host)")
    for s in (s1, s2, c):
        s.add_argument("--cookie", help="cluster cookie (default: $ACTORNET_COOKIE or cookie file)")
        s.add_argument("--port", type=int, help="listen on this port, without the port mapper")
        s.add_argument("-v", "--verbose", action="store_true",
                       help="log connections and node failures")
    return p


if __name__ == "__main__":
    sys.exit(main())
