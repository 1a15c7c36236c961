"""The chat service (``python -m examples.chatty``), end to end through its CLI.

Every node and every client is an OS process of its own, started as a user
would start it (``python -m examples.chatty node ...`` / ``... client ...``).
Plain-mode clients are driven through their stdin, one command per line, and
we wait (always with a deadline) for the lines they print in the format
documented in `examples.chatty.client`. One interactive client runs under a
pseudo-terminal, to check that incoming messages do not garble the line
being typed.

The three chat nodes (the third with ``--history 2``) are shared by the whole
module; each test uses its own nicknames and room names. Everything finds
everything through a private port mapper on a free port. Every child is
SIGKILLed at the end (of its test, or of the module for the nodes), and dies
with the test runner if that dies first (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ast
import calendar
import contextlib
import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from actornet import epmd

from .cluster import _die_with_parent, free_port  # children die with the runner
from .helpers import pump_lines

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
COOKIE = "chatty-test-cookie"
WAIT = 15.0  # seconds: the longest any one expected line may take
GRACE = 10.0  # seconds members of a dead chat node have to resume (examples.chatty.room)
TAG = f"{os.getpid() % 100000}"  # keeps node names apart from another run's


# -- children ------------------------------------------------------------------------------------


class Child:
    """One ``python -m examples.chatty ...`` process: its stdin, its stdout lines."""

    def __init__(self, label: str, args: list[str], env: dict[str, str]) -> None:
        self.label = label
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "examples.chatty", *args], cwd=ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            bufsize=1, preexec_fn=_die_with_parent,
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.eof = False
        self._changed = threading.Condition()
        assert self.proc.stdout is not None
        threading.Thread(target=pump_lines, daemon=True, args=(
            self.proc.stdout, self.lines, self._changed, self._at_eof)).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()

    def _at_eof(self) -> None:
        self.eof = True

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.errors.append(line.rstrip("\n"))

    def report(self) -> str:
        with self._changed:
            out = "\n".join(f"  {x}" for x in self.lines)
        err = "\n".join(f"  {x}" for x in self.errors[-20:])
        return f"--- {self.label} stdout:\n{out}\n--- {self.label} stderr (tail):\n{err}"

    def mark(self) -> int:
        """The number of lines printed so far: a starting point for `expect`."""
        with self._changed:
            return len(self.lines)

    def expect(self, pattern: str, since: int = 0, timeout: float = WAIT) -> re.Match[str]:
        """Wait for a line (from line number `since` on) that `pattern` matches in full."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[since:]:
                    m = rx.fullmatch(line)
                    if m:
                        return m
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.eof:
                    raise AssertionError(f"{self.label} never printed /{pattern}/ "
                                         f"(after line {since})\n{self.report()}")
                self._changed.wait(remaining)

    def index(self, pattern: str, since: int = 0, timeout: float = WAIT) -> int:
        """Like `expect`, but the line number of the matching line."""
        m = self.expect(pattern, since, timeout)
        with self._changed:
            return self.lines.index(m.string, since)

    def between(self, start: int, end: int) -> list[str]:
        with self._changed:
            return self.lines[start:end]

    def say(self, line: str) -> int:
        """Type `line`; returns the mark from before it, to expect its answer from."""
        mark = self.mark()
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return mark

    def ask(self, line: str, pattern: str) -> re.Match[str]:
        """Type `line` and wait for the line (printed after it) that `pattern` matches."""
        return self.expect(pattern, since=self.say(line))

    def wait_exit(self, timeout: float = WAIT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.label} did not exit\n{self.report()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        with contextlib.suppress(OSError):  # a broken pipe: it is dead anyway
            assert self.proc.stdin is not None
            self.proc.stdin.close()


class Service:
    """The module's port mapper and chat nodes, and a factory of clients."""

    def __init__(self, epmd_port: int) -> None:
        self.epmd_port = epmd_port
        self.data = tempfile.TemporaryDirectory(prefix="chatty-service-")
        self.env = {**os.environ, "ACTORNET_EPMD_PORT": str(epmd_port),
                    "ACTORNET_COOKIE": COOKIE, "PYTHONUNBUFFERED": "1",
                    "CHATTY_DATA_DIR": self.data.name}
        self.env.pop("PROMPT_TOOLKIT_NO_CPR", None)
        self.nodes: list[str] = []
        self.node_procs: list[Child] = []
        self.children: list[Child] = []

    def start(self, label: str, *args: str) -> Child:
        child = Child(label, list(args), self.env)
        self.children.append(child)
        return child

    def start_node(self, short: str, *extra: str) -> Child:
        join = ["--join", self.nodes[0]] if self.nodes else []
        return self.start(short, "node", "--name", short, "--host", HOST, *join, *extra)

    def clients(self, *specs: tuple[str, int]) -> list[Child]:
        """Start clients (nick, index of the chat node) at once; wait until all connected."""
        started = [self.start(nick, "client", "--server", self.nodes[i], "--nick", nick)
                   for nick, i in specs]
        for child, (nick, i) in zip(started, specs, strict=True):
            child.expect(rf"CONNECTED {nick} {re.escape(self.nodes[i])}")
        return started

    def client(self, nick: str, node: int) -> Child:
        return self.clients((nick, node))[0]

    def kill_all(self, children: list[Child]) -> None:
        for child in children:
            with contextlib.suppress(Exception):  # best effort: kill every child
                child.kill()


@pytest.fixture(autouse=True)
def node() -> Iterator[None]:
    """Overrides the suite's in-process node: everything here runs in child processes."""
    yield None


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    """Port mapper + chatty1, chatty2 (joins 1), chatty3 (joins 1, ``--history 2``)."""
    port = free_port()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "actornet.epmd", "--port", str(port), "--address", HOST],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent,
    )
    svc = Service(port)
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                epmd.names(epmd_port=port, timeout=1.0)
                break
            except epmd.EpmdError:
                assert daemon.poll() is None and time.monotonic() < deadline, "no port mapper"
                time.sleep(0.05)
        first = svc.start_node(f"chatty1t{TAG}")
        first.expect(rf"chatty node chatty1t{TAG}@{HOST} ready on tcp://\S+")
        svc.nodes.append(f"chatty1t{TAG}@{HOST}")
        svc.node_procs.append(first)
        others = [svc.start_node(f"chatty2t{TAG}"),
                  svc.start_node(f"chatty3t{TAG}", "--history", "2")]
        for i, proc in enumerate(others, start=2):
            proc.expect(rf"chatty node chatty{i}t{TAG}@{HOST} ready on tcp://\S+")
            svc.nodes.append(f"chatty{i}t{TAG}@{HOST}")
            svc.node_procs.append(proc)
        yield svc
    finally:
        svc.kill_all(svc.children)
        with contextlib.suppress(Exception):  # it may be gone already
            epmd.kill(epmd_port=port, timeout=2.0)
        daemon.kill()
        daemon.wait(10)
        svc.data.cleanup()


