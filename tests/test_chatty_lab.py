"""The Chatty lab (examples/chatty/lab), end to end, and its open questions.

Multi-node tests run the lab's own program, ``python -m examples.chatty.lab``,
one OS process per node as in the lab's terminals, typing into clients through
their stdin and waiting (with deadlines) for the lines they print. The nodes
find each other through a private port mapper on a free port; every child is
SIGKILLed at the end of its test, and dies with the test runner
(PR_SET_PDEATHSIG). In-process tests answer the ordering and concurrency
questions on one node, and the doc's copies of the lab files are checked.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import actornet
from actornet import Pid, epmd
from examples.chatty.lab import bench, server, server2

from .cluster import _die_with_parent, free_port
from .helpers import pump_lines

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "porting-the-chatty-lab.md"
COOKIE = "secret"
WAIT = 15.0  # seconds: the longest any single expected line may take


# -- children: the lab's CLI, one node per process --------------------------------------------


class Child:
    """One ``python -m examples.chatty.lab ...`` process, its stdin and its output lines."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "examples.chatty.lab", *args, "--cookie", COOKIE],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1, preexec_fn=_die_with_parent,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        assert self.proc.stdout is not None
        threading.Thread(target=pump_lines, daemon=True, args=(
            self.proc.stdout, self.lines, self._changed,
            lambda: self.lines.append("<eof>"))).start()

    def expect(self, line: str, timeout: float = WAIT) -> None:
        """Wait until this exact line has been printed."""
        with self._changed:
            if not self._changed.wait_for(lambda: line in self.lines, timeout):
                raise AssertionError(f"{self.args} never printed {line!r}; it printed:\n"
                                     + "\n".join(self.lines))

    def output(self) -> list[str]:
        """The lines printed so far (startup line and end-of-output marker excluded)."""
        with self._changed:
            return [x for x in self.lines if x != "<eof>" and " myserver started" not in x]

    def say(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait_exit(self, timeout: float = WAIT) -> int:
        code = self.proc.wait(timeout)
        self.expect("<eof>")
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


class Lab:
    """Starts the lab's nodes; kills them all at the end."""

    def __init__(self, epmd_port: int) -> None:
        self.env = {**os.environ, "ACTORNET_EPMD_PORT": str(epmd_port), "PYTHONPATH": str(ROOT)}
        self.env.pop("ACTORNET_COOKIE", None)
        self.children: list[Child] = []

    def start(self, *args: str) -> Child:
        child = Child(list(args), self.env)
        self.children.append(child)
        return child

    def server(self, name: str) -> Child:
        s = self.start("server", "--name", name)
        s.expect(f"server {name}: myserver started")
        return s

    def server2(self, name: str, via: str | None = None) -> Child:
        if via is None:
            s = self.start("server2", "--name", name)
            s.expect(f"server2 {name}: first server")
        else:
            s = self.start("server2", "--name", name, "--via", via)
            s.expect(f"server2 {name}: joined via {via}")
        return s

    def client(self, server: str, name: str, node: str) -> Child:
        c = self.start("client", "--server", server, "--name", name, "--node", node)
        c.expect(f"[JOIN] {name} joined")  # the server's join ack
        return c

    def close(self) -> None:
        for child in self.children:
            with contextlib.suppress(Exception):  # best effort: kill every child
                child.kill()


@pytest.fixture(scope="module")
def epmd_port() -> Iterator[int]:
    """A port mapper for this module's nodes only, on a free port; killed at the end."""
    port = free_port()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "actornet.epmd", "--port", str(port), "--address", "127.0.0.1"],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent,
    )
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                epmd.names(epmd_port=port, timeout=1.0)
                break
            except epmd.EpmdError:
                assert daemon.poll() is None and time.monotonic() < deadline, "no port mapper"
                time.sleep(0.05)
        yield port
    finally:
        with contextlib.suppress(Exception):
            epmd.kill(epmd_port=port)
        daemon.kill()
        daemon.wait(10)


@pytest.fixture
def lab(epmd_port: int) -> Iterator[Lab]:
    lab = Lab(epmd_port)
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture(autouse=True)
def node() -> Iterator[None]:
    """Overrides the suite's local node: each test here picks `local` or `dist`."""
    yield None


