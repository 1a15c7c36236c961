"""Process primitives, as Erlang's BIFs: spawn, send, receive, links, monitors, names.

Every function acts on the current node (see `actornet.node`); the calling
thread becomes a process the first time it needs one, so a script, a REPL or a
test can talk to processes directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from actornet import errors, rpc
from actornet._ids import Pid, Ref
from actornet.node import current_node

__all__ = [
    "node",
    "nodes",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "self",
    "send",
    "receive",
    "receiving",
    "register",
    "unregister",
    "whereis",
    "registered",
    "link",
    "unlink",
    "monitor",
    "demonitor",
    "exit",
    "trap_exit",
    "is_alive",
    "make_ref",
    "processes",
    "process_info",
    "node_info",
]


def spawn(fn: Callable[..., Any], *args: Any, node: str | None = None) -> Pid:
    """Start `fn(*args)` in a new process and return its pid (Erlang `spawn/1,3`).

    With `node=`, the process starts on that node; `fn` must then be an
    importable module-level function (it travels as ``module:qualname``).

    Example:
        >>> import actornet
        >>> def greeter(to):
        ...     actornet.send(to, ("hello", actornet.self()))
        >>> pid = actornet.spawn(greeter, actornet.self())
        >>> actornet.receive(timeout=5)[0]
        'hello'
    """
    here = current_node()
    if node is not None and node != here.name:
        return rpc.spawn(node, fn, args, link=False)
    return here.spawn_opt(fn, args)[0]


def spawn_link(fn: Callable[..., Any], *args: Any, node: str | None = None) -> Pid:
    """Spawn and link atomically: if either dies abnormally, the other gets the signal.

    Example:
        >>> import actornet
        >>> _ = actornet.trap_exit(True)
        >>> pid = actornet.spawn_link(lambda: 1 / 0)
        >>> msg = actornet.receive(lambda m: m[0] == "EXIT" and m[1] == pid, timeout=5)
        >>> msg[2].type
        'ZeroDivisionError'
        >>> _ = actornet.trap_exit(False)
    """
    here = current_node()
    if node is not None and node != here.name:
        return rpc.spawn(node, fn, args, link=True)
    return here.spawn_opt(fn, args, link=True)[0]


def spawn_monitor(fn: Callable[..., Any], *args: Any) -> tuple[Pid, Ref]:
    """Spawn and monitor atomically; returns `(pid, ref)`.

    Example:
        >>> import actornet
        >>> pid, ref = actornet.spawn_monitor(lambda: None)
        >>> actornet.receive(lambda m: m[1] == ref, timeout=5)[4]
        'normal'
    """
    pid, ref = current_node().spawn_opt(fn, args, monitor=True)
    assert ref is not None
    return pid, ref


def self() -> Pid:
    """The calling process's pid (a plain thread becomes a process on first use).

    Example:
        >>> import actornet
        >>> actornet.self() == actornet.self()
        True
    """
    return current_node().current().pid


def send(dest: Pid | str | tuple[str, str], msg: Any, *, noconnect: bool = False) -> Any:
    """Send `msg` to `dest` and return `msg` (Erlang ``Dest ! Msg``); never blocks for a reply.

    `dest` is a `Pid`, a locally registered name, `(name, node)`, or
    `("global", name)`. Sending to a dead pid is silently ignored, as in
    Erlang; sending to an unregistered name raises `NoProc`. A value that is
    not a message raises `TypeError` naming its type. With `noconnect`, a
    message for a node that is not connected is dropped rather than making a
    connection (Erlang's ``[noconnect]``).

    Example:
        >>> import actornet
        >>> _ = actornet.send(actornet.self(), ("ping", 1))
        >>> actornet.receive(timeout=1)
        ('ping', 1)
    """
    current_node().route(dest, msg, True, not noconnect)
    return msg


def receive(match: Callable[[Any], object] | None = None, timeout: float | None = None) -> Any:
    """Take the first message `match` accepts from the mailbox (Erlang ``receive``).

    Messages `match` rejects stay queued, in order, for later receives.
    `timeout` is in seconds (None or ``math.inf`` waits forever, like
    Erlang's ``infinity``; 0 only looks); when it passes, `actornet.Timeout`
    (a `TimeoutError`) is raised, like ``after T ->``. A `match` that is not
    callable raises `TypeError`; a negative or NaN `timeout` raises
    `ValueError`, one that is not a number `TypeError`, before anything waits.

    Example:
        >>> import actornet
        >>> me = actornet.self()
        >>> _ = actornet.send(me, ("b", 2)); _ = actornet.send(me, ("a", 1))
        >>> actornet.receive(lambda m: m[0] == "a", timeout=1)
        ('a', 1)
        >>> actornet.receive(timeout=1)
        ('b', 2)
    """
    return current_node().receive(match, timeout)


def receiving(timeout: float | None = None) -> Iterator[Any]:
    """Erlang's ``receive ... after ... end`` written once, as a loop around a `match`.

    The loop is offered the caller's messages one at a time, oldest first,
    waiting for new ones as needed. A message is *taken* when the loop body
    leaves the loop with it (``break``, ``return`` or an exception: a clause
    matched); a message the body lets pass (the next iteration begins) stays
    in the mailbox, in its place, exactly as Erlang leaves a message that no
    clause matches. When `timeout` seconds pass (from the start of the loop)
    with no message taken, the loop ends and its ``else:`` runs: Erlang's
    ``after``. `timeout` None waits forever; 0 looks only at what is queued.
    The message being offered is out of the mailbox while the body runs, so a
    ``receive`` inside a clause never sees it.

    Erlang::

        receive
            {ping, From} -> From ! pong;
            stop -> stopped
        after 5000 -> timeout
        end

    Python::

        for msg in actornet.receiving(timeout=5.0):
            match msg:
                case ("ping", sender):
                    actornet.send(sender, "pong")
                    break
                case "stop":
                    result = "stopped"
                    break
        else:
            result = "timeout"

    Every clause ends with ``break`` (or ``return``): a clause that falls
    through leaves its message queued, as if it had not matched.

    Raises:
        TypeError, ValueError: a bad `timeout`, at the call (before any wait).

    Example:
        >>> import actornet
        >>> me = actornet.self()
        >>> for m in [("temp", 15), ("alarm", "door"), ("temp", 22)]:
        ...     _ = actornet.send(me, m)
        >>> for msg in actornet.receiving(timeout=1):
        ...     match msg:
        ...         case ("temp", degrees) if degrees > 20:
        ...             print("warm:", degrees)
        ...             break
        warm: 22
        >>> actornet.receive(timeout=0), actornet.receive(timeout=0)
        (('temp', 15), ('alarm', 'door'))
    """
    return current_node().receiving(timeout)


def register(name: str, pid: Pid) -> bool:
    """Register local `pid` under `name` (Erlang `register/2`); returns True, as Erlang's does.

    Raises `AlreadyRegistered` if the name is taken or the process already has
    a name, `NoProc` if the process is dead.

    Example:
        >>> import actornet
        >>> actornet.register("doc_shell", actornet.self())
        True
        >>> actornet.whereis("doc_shell") == actornet.self()
        True
        >>> actornet.unregister("doc_shell")
    """
    return current_node().register(name, pid)


def unregister(name: str) -> None:
    """Remove a registered name (Erlang `unregister/1`); `NoProc` if not registered.

    Example:
        >>> import actornet
        >>> _ = actornet.register("doc_gone", actornet.self())
        >>> actornet.unregister("doc_gone")
        >>> actornet.whereis("doc_gone") is None
        True
    """
    current_node().unregister(name)


def whereis(name: str) -> Pid | None:
    """The pid registered as `name` on this node, or None (Erlang `whereis/1`).

    Example:
        >>> import actornet
        >>> actornet.whereis("nobody") is None
        True
    """
    return current_node().whereis(name)


def registered() -> list[str]:
    """Every name registered on this node, sorted (Erlang `registered/0`).

    Example:
        >>> import actornet
        >>> _ = actornet.register("doc_listed", actornet.self())
        >>> "doc_listed" in actornet.registered()
        True
        >>> actornet.unregister("doc_listed")
    """
    return current_node().registered()


def link(pid: Pid) -> None:
    """Link the calling process with `pid` (Erlang `link/1`).

    If `pid` is dead, the caller gets an exit signal with reason ``"noproc"``
    (a message if it traps exits, else it dies).

    Example:
        >>> import actornet
        >>> worker = actornet.spawn(actornet.receive)
        >>> actornet.link(worker)
        >>> actornet.unlink(worker)
        >>> actornet.exit(worker, "kill")
    """
    current_node().link(pid)


def unlink(pid: Pid) -> None:
    """Remove the link between the calling process and `pid` (Erlang `unlink/1`).

    Unlinking a pid that is not linked (or is dead) does nothing.

    Example:
        >>> import actornet
        >>> worker = actornet.spawn_link(actornet.receive)
        >>> actornet.unlink(worker)
        >>> actornet.exit(worker, "kill")  # no longer linked: the caller lives on
        >>> actornet.is_alive(actornet.self())
        True
    """
    current_node().unlink(pid)


def monitor(target: Pid | str | tuple[str, str]) -> Ref:
    """Monitor `target`; ``("DOWN", ref, "process", pid, reason)`` arrives exactly once.

    Monitoring a dead process (or an unregistered name) fires at once with
    reason ``"noproc"``.

    Example:
        >>> import actornet
        >>> pid = actornet.spawn(lambda: None)
        >>> ref = actornet.monitor(pid)
        >>> actornet.receive(lambda m: m[1] == ref, timeout=5)[4] in ("normal", "noproc")
        True
    """
    return current_node().monitor(target)


def demonitor(ref: Ref) -> bool:
    """Turn off monitor `ref`; no DOWN for it arrives after this returns.

    Returns True if the monitor was active. A DOWN already delivered stays in
    the mailbox (use `receive` with a match to drop it).

    Example:
        >>> import actornet
        >>> pid = actornet.spawn(actornet.receive)
        >>> ref = actornet.monitor(pid)
        >>> actornet.demonitor(ref)
        True
        >>> actornet.exit(pid, "kill")
        >>> actornet.receive(lambda m: m[1] == ref, timeout=0.1)
        Traceback (most recent call last):
          ...
        actornet.errors.Timeout: no matching message within 0.1 s
    """
    return current_node().demonitor(ref)


def exit(pid: Pid, reason: Any) -> None:
    """Send an exit signal to `pid` (Erlang `exit/2`).

    ``"kill"`` cannot be trapped and ends the process with reason
    ``"killed"``; ``"normal"`` is ignored by a process that does not trap
    exits; any other reason ends it, or arrives as ``("EXIT", from, reason)``
    if it traps exits.

    Example:
        >>> import actornet
        >>> pid, ref = actornet.spawn_monitor(actornet.receive)
        >>> actornet.exit(pid, "kill")
        >>> actornet.receive(lambda m: m[1] == ref, timeout=5)[4]
        'killed'
    """
    current_node().exit(pid, reason)


def trap_exit(flag: bool = True) -> bool:
    """Set whether exit signals become messages (Erlang ``process_flag(trap_exit, F)``).

    Returns the previous value. `flag` must be a bool (`TypeError` otherwise).

    Example:
        >>> import actornet
        >>> old = actornet.trap_exit(True)
        >>> _ = actornet.trap_exit(old)
    """
    return current_node().trap_exit(flag)


def is_alive(pid: Pid) -> bool:
    """True if local process `pid` is alive (Erlang `is_process_alive/1`).

    For a pid of another node, asks that node (False if it is unreachable).

    Example:
        >>> import actornet
        >>> actornet.is_alive(actornet.self())
        True
    """
    node = current_node()
    if node.is_local(pid):
        return node.local_process(pid) is not None
    if pid.node == node.name:
        return False  # an older incarnation of this node
    try:
        return bool(rpc.call(pid.node, is_alive, pid))
    except errors.NodeDown:
        return False


def make_ref() -> Ref:
    """A new unique reference (Erlang `make_ref/0`).

    Example:
        >>> import actornet
        >>> actornet.make_ref() != actornet.make_ref()
        True
    """
    return current_node().make_ref()


def processes() -> list[Pid]:
    """Every live process of the current node (Erlang `processes/0`).

    Example:
        >>> import actornet
        >>> actornet.self() in actornet.processes()
        True
    """
    return current_node().processes()


def process_info(pid: Pid) -> dict[str, Any] | None:
    """What a process is doing, like ``erlang:process_info/1``; None if it is not alive.

    Keys: ``registered_name``, ``status`` (``"waiting"`` in a receive, else
    ``"running"``), ``message_queue_len``, ``links``, ``monitors``,
    ``monitored_by``, ``trap_exit``, ``current_function``, ``kind``. A pid of
    another node is asked there.

    Example:
        >>> import actornet
        >>> info = actornet.process_info(actornet.self())
        >>> info["status"], info["message_queue_len"]
        ('running', 0)
    """
    node = current_node()
    if node.is_local(pid) or pid.node == node.name:
        return node.process_info(pid)
    return rpc.call(pid.node, process_info, pid)  # type: ignore[no-any-return]


def node_info() -> dict[str, Any]:
    """A snapshot of the current node: processes, queues, connections, ticks, traffic.

    Example:
        >>> import actornet
        >>> me = actornet.self()  # the calling thread is a process from now on
        >>> actornet.node_info()["processes"] >= 1
        True
    """
    return current_node().node_info()


def node() -> str:
    """This node's name, ``"nonode@nohost"`` when not distributed (Erlang `node/0`).

    Example:
        >>> import actornet
        >>> isinstance(actornet.node(), str)
        True
    """
    return current_node().name


def nodes() -> list[str]:
    """The nodes this one is connected to, not itself (Erlang `nodes/0`).

    Hidden nodes are left out, as in Erlang.

    Example:
        >>> import actornet
        >>> with actornet.start_node("nodesdoc@127.0.0.1", cookie="c", port=0):
        ...     actornet.nodes()
        []
    """
    dist = current_node().dist
    return [] if dist is None else dist.nodes()