@pytest.fixture
def chat(service: Service) -> Iterator[Service]:
    """The shared service; the clients started during the test are killed after it."""
    before = len(service.children)
    try:
        yield service
    finally:
        service.kill_all(service.children[before:])


def join_all(room: str, *clients: Child) -> None:
    """Each client joins `room`, in turn; each sees its own JOIN, and who is there."""
    for c in clients:
        mark = c.say(f"/join {room}")
        c.expect(f"OK joined {room}", since=mark)
        c.expect(f"JOIN {room} {c.label}", since=mark)
        c.expect(rf"WHO {room} \S+ .*\b{c.label}\b.*", since=mark)


def say(client: Child, room: str, text: str) -> int:
    """`client` says `text` in its current room `room`; returns the message's id."""
    return int(client.ask(text, rf"OK sent {room} (\d+)").group(1))


TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def untimed(lines: list[str]) -> list[str]:
    """HIST lines without their time field (checked to be a UTC time of today or so)."""
    out = []
    for line in lines:
        m = re.fullmatch(rf"(HIST \S+ \d+ \S+ \d+) ({TIME}) (.*)", line)
        assert m, f"not a HIST line with a time: {line!r}"
        when = calendar.timegm(time.strptime(m.group(2), "%Y-%m-%dT%H:%M:%SZ"))
        assert abs(when - time.time()) < 3600, line
        out.append(f"{m.group(1)} {m.group(3)}")
    return out


def history(client: Child, command: str) -> list[str]:
    """The HIST lines (without their time) a /history command prints, up to its OK line."""
    mark = client.say(command)
    end = client.index(r"OK history \S+ \d+", since=mark)
    lines = [x for x in client.between(mark, end) if x.startswith("HIST ")]
    assert client.between(end, end + 1)[0].endswith(f" {len(lines)}")  # the count of lines
    return untimed(lines)


# -- commands ------------------------------------------------------------------------------------


def test_messages_cross_nodes_in_one_order(chat: Service) -> None:
    ann, bob, cat = chat.clients(("ann", 0), ("bob", 1), ("cat", 2))
    join_all("cross", ann, bob, cat)
    first = say(ann, "cross", "hello from node one")
    for c in (ann, bob, cat):  # room, id, sender, likes, text
        c.expect(f"MSG cross {first} ann 0 hello from node one")
    second = say(bob, "cross", "and back from node two")
    third = say(cat, "cross", "node three: spaces   kept")
    assert first < second < third
    for c in (ann, bob, cat):
        c.expect(f"MSG cross {third} cat 0 node three: spaces   kept")
    orders = [[x for x in c.between(0, c.mark()) if x.startswith("MSG cross")]
              for c in (ann, bob, cat)]
    assert orders[0] == orders[1] == orders[2] and len(orders[0]) == 3
    assert ann.ask("/servers", "SERVERS .*").group(0) == "SERVERS " + " ".join(sorted(chat.nodes))
    # the nodes log the service's events
    chat.node_procs[0].expect(r"\[JOIN\] ann \(ann-\w+@127\.0\.0\.1\)")
    chat.node_procs[1].expect(r"\[#cross \d+\] join cat .*")
    ann.ask("/quit", "BYE")
    assert ann.wait_exit() == 0
    chat.node_procs[0].expect(r"\[EXIT\] ann \(quit\)")
    for c in (bob, cat):
        c.expect("LEAVE cross ann")


def test_direct_messages_across_nodes(chat: Service) -> None:
    dee, eve = chat.clients(("dee", 0), ("eve", 2))
    dee.ask("/msg eve psst, only for you", "OK sent to eve")
    eve.expect("DM dee psst, only for you")
    eve.ask("/msg dee got it", "OK sent to dee")
    dee.expect("DM eve got it")
    assert not [x for x in dee.between(0, dee.mark()) if x.startswith("DM dee")]


def test_history_on_join_and_history_command(chat: Service) -> None:
    fay, gus, hal = chat.clients(("fay", 0), ("gus", 1), ("hal", 2))
    join_all("hist", fay)
    ids = [say(fay, "hist", f"message {i}") for i in range(1, 5)]
    # chatty3 runs with --history 2: exactly the last two, before the joiner's own JOIN
    mark = hal.say("/join hist")
    end = hal.index("JOIN hist hal", since=mark)
    assert untimed([x for x in hal.between(mark, end) if x.startswith("HIST")]) == [
        f"HIST hist {ids[2]} fay 0 message 3", f"HIST hist {ids[3]} fay 0 message 4"]
    # chatty2 has the default (50): all four
    mark = gus.say("/join hist")
    end = gus.index("JOIN hist gus", since=mark)
    assert untimed([x for x in gus.between(mark, end) if x.startswith("HIST")]) == [
        f"HIST hist {i} fay 0 message {n}" for n, i in enumerate(ids, start=1)]
    # /history N: the last N messages of the current room, whatever the node
    assert history(fay, "/history 2") == [f"HIST hist {ids[2]} fay 0 message 3",
                                         f"HIST hist {ids[3]} fay 0 message 4"]
    assert history(hal, "/history 3") == [f"HIST hist {i} fay 0 message {n}"
                                         for n, i in list(enumerate(ids, start=1))[1:]]
    assert len(history(gus, "/history")) == 4
    assert history(gus, "/history 1") == [f"HIST hist {ids[3]} fay 0 message 4"]
    # never silence: a count below 1 is an error, not an empty answer
    for bad in ("0", "-3"):
        gus.ask(f"/history {bad}", rf"ERROR /history N: N must be .* 1 or more, not {bad}")
    gus.ask("/history many", r"ERROR usage: /history \[N\].*")


def test_likes_are_counted_per_message_and_equal_on_every_node(chat: Service) -> None:
    ivy, jon, kim = chat.clients(("ivy", 0), ("jon", 1), ("kim", 2))
    join_all("likes", ivy, jon, kim)
    liked = say(ivy, "likes", "like me")
    other = say(jon, "likes", "not this one")
    jon.ask(f"/like {liked}", f"OK liked {liked}")
    kim.ask(f"/like {liked}", f"OK liked {liked}")
    for c in (ivy, jon, kim):  # each like says who liked
        c.expect(f"LIKES likes {liked} 1 jon like")
        c.expect(f"LIKES likes {liked} 2 kim like")
    mark = [c.mark() for c in (ivy, jon, kim)]
    # twice by one user counts once, and is neither numbered nor shown again
    jon.ask(f"/like {liked}", f"ERROR you like message #{liked} in likes already")
    kim.ask(f"/unlike {liked}", f"OK unliked {liked}")
    kim.ask(f"/unlike {liked}", f"ERROR you do not like message #{liked} in likes")
    for c, m in zip((ivy, jon, kim), mark, strict=True):
        c.expect(f"LIKES likes {liked} 1 kim unlike", since=m)
    # each node's own replica answers /history: the counts agree everywhere
    for c in (ivy, jon, kim):
        assert history(c, "/history 2") == [f"HIST likes {liked} ivy 1 like me",
                                            f"HIST likes {other} jon 0 not this one"]
    for c, m in zip((ivy, jon, kim), mark, strict=True):
        assert [x for x in c.between(m, c.mark()) if x.startswith("LIKES")] == [
            f"LIKES likes {liked} 1 kim unlike"], "a repeated like or unlike is not shown"
    ivy.ask("/like 99999", "ERROR no message #99999 in room likes")
    # /like ID ROOM likes a message of another room than the current one
    join_all("likes-b", ivy)
    ivy.ask(f"/like {other} likes", f"OK liked {other}")
    jon.expect(f"LIKES likes {other} 1 ivy like")