@pytest.fixture
def local() -> Iterator[actornet.Node]:
    """One plain node in the test process, for the in-process tests."""
    n = actornet.Node("lab@localhost")
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture
def dist(epmd_port: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[actornet.Node]:
    """A named node in the test process that finds the lab's nodes by name."""
    monkeypatch.setenv("ACTORNET_EPMD_PORT", str(epmd_port))
    n = actornet.start_node(f"t{os.getpid()}@127.0.0.1", cookie=COOKIE, port=0)
    try:
        yield n
    finally:
        n.stop()


# -- part 1: one server -------------------------------------------------------------------------


def test_part1_transcript(lab: Lab) -> None:
    """The seed report's Figure 1, typed into the clients' stdin."""
    s = lab.server("s@127.0.0.1")
    alice = lab.client("s@127.0.0.1", "Alice", "c1@127.0.0.1")
    bob = lab.client("s@127.0.0.1", "Bob", "c2@127.0.0.1")
    alice.expect("[JOIN] Bob joined")
    alice.say("hello!")
    bob.expect("[Alice] hello!")
    bob.say("hello Alice. I'm Bob!")
    alice.expect("[Bob] hello Alice. I'm Bob!")
    alice.say("Nice to meet you, but I got to go! :(")
    alice.say("exit")
    assert alice.wait_exit() == 0
    bob.expect("[EXIT] Alice left")
    bob.say("/quit")
    assert bob.wait_exit() == 0
    s.expect("[EXIT] Bob")

    assert s.output() == [
        "[JOIN] Alice",
        "[JOIN] Bob",
        '"Alice": hello!',
        "\"Bob\": hello Alice. I'm Bob!",
        '"Alice": Nice to meet you, but I got to go! :(',
        "[EXIT] Alice",
        "[EXIT] Bob",
    ]
    assert alice.output() == [
        "[JOIN] Alice joined",
        "[JOIN] Bob joined",
        "[Alice] hello!",
        "[Bob] hello Alice. I'm Bob!",
        "[Alice] Nice to meet you, but I got to go! :(",
        "[EXIT] Alice left",
    ]
    assert bob.output() == [
        "[JOIN] Bob joined",
        "[Alice] hello!",
        "[Bob] hello Alice. I'm Bob!",
        "[Alice] Nice to meet you, but I got to go! :(",
        "[EXIT] Alice left",
        "[EXIT] Bob left",
    ]
    s.proc.terminate()
    assert s.wait_exit() == 0


def test_part1_client_node_killed_then_server_killed(lab: Lab) -> None:
    """A client's node dies: the server's link turns it into an EXIT. Then the server dies."""
    s = lab.server("sk@127.0.0.1")
    carol = lab.client("sk@127.0.0.1", "Carol", "kc1@127.0.0.1")
    dave = lab.client("sk@127.0.0.1", "Dave", "kc2@127.0.0.1")
    carol.expect("[JOIN] Dave joined")
    t0 = time.monotonic()
    carol.kill()  # SIGKILL: the node goes without a word
    s.expect("[EXIT] Carol")
    dave.expect("[EXIT] Carol left")
    assert time.monotonic() - t0 < 10
    dave.say("anyone?")
    dave.expect("[Dave] anyone?")
    s.expect('"Dave": anyone?')
    assert s.output() == ["[JOIN] Carol", "[JOIN] Dave", "[EXIT] Carol", '"Dave": anyone?']

    # The single point of failure: with the server gone, the client process
    # (linked to it) ends with noconnection; what Dave types goes nowhere.
    s.kill()
    dave.say("hello?")
    dave.close_stdin()  # end of input leaves, as in client.erl
    assert dave.wait_exit() == 0
    assert dave.output() == ["[JOIN] Dave joined", "[EXIT] Carol left", "[Dave] anyone?"]


def test_part1_many_senders_on_many_nodes(lab: Lab) -> None:
    """Alice and Bob (two nodes) each type 30 lines at once: the lines interleave, each
    sender's stay in order, and all clients (three nodes) see the one order of the server."""
    lab.server("so@127.0.0.1")
    clients = [lab.client("so@127.0.0.1", n, f"o{n}@127.0.0.1") for n in ("A", "B", "C")]
    clients[0].expect("[JOIN] C joined")
    clients[1].expect("[JOIN] C joined")
    for name, c in zip("AB", clients[:2], strict=True):
        assert c.proc.stdin is not None
        c.proc.stdin.write("".join(f"{name}{i}\n" for i in range(30)))  # buffered ...
    for c in clients[:2]:
        c.proc.stdin.flush()  # type: ignore[union-attr]  # ... and sent at once
    views = []
    for c in clients:
        c.expect("[A] A29")
        c.expect("[B] B29")
        views.append([x for x in c.output() if x.startswith(("[A]", "[B]"))])
    assert views[0] == views[1] == views[2]
    for who in "AB":
        assert [x for x in views[0] if x.startswith(f"[{who}]")] == [
            f"[{who}] {who}{i}" for i in range(30)]
    print("one interleaving:", " ".join(x.split()[1] for x in views[0]))


def test_part1_without_the_port_mapper(lab: Lab) -> None:
    """--port N: a node listens on N without the port mapper; reach it as name@host:N."""
    port = free_port()
    s = lab.start("server", "--name", "sp@127.0.0.1", "--port", str(port))
    s.expect("server sp@127.0.0.1: myserver started")
    erin = lab.start("client", "--server", f"sp@127.0.0.1:{port}", "--name", "Erin",
                     "--node", "pc@127.0.0.1", "--port", str(free_port()))
    erin.say("hi")
    erin.close_stdin()
    assert erin.wait_exit() == 0
    assert erin.output() == ["[JOIN] Erin joined", "[Erin] hi", "[EXIT] Erin left"]
    assert epmd.names(epmd_port=int(lab.env["ACTORNET_EPMD_PORT"])) == []


# -- part 2: several servers ------------------------------------------------------------------


def test_part2_relay_servers_and_a_server_failure(lab: Lab, dist: actornet.Node) -> None:
    s1 = lab.server2("s1@127.0.0.1")
    s2 = lab.server2("s2@127.0.0.1", via="s1@127.0.0.1")
    s1.expect("[SERVERS] s2@127.0.0.1 s1@127.0.0.1")
    alice = lab.client("s1@127.0.0.1", "Alice", "p1@127.0.0.1")
    bob = lab.client("s2@127.0.0.1", "Bob", "p2@127.0.0.1")
    carol = lab.client("s2@127.0.0.1", "Carol", "p3@127.0.0.1")
    alice.expect("[JOIN] Carol joined")  # joins relayed from s2 to s1's client
    alice.say("Hello?")
    bob.expect("[Alice] Hello?")
    bob.say("Hi Alice!")
    alice.expect("[Bob] Hi Alice!")
    carol.expect("[Bob] Hi Alice!")
    s1.expect('"Alice": Hello?')
    s2.expect('"Bob": Hi Alice!')
    assert '"Bob": Hi Alice!' not in s1.output(), "a server prints its own clients only"

    # servers(): both servers list both
    nodes = ["s1@127.0.0.1", "s2@127.0.0.1"]
    for n in nodes:
        assert sorted(s.node for s in server2.servers(("myserver", n))) == nodes

    # SIGKILL s1: s2 drops it from its list (the lab's version leaked it) ...
    s1.kill()
    s2.expect("[DOWN] server on s1@127.0.0.1: noconnection")
    s2.expect("[SERVERS] s2@127.0.0.1")
    assert [s.node for s in server2.servers(("myserver", "s2@127.0.0.1"))] == ["s2@127.0.0.1"]
    # ... and s2's clients keep chatting
    bob.say("still here?")
    carol.expect("[Bob] still here?")
    carol.say("yes!")
    bob.expect("[Carol] yes!")
    # s1's client lost its server (its process died with the link); others never hear of it
    alice.say("anyone?")
    alice.say("exit")
    assert alice.wait_exit() == 0
    assert alice.output()[-1] == "[Bob] Hi Alice!"
    assert "[EXIT] Alice left" not in bob.output() + carol.output()


# -- in-process: the open questions on one node -------------------------------------------------


def recorder(server: Any, name: str, report_to: Pid, count: int) -> None:
    """A client that joins, collects chat lines ("msg", from_, text) until it has `count` of
    them or one says "end", and reports them. Joins and exits of others are skipped."""
    me = actornet.self()
    actornet.send(server, ("client_join_req", name, me))
    actornet.send(report_to, ("asked", name))
    actornet.receive(lambda m: m == ("join", name), timeout=WAIT)
    actornet.send(report_to, ("joined", name))
    got: list[Any] = []
    while len(got) < count:
        msg = actornet.receive(timeout=WAIT)
        if msg[0] == "msg":
            if msg[2] == "end":
                break
            got.append(msg)
    actornet.send(report_to, ("got", name, got))


def leaver(server: Any, name: str, report_to: Pid, after: int) -> None:
    """A client that leaves once it has seen message number `after`; reports what it saw."""
    me = actornet.self()
    actornet.send(server, ("client_join_req", name, me))
    got = [actornet.receive(timeout=WAIT)]
    actornet.send(report_to, ("joined", name))
    while got[-1] != ("msg", "src", after):
        got.append(actornet.receive(timeout=WAIT))
    actornet.send(server, ("client_leave_req", name, me))
    actornet.send(report_to, ("asked", name))
    while got[-1] != ("exit", name):
        got.append(actornet.receive(timeout=WAIT))
    actornet.send(report_to, ("got", name, got))


def down_of(ref: actornet.Ref) -> Any:
    return lambda m: m[:2] == ("DOWN", ref)


def stop_servers(*servers: Pid) -> None:
    """Stop servers and wait until they are gone, so that none prints after the test."""
    for pid in servers:
        ref = actornet.monitor(pid)
        actornet.send(pid, "stop")
        actornet.receive(down_of(ref), timeout=WAIT)


def joined(name: str) -> None:
    actornet.receive(lambda m: m == ("joined", name), timeout=WAIT)


def asked(name: str) -> None:
    actornet.receive(lambda m: m == ("asked", name), timeout=WAIT)


def reported(name: str) -> list[Any]:
    return actornet.receive(lambda m: m[:2] == ("got", name), timeout=WAIT)[2]  # type: ignore[no-any-return]


def test_join_and_leave_during_a_broadcast_are_serialised(local: actornet.Node) -> None:
    """A join and a leave that arrive while the server works through a stream of messages
    are handled between two of them: the joiner sees its ack then a gapless tail of the
    stream, the leaver a gapless head then its exit."""
    me = actornet.self()
    pid = server.start()
    total, half = 400, 200
    actornet.spawn(recorder, "myserver", "early", me, total)
    actornet.spawn(leaver, "myserver", "leaver", me, total // 4)
    joined("early")
    joined("leaver")
    for i in range(total):
        if i == half:  # both requests are queued before message `half`, wherever the server is
            actornet.spawn(recorder, "myserver", "late", me, total)
            asked("late")
            asked("leaver")
        actornet.send("myserver", ("send", "src", i))
    actornet.send("myserver", ("send", "src", "end"))
    stream = [("msg", "src", i) for i in range(total)]
    assert reported("early") == stream
    late = reported("late")
    assert late == stream[late[0][2]:] and late[0][2] <= half, "a gapless tail"
    head = reported("leaver")
    assert head[0] == ("join", "leaver") and head[-1] == ("exit", "leaver")
    seen = [m for m in head if m[0] == "msg"]
    assert seen == stream[:len(seen)] and total // 4 < len(seen) <= half, "a gapless head"
    stop_servers(pid)


def test_one_server_gives_every_client_the_same_order(local: actornet.Node) -> None:
    """Part 1: two senders interleave freely, but every client sees the server's one order,
    and each sender's lines in the order sent."""
    me = actornet.self()
    pid = server.start()
    per_sender, names = 150, ["r1", "r2", "r3"]
    for n in names:
        actornet.spawn(recorder, "myserver", n, me, 2 * per_sender)
        joined(n)
    go = threading.Event()

    def sender(who: str) -> None:
        go.wait(WAIT)
        for i in range(per_sender):
            actornet.send("myserver", ("send", who, i))

    for who in ("A", "B"):
        actornet.spawn(sender, who)
    go.set()
    views = [reported(n) for n in names]
    assert views[0] == views[1] == views[2]
    for who in ("A", "B"):
        assert [i for _, w, i in views[0] if w == who] == list(range(per_sender))
    stop_servers(pid)


class Gate(io.TextIOBase):
    """A stdout whose writes wait while the gate is shut: it pauses a server in its print."""

    def __init__(self) -> None:
        self._open = False
        self._waiting: set[int] = set()
        self._changed = threading.Condition()

    def write(self, text: str) -> int:
        with self._changed:
            self._waiting.add(threading.get_ident())
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._open, WAIT)
            self._waiting.discard(threading.get_ident())
        return len(text)

    def wait_paused(self, count: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self._waiting) >= count, WAIT)

    def open(self) -> None:
        with self._changed:
            self._open = True
            self._changed.notify_all()


