"""Chatty through its gateways: users outside the cluster, with no cookie.

Every chat node is an OS process started as a user would (``python -m
examples.chatty node --gateway 0``); users are ``client --server HOST:PORT``
processes, or raw TCP sockets where a test plays a hostile user. The cluster's
cookie is in the nodes' environment only, never in a client's.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

import actornet
from actornet import epmd

from .cluster import _die_with_parent, free_port
from .test_chatty_service import COOKIE, HOST, ROOT, TAG, WAIT, Child, Service

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def node() -> Iterator[None]:
    """Overrides the suite's in-process node: everything here runs in child processes."""
    yield None


class Gateways(Service):
    """Chat nodes with gateways; clients that reach them without the cookie."""

    def __init__(self, epmd_port: int) -> None:
        super().__init__(epmd_port)
        self.gateways: list[str] = []
        self.client_env = {k: v for k, v in self.env.items() if k != "ACTORNET_COOKIE"}

    def start_gateway_node(self, short: str, *extra: str) -> Child:
        proc = self.start_node(short, "--gateway", "0", "--tick-time", "1", "--grace", "8",
                               *extra)
        proc.expect(rf"chatty node {short}@{HOST} ready on tcp://\S+")
        self.nodes.append(f"{short}@{HOST}")
        self.node_procs.append(proc)
        self.gateways.append(proc.expect(r"chatty gateway (\S+)").group(1))
        return proc

    def user(self, nick: str, i: int, *extra: str) -> Child:
        """A gateway client of gateway `i`, connected (it holds no cookie)."""
        child = Child(nick, ["client", "--server", self.gateways[i], "--nick", nick, *extra],
                      self.client_env)
        self.children.append(child)
        child.expect(rf"CONNECTED {nick} {re.escape(self.nodes[i])}")
        return child


def _cluster(n: int, *extra: str) -> Iterator[Gateways]:
    port = free_port()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "actornet.epmd", "--port", str(port), "--address", HOST],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    svc = Gateways(port)
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                epmd.names(epmd_port=port, timeout=1.0)
                break
            except epmd.EpmdError:
                assert daemon.poll() is None and time.monotonic() < deadline, "no port mapper"
                time.sleep(0.05)
        for i in range(1, n + 1):
            svc.start_gateway_node(f"gw{i}t{TAG}", *extra)
        _wait_for_gateways(svc)
        yield svc
    finally:
        svc.kill_all(svc.children)
        with contextlib.suppress(Exception):
            epmd.kill(epmd_port=port, timeout=2.0)
        daemon.kill()
        daemon.wait(10)
        svc.data.cleanup()


def _wait_for_gateways(svc: Gateways) -> None:
    """Until every gateway lists them all (pg spreads each gateway's entry asynchronously)."""
    deadline = time.monotonic() + WAIT
    for address in svc.gateways:
        while True:
            probe = Raw(address)
            probe.send(f"HELLO probe{TAG}")
            listed = probe.expect(r"GATEWAYS (.*)").group(1).split()
            probe.send("/quit")
            probe.expect("BYE")
            probe.close()
            if sorted(listed) == sorted(svc.gateways):
                break
            assert time.monotonic() < deadline, f"{address} lists only {listed}"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateways]:
    """Two chat nodes with gateways, shared by the tests that kill none of them; the
    nickname vip has the password open-sesame."""
    from examples.chatty import tokens

    passwords = tmp_path_factory.mktemp("gw") / "passwords"
    passwords.write_text(f"vip {tokens.hash_password('open-sesame')}\n")
    yield from _cluster(2, "--passwords", str(passwords))


@pytest.fixture
def gw(shared: Gateways) -> Iterator[Gateways]:
    before = len(shared.children)
    try:
        yield shared
    finally:
        shared.kill_all(shared.children[before:])


@pytest.fixture
def fresh() -> Iterator[Gateways]:
    """Two chat nodes of the test's own: one of them is killed."""
    yield from _cluster(2)