def test_who_rooms_and_leave(chat: Service) -> None:
    leo, mia = chat.clients(("leo", 0), ("mia", 1))
    join_all("wr-a", leo, mia)
    join_all("wr-b", mia)  # mia's current room is now wr-b
    assert mia.ask("/who wr-a", "WHO wr-a .*").group(0) == "WHO wr-a leo leo mia"
    assert mia.ask("/who", "WHO .*").group(0) == "WHO wr-b mia mia"
    listing = leo.ask("/rooms", "ROOMS .*").group(0).split()[1:]
    rooms = dict(entry.split("=", 1) for entry in listing)
    assert rooms["wr-a"] == "leo,mia" and rooms["wr-b"] == "mia"
    mark = leo.mark()
    mia.ask("/leave wr-a", "OK left wr-a")
    leo.expect("LEAVE wr-a mia", since=mark)
    assert leo.ask("/who wr-a", "WHO .*").group(0) == "WHO wr-a leo leo"
    mia.ask("/leave", "OK left wr-b")  # the current room
    mia.ask("anyone?", "ERROR join a room first: /join ROOM")
    listing = leo.ask("/rooms", "ROOMS .*").group(0).split()[1:]
    assert dict(entry.split("=", 1) for entry in listing)["wr-a"] == "leo"


def test_kick_by_the_owner_only(chat: Service) -> None:
    ned, ola, pat = chat.clients(("ned", 0), ("ola", 1), ("pat", 2))
    join_all("kick", ned, ola, pat)  # ned created the room: ned owns it
    ola.ask("/kick pat", r"ERROR only the owner of kick \(ned\) can kick")
    ned.ask("/kick pat", "OK kicked pat from kick")
    for c in (ned, ola, pat):
        c.expect("KICK kick pat ned")
    assert ola.ask("/who kick", "WHO .*").group(0) == "WHO kick ned ned ola"
    pat.ask("still here?", "ERROR join a room first: /join ROOM")  # kicked: no current room
    # /kick NICK ROOM works from another current room
    join_all("kick-other", ned)
    ned.ask("/kick ola kick", "OK kicked ola from kick")
    ola.expect("KICK kick ola ned")
    ned.ask("/kick nobody kick", "ERROR nobody is not in room kick")


def test_nick_rename_shows_in_rooms_and_frees_the_old_nick(chat: Service) -> None:
    quin, rex = chat.clients(("quin", 0), ("rex", 1))
    join_all("nick", quin, rex)
    rex.ask("/nick quin", "ERROR nickname quin is taken")
    rex.ask("/nick 9rex", "ERROR invalid nickname '9rex': .*")
    mark = quin.mark()
    rex.ask("/nick rexy", "OK you are now rexy")
    msg = say(rex, "nick", "new name, same me")  # at once: the rename comes first everywhere
    quin.expect("NICK nick rex rexy", since=mark)
    assert quin.ask("/who", "WHO .*").group(0) == "WHO nick quin quin rexy"
    quin.expect(f"MSG nick {msg} rexy 0 new name, same me")
    quin.ask("/msg rexy hi rexy", "OK sent to rexy")
    rex.expect("DM quin hi rexy")
    quin.ask("/msg rex hi?", "ERROR no user named rex")
    # the old nickname is free again, cluster-wide
    rex2 = chat.client("rex", 2)
    rex2.ask("/servers", "SERVERS .*")
    # the owner renamed keeps the room
    quin.ask("/nick quinn", "OK you are now quinn")
    assert rex.ask("/who nick", "WHO .*").group(0) == "WHO nick quinn quinn rexy"


def test_bad_input_gets_a_clear_reply(chat: Service) -> None:
    sam, tom = chat.clients(("sam", 0), ("tom", 1))
    # nickname taken (on another node) or invalid: the client says why and exits 1
    dup = chat.start("sam", "client", "--server", chat.nodes[1], "--nick", "sam")
    dup.expect("ERROR nickname sam is taken")
    assert dup.wait_exit() == 1
    for bad in ("9lives", "has space", "x!", "n" * 21):
        c = chat.start(bad, "client", "--server", chat.nodes[0], "--nick", bad)
        c.expect(rf"ERROR invalid nickname '{re.escape(bad)}': .*")
        assert c.wait_exit() == 1
    sam.ask("hello?", "ERROR join a room first: /join ROOM")
    sam.ask("/frobnicate now", r"ERROR unknown command /frobnicate \(try /help\)")
    for room in ("Capital", "bad!", "-dash", "r" * 31):
        sam.ask(f"/join {room}", f"ERROR invalid room name '{re.escape(room)}'.*")
    # only /join creates a room
    sam.ask("/leave nosuchroom", "ERROR no room named nosuchroom")
    sam.ask("/kick tom nosuchroom", "ERROR no room named nosuchroom")
    sam.ask("/who nosuchroom", "ERROR no room named nosuchroom")
    assert "nosuchroom=" not in sam.ask("/rooms", "ROOMS.*").group(0).split()
    join_all("bad", sam, tom)
    sam.ask("x" * 2001, "ERROR message too long: 2001 characters, the limit is 2000")
    big = say(sam, "bad", "y" * 2000)  # the limit itself is fine
    tom.expect(f"MSG bad {big} sam 0 {'y' * 2000}")
    sam.ask("/msg nobody are you there?", "ERROR no user named nobody")
    tom.ask("/kick sam", r"ERROR only the owner of bad \(sam\) can kick")
    sam.ask("/like notanumber", "ERROR usage: /like ID.*")
    sam.ask("/msg tom", "ERROR usage: /msg NICK TEXT.*")
    # and the client still works after all that
    assert tom.ask("/who", "WHO .*").group(0) == "WHO bad sam sam tom"


