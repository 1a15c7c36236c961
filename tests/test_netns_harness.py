"""The test-host harness (`tests.netns`): hosts, names, port mappers, silent cuts, clean-up.

A small TCP probe runs on the hosts: an echo server on each, and a client driven through
its stdin that keeps one connection open and can try new ones, so each check is one
round trip with a short deadline.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import netns
from .helpers import pump_lines
from .netns import Net

pytestmark = pytest.mark.timeout(120)

ECHO = """
import socket, threading
def serve(c):
    with c:
        while data := c.recv(4096):
            c.sendall(data)
s = socket.create_server(("0.0.0.0", 7000))
print("serving", flush=True)
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
"""

# Commands: "open HOST" (the one kept connection), "send TEXT" (on it, and wait briefly for
# the echo), "recv S" (wait up to S seconds for data on it), "new HOST" (a fresh connection,
# closed at once), "resolve NAME". Each prints one line.
CLIENT = """
import socket, sys
kept = None
for line in sys.stdin:
    cmd, arg = line.split()
    try:
        if cmd == "resolve":
            print(socket.gethostbyname(arg), flush=True)
            continue
        if cmd in ("open", "new"):
            c = socket.create_connection((arg, 7000), timeout=0.6)
            if cmd == "open":
                kept = c
            else:
                c.close()
            print("connected", flush=True)
        elif cmd == "recv":
            kept.settimeout(float(arg))
            print("echo " + kept.recv(4096).decode(), flush=True)
        else:
            kept.settimeout(0.6)
            kept.sendall(arg.encode())
            print("echo " + kept.recv(4096).decode(), flush=True)
    except TimeoutError:
        print("timeout", flush=True)
    except OSError as e:
        print("error " + (e.strerror or str(e)), flush=True)
"""


class Probe:
    """The client, on one host."""

    def __init__(self, host: netns.Host) -> None:
        self.proc = host.spawn([sys.executable, "-c", CLIENT], stdin=subprocess.PIPE)
        self.lines: list[str] = []
        self.cond = threading.Condition()
        threading.Thread(target=pump_lines, daemon=True,
                         args=(self.proc.stdout, self.lines, self.cond, lambda: None)).start()

    def __call__(self, command: str) -> str:
        with self.cond:
            n = len(self.lines)
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.lines) > n, netns.WAIT), command
            return self.lines[n]


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    reason = netns.filter_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with Net(["alpha", "beta", "gamma"], extra_names={"ghost": f"{netns.SUBNET}.250"}) as n:
        for host in n.hosts.values():
            server = host.spawn([sys.executable, "-c", ECHO])
            assert server.stdout is not None and server.stdout.readline() == "serving\n"
        yield n


@pytest.fixture
def probe(net: Net) -> Iterator[Probe]:
    p = Probe(net["alpha"])
    try:
        yield p
    finally:
        net.heal()
        p.proc.kill()


@pytest.fixture(autouse=True)
def node() -> Iterator[None]:
    """No in-process node: everything here runs on the test hosts."""
    yield None


def test_each_host_has_its_address_name_and_port_mapper(net: Net, probe: Probe) -> None:
    assert [h.address for h in net.hosts.values()] == ["10.200.0.2", "10.200.0.3", "10.200.0.4"]
    assert probe("resolve beta") == "10.200.0.3"
    assert probe("resolve alpha") == "10.200.0.2"
    assert probe("resolve ghost") == "10.200.0.250"
    assert probe("resolve nosuchhost").startswith("error")  # no DNS behind the hosts file
    assert probe("open beta") == "connected"
    assert probe("send hi") == "echo hi"
    addresses = net["gamma"].run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
    assert "10.200.0.4/24" in addresses
    for host in net.hosts.values():  # each host's own port mapper, on the standard port
        listing = host.run([sys.executable, "-m", "actornet.epmd", "--names"])
        assert listing.returncode == 0, listing.stderr
        assert listing.stdout.startswith("actornet epmd: up and running on port 4370")
        assert any(re.search(r"listening on \S+:4370", line) for line in host.epmd_log)


def test_a_partition_drops_packets_silently_and_heals(net: Net, probe: Probe) -> None:
    assert probe("open beta") == "connected"
    assert probe("send before") == "echo before"
    net.partition(["alpha"], ["beta", "gamma"])
    # No reset, no refusal: silence, both for the open connection and for new ones.
    assert probe("send during") == "timeout"
    assert probe("new beta") == "timeout"
    assert probe("new gamma") == "timeout"
    net.heal()
    assert probe("new beta") == "connected"
    # The kept connection was never reset: TCP's next retry (backed off) delivers it.
    assert probe("recv 10") == "echo during"
    assert probe("send after") == "echo after"


def test_groups_and_one_way_drops(net: Net, probe: Probe) -> None:
    net.partition(["alpha", "beta"], ["gamma"])
    assert probe("new beta") == "connected"
    assert probe("new gamma") == "timeout"
    net.heal()
    net.drop("gamma", "alpha")  # alpha's SYN reaches gamma; the SYN-ACK never comes back
    assert probe("new gamma") == "timeout"
    assert probe("new beta") == "connected"
    net.heal("gamma")
    assert probe("new gamma") == "connected"
    net.cut("beta")
    assert probe("new beta") == "timeout"
    assert probe("new gamma") == "connected"


def test_a_pulled_cable_is_silent_too(net: Net, probe: Probe) -> None:
    assert probe("open gamma") == "connected"
    net.link_down("gamma")
    assert probe("send during") == "timeout"
    net.heal()
    assert probe("recv 10") == "echo during"
    assert probe("send after") == "echo after"


def test_close_removes_everything_even_after_a_failure() -> None:
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)
    made: list[str] = []
    with pytest.raises(RuntimeError, match="the test failed"), Net(["one", "two"]) as n:
        made = [n.switch, *(h.ns for h in n.hosts.values())]
        n["one"].spawn([sys.executable, "-c", "import time; time.sleep(600)"])
        pids = [pid for h in n.hosts.values() for pid in h.pids("actornet.epmd")]
        assert len(pids) == 2
        raise RuntimeError("the test failed")
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(ns in listed for ns in made), listed
    assert not any((netns.ETC_NETNS / ns).exists() for ns in made)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


def test_sweep_removes_what_a_dead_runner_left() -> None:
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    ns = f"{netns.PREFIX}{dead.stdout.strip()}n1-left"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    (netns.ETC_NETNS / ns).mkdir(parents=True)
    mine = f"{netns.PREFIX}{os.getpid()}n999-mine"  # a live runner's: kept
    subprocess.run(["ip", "netns", "add", mine], check=True)
    try:
        netns.sweep()
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert ns not in listed and not (netns.ETC_NETNS / ns).exists()
        assert mine in listed
    finally:
        netns._destroy(ns)
        netns._destroy(mine)