def join(room: str, *users: Child) -> None:
    for u in users:
        mark = u.say(f"/join {room}")
        u.expect(f"OK joined {room}", since=mark)
        u.expect(rf"WHO {room} \S+ .*\b{u.label}\b.*", since=mark)


class Raw:
    """A hostile user: a bare TCP socket to a gateway, lines in and out."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=WAIT)
        self.buf = b""

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() + b"\n" if isinstance(data, str) else data)

    def line(self) -> str:
        """The next line (raises at the end of the connection or after WAIT)."""
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"connection closed; unread: {self.buf!r}")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def expect(self, pattern: str) -> re.Match[str]:
        seen = []
        while True:
            try:
                line = self.line()
            except EOFError as e:
                raise AssertionError(f"never got /{pattern}/; got {seen}: {e}") from None
            seen.append(line)
            m = re.fullmatch(pattern, line)
            if m:
                return m

    def closed(self) -> bool:
        """True once the gateway has closed the connection (reading what is left)."""
        try:
            while self.sock.recv(65536):
                pass
        except OSError:
            return True
        return True

    def close(self) -> None:
        self.sock.close()


# -- chatting through gateways ---------------------------------------------------------------


def test_users_chat_through_gateways_of_two_nodes(gw: Gateways) -> None:
    ann, ben = gw.user("ann", 0), gw.user("ben", 1)
    join("gwroom", ann, ben)
    ann.expect("JOIN gwroom ben")
    mark = ann.say("hello from outside")
    msg_id = ann.expect(r"OK sent gwroom (\d+)", since=mark).group(1)
    ben.expect(f"MSG gwroom {msg_id} ann 0 hello from outside")
    ben.ask(f"/like {msg_id}", f"OK liked {msg_id}")
    ann.expect(f"LIKES gwroom {msg_id} 1 ben like")
    ben.ask("/msg ann psst", "OK sent to ann")
    ann.expect("DM ben psst")
    ann.ask("/who", "WHO gwroom ann ann ben")
    ann.ask("/servers", rf"SERVERS {re.escape(gw.nodes[0])} {re.escape(gw.nodes[1])}")
    ben.ask("/nick benny", "OK you are now benny")
    ann.expect("NICK gwroom ben benny")
    ann.ask("/kick benny", "OK kicked benny from gwroom")
    ben.expect("KICK gwroom benny ann")
    ben.expect("CURRENT -")
    ann.ask("/quit", "BYE")
    assert ann.wait_exit() == 0
    assert not any(COOKIE in line for line in ann.lines + ben.lines)


def test_history_on_join_through_a_gateway(gw: Gateways) -> None:
    cat = gw.user("cat", 0)
    join("gwhist", cat)
    for text in ("one", "two"):
        cat.ask(text, r"OK sent gwhist \d+")
    dan = gw.user("dan", 1)
    mark = dan.say("/join gwhist")
    dan.expect(r"HIST gwhist \d+ cat 0 \S+ one", since=mark)
    dan.expect(r"HIST gwhist \d+ cat 0 \S+ two", since=mark)
    dan.expect("JOIN gwhist dan", since=mark)


# -- identity: a user is who its session is ----------------------------------------------------


def test_each_impersonation_is_refused_through_the_gateway(gw: Gateways) -> None:
    owner, victim = gw.user("owner", 0), gw.user("victim", 1)
    join("gwsafe", owner, victim)
    mallory = Raw(gw.gateways[0])
    try:
        # Take another's nickname (to read their DMs): at connect, by /nick, by a forged token.
        mallory.send("HELLO victim")
        mallory.expect("ERROR nickname victim is taken")
        assert mallory.closed()
        mallory = Raw(gw.gateways[1])
        mallory.send("HELLO mallory")
        mallory.expect(rf"CONNECTED mallory {re.escape(gw.nodes[1])}")
        token = mallory.expect(r"SESSION (\S+)").group(1)
        mallory.send("/nick victim")
        mallory.expect("ERROR nickname victim is taken")
        mallory.send("/join gwsafe")
        mallory.expect("OK joined gwsafe")
        # Post as another user: whatever a line says, it is mallory's, said as text.
        mallory.send('("publish", ("msg", "victim", "forged", 0))')
        seq = mallory.expect(r"OK sent gwsafe (\d+)").group(1)
        owner.expect(rf'MSG gwsafe {seq} mallory 0 \("publish", \("msg", "victim", '
                     r'"forged", 0\)\)')
        # Kick as the room's owner: the right is checked against mallory's session.
        mallory.send("/kick victim")
        mallory.expect(r"ERROR only the owner of gwsafe \(owner\) can kick")
        # Like as another user twice: a like counts once, for mallory.
        mallory.send(f"/like {seq}")
        mallory.expect(f"OK liked {seq}")
        victim.expect(f"LIKES gwsafe {seq} 1 mallory like")
        # A token for the victim, made from mallory's: the MAC does not match.
        forged = token.replace("mallory", "victim", 1)
        other = Raw(gw.gateways[0])
        other.send(f"RESUME {forged} gwsafe gwsafe=0")
        other.expect("ERROR invalid session token: HELLO again")
        # Mallory's own token, while mallory's session lives and is not hers to take...
        # (a second connection of the same user takes the session over: that is failover)
        third = Raw(gw.gateways[0])
        third.send("RESUME victim.0000000000000000.00000000000000000000000000000000 - ")
        third.expect("ERROR invalid session token: HELLO again")
        # rpc, remote spawn, anything of the cluster: not commands, not a protocol spoken here
        mallory.send("/rpc os.system id")
        mallory.expect(r"ERROR unknown command /rpc \(try /help\)")
        mallory.send("/connect " + gw.nodes[0])
        mallory.expect(r"ERROR unknown command /connect \(try /help\)")
        victim.ask("/msg owner still mine", "OK sent to owner")
        owner.expect("DM victim still mine")
        owner.ask("/who", r"WHO gwsafe owner (?=.*\bvictim\b)(?=.*\bmallory\b).*")
    finally:
        mallory.close()


def test_the_gateway_port_is_no_node_and_takes_no_cookie(gw: Gateways) -> None:
    """A node of the cluster (with the right cookie) cannot reach anything through a gateway
    port: it speaks lines, not the distribution protocol, and says so."""
    port = gw.gateways[0].rpartition(":")[2]
    with actornet.start_node(f"probe{TAG}@{HOST}", cookie=COOKIE, port=0):
        assert actornet.ping(f"gw1t{TAG}@{HOST}:{port}", timeout=3) == "pang"
    raw = Raw(gw.gateways[0])
    raw.send(b"\xff\x00\x00\x00\x00\x00\x00\x00\x01\x7f\n")  # a ZMTP greeting's start
    raw.expect(r"ERROR a line is UTF-8 text: byte 0 is not UTF-8: ignored")
    assert raw.closed()


def test_a_nickname_with_a_password_is_only_its_owners(gw: Gateways) -> None:
    for greeting, answer in [("HELLO vip", "ERROR nickname vip needs its password: HELLO vip "
                                            "<password>"),
                             ("HELLO vip guess", "ERROR wrong password for vip")]:
        raw = Raw(gw.gateways[0])
        raw.send(greeting)
        raw.expect(answer)
        assert raw.closed()
    other = gw.user("notvip", 1)
    other.ask("/nick vip", "ERROR nickname vip has a password: connect with it to use it")
    vip = gw.user("vip", 1, "--password", "open-sesame")
    vip.ask("/msg notvip it is me", "OK sent to notvip")
    other.expect("DM vip it is me")


def test_a_move_of_the_same_user_keeps_its_place_and_the_room() -> None:
    """A gateway session resumed with its token is a new process: its move takes the old
    one's place (seniority, ownership); a plain move of another process does not."""
    from actornet import Pid
    from examples.chatty.history import SAME_USER, RoomState

    old, bob, new = Pid("c@h", 1, 1), Pid("c@h", 2, 1), Pid("d@h", 3, 1)
    for marker, owner in [((SAME_USER,), "ann"), ((), "bob")]:
        state = RoomState()
        state.apply(1, 11, ("join", "ann", old, "n1"))
        state.apply(2, 12, ("join", "bob", bob, "n1"))
        state.apply(3, 13, ("move", "ann", new, "n2", 2, *marker))
        assert state.owner_nick() == owner
        assert set(state.members) == {new, bob}