def test_control_characters_are_refused_in_text_and_names(chat: Service) -> None:
    una, val = chat.clients(("una", 0), ("val", 1))
    join_all("ctl", una, val)
    # ESC (a terminal escape), VT, NEL and LINE SEPARATOR (str.splitlines breaks there);
    # CR cannot come through a plain client's stdin, which splits lines at it
    for ch in ("\x1b", "\x0b", "\x85", "\u2028"):
        una.ask(f"red{ch}[31m alert", rf"ERROR message contains a control character "
                                       rf"\(U\+{ord(ch):04X}\); send plain text")
        una.ask(f"/msg val a{ch}b", rf"ERROR message contains a control character "
                                     rf"\(U\+{ord(ch):04X}\).*")
    ok = say(una, "ctl", "a tab\tis fine")
    val.expect(f"MSG ctl {ok} una 0 a tab\tis fine")
    assert not [x for x in val.between(0, val.mark()) if "alert" in x or x.startswith("DM")]
    # a name is matched in full: a trailing newline is not "ben" plus nothing
    bad = chat.start("badnick", "client", "--server", chat.nodes[0], "--nick", "ben\n")
    bad.expect(r"ERROR invalid nickname 'ben\\n': .*")
    assert bad.wait_exit() == 1


def test_commands_that_need_a_room_say_so_and_a_second_join_says_so(chat: Service) -> None:
    wil, xan = chat.clients(("wil", 0), ("xan", 1))
    for command in ("/who", "/leave", "/history", "/history 3", "/kick xan", "/like 1"):
        wil.ask(command, "ERROR join a room first: /join ROOM")
    join_all("twice", wil, xan)
    join_all("twice-b", wil)
    mark = wil.say("/join twice")  # already in it: it becomes the current room again
    wil.expect("OK already in twice", since=mark)
    assert wil.ask("/who", "WHO .*").group(0) == "WHO twice wil wil xan"
    end = wil.mark()
    assert not [x for x in wil.between(mark, end) if x.startswith("JOIN")]


def test_ownership_passes_on_and_a_reused_nickname_gets_no_rights(chat: Service) -> None:
    own, yul, zoe = chat.clients(("own", 0), ("yul", 1), ("zoe", 2))
    join_all("owned", own, yul, zoe)  # own created it; yul has been there longest after
    assert zoe.expect("WHO owned .*").group(0) == "WHO owned own own yul zoe"
    own.ask("/quit", "BYE")
    for c in (yul, zoe):
        c.expect("LEAVE owned own")
        c.expect("OWNER owned yul")
    # someone else takes the nickname the owner had: it brings no right over the room
    impostor = chat.client("own", 2)
    join_all("owned", impostor)
    impostor.ask("/kick zoe", r"ERROR only the owner of owned \(yul\) can kick")
    assert zoe.ask("/who", "WHO .*").group(0) == "WHO owned yul own yul zoe"
    yul.ask("/kick own", "OK kicked own from owned")
    zoe.expect("KICK owned own yul")


def test_cookie_from_the_flag_else_the_environment_else_the_file(chat: Service) -> None:
    """For a node and a client alike: --cookie, else $ACTORNET_COOKIE, else ~/.actornet.cookie."""
    homes = tempfile.TemporaryDirectory(prefix="chatty-cookies-")
    try:
        home = {}
        for name in ("alpha", "beta"):
            home[name] = Path(homes.name) / name
            home[name].mkdir()
            (home[name] / ".actornet.cookie").write_text(name + "\n")
            (home[name] / ".actornet.cookie").chmod(0o600)

        def env(cookie: str | None, home_of: str) -> dict[str, str]:
            e = {k: v for k, v in chat.env.items() if k != "ACTORNET_COOKIE"}
            e["HOME"] = str(home[home_of])
            if cookie is not None:
                e["ACTORNET_COOKIE"] = cookie
            return e

        def start(label: str, e: dict[str, str], *args: str) -> Child:
            child = Child(label, list(args), e)
            chat.children.append(child)
            return child

        nodes = {  # the cookie each node ends up with, and how it got it
            "alpha": (None, "alpha", []),  # the file
            "beta": ("beta", "alpha", []),  # the environment over the file
            "gamma": ("beta", "alpha", ["--cookie", "gamma"]),  # the flag over both
        }
        for cookie, (env_cookie, home_of, flag) in nodes.items():
            n = start(f"ck-{cookie}", env(env_cookie, home_of), "node", "--name",
                      f"ck{cookie}t{TAG}", "--host", HOST, "--data-dir", "none", *flag)
            n.expect(rf"chatty node ck{cookie}t{TAG}@{HOST} ready on .*")
        clients = [  # node, how the client gets its cookie, whether it gets in
            ("alpha", None, "alpha", [], True),  # the file
            ("alpha", "alpha", "beta", [], True),  # the environment over the file
            ("alpha", "beta", "alpha", [], False),
            ("alpha", "beta", "beta", ["--cookie", "alpha"], True),  # the flag over both
            ("alpha", "alpha", "alpha", ["--cookie", "beta"], False),
            ("beta", None, "beta", [], True),
            ("beta", None, "alpha", [], False),
            ("gamma", "gamma", "alpha", [], True),
            ("gamma", "beta", "beta", [], False),
        ]
        started = []
        for k, (node, env_cookie, home_of, flag, works) in enumerate(clients):
            c = start(f"ck{k}", env(env_cookie, home_of), "client", "--server",
                      f"ck{node}t{TAG}@{HOST}", "--nick", f"ck{k}", *flag)
            started.append((c, node, works))
        for c, node, works in started:
            if works:
                c.expect(rf"CONNECTED {c.label} ck{node}t{TAG}@{HOST}")
            else:
                c.expect(rf"ERROR cannot reach chat node ck{node}t{TAG}@{HOST}")
                assert c.wait_exit() == 1
    finally:
        homes.cleanup()


def test_docs_show_the_plain_protocol_of_the_client() -> None:
    """docs/chatty.md copies the protocol table of client.py's docstring, line for line."""
    from examples.chatty import client

    doc = (ROOT / "docs" / "chatty.md").read_text()
    table = client.__doc__.split("format (", 1)[1].split("::", 1)[1]
    lines = [x.strip() for x in table.strip().splitlines()]
    assert lines and lines[0].startswith("CONNECTED")
    missing = [x for x in lines if f"    {x}" not in doc]
    assert not missing, f"docs/chatty.md lacks these protocol lines: {missing}"


# -- failures ------------------------------------------------------------------------------------


def test_client_killed_is_seen_as_leave_and_frees_its_nick(chat: Service) -> None:
    uma, vic, wes = chat.clients(("uma", 0), ("vic", 1), ("wes", 2))
    join_all("gone", uma, vic, wes)
    vic.proc.send_signal(signal.SIGKILL)  # the client's own node, without a word
    uma.expect("LEAVE gone vic")
    wes.expect("LEAVE gone vic")
    chat.node_procs[1].expect(r"\[EXIT\] vic \(connection lost.*")
    assert uma.ask("/who", "WHO .*").group(0) == "WHO gone uma uma wes"
    chat.client("vic", 0)  # the nickname is free again


