"""Is a member, or a client, really gone? Asked of the node itself, else of its port mapper.

A node that cannot be reached is either dead or cut off (paused, or across a
partition): from here the two look the same. Removing the users of a node that
is only cut off would remove people who are still chatting, so the chat service
decides a member is gone only on evidence that its client is (`gone_members`):

- its chat node (its home) answers and still serves it: it stays;
- else its client's own node answers: it stays if the client process lives
  (it resumed elsewhere, or keeps trying to), and is gone if it ended;
- else the port mapper on the client's host answers, and says no such node
  runs: it is gone.

When neither answers (the whole host is unreachable), or the port mapper says the
node runs but the node does not answer (it hangs, or the link to it is cut), the
answer is "cannot tell", and the caller asks again later. A node started with
``--port`` is not registered with its port mapper, so its death cannot be
confirmed that way: its users stay until it answers again.

These calls can block (a connection to a hung node waits for the handshake
timeout), so callers run them in processes of their own (`spawn_check`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import actornet
from actornet import epmd

__all__ = ["client_alive", "gone_members", "registered", "served_by", "spawn_check"]

log = logging.getLogger("chatty")


def registered(node: str, timeout: float = 2.0) -> bool | None:
    """True if the port mapper on `node`'s host lists it, False if it says it does not run,
    None if no port mapper answers.

    Example:
        >>> registered("nobody@127.0.0.1:1")  # given by address: no port mapper knows it
        False
    """
    short, _, host = node.partition("@")
    if ":" in host:
        return False
    try:
        return epmd.lookup(short, host, timeout=timeout) is not None
    except (epmd.EpmdError, OSError, ValueError):
        return None


def served_by(home: str, pids: list[actornet.Pid], timeout: float) -> set[actornet.Pid] | None:
    """Which of `pids` chat node `home` still serves; None if that cannot be known now.

    A home that its port mapper says does not run serves none of them.
    """
    if actornet.ping(home, timeout=timeout) == "pong":
        try:
            served = actornet.call(("chatty", home), ("serves", list(pids)), timeout=timeout)
        except (actornet.NoProc, actornet.NodeDown, actornet.CallError, TimeoutError):
            return None  # starting, stopping, or it went: ask again later
        return {p for p in pids if p in served}
    return set() if registered(home, timeout) is False else None


def client_alive(pid: actornet.Pid, timeout: float) -> bool | None:
    """Whether client process `pid` lives; None if that cannot be known now."""
    if actornet.ping(pid.node, timeout=timeout) == "pong":
        try:
            return bool(actornet.rpc.call(pid.node, actornet.is_alive, pid, timeout=timeout))
        except (actornet.ActornetError, TimeoutError):
            return None
    return False if registered(pid.node, timeout) is False else None


def gone_members(home: str, pids: list[actornet.Pid], timeout: float,
                 ) -> tuple[set[actornet.Pid], set[actornet.Pid]]:
    """Of members `pids`, who joined through `home`: those surely gone, and those about
    whom nothing can be known now (the rest stay)."""
    served = served_by(home, pids, timeout)
    gone: set[actornet.Pid] = set()
    unknown: set[actornet.Pid] = set()
    for pid in pids:
        if served is not None and pid in served:
            continue
        alive = client_alive(pid, timeout)
        if alive is False:
            gone.add(pid)
        elif alive is None:
            unknown.add(pid)
    return gone, unknown


def spawn_check(reply_to: actornet.Pid, tag: Any, check: Callable[..., Any],
                *args: Any) -> actornet.Pid:
    """Run ``check(*args)`` in a process of its own; send ``(tag..., result)`` to `reply_to`.

    `tag` is a tuple; an exception in the check counts as "cannot tell" (None).
    """

    def run() -> None:
        try:
            result = check(*args)
        except Exception:  # a check must always answer: the caller waits for it
            log.exception("chatty: check %s failed", getattr(check, "__name__", check))
            result = None
        actornet.send(reply_to, (*tag, result))

    return actornet.spawn(run)