def two_servers() -> tuple[Pid, Pid]:
    """s1, and s2 joined through it (unregistered: both live on this one node)."""
    s1 = actornet.spawn(server2.init, None)
    s2 = actornet.spawn(server2.init, s1)
    assert set(server2.servers(s2)) == set(server2.servers(s1)) == {s1, s2}
    return s1, s2


def test_two_servers_show_two_clients_different_orders(
    local: actornet.Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Part 2 has no global order: Alice (on s1) and Bob (on s2) speak at once, and each
    server's client sees its own server's line first. Both servers are paused in the print
    of their own client's line, so both lines are taken before either is relayed."""
    me = actornet.self()
    s1, s2 = two_servers()
    actornet.spawn(recorder, s1, "on_s1", me, 2)
    actornet.spawn(recorder, s2, "on_s2", me, 2)
    joined("on_s1")
    joined("on_s2")
    gate = Gate()
    monkeypatch.setattr(sys, "stdout", gate)
    actornet.send(s1, ("send", "Alice", "hi from s1"))
    actornet.send(s2, ("send", "Bob", "hi from s2"))
    gate.wait_paused(2)
    gate.open()
    alice, bob = ("msg", "Alice", "hi from s1"), ("msg", "Bob", "hi from s2")
    assert reported("on_s1") == [alice, bob]
    assert reported("on_s2") == [bob, alice]
    stop_servers(s1, s2)


def test_concurrent_joins_through_one_server_agree(local: actornet.Node) -> None:
    """Joins through the same server are serialised by its mailbox: every list ends equal."""
    s1 = actornet.spawn(server2.init, None)
    others = [actornet.spawn(server2.init, s1) for _ in range(8)]
    everyone = {s1, *others}
    for s in others:
        server2.servers(s)  # answered once s has joined
    deadline = time.monotonic() + WAIT
    while any(set(server2.servers(s)) != everyone for s in everyone):
        assert time.monotonic() < deadline, "the server lists never converged"
    stop_servers(*everyone)


def test_concurrent_joins_through_two_servers_can_lose_a_server(
    local: actornet.Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """update_servers replaces the whole list, so two joins handled at once by two servers
    overwrite each other: s1 forgets s3, which joined through it, and s2 forgets s4."""
    s1, s2 = two_servers()
    nobody = actornet.spawn(lambda: None)
    s3 = actornet.spawn(server2.init, nobody)  # waits for any update_servers ...
    s4 = actornet.spawn(server2.init, nobody)
    gate = Gate()
    monkeypatch.setattr(sys, "stdout", gate)
    actornet.send(s1, ("send", "x", "pause s1"))
    actornet.send(s2, ("send", "y", "pause s2"))
    gate.wait_paused(2)
    actornet.send(s1, ("server_join_req", s3))  # ... and joins through s1 (we ask for it)
    actornet.send(s2, ("server_join_req", s4))  # while s4 joins through s2
    gate.open()
    server2.servers(s1)  # once answered, each has handled its join and sent its update,
    server2.servers(s2)  # so the next answers come after the other's update
    assert set(server2.servers(s1)) == {s4, s1, s2}, "s1 lost s3"
    assert set(server2.servers(s2)) == {s3, s1, s2}, "s2 lost s4"
    assert set(server2.servers(s3)) == {s3, s1, s2}
    assert set(server2.servers(s4)) == {s4, s1, s2}
    stop_servers(s1, s2, s3, s4)


def test_bench_runs(local: actornet.Node, capsys: pytest.CaptureFixture[str]) -> None:
    """The measurement behind the doc's scaling answer still runs (numbers not checked)."""
    assert bench.run(5, 20, None) > 0
    bench.table([1, 3], 10, None)
    assert "deliveries/s" in capsys.readouterr().out


# -- the doc shows the lab files as they are -----------------------------------------------------

_FENCE = re.compile(r"^```python\n(# (examples/chatty/lab/\w+\.py)\n.*?)^```$",
                    re.DOTALL | re.MULTILINE)


def test_doc_shows_every_lab_file_exactly() -> None:
    shown = {m.group(2): m.group(1) for m in _FENCE.finditer(DOC.read_text(encoding="utf-8"))}
    assert set(shown) == {"examples/chatty/lab/server.py", "examples/chatty/lab/server2.py",
                          "examples/chatty/lab/client.py"}
    for rel, body in shown.items():
        assert body == (ROOT / rel).read_text(encoding="utf-8"), f"{DOC.name}: {rel} differs"
