"""Helpers for tests: bounded waits on conditions, never fixed sleeps."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import actornet


def wait_until(cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.005,
               what: str = "condition") -> Any:
    """Poll `cond` until it returns a truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def pump_lines(stream: Iterable[str], lines: list[str], changed: threading.Condition,
               at_eof: Callable[[], None]) -> None:
    """Append each line of `stream` to `lines`, notifying `changed`; at its end call
    `at_eof` under the same lock, and notify once more. Run it in a daemon thread."""
    for line in stream:
        with changed:
            lines.append(line.rstrip("\n"))
            changed.notify_all()
    with changed:
        at_eof()
        changed.notify_all()


def nothing_left(node: actornet.Node) -> bool:
    """True if `node`'s calling process has no message waiting; else fails naming it."""
    try:
        msg = node.receive(timeout=0)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected message {msg!r}")
