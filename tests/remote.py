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
        if isinstance(request, tuple) and request[0] == "reply_after":
            import time

            time.sleep(request[1])  # a reply that comes late: the caller may be gone
            return "late reply"
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


def wait_forever() -> None:
    actornet.receive(lambda m: False)


def pg_members(group: Any, count: int, scope: str | None = None) -> list[actornet.Pid]:
    """Start `count` processes on this node that each join `group` and stay."""
    from actornet import pg

    me = actornet.self()

    def member() -> None:
        pg.join(group, actornet.self(), scope)
        actornet.send(me, ("joined", actornet.self()))
        wait_forever()

    pids = [actornet.spawn(member) for _ in range(count)]
    for _ in pids:
        actornet.receive(lambda m: m[0] == "joined", timeout=10)
    return pids


def pg_get_members(group: Any, scope: str | None = None) -> list[actornet.Pid]:
    from actornet import pg

    return pg.get_members(group, scope)


def start_scope(scope: str) -> actornet.Pid:
    from actornet import pg

    return pg.start(scope)


def global_register_new(name: Any) -> tuple[str, actornet.Pid]:
    """Spawn a process here and try to register it globally as `name`."""
    from actornet import global_

    pid = actornet.spawn(wait_forever)
    return global_.register_name(name, pid), pid


def global_whereis(name: Any) -> actornet.Pid | None:
    from actornet import global_

    return global_.whereis_name(name)


def start_global_counter(name: str) -> actornet.Pid:
    return Counter.start(0, name=("global", name))


class _Watcher(actornet.GenServer):
    """Monitors a pid and remembers why it died."""

    def init(self, pid: actornet.Pid) -> None:
        self.reason: Any = None
        actornet.monitor(pid)

    def handle_info(self, msg: Any) -> None:
        if msg[0] == "DOWN":
            self.reason = msg[4]

    def handle_call(self, request: Any, from_: Any) -> Any:
        return self.reason


def global_register_watched(name: str) -> tuple[str, actornet.Pid]:
    """Like `global_register_new`, with a local watcher named ``watch_<name>``."""
    from actornet import global_

    pid = actornet.spawn(wait_forever)
    _Watcher.start(pid, name=f"watch_{name}")
    return global_.register_name(name, pid), pid


def watched_reason(name: str) -> Any:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reason = actornet.call(f"watch_{name}", "get")
        if reason is not None:
            return reason
        time.sleep(0.01)
    return None


def start_echo_on(node: str, name: str) -> actornet.Pid:
    """From this node, start an echo on `node` (a hop the caller may not have)."""
    return actornet.rpc.call(node, start_echo, name)  # type: ignore[no-any-return]


def notify_then_sleep(report_to: actornet.Pid, seconds: float) -> str:
    """Tell `report_to` it runs, then take `seconds` to return."""
    import time

    actornet.send(report_to, "running")
    time.sleep(seconds)
    return "slept"


def ordered_sink(report_to: actornet.Pid) -> None:
    """Receive ``("m", i, blob)`` until ``("end", n)``; report ``("sink", n, seqs_ok)``:
    whether exactly 0..n-1 arrived, in order."""
    expected = 0
    in_order = True
    while True:
        msg = actornet.receive()
        if msg[0] == "end":
            actornet.send(report_to, ("sink", msg[1], in_order and expected == msg[1]))
            return
        in_order = in_order and msg[1] == expected
        expected += 1


def ping_without_descriptors(addresses: list[str]) -> list[str]:
    """Ping each of `addresses` while this process has no file descriptor left (EMFILE),
    then give the descriptors back; return the answers. A node that dials with no
    descriptor to make its socket with must fail that attempt, not its I/O thread."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers: list[int] = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 8, hard))
        while True:  # fill every free descriptor below the limit, holes included
            try:
                fillers.append(os.open("/dev/null", os.O_RDONLY))
            except OSError:
                break
        return [actornet.ping(address, timeout=20.0) for address in addresses]
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def pg_recorders(group: Any, count: int, report_to: actornet.Pid) -> list[actornet.Pid]:
    """Start `count` members of `group` on this node; each records what it receives until
    ``"end"``, then sends ``("record", self(), received)`` to `report_to`."""
    from actornet import pg

    me = actornet.self()

    def member() -> None:
        pg.join(group, actornet.self())
        actornet.send(me, ("joined", actornet.self()))
        received = []
        while (msg := actornet.receive()) != "end":
            received.append(msg)
        actornet.send(report_to, ("record", actornet.self(), received))

    pids = [actornet.spawn(member) for _ in range(count)]
    for _ in pids:
        actornet.receive(lambda m: m[0] == "joined", timeout=10)
    return pids


def pg_discover_versions(node: str, versions: list[Any]) -> list[str]:
    """Send the default pg scope on `node` one discover per version (None: the first
    protocol's shape, with none), then call it, which answers once it has read them all;
    the ``sync`` answers that came first, by the node that sent them."""
    from actornet import pg

    me = actornet.self()
    for version in versions:
        msg = ("discover", me) if version is None else ("discover", me, version)
        actornet.send((pg.DEFAULT_SCOPE, node), msg)
    actornet.call((pg.DEFAULT_SCOPE, node), ("demonitor", actornet.make_ref()))
    synced = []
    while True:
        try:
            synced.append(actornet.receive(lambda m: m[0] == "sync", timeout=0)[1].node)
        except actornet.Timeout:
            return synced
