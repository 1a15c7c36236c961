"""The chat client under its chat nodes' faults, and with hostile input (issue #18, 4 and 5).

Every chat node and client is an OS process (the real CLI). A client that loses every
chat node never pretends: it says so at once (``DISCONNECTED``), keeps trying visibly
(``RECONNECTING``), answers every command with why it cannot, and comes back by itself
(``RECONNECTED``, rooms kept) when a chat node does; it exits non-zero if it ends while
not connected. An over-long input line is refused at once in bounded memory.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from examples.chatty.demo import Child

from .cluster import ROOT
from .test_chatty_faults import HOST, Chat, join

pytestmark = pytest.mark.timeout(120)
FAST = ["--tick-time", "1"]


@pytest.fixture
def chat() -> Iterator[Chat]:
    with Chat() as c:
        yield c


def rss_mb(child: Child) -> float:
    with open(f"/proc/{child.proc.pid}/status") as f:
        kb = next(int(x.split()[1]) for x in f if x.startswith("VmRSS:"))
    return kb / 1024


def test_a_client_that_loses_every_chat_node_keeps_trying_visibly_and_comes_back(
        chat: Chat) -> None:
    c1 = chat.node("c1", *FAST)
    c2 = chat.node("c2", "--join", f"c1@{HOST}", *FAST)
    ann = chat.client("ann", "c1", *FAST)
    join("keep", ann)
    ann.say("one")
    ann.expect(r"^OK sent keep \d+$")
    for n in (c2, c1):
        n.kill(signal.SIGKILL)
    ann.expect(f"^DISCONNECTED c1@{HOST} node down$")
    ann.expect(r"^RECONNECTING 1 .*")
    mark = ann.mark()
    ann.say("anyone?")
    ann.expect(r"^ERROR not connected to a chat node \(reconnecting\): message not sent$",
               since=mark)
    mark = ann.mark()
    ann.say("/who")
    ann.expect(r"^ERROR not connected to a chat node \(reconnecting\): /who not done$",
               since=mark)
    assert ann.proc.poll() is None, "it keeps running, and trying"
    chat.node("c1", *FAST)  # the chat node comes back: the client finds it by itself
    ann.expect(f"^RECONNECTED c1@{HOST}$", timeout=20)
    mark = ann.mark()
    ann.say("/who keep")
    ann.expect(r"^WHO keep ann ann$", since=mark)  # its room and its place, kept
    ann.say("two")
    ann.expect(r"^MSG keep \d+ ann 0 two$")
    ann.say("/quit")
    ann.expect("^BYE$")
    assert ann.proc.wait(10) == 0


def test_a_client_that_ends_while_not_connected_says_so_and_exits_non_zero(
        chat: Chat) -> None:
    n1 = chat.node("e1", *FAST)
    bea = chat.client("bea", "e1", *FAST)
    n1.kill(signal.SIGKILL)
    bea.expect(f"^DISCONNECTED e1@{HOST} node down$")
    assert bea.proc.stdin is not None
    bea.proc.stdin.close()  # the end of its input, while not connected
    bea.expect("^ERROR quitting while not connected to a chat node")
    bea.expect("^BYE$")
    assert bea.proc.wait(10) == 1


def test_an_over_long_line_is_refused_at_once_in_bounded_memory(chat: Chat) -> None:
    chat.node("l1")
    cal = chat.client("cal", "l1")
    join("long", cal)
    before = rss_mb(cal)
    assert cal.proc.stdin is not None
    started = time.monotonic()
    cal.proc.stdin.write("x" * 64_000_000 + "\n")  # 64 MB on one line
    cal.proc.stdin.flush()
    cal.expect(r"^ERROR line too long \(\d+ characters, at most 2100\): ignored$", timeout=30)
    assert time.monotonic() - started < 10
    assert rss_mb(cal) - before < 32, "the line was never held whole"
    cal.say("short and fine")
    cal.expect(r"^MSG long \d+ cal 0 short and fine$")


def test_a_bad_node_name_gets_a_clear_error() -> None:
    for bad, why in (("bad name", "invalid node name 'bad name'"),
                     ("ok@bad host", "invalid host 'bad host'")):
        run = subprocess.run([sys.executable, "-m", "examples.chatty", "node", "--name", bad,
                              "--data-dir", "none"], cwd=ROOT, capture_output=True, text=True,
                             timeout=30)
        assert run.returncode == 2, run
        assert f"chatty: {why}" in run.stderr and "Traceback" not in run.stderr, run.stderr