# -- failover: a gateway's node dies ---------------------------------------------------------------


def test_a_client_fails_over_to_another_gateway_with_no_gap_and_no_duplicate(
        fresh: Gateways) -> None:
    eve, fay = fresh.user("eve", 0), fresh.user("fay", 1)
    join("gwfail", eve, fay)
    eve.expect("JOIN gwfail fay")
    fay.ask("before", r"OK sent gwfail \d+")
    eve.expect(r"MSG gwfail \d+ fay 0 before")
    fresh.node_procs[0].proc.send_signal(signal.SIGKILL)
    eve.expect(rf"DISCONNECTED {re.escape(fresh.gateways[0])} .*")
    # The room's sequencer died with that node. A message fay sends before her node has
    # noticed is answered with the honest "may have been delivered" error once it does
    # (at most once, never resent); every message confirmed "OK sent" must reach eve.
    confirmed, unsure = [], []
    for i in range(5):
        text = f"while away {i}"
        answer = fay.expect(r"OK sent gwfail \d+|ERROR your message to gwfail may have been "
                            r"delivered: .*", since=fay.say(text))
        (confirmed if answer.group(0).startswith("OK") else unsure).append(text)
    assert confirmed, "no message was confirmed after the room's sequencer moved"
    eve.expect(rf"RECONNECTED {re.escape(fresh.nodes[1])}")
    fay.expect("MOVED gwfail eve")
    fay.ask("after", r"OK sent gwfail \d+")
    eve.expect(r"MSG gwfail \d+ fay 0 after")
    got = [line.split(" ", 5)[5] for line in eve.lines if line.startswith("MSG gwfail")]
    assert len(got) == len(set(got)), f"a duplicate: {got}"
    assert [text for text in got if text not in unsure] == ["before", *confirmed, "after"], got
    ids = [int(line.split()[2]) for line in eve.lines if line.startswith("MSG gwfail")]
    assert ids == sorted(set(ids))
    # and the resumed session is eve's, with her rights: she still owns the room she made
    eve.ask("/who", r"WHO gwfail eve eve fay")
    eve.ask("/msg fay back", "OK sent to fay")
    fay.expect("DM eve back")


def test_a_cut_connection_resumes_its_lingering_session(gw: Gateways) -> None:
    """The node lives, the connection broke: the client's next connection takes the session
    over (its rooms and place), through any gateway."""
    gus = gw.user("gus", 1)
    join("gwcut", gus)
    raw = Raw(gw.gateways[0])
    raw.send("HELLO hal")
    token = raw.expect(r"SESSION (\S+)").group(1)
    raw.send("/join gwcut")
    raw.expect("JOIN gwcut hal")
    seq = int(raw.expect(r"SEQ gwcut (\d+)").group(1))  # its own join: the resume point
    raw.close()
    gus.ask("while hal is cut off", r"OK sent gwcut \d+")
    again = Raw(gw.gateways[1])
    again.send(f"RESUME {token} gwcut gwcut={seq}")
    again.expect(rf"RECONNECTED {re.escape(gw.nodes[1])}")
    again.expect(r"MSG gwcut \d+ gus 0 while hal is cut off")
    again.send("/who")
    again.expect(r"WHO gwcut gus gus hal|WHO gwcut gus hal gus")
    again.close()
