"""Bad input at a chat node's gateway: each gets a clear error or a bounded cost, and the
node keeps serving everyone else.

One chat node with a gateway of small limits (a 64 KiB backlog, a 1 s HELLO timeout,
40 connections), shared by the module; hostile users are raw TCP sockets.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import pytest

from .test_chatty_gateway import Gateways, Raw, _cluster, node  # noqa: F401  (a fixture)
from .test_chatty_service import WAIT

pytestmark = pytest.mark.timeout(120)

MAX_CONNECTIONS = 40


@pytest.fixture(scope="module")
def small() -> Iterator[Gateways]:
    yield from _cluster(1, "--gateway-backlog", "65536", "--gateway-hello-timeout", "1",
                        "--gateway-max-connections", str(MAX_CONNECTIONS))


def user(gw: Gateways, nick: str, room: str | None = None) -> Raw:
    raw = Raw(gw.gateways[0])
    raw.send(f"HELLO {nick}")
    raw.expect(rf"CONNECTED {nick} \S+")
    if room is not None:
        raw.send(f"/join {room}")
        raw.expect(f"OK joined {room}")
    return raw


def still_serves(gw: Gateways, nick: str) -> None:
    """A user of the same gateway chats, and is answered, as if nothing happened."""
    ok = user(gw, nick, "calm")
    ok.send("all is well")
    ok.expect(r"OK sent calm \d+")
    ok.send("/quit")
    ok.expect("BYE")
    ok.close()


def test_over_long_lines_are_refused_in_bounded_memory(small: Gateways) -> None:
    raw = user(small, "longline")
    raw.send("x" * 10_000)  # read whole: its length is known
    raw.expect(r"ERROR line too long \(10000 characters, at most 2100\): ignored")
    raw.send(b"y" * 8_000_000 + b"\n")  # 8 MB in one line: skipped as it comes
    raw.expect(r"ERROR line too long \(\d+ bytes, at most 2100 characters\): ignored")
    raw.send("\u00e9" * 2101)  # 2,101 characters in 4,202 bytes
    raw.expect(r"ERROR line too long \(2101 characters, at most 2100\): ignored")
    raw.send("/join after")
    raw.expect("OK joined after")
    still_serves(small, "longok")


@pytest.mark.parametrize(("line", "answer"), [
    ("/join Bad Room!", r"ERROR usage: /join ROOM .*"),
    ("/join BAD!", r"ERROR invalid room name 'BAD!': .*"),
    ("/like abc", r"ERROR usage: /like ID \[ROOM\] .*"),
    ("/history 0", r"ERROR /history N: N must be a number of messages, 1 or more, not 0"),
    ("/history x", r"ERROR usage: /history \[N\] .*"),
    ("/msg nobody99 hi", r"ERROR no user named nobody99"),
    ("/msg bad!nick hi", r"ERROR invalid nickname 'bad!nick': .*"),
    ("/nick has space", r"ERROR usage: /nick NEW .*"),
    ("red \x1b[31m", r"ERROR message contains a control character \(U\+001B\); send plain text"),
    ("abc\u202edef", r"ERROR message contains an invisible formatting character .*"),
    ("/frobnicate", r"ERROR unknown command /frobnicate \(try /help\)"),
    ("/leave nosuchroom", r"ERROR .*nosuchroom.*"),
])
def test_malformed_requests_get_a_clear_error(small: Gateways, line: str, answer: str) -> None:
    raw = user(small, f"malformed{abs(hash(line)) % 10000}", "mal")
    raw.send(line)
    raw.expect(answer)
    raw.send("and the session carries on")
    raw.expect(r"OK sent mal \d+")
    raw.close()


@pytest.mark.parametrize(("greeting", "answer"), [
    ("HELLO", r"ERROR expected HELLO <nick> \[<password>\] or RESUME .*"),
    ("HELLO two words here", r"ERROR expected HELLO .*"),
    ("HELLO not!a!nick", r"ERROR invalid nickname 'not!a!nick': .*"),
    ("RESUME garbage", r"ERROR expected HELLO .*"),
    ("RESUME a.b.c - lobby=1", r"ERROR invalid session token: HELLO again"),
    ("/join lobby", r"ERROR expected HELLO .*"),
])
def test_a_malformed_greeting_is_refused_and_closed(small: Gateways, greeting: str,
                                                    answer: str) -> None:
    raw = Raw(small.gateways[0])
    raw.send(greeting)
    raw.expect(answer)
    assert raw.closed()


def test_half_open_connections_are_closed_with_a_reason(small: Gateways) -> None:
    silent, partial = Raw(small.gateways[0]), Raw(small.gateways[0])
    partial.send(b"HELLO half")  # no end of line, ever
    for raw in (silent, partial):
        raw.expect(r"ERROR no HELLO within 1 s: disconnecting")
        assert raw.closed()
    still_serves(small, "halfok")


def test_a_flood_is_refused_then_disconnected(small: Gateways) -> None:
    flooder = user(small, "flooder", "flood")
    calm = user(small, "calmer", "flood")
    flooder.send("".join(f"spam {i}\n" for i in range(2000)))
    flooder.expect(r"ERROR too many commands: at most 20 a second; this one was dropped")
    flooder.expect(r"ERROR disconnected for flooding: more than 20 commands a second")
    assert flooder.closed()
    calm.send("still here")
    calm.expect(r"OK sent flood \d+")
    calm.close()


def test_a_reader_that_never_reads_is_disconnected_and_holds_nobody_back(
        small: Gateways) -> None:
    writers = [user(small, f"writer{k}", "slow") for k in range(2)]
    for i in range(50):  # within each one's burst of 60 commands: 100 messages of 2 KB
        for w in writers:
            w.send(f"{i} " + "z" * 1990)
            w.expect(r"OK sent slow \d+")
    sleeper = socket.socket()
    sleeper.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and it never reads
    host, _, port = small.gateways[0].rpartition(":")
    sleeper.connect((host, int(port)))
    # 55 x 200 KB of history asked for: more than the kernel's buffers (4 MB here) hold
    sleeper.sendall(b"HELLO sleeper\n/join slow\n" + b"/history 1000\n" * 55)
    proc = small.node_procs[0]
    deadline = time.monotonic() + WAIT
    while not any("(sleeper): disconnected: a slow reader" in line for line in proc.errors):
        assert time.monotonic() < deadline, "the slow reader was never disconnected"
        time.sleep(0.05)  # polling the node's log, bounded by the deadline
    # the room went on meanwhile, and goes on: each message answered at once
    started = time.monotonic()
    writers[0].send("not held back")
    writers[0].expect(r"OK sent slow \d+")
    assert time.monotonic() - started < 2.0
    sleeper.close()
    for w in writers:
        w.close()
    still_serves(small, "slowok")


def test_connections_past_the_limit_are_told_the_gateway_is_full(small: Gateways) -> None:
    held = []
    try:
        while True:
            raw = Raw(small.gateways[0])
            raw.send(f"HELLO idle{len(held)}")
            line = raw.line()
            if line.startswith("ERROR this gateway is full"):
                assert re.fullmatch(r"ERROR this gateway is full \(\d+ connections\): try "
                                    r"another", line)
                assert raw.closed()
                break
            assert line.startswith(f"CONNECTED idle{len(held)}"), line
            held.append(raw)
            assert len(held) <= MAX_CONNECTIONS, "no limit"
    finally:
        for raw in held:
            raw.send("/quit")
            raw.close()
    assert len(held) >= MAX_CONNECTIONS - 5  # those of other tests may still be closing
    deadline = time.monotonic() + WAIT
    while True:  # the quit sessions free their places
        raw = Raw(small.gateways[0])
        raw.send("HELLO afterfull")
        line = raw.line()
        raw.close()
        if line.startswith("CONNECTED"):
            break
        assert time.monotonic() < deadline, line
