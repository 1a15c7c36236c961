"""``python -m actornet node --name a@127.0.0.1``: a node as its own program, like ``erl``.

The node starts, runs its start-up actions (``--eval CODE`` and ``--run
MODULE:FUNCTION [ARG ...]``, in the order given, in the node's main process),
then reads shell commands: from the terminal with a prompt, or, when standard
input is a pipe or a file, one line at a time without a prompt, so that a
driver script can run the node as the Erlang shell is scripted. The shell's
namespace holds the actornet API (``ping``, ``nodes``, ``send``, ``receive``,
``whereis``, ``rpc``, ...), ``flush()`` and ``halt(status)``.

How it ends, and its exit status:

- end of input (Ctrl-D), ``halt()``, or SIGTERM: 0 (``halt(n)``: n);
- a ``--run`` function returned: 0 (its value is ignored: ``halt(n)`` gives n);
- a ``--run`` function or an ``--eval`` raised: 1, with the traceback on stderr;
- the node could not start: 1; SIGINT outside the interactive shell: 130;
- a bad command line: 2.

With ``--no-shell`` there is no shell: the node runs until its ``--run``
function returns, or, without one, until ``halt()``, SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import code
import importlib
import io
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

import actornet
from actornet import _wire

INTERRUPTED = 130  # the shell's convention for a program ended by SIGINT
_halt_status = [0]  # what halt() asked for, read by the SIGTERM handler


def _flush() -> None:
    """Print and remove every message in the shell's mailbox (Erlang's ``flush()``)."""
    while True:
        try:
            msg = actornet.receive(timeout=0)
        except actornet.Timeout:
            return
        print(f"Shell got {msg!r}")


def halt(status: int = 0) -> None:
    """Stop the node and end the program with exit `status` (Erlang's ``halt/1``).

    Callable from any process: the main thread is told with a SIGTERM, which
    interrupts whatever it waits on, and stops the node (and so the caller).
    """
    _halt_status[0] = int(status)
    os.kill(os.getpid(), signal.SIGTERM)


class _Interrupts:
    """SIGINT and SIGTERM for the node's main thread, raised where it is safe.

    Python runs a signal handler between two bytecodes of the main thread, and an
    exception raised there can surface anywhere, even between a lock's acquisition and
    the ``try`` that would release it: the node's stop then waits for that lock for
    ever. So while the main thread waits in `receive`, the handler only records the
    signal and wakes its mailbox, and the exception is raised from inside the receive,
    where no lock is held. A main thread busy elsewhere (in user code, or reading the
    shell's input) gets it from the handler at once, as Python does; one that does not
    take it within half a second gets it that way too.
    """

    def __init__(self, proc: Any) -> None:
        self.mailbox = proc.mailbox
        self.pending: BaseException | None = None
        self.signum = 0
        self.main = threading.get_ident()
        self._inner_check = self.mailbox.check
        self.mailbox.check = self._check
        self._raised = threading.Event()
        self._signalled = threading.Event()
        threading.Thread(target=self._watch, name="actornet-signals", daemon=True).start()

    def handler(self, make: Callable[[], BaseException]) -> Callable[[int, Any], None]:
        def on_signal(signum: int, frame: Any) -> None:
            if self.pending is not None or not self.mailbox.blocked:
                self.pending = None
                raise make()
            self.signum = signum
            self._raised.clear()
            self.pending = make()
            self.mailbox.put_wake()  # SimpleQueue.put: safe from a signal handler
            self._signalled.set()
        return on_signal

    def _check(self) -> None:
        exc, self.pending = self.pending, None
        if exc is not None:
            self._raised.set()
            raise exc
        self._inner_check()

    def _watch(self) -> None:
        while True:
            self._signalled.wait()
            self._signalled.clear()
            if not self._raised.wait(0.5) and self.pending is not None:
                signal.pthread_kill(self.main, self.signum)  # its handler raises now


def _namespace() -> dict[str, Any]:
    ns: dict[str, Any] = {name: getattr(actornet, name) for name in actornet.__all__}
    ns.update(actornet=actornet, flush=_flush, halt=halt, global_=actornet.global_,
              pg=actornet.pg, __name__="__console__")
    return ns


class _Shell(code.InteractiveConsole):
    def __init__(self, node: actornet.Node, namespace: dict[str, Any]) -> None:
        super().__init__(namespace)
        self.node = node
        self.count = 1

    def raw_input(self, prompt: str = "") -> str:
        line = super().raw_input(f"({self.node.name}){self.count}> " if prompt == sys.ps1
                                 else prompt)
        self.count += 1
        return line


def _piped_shell(namespace: dict[str, Any]) -> None:
    """Run each line of standard input as if typed at the prompt; no prompt, no echo.

    Expression values are printed (to stdout), errors go to stderr and the
    next line runs, as in the interactive shell. A compound statement ends at
    an empty line, as at the prompt.
    """
    console = code.InteractiveConsole(namespace)
    more = False
    while line := sys.stdin.readline():
        more = console.push(line.rstrip("\r\n"))
    if more:
        console.push("")


class _ActionFailed(Exception):
    """An ``--eval`` or ``--run`` action raised; the cause is its exception."""


def _run_actions(actions: list[tuple[str, Any]], namespace: dict[str, Any]) -> bool:
    """Run the ``--eval`` and ``--run`` actions in order; True if there was a ``--run``."""
    ran = False
    for kind, what in actions:
        label = f"--eval {what!r}" if kind == "eval" else f"--run {' '.join(what)}"
        try:
            if kind == "eval":
                exec(compile(what, "<--eval>", "exec"), namespace)
                continue
            target, *args = what
            module_name, _, function_name = target.partition(":")
            function = getattr(importlib.import_module(module_name), function_name)
            function(*args)  # its value is ignored, as erl -run ignores it: use halt(N)
            ran = True
        except (SystemExit, KeyboardInterrupt):
            raise
        except actornet.ProcessExit as e:
            if e.reason != "normal":
                raise _ActionFailed(label) from e
            ran = ran or kind == "run"
        except BaseException as e:
            raise _ActionFailed(label) from e
    return ran


class _Append(argparse.Action):
    """Keep ``--eval`` and ``--run`` in one list, in command-line order."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        if self.dest == "run" and ":" not in values[0]:
            parser.error(f"--run wants MODULE:FUNCTION, got {values[0]!r}")
        namespace.actions = [*(namespace.actions or []), (self.dest, values)]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m actornet", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    n = sub.add_parser(
        "node", help="start a named node (with a shell)",
        epilog="Exit status: 0 when the node ended normally (end of input, halt(), SIGTERM, "
               "a --run function returned; halt(N) gives N); "
               "1 when an --eval or --run raised or the node could not start; 2 for a bad "
               "command line; 130 after SIGINT.")
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
    n.add_argument("--eval", action=_Append, metavar="CODE", dest="eval",
                   help="run Python CODE in the shell's namespace at start (repeatable; "
                        "like erl -eval)")
    n.add_argument("--run", action=_Append, nargs="+", metavar=("MODULE:FUNCTION", "ARG"),
                   dest="run",
                   help="call MODULE.FUNCTION(*ARGS) at start, ARGS as strings; the node ends "
                        "when it returns (like erl -run M F A, then init:stop())")
    n.add_argument("--no-shell", action="store_true",
                   help="no shell: run until the --run function returns, or halt(), SIGTERM "
                        "or SIGINT (like erl -noshell)")
    n.add_argument("-v", "--verbose", action="store_true", help="log connections too (INFO)")
    n.set_defaults(actions=[])
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper) and not sys.stdout.isatty():
        # A driver reading our output through a pipe sees each line when it is printed.
        sys.stdout.reconfigure(line_buffering=True)
    # Warnings and errors (node down, crash reports) are shown, as erl shows them.
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
    interrupts = _Interrupts(node.current())
    previous = signal.signal(signal.SIGTERM,
                             interrupts.handler(lambda: SystemExit(_halt_status[0])))
    previous_int = signal.signal(signal.SIGINT, interrupts.handler(KeyboardInterrupt))
    try:
        return _serve(node, args)
    except SystemExit as e:  # SIGTERM, halt(), or sys.exit() in an --eval, --run or command
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)  # sys.exit("message"), as Python itself does
        return 1
    except KeyboardInterrupt:
        return INTERRUPTED
    finally:
        # stopping now: a second signal waits until the node has stopped
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        node.stop()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _serve(node: actornet.Node, args: argparse.Namespace) -> int:
    print(f"actornet node {node.name} listening on {node.transport().endpoint}", flush=True)
    for peer in args.connect:
        print(f"{peer}: {actornet.ping(peer)}", flush=True)
    namespace = _namespace()
    try:
        ran = _run_actions(args.actions, namespace)
    except _ActionFailed as failed:
        cause = failed.__cause__
        assert cause is not None
        print(f"actornet: node {node.name} stops: {failed} raised "
              f"{type(cause).__name__}: {cause}", file=sys.stderr)
        traceback.print_exception(type(cause), cause, cause.__traceback__)
        return 1
    if ran:
        return 0  # the node's main function returned
    if args.no_shell:
        threading.Event().wait()  # until SIGTERM (halt()) or SIGINT
    elif sys.stdin.isatty():
        _Shell(node, namespace).interact(
            banner=f"actornet shell on {node.name} "
                   "(ping, nodes, send, receive, flush, whereis, halt; Ctrl-D quits)",
            exitmsg="")
    else:
        _piped_shell(namespace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