def test_chat_node_killed_its_clients_resume_or_leave_the_others_carry_on(chat: Service) -> None:
    extra = chat.start_node(f"chatty4t{TAG}")
    extra.expect(rf"chatty node chatty4t{TAG}@{HOST} ready on tcp://\S+")
    chat.nodes.append(f"chatty4t{TAG}@{HOST}")
    try:
        xia, yan, zed, amy = chat.clients(("xia", 0), ("yan", 2), ("zed", 3), ("amy", 3))
        join_all("crash", xia, yan, zed, amy)
        assert xia.ask("/servers", "SERVERS .*").group(0).split()[1:] == sorted(chat.nodes)
        amy.proc.send_signal(signal.SIGSTOP)  # frozen: amy cannot resume elsewhere
        extra.proc.send_signal(signal.SIGKILL)
        # zed's client resumes through a surviving node, keeping nick and room
        zed.expect("RECONNECTED ({})".format("|".join(re.escape(n) for n in chat.nodes[:3])))
        xia.expect("MOVED crash zed")
        yan.expect("MOVED crash zed")
        msg = say(zed, "crash", "zed again, through another node")
        # one status line said it all: no log record on the client's stdout or stderr
        assert not [x for x in zed.errors + zed.lines if "WARNING" in x or "INFO" in x], \
            zed.report()
        xia.expect(f"MSG crash {msg} zed 0 zed again, through another node")
        assert xia.ask("/servers", "SERVERS .*").group(0).split()[1:] == sorted(chat.nodes[:3])
        # amy never comes back: after the grace period she leaves the room
        amy.kill()
        xia.expect("LEAVE crash amy", timeout=GRACE + WAIT)
        yan.expect("LEAVE crash amy")
        assert yan.ask("/who", "WHO .*").group(0) == "WHO crash xia xia yan zed"
        msg = say(yan, "crash", "the others carry on")
        for c in (xia, zed):
            c.expect(f"MSG crash {msg} yan 0 the others carry on")
    finally:
        chat.nodes.pop()


KILL_CHAT_SERVER = """
import sys
import actornet
with actornet.start_node(sys.argv[2], hidden=True):
    pid = actornet.rpc.call(sys.argv[1], actornet.whereis, "chatty")
    actornet.rpc.call(sys.argv[1], actornet.exit, pid, "kill")
    print("killed", pid, flush=True)
"""


def test_chat_server_crash_its_clients_resume_through_its_restart(chat: Service) -> None:
    """The chat server process dies (its node lives on): its supervisor restarts it, empty;
    its clients notice and resume through it (or another node), keeping nick and rooms."""
    abe, bea = chat.clients(("abe", 1), ("bea", 2))
    join_all("crashed", abe, bea)
    killer = subprocess.run(
        [sys.executable, "-c", KILL_CHAT_SERVER, chat.nodes[1], f"killer{TAG}@{HOST}"],
        cwd=ROOT, env=chat.env, capture_output=True, text=True, timeout=WAIT,
        preexec_fn=_die_with_parent)
    assert killer.returncode == 0 and "killed" in killer.stdout, killer
    abe.expect("RECONNECTED .*")
    bea.expect("MOVED crashed abe")
    msg = say(abe, "crashed", "still abe, still here")
    bea.expect(f"MSG crashed {msg} abe 0 still abe, still here")
    abe.ask("/msg bea and DMs too", "OK sent to bea")
    bea.expect("DM abe and DMs too")
    # a new client of that node is served too
    cid = chat.client("cid", 1)
    join_all("crashed", cid)
    assert cid.ask("/who", "WHO .*").group(0) == "WHO crashed abe abe bea cid"


def test_client_tries_each_server_given_and_connect_switches(chat: Service) -> None:
    nowhere = f"nowhere{TAG}@{HOST}"
    dot = chat.start("dot", "client", "--server", nowhere, "--server", chat.nodes[1],
                     "--nick", "dot")
    dot.expect(rf"CONNECTED dot {re.escape(chat.nodes[1])}")
    eli = chat.client("eli", 0)
    join_all("switch", dot, eli)
    dot.ask(f"/connect {chat.nodes[2]}", rf"OK connected to {re.escape(chat.nodes[2])}")
    eli.expect("MOVED switch dot")
    chat.node_procs[1].expect(r"\[EXIT\] dot \(moved to another chat node\)")
    msg = say(dot, "switch", "through node three now")
    eli.expect(f"MSG switch {msg} dot 0 through node three now")
    dot.ask(f"/connect {nowhere}", f"ERROR cannot reach chat node {re.escape(nowhere)}")
    # leaving through the new node leaves for good: the old one holds nothing of dot
    dot.ask("/quit", "BYE")
    eli.expect("LEAVE switch dot")
    assert eli.ask("/who", "WHO .*").group(0) == "WHO switch eli eli"


def test_connect_by_address_to_the_current_node_keeps_us_and_failover_still_works(
        chat: Service) -> None:
    """``/connect`` takes a node's ``name@host:port`` form too; the client compares and
    keeps plain names (a nodedown carries one), so it neither detaches from the node it
    is on nor misses that node going down."""
    extra = chat.start_node(f"chatty6t{TAG}")
    port6 = extra.expect(rf"chatty node chatty6t{TAG}@{HOST} ready on tcp://\S+:(\d+)").group(1)
    port0 = chat.node_procs[0].expect(
        rf"chatty node {re.escape(chat.nodes[0])} ready on tcp://\S+:(\d+)").group(1)
    gil, hoa = chat.clients(("gil", 0), ("hoa", 1))
    join_all("byaddr", gil, hoa)
    gil.ask(f"/connect {chat.nodes[0]}:{port0}",
            rf"OK connected to {re.escape(chat.nodes[0])} already")
    msg = say(gil, "byaddr", "still connected")
    hoa.expect(f"MSG byaddr {msg} gil 0 still connected")
    # through another node given by address: we switch, and follow it if it goes down
    gil.ask(f"/connect chatty6t{TAG}@{HOST}:{port6}", rf"OK connected to chatty6t{TAG}@{HOST}")
    chat.node_procs[0].expect(r"\[EXIT\] gil \(moved to another chat node\)")
    hoa.expect("MOVED byaddr gil")
    mark = gil.mark()
    extra.proc.send_signal(signal.SIGKILL)
    gil.expect("RECONNECTED .*", since=mark)
    msg = say(gil, "byaddr", "after the failover")
    hoa.expect(f"MSG byaddr {msg} gil 0 after the failover")
    assert not [x for x in gil.between(0, gil.mark()) if x.startswith("ERROR")]


PROBE_RESUME = """
import ast
import sys
import actornet
with actornet.start_node(sys.argv[2], hidden=True):
    for request in ast.literal_eval(sys.argv[3]):
        try:
            print(repr(actornet.call(("chatty", sys.argv[1]), request, timeout=10)), flush=True)
        except Exception as e:  # the test reads what happened, whatever it was
            print(repr(("raised", type(e).__name__, str(e))), flush=True)
"""


