"""The other chat nodes: remembered on disk, looked for at start, reconnected after a fault.

A chat node writes the chat nodes it sees (the pg group ``chatty.servers``) to
``<data dir>/peers``, one ``name last-seen`` line each (a node not seen for 30
days is forgotten). Restarted, it looks for them before it serves anyone
(`find_cluster`), so it rejoins its cluster without ``--join``, syncs its rooms
and numbers nothing of its own. The rule for serving alone:

- a chat node that answers: join the cluster through it, catch up, then serve;
- no chat node known (a new cluster's first node), or every one known is
  reported not running by the port mapper of its host: serve alone, and say so;
- one that may be running but does not answer (its port mapper lists it, or
  cannot be reached): wait for it, trying again every half tick, up to
  ``--wait-for-peers`` seconds; then serve alone, saying so (the two sides'
  histories are merged when they meet, as after a partition).

While it runs, the `Peers` server tries again, every half tick, to connect to each
remembered chat node that is down: after a pause (SIGSTOP), or a network cut
that heals, the nodes meet again by themselves, and their rooms settle on one
sequencer (see `examples.chatty.room`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import actornet
from actornet import GenServer, pg

from . import liveness

__all__ = ["FORGET_AFTER", "Peers", "find_cluster", "remembered"]

log = logging.getLogger("chatty")

SERVERS = "chatty.servers"  # as in examples.chatty.service (imported from there would circle)
PEERS_FILE = "peers"
FORGET_AFTER = 30 * 24 * 3600.0  # seconds: a chat node not seen for this long is forgotten


def _read(data_dir: str | os.PathLike[str] | None) -> dict[str, float]:
    if data_dir is None:
        return {}
    try:
        text = (Path(data_dir) / PEERS_FILE).read_text()
    except OSError:
        return {}
    seen: dict[str, float] = {}
    for line in text.splitlines():
        name, _, when = line.partition(" ")
        try:
            seen[name] = float(when)
        except ValueError:
            continue  # not a line we wrote: skip it
    now = time.time()
    return {n: t for n, t in seen.items() if "@" in n and now - t < FORGET_AFTER}


def remembered(data_dir: str | os.PathLike[str] | None) -> list[str]:
    """The chat nodes this node saw (in its data directory), most recently seen first.

    Example:
        >>> remembered(None)
        []
    """
    seen = _read(data_dir)
    return sorted(seen, key=lambda n: -seen[n])


def _write(data_dir: str | os.PathLike[str], seen: dict[str, float]) -> None:
    path = Path(data_dir) / PEERS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{n} {t:.0f}\n" for n, t in sorted(seen.items())))
    os.replace(tmp, path)


def find_cluster(candidates: list[str], tick_time: float, wait: float,
                 say: Callable[[str], None]) -> list[str]:
    """Connect to the chat nodes among `candidates` that answer; returns those that did.

    Follows the rule of the module docstring: returns [] at once when no
    candidate can be running, and after `wait` seconds when some may be but none
    answers.
    """
    if not candidates:
        say("no other chat node known: serving alone (start the others with "
            f"--join {actornet.node()})")
        return []
    deadline = time.monotonic() + wait
    told = False
    while True:
        up = [n for n, answer in _ping_all(candidates, min(2.0, tick_time)) if answer == "pong"]
        if up:
            say(f"joined the cluster through {', '.join(up)}")
            return up
        states = {n: liveness.registered(n) for n in candidates}
        maybe = [n for n, running in states.items() if running is not False]
        if not maybe:
            say(f"none of the chat nodes it knows runs ({', '.join(candidates)}): "
                "serving alone")
            return []
        if time.monotonic() > deadline:
            say(f"{', '.join(maybe)} may be running but did not answer within {wait:.0f} s: "
                "serving alone; the histories are merged when the nodes meet")
            return []
        if not told:
            say(f"waiting for {', '.join(maybe)}: may be running (its port mapper lists it, "
                f"or cannot be reached) but does not answer; up to {wait:.0f} s "
                "(--wait-for-peers)")
            told = True
        time.sleep(tick_time / 2)  # the next try: a paused or cut-off node may come back


def _ping_all(nodes: list[str], timeout: float) -> list[tuple[str, str]]:
    """Ping every node at once (one that hangs costs `timeout`, not one each)."""
    me = actornet.self()
    for node in nodes:
        actornet.spawn(lambda n=node: actornet.send(me, ("pinged", n,
                                                         actornet.ping(n, timeout=timeout))))
    answers = []
    for _ in nodes:
        msg = actornet.receive(lambda m: isinstance(m, tuple) and m[0] == "pinged",
                               timeout=timeout + 10)
        answers.append((msg[1], msg[2]))
    return answers


class Peers(GenServer):
    """Remembers the chat nodes seen, and reconnects to those that are down."""

    def init(self, data_dir: str | None, tick_time: float = 4.0) -> None:
        self.data_dir = data_dir
        self.tick_time = tick_time
        self.seen = _read(data_dir)
        self.written = dict(self.seen)
        self.pinging: set[str] = set()
        actornet.monitor_nodes(True)
        self.ref, members = pg.monitor(SERVERS)
        self._note(members)
        self._arm()

    def handle_call(self, request: Any, from_: Any) -> Any:
        if request == ("known",):
            return sorted(self.seen)
        return ("error", f"unknown request {str(request)[:200]}")

    def handle_cast(self, request: Any) -> None:
        log.warning("chatty.peers: dropped an unexpected cast %.200r", request)

    def handle_info(self, msg: Any) -> None:
        match msg:
            case ("pg", ref, _, _, _) if ref == self.ref:
                self._note(pg.get_members(SERVERS))
            case ("reconnect", ref) if ref == self.timer:  # our timer's, not a copy's
                self._reconnect()
                self._arm()
            case ("pinged", node, _):
                self.pinging.discard(node)
            case ("nodeup" | "nodedown", _):
                pass
            case _:
                log.warning("chatty.peers: dropped an unexpected message %.200r", msg)

    def _arm(self) -> None:
        self.timer = actornet.make_ref()
        actornet.send_after(self.tick_time / 2, self.gen_pid, ("reconnect", self.timer))

    def _note(self, members: list[actornet.Pid]) -> None:
        """Chat servers in view: remember their nodes (written when the set changes, or
        at most once an hour for the times alone)."""
        me = actornet.node()
        now = time.time()
        for node in {p.node for p in members} - {me}:
            self.seen[node] = now
        if self.data_dir is None:
            return
        if set(self.seen) != set(self.written) or any(
                now - self.written.get(n, 0) > 3600 for n in self.seen):
            try:
                _write(self.data_dir, self.seen)
                self.written = dict(self.seen)
            except OSError as e:
                log.warning("chatty: cannot remember the chat nodes in %s: %s",
                            self.data_dir, e)

    def _reconnect(self) -> None:
        """Try each remembered chat node that is down (in the background: a hung one
        makes a connection attempt wait for its handshake timeout)."""
        up = set(actornet.nodes()) | {actornet.node()}
        me = self.gen_pid
        for node in sorted(set(self.seen) - up - self.pinging):
            self.pinging.add(node)
            actornet.spawn(lambda n=node: actornet.send(me, ("pinged", n,
                                                             actornet.ping(n, timeout=2.0))))
