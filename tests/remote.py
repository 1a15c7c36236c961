"""Functions the tests run on child nodes (importable there as ``tests.remote``)."""

from __future__ import annotations

from typing import Any

import actornet


def echo() -> None:
    """Reply ``("echo", x)`` to ``(sender, x)``, forever."""
    while True:
        sender, payload = actornet.receive()
        actornet.send(sender, ("echo", payload))


def start_echo(name: str) -> actornet.Pid:
    pid = actornet.spawn(echo)
    actornet.register(name, pid)
    return pid


def collector(report_to: actornet.Pid, count: int) -> None:
    """Receive `count` messages, then send them all back in arrival order."""
    got = [actornet.receive() for _ in range(count)]
    actornet.send(report_to, ("collected", got))


class Counter(actornet.GenServer):
    def init(self, start: int = 0) -> None:
        self.n = start

    def handle_call(self, request: Any, from_: Any) -> Any:
        if request == "get":
            return self.n
        if request == "crash":
            raise ValueError("remote crash")
        if request == "hang":
            actornet.receive(lambda m: False)
        if request == "node":
            return actornet.node()
        return ("unknown", request)

    def handle_cast(self, request: Any) -> None:
        self.n += 1


def start_counter(name: str, start: int = 0) -> actornet.Pid:
    return Counter.start(start, name=name)


def raise_value_error(text: str) -> None:
    raise ValueError(text)


def add(a: int, b: int) -> int:
    return a + b


def slow_consumer(report_to: actornet.Pid, count: int) -> None:
    """Receive `count` messages slowly at first, then report their order."""
    import time

    got = []
    for i in range(count):
        if i < 50:
            time.sleep(0.002)  # a slow start lets the sender's backlog build up
        got.append(actornet.receive())
    actornet.send(report_to, ("slow_done", got))


def linked_waiter(peer: actornet.Pid) -> None:
    actornet.link(peer)
    actornet.receive(lambda m: False)