def test_a_malformed_resume_gets_an_error_and_the_server_serves_on(chat: Service) -> None:
    """A resume (sent by any node of the cluster) is checked like every other request: a
    room name that is no room name never becomes a file, a malformed list of rooms never
    crashes the chat server."""
    ida, jax = chat.clients(("ida", 1), ("jax", 2))
    join_all("probed", ida, jax)
    bad = [  # the request, and what the error says
        (("resume", "rzz", [("../x", 0)]), "invalid room name '../x'"),
        (("resume", "rzz", [("../../../tmp/x", 0)]), "invalid room name"),
        (("resume", "rzz", "probed"), "expected a list of (room, seq) pairs"),
        (("resume", "rzz", [("probed",)]), "expected a (room, seq) pair"),
        (("resume", "rzz", [("probed", "7")]), "must be a number, 0 or more, not '7'"),
        (("resume", "rzz", [("probed", True)]), "must be a number, 0 or more, not True"),
        (("resume", "rzz", [("probed", -1)]), "must be a number, 0 or more, not -1"),
        (("resume", "9rzz", []), "invalid nickname '9rzz'"),
        (("resume", ["rzz"], []), "invalid nickname"),
        (("resume", "rzz"), "resume takes 2 arguments"),
    ]
    requests = [r for r, _ in bad] + [("resume", "rzz", [])]
    probe = subprocess.run(
        [sys.executable, "-c", PROBE_RESUME, chat.nodes[1], f"probe{TAG}@{HOST}",
         repr(requests)], cwd=ROOT, env=chat.env, capture_output=True, text=True,
        timeout=WAIT * 2, preexec_fn=_die_with_parent)
    replies = [ast.literal_eval(x) for x in probe.stdout.splitlines()]
    assert len(replies) == len(requests), probe
    for (request, why), reply in zip(bad, replies, strict=False):
        assert reply[0] == "error" and why in reply[1], (request, reply)
    assert replies[-1] == ("ok", chat.nodes[1])  # and a well-formed one is served
    data = Path(chat.data.name) / chat.nodes[1]
    assert not (data / "x.log").exists()  # where rooms/../x.log would have been
    # the chat server never crashed: its client was not moved, and is served as before
    msg = say(ida, "probed", "still here")
    jax.expect(f"MSG probed {msg} ida 0 still here")
    assert not [x for x in ida.between(0, ida.mark()) if x.startswith("RECONNECTED")]


MISS_A_LEAVE = """
import sys
import actornet
from actornet import global_
node, me, room, nick = sys.argv[1:5]
with actornet.start_node(me, hidden=True):
    leader = actornet.rpc.call(node, global_.whereis_name, ("chatty.room", room))
    other = actornet.Pid(me, 424242, 1)  # no such process: nobody hears of what follows
    # `nick`'s client is replaced by another (which its own client is not told), which leaves
    for event in (("move", nick, other, "nowhere", 0), ("leave", nick, other)):
        print(actornet.call(leader, ("publish", event), timeout=10), flush=True)
"""


def test_join_and_leave_recover_from_a_leave_the_client_never_heard(chat: Service) -> None:
    """A client can miss its own leave (a resume skipped a room, whose grace then ran out).
    The chat server, not the client's list of rooms, decides whether ``/join`` joins, and
    a ``/leave`` the server says is moot makes the client forget the room too."""
    kai, lou = chat.clients(("kai", 0), ("lou", 1))
    join_all("missed", kai, lou)

    def miss_a_leave() -> None:
        run = subprocess.run(
            [sys.executable, "-c", MISS_A_LEAVE, chat.nodes[0], f"miss{TAG}@{HOST}", "missed",
             "lou"], cwd=ROOT, env=chat.env, capture_output=True, text=True, timeout=WAIT,
            preexec_fn=_die_with_parent)
        assert run.returncode == 0 and run.stdout.count("('ok',") == 2, run
        assert kai.ask("/who missed", "WHO .*").group(0) == "WHO missed kai kai"

    miss_a_leave()
    lou.ask("hello?", "ERROR lou is not in room missed")
    mark = lou.say("/join missed")  # lou's client still lists the room: it joins anyway
    lou.expect("OK joined missed", since=mark)
    lou.expect("JOIN missed lou", since=mark)
    assert lou.expect("WHO .*", since=mark).group(0) == "WHO missed kai kai lou"
    msg = say(lou, "missed", "back in")
    kai.expect(f"MSG missed {msg} lou 0 back in")
    miss_a_leave()
    lou.ask("/leave", "ERROR lou is not in room missed")
    lou.ask("anyone?", "ERROR join a room first: /join ROOM")  # the room is forgotten
    join_all("missed", lou)


def test_an_empty_room_has_no_owner_and_no_owner_line(chat: Service) -> None:
    moe = chat.client("moe", 2)
    join_all("emptied", moe)
    mark = moe.say("/leave")
    moe.expect("OK left emptied", since=mark)
    moe.expect("LEAVE emptied moe", since=mark)
    assert moe.ask("/who emptied", "WHO .*").group(0) == "WHO emptied -"
    assert not [x for x in moe.between(mark, moe.mark()) if x.startswith("OWNER")]
    join_all("emptied", moe)  # the next to join owns it
    assert moe.ask("/who", "WHO .*").group(0) == "WHO emptied moe moe"


def test_an_owner_passed_on_by_a_move_is_shown() -> None:
    from examples.chatty.client import render

    assert render(("room_move", "r", 5, "ann", "bob", 99), plain=True) == "MOVED r ann\nOWNER r bob"
    assert render(("room_move", "r", 5, "ann", None, 99), plain=True) == "MOVED r ann"
    assert render(("room_move", "r", 5, "ann", 99), plain=True) == "MOVED r ann"  # older nodes
    assert render(("room_leave", "r", 5, "ann", None, 99), plain=True) == "LEAVE r ann"


# -- the demo ------------------------------------------------------------------------------------


def test_demo_runs_and_says_every_step_passed() -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ACTORNET_EPMD_PORT", "ACTORNET_COOKIE")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.chatty", "demo"], cwd=ROOT, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=_die_with_parent,
    )
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # the demo's clean-up kills its own children
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        raise AssertionError(f"the demo did not finish in 60 s:\n{out}") from None
    assert proc.returncode == 0, out
    assert "chatty demo: every step showed what it should" in out, out
    # each step's lines under its own heading (a line of one step never under the next)
    steps = {}
    for section in out.split("\n== ")[1:]:
        heading, _, body = section.partition("\n")
        steps[heading] = [re.sub(r"^ +", "", x) for x in body.splitlines() if " | " in x]

    def under(words: str, *lines: str) -> None:
        (heading,) = [h for h in steps if words in h]
        for line in lines:
            assert [x for x in steps[heading] if re.fullmatch(line, x)], (heading, line, out)

    under("everyone joins", *(f"{c} \\| JOIN lobby carol" for c in ("alice", "bob", "carol")))
    under("/nick", *(f"{c} \\| NICK lobby bob bobby" for c in ("alice", "bob", "carol")))
    under("dave joins later", r"dave \| HIST lobby \d+ alice 2 \S+ hello from chatty1")
    under("/history", r"dave \| OK history lobby 2")
    under("/leave", r"bob \| OK left side", r"bob \| CURRENT lobby",
          r"dave \| KICK lobby dave alice")
    under("killed with SIGKILL", r"carol \| DISCONNECTED chatty3@127\.0\.0\.1 node down",
          r"carol \| RECONNECTED chatty[12]@127\.0\.0\.1", r"alice \| MOVED lobby carol")
    under("restarts as it was first started",
          r"erin \| HIST lobby \d+ bobby 0 \S+ said while chatty3 is down",
          r"erin \| SERVERS chatty1@\S+ chatty2@\S+ chatty3@\S+")
    joins = [x for h, lines in steps.items() for x in lines if x.endswith("JOIN lobby carol")]
    assert len(joins) == 3, "shown once each, in their step"
    assert "WARNING" not in out and "Traceback" not in out, "no log record in a transcript"


