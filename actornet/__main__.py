"""``python -m actornet node --name a@127.0.0.1 --cookie c``: a node with a shell, like ``erl``.

The shell is a Python console whose namespace holds the actornet API, so
``ping("b@127.0.0.1")``, ``nodes()``, ``send(("echo", "b@127.0.0.1"), "hi")``,
``whereis("x")`` and ``flush()`` work at the prompt. Without a terminal (or
with ``--no-shell``) the node just runs until SIGTERM, SIGINT or end of input.
"""

from __future__ import annotations

import argparse
import code
import logging
import signal
import sys
import threading
from typing import Any

import actornet
from actornet import _wire


def _flush() -> None:
    """Print and remove every message in the shell's mailbox (Erlang's ``flush()``)."""
    while True:
        try:
            msg = actornet.receive(timeout=0)
        except actornet.Timeout:
            return
        print(f"Shell got {msg!r}")


def _namespace() -> dict[str, Any]:
    ns: dict[str, Any] = {name: getattr(actornet, name) for name in actornet.__all__}
    ns.update(actornet=actornet, flush=_flush, global_=_lazy("global_"), pg=_lazy("pg"))
    return ns


def _lazy(name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(f"actornet.{name}")
    except ImportError:
        return None


class _Shell(code.InteractiveConsole):
    def __init__(self, node: actornet.Node) -> None:
        super().__init__(_namespace())
        self.node = node
        self.count = 1

    def raw_input(self, prompt: str = "") -> str:
        line = super().raw_input(f"({self.node.name}){self.count}> " if prompt == sys.ps1
                                 else prompt)
        self.count += 1
        return line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m actornet", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    n = sub.add_parser("node", help="start a named node (with a shell on a terminal)")
    n.add_argument("--name", required=True, help="node name, name@host")
    n.add_argument("--cookie", help="cluster cookie (default: $ACTORNET_COOKIE or the cookie file)")
    n.add_argument("--port", type=int, help="listen on this port; skips the port mapper")
    n.add_argument("--insecure", action="store_true",
                   help="plain-text connections, for a network you trust (default: "
                        "encrypted, CurveZMQ)")
    n.add_argument("--tick-time", type=float, default=4.0, help="seconds of silence = node down")
    n.add_argument("--max-message-size", type=int, default=_wire.DEFAULT_MAX_MESSAGE_SIZE,
                   metavar="BYTES",
                   help="largest message sent or accepted, in bytes")
    n.add_argument("--no-mesh", action="store_true",
                   help="do not connect to the peers of the nodes this one connects to")
    n.add_argument("--hidden", action="store_true",
                   help="a hidden node: out of other nodes' nodes() and mesh")
    n.add_argument("--connect", action="append", default=[], metavar="NODE",
                   help="connect to NODE at start (repeatable)")
    n.add_argument("--no-shell", action="store_true", help="run without a shell")
    n.add_argument("-v", "--verbose", action="store_true", help="log connections and failures")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        node = actornet.start_node(args.name, args.cookie, port=args.port, insecure=args.insecure,
                                   tick_time=args.tick_time,
                                   max_message_size=args.max_message_size,
                                   mesh=not args.no_mesh, hidden=args.hidden)
    except (actornet.ActornetError, ValueError) as e:
        print(f"actornet: cannot start node {args.name}: {e}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"actornet node {node.name} listening on {node._dist.endpoint}", flush=True)
    for peer in args.connect:
        print(f"{peer}: {actornet.ping(peer)}", flush=True)
    try:
        if args.no_shell or not sys.stdin.isatty():
            if args.no_shell:
                stop.wait()
            else:
                def until_eof() -> None:
                    sys.stdin.read()
                    stop.set()

                threading.Thread(target=until_eof, daemon=True).start()
                stop.wait()
        else:
            _Shell(node).interact(banner=f"actornet shell on {node.name} "
                                  "(ping, nodes, send, receive, flush, whereis; Ctrl-D quits)",
                                  exitmsg="")
    except KeyboardInterrupt:
        pass
    finally:
        node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