# -- the interactive client ----------------------------------------------------------------------


class Screen:
    """Just enough of a terminal to replay what prompt_toolkit writes.

    Rows grow downwards without limit (no scrolling region); handles printable
    characters, CR, LF, BS and the CSI sequences the prompt uses (cursor
    left/right/up/down, erase to the end of the line/screen); other escape
    sequences (modes, colours) change nothing here.
    """

    CSI = re.compile(r"\x1b\[([?0-9;]*)([A-Za-z@])")

    def __init__(self, data: str) -> None:
        self.rows: list[list[str]] = [[]]
        self.row = self.col = 0
        i = 0
        while i < len(data):
            ch = data[i]
            if ch == "\x1b":
                m = self.CSI.match(data, i)
                if m:
                    self._csi(m.group(1), m.group(2))
                    i = m.end()
                else:
                    i += 2  # ESC and one character (ESC =, ESC > ...)
                continue
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self.row += 1
            elif ch == "\b":
                self.col = max(0, self.col - 1)
            elif ch >= " ":
                self._put(ch)
            i += 1

    def _line(self) -> list[str]:
        while len(self.rows) <= self.row:
            self.rows.append([])
        line = self.rows[self.row]
        while len(line) < self.col:
            line.append(" ")
        return line

    def _put(self, ch: str) -> None:
        line = self._line()
        if self.col < len(line):
            line[self.col] = ch
        else:
            line.append(ch)
        self.col += 1

    def _csi(self, params: str, final: str) -> None:
        if params.startswith("?"):
            return
        n = int(params.split(";")[0] or 1) if final in "ABCD" else int(params or 0)
        if final == "D":
            self.col = max(0, self.col - n)
        elif final == "C":
            self.col += n
        elif final == "A":
            self.row = max(0, self.row - n)
        elif final == "B":
            self.row += n
        elif final in "JK":
            del self._line()[self.col:]
            if final == "J":
                del self.rows[self.row + 1:]

    def text(self) -> list[str]:
        return ["".join(r).rstrip() for r in self.rows]


class Pty:
    """A client in interactive mode, on a pseudo-terminal of 100 x 30."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "examples.chatty", *args], cwd=ROOT,
            env={**env, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"},
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        os.close(slave)
        self.master = master
        self.data = b""
        self._changed = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.5)
            except (OSError, ValueError):  # closed by `kill`
                return
            if not ready:
                if self.proc.poll() is not None:
                    return
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not chunk:
                return
            with self._changed:
                self.data += chunk
                self._changed.notify_all()

    def output(self) -> str:
        with self._changed:
            return self.data.decode("utf-8", "replace")

    def wait_for(self, text: str, since: int = 0, timeout: float = WAIT) -> int:
        """Wait until `text` appears in the raw output after byte `since`; its end offset."""
        needle = text.encode()
        with self._changed:
            ok = self._changed.wait_for(lambda: needle in self.data[since:], timeout)
            if not ok:
                raise AssertionError(f"the terminal never showed {text!r}; it showed:\n"
                                     + "\n".join(Screen(self.output()).text()))
            return self.data.index(needle, since) + len(needle)

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        os.close(self.master)


def test_interactive_client_keeps_the_line_being_typed(chat: Service) -> None:
    extra = chat.start_node(f"chatty5t{TAG}")
    extra.expect(rf"chatty node chatty5t{TAG}@{HOST} ready on tcp://\S+")
    tty = Pty(["client", "--server", chat.nodes[0], "--nick", "ttyuser"], chat.env)
    try:
        at = tty.wait_for("connected to")
        at = tty.wait_for("->", since=at)  # the prompt
        tty.type("/join tty\r")
        at = tty.wait_for("[#tty] ttyuser joined", since=at)
        at = tty.wait_for("->", since=at)
        tty.type("half a li")
        at = tty.wait_for("half a li", since=at)
        other = chat.start("other", "client", "--server", f"chatty5t{TAG}@{HOST}",
                           "--nick", "other")
        other.expect("CONNECTED .*")
        join_all("tty", other)
        msg = say(other, "tty", "an incoming message")
        at = tty.wait_for(f"[#tty {msg} ", since=at)  # then the time, HH:MM
        at = tty.wait_for("] other: an incoming message", since=at)
        at = tty.wait_for("-> half a li", since=at)  # the prompt and the typed text, redrawn
        other.ask("/msg ttyuser a direct one", "OK sent to ttyuser")
        at = tty.wait_for("[DM from other] a direct one", since=at)
        # other's chat node dies: the terminal client's node logs that a peer is down,
        # and other's client resumes elsewhere; neither may garble the typed line
        extra.proc.send_signal(signal.SIGKILL)
        other.expect("RECONNECTED .*")
        at = tty.wait_for("[#tty] other reconnected through another node", since=at)
        tty.wait_for("-> half a li", since=at)
        screen = Screen(tty.output()).text()
        for line in ("[DM from other] a direct one",
                     "[#tty] other reconnected through another node"):
            assert line in screen, screen
        shown = rf"\[#tty {msg} \d\d:\d\d\] other: an incoming message"
        assert [x for x in screen if re.fullmatch(shown, x)], screen
        assert [x for x in screen if "half a li" in x] == ["-> half a li"], screen
        assert [x for x in screen if x][-1] == "-> half a li", screen
        # the typed characters were kept: finishing the line sends all of it
        mark = other.mark()
        tty.type("ne\r")
        other.expect(r"MSG tty \d+ ttyuser 0 half a line", since=mark)
        tty.type("/quit\r")
        tty.wait_for("* bye")
        assert tty.proc.wait(WAIT) == 0
    finally:
        tty.kill()


def test_commands_check_their_words_and_help_lists_every_command(chat: Service) -> None:
    ana = chat.client("ana", 0)
    for line, usage in (("/nick has space", "/nick NEW"), ("/join a b", "/join ROOM"),
                        ("/unlike", r"/unlike ID \[ROOM\]"), ("/like", r"/like ID \[ROOM\]"),
                        ("/like x", r"/like ID \[ROOM\]"), ("/servers now", "/servers"),
                        ("/quit now", "/quit"), ("/history 3 4", r"/history \[N\]")):
        ana.ask(line, rf"ERROR usage: {usage} .+")
    ana.ask("/nick ana", "ERROR you are ana already")
    mark = ana.say("/help")
    ana.expect(r"INFO /quit .*", since=mark)
    listed = [x.split()[1] for x in ana.between(mark, ana.mark()) if x.startswith("INFO /")]
    assert sorted(set(listed)) == sorted(f"/{c}" for c in (
        "join", "leave", "msg", "rooms", "who", "history", "kick", "like", "unlike", "nick",
        "servers", "connect", "help", "quit")), listed
    assert "INFO /like ID [ROOM]" in " ".join(ana.between(mark, ana.mark()))


def test_leaving_or_being_kicked_from_the_current_room_makes_another_current(
        chat: Service) -> None:
    cat, dan = chat.clients(("cat", 0), ("dan", 1))
    join_all("cur-a", cat, dan)
    join_all("cur-b", cat, dan)  # cat owns both; the current room of each is cur-b
    mark = dan.say("/leave")
    dan.expect("OK left cur-b", since=mark)
    dan.expect("CURRENT cur-a", since=mark)
    msg = say(dan, "cur-a", "still talking, in cur-a")
    cat.expect(f"MSG cur-a {msg} dan 0 still talking, in cur-a")
    mark = dan.mark()
    cat.ask("/kick dan cur-a", "OK kicked dan from cur-a")
    dan.expect("KICK cur-a dan cat", since=mark)
    dan.expect("CURRENT -", since=mark)
    dan.ask("anyone?", "ERROR join a room first: /join ROOM")


def test_invisible_and_direction_characters_are_refused_and_joiners_kept(chat: Service) -> None:
    eve = chat.client("eve", 2)
    join_all("inv", eve)
    for ch in ("\u202e", "\u200b", "\u2066", "\ufeff", "\u00ad"):  # RLO, ZWSP, LRI, BOM, SHY
        eve.ask(f"abc{ch}def", rf"ERROR message contains an invisible formatting character "
                               rf"\(U\+{ord(ch):04X} [A-Z -]+\); send plain text")
        eve.ask(f"/msg eve a{ch}b", r"ERROR message contains an invisible .*")
    eve.ask("\u200dleading", r"ERROR message contains an invisible .*\(U\+200D .*")
    family = "family \U0001F468\u200d\U0001F469\u200d\U0001F467 here"  # emoji joined by ZWJ
    msg = say(eve, "inv", family)
    eve.expect(f"MSG inv {msg} eve 0 {family}")


def test_connect_takes_a_short_node_name(chat: Service) -> None:
    fox = chat.client("fox", 0)
    join_all("short", fox)
    short = chat.nodes[1].split("@")[0]
    fox.ask(f"/connect {short}", rf"OK connected to {re.escape(chat.nodes[1])}")
    msg = say(fox, "short", "through a short name")
    fox.expect(f"MSG short {msg} fox 0 through a short name")


def test_room_events_are_not_held_behind_typed_ahead_commands(chat: Service) -> None:
    gus, hal = chat.clients(("gus", 0), ("hal", 1))
    join_all("ahead", gus, hal)
    mark = gus.mark()
    assert gus.proc.stdin is not None
    gus.proc.stdin.write("/who ahead\n" * 200)  # all typed ahead at once
    gus.proc.stdin.flush()
    msg = say(hal, "ahead", "ping")
    shown = gus.index(f"MSG ahead {msg} hal 0 ping", since=mark)
    wait = time.monotonic() + WAIT
    while sum(x.startswith("WHO ahead") for x in gus.between(mark, gus.mark())) < 200:
        assert time.monotonic() < wait, "the 200 commands were not all answered"
        gus.expect("WHO ahead .*", since=gus.mark() - 1)
    answers = [i for i, x in enumerate(gus.between(mark, gus.mark()), start=mark)
               if x.startswith("WHO ahead")]
    assert shown < answers[-1], "the room event waited behind every command typed ahead"


def _echo_off(master: int) -> bool:
    return not termios.tcgetattr(master)[3] & termios.ECHO


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmRSS:")) / 1024


def test_terminal_input_typed_ahead_pasted_too_long_and_ctrl_c(chat: Service) -> None:
    """On a terminal: what is typed while connecting shows once, in the prompt; a 100 KB
    paste (typed raw, or as a bracketed paste) is refused at once in bounded memory;
    Ctrl-C clears a half-typed line and quits on an empty one; past messages are framed
    apart from live ones; no log record reaches the screen."""
    kai = chat.client("kai", 1)
    join_all("keys", kai)
    earlier = say(kai, "keys", "said before you came")
    tty = Pty(["client", "--server", chat.nodes[0], "--nick", "keyer"], chat.env)
    try:
        deadline = time.monotonic() + WAIT
        while not _echo_off(tty.master):  # the client holds what is typed from now on
            assert time.monotonic() < deadline and tty.proc.poll() is None, tty.output()
            time.sleep(0.01)  # polling the terminal's mode (bounded by the deadline)
        tty.type("/join keys\r")  # typed ahead: before the prompt shows
        at = tty.wait_for("connected to")
        at = tty.wait_for("[#keys] keyer joined", since=at)
        screen = Screen(tty.output()).text()
        assert [x for x in screen if "/join keys" in x] == ["-> /join keys"], screen
        assert "--- #keys: 1 earlier message (before you joined) ---" in screen, screen
        assert [x for x in screen if re.fullmatch(rf" +{earlier} +\d\d:\d\d  kai: said before "
                                                   "you came", x)], screen
        # lines typed ahead while commands run: each echoed once, whole, in order
        tty.type("/who keys\r/servers\r/history 1\r")
        at = tty.wait_for("--- end of #keys's history ---", since=at)
        screen = Screen(tty.output()).text()
        typed = [x for x in screen if x.startswith("-> /") or "/who keys" in x
                 or "/servers" in x or "/history 1" in x]
        assert typed == ["-> /join keys", "-> /who keys", "-> /servers", "-> /history 1"], screen
        at = tty.wait_for("->", since=at)
        rss = _rss_mb(tty.proc.pid)
        for paste in ("x" * 100_000, "\x1b[200~" + "y" * 100_000 + "\x1b[201~"):
            tty.type("half a line ")
            at = tty.wait_for("half a line", since=at)
            started = time.monotonic()
            tty.type(paste)
            at = tty.wait_for("! too long: a line holds at most 2100 characters", since=at)
            assert time.monotonic() - started < 5, "refused in bounded time"
            assert _rss_mb(tty.proc.pid) - rss < 64, "and bounded memory"
            tty.type("\x03")  # Ctrl-C: the half-typed line goes
            at = tty.wait_for("* line cleared", since=at)
        mark = kai.mark()
        tty.type("a line after all that\r")
        kai.expect(r"MSG keys \d+ keyer 0 a line after all that", since=mark)
        assert "WARNING" not in tty.output()
        tty.type("\x03")  # on an empty line: quit
        tty.wait_for("* bye", since=at)
        assert tty.proc.wait(WAIT) == 0
    finally:
        tty.kill()
