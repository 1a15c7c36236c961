"""The port mapper and name lookups across hosts (`tests.netns`): each host's own port
mapper on the standard port, its defects fixed, and bad input that must fail clearly
and in time (a name with an unreachable address, a port mapper down, a node bound where
other hosts cannot reach it, two hosts that disagree on a name's address)."""

from __future__ import annotations

import itertools
import re
import sys
import time
from collections.abc import Iterator

import pytest

from . import netns
from . import netns_node as nn
from .netns import Net
from .netns_node import Agent

pytestmark = pytest.mark.timeout(120)
COOKIE = "netns-epmd"
GHOST = f"{netns.SUBNET}.250"  # in every hosts file as "ghost"; no host has it
_ids = itertools.count(1)


@pytest.fixture(autouse=True)
def node() -> Iterator[None]:
    """No in-process node: everything here runs on the test hosts."""
    yield None


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    reason = netns.filter_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with Net(["alpha", "beta", "gamma"], extra_names={"ghost": GHOST}) as n:
        yield n


class Hosts:
    """The module's hosts for one test: its nodes are killed, its cuts healed, and the
    port mappers and hosts files it changed put back, at the end."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self.agents: list[Agent] = []
        self.touched: set[str] = set()

    def node(self, host: str, short: str = "n", **kw: object) -> Agent:
        agent = Agent(self.net[host], f"{short}{next(_ids)}@{host}", COOKIE, **kw)  # type: ignore[arg-type]
        self.agents.append(agent)
        return agent

    def close(self) -> None:
        for agent in self.agents:
            agent.kill()
        self.net.heal()
        for name in self.touched:
            host = self.net[name]
            host.kill_epmd()
            host.set_hosts({})
            host.start_epmd()


@pytest.fixture
def hosts(net: Net) -> Iterator[Hosts]:
    h = Hosts(net)
    try:
        yield h
    finally:
        h.close()


def run_python(host: netns.Host, code: str, timeout: float = 30.0) -> tuple[str, str]:
    """Run `code` on `host` with logging as `logging.basicConfig()` sets it (warnings)."""
    done = host.run([sys.executable, "-c", "import logging; logging.basicConfig()\n" + code],
                    timeout=timeout)
    return done.stdout, done.stderr


# -- the three defects -------------------------------------------------------------------------


def test_a_port_mapper_given_an_address_also_takes_registrations(hosts: Hosts) -> None:
    """``python -m actornet.epmd --address <the host's address>``: nodes register through
    loopback, so it listens there too (as epmd does). Before, every start_node on that
    host waited 10 s and failed with "did not start"."""
    alpha = hosts.net["alpha"]
    hosts.touched.add("alpha")
    alpha.kill_epmd()
    alpha.start_epmd("--address", alpha.address)
    t0 = time.monotonic()
    a = hosts.node("alpha", "a")
    assert time.monotonic() - t0 < 8.0
    b = hosts.node("beta", "b")
    assert b.call(nn.ping, a.name) == "pong"
    assert a.call(nn.wait_nodes, [b.name]) == [b.name]
    assert any(f"listening on {alpha.address}:4370 and 127.0.0.1:4370" in line
               for line in alpha.epmd_log), alpha.epmd_log


def test_a_node_registers_again_when_its_port_mapper_comes_back(hosts: Hosts) -> None:
    """Its port mapper SIGKILLed, a node says so (a warning: shown by default) and
    registers again, starting a port mapper as start_node does; nodes on other hosts find
    it by name again. Before, it stayed unregistered, silently: `pang` for ever."""
    hosts.touched.add("alpha")
    a = hosts.node("alpha", "a")
    b = hosts.node("beta", "b")
    assert b.call(nn.ping, a.name) == "pong"
    hosts.net["alpha"].kill_epmd()
    lost = a.wait_log(r"lost its registration")
    assert " WARNING " in lost and a.name in lost and "port 4370" in lost, lost
    again = a.wait_log(r"registered again")
    assert " WARNING " in again and a.name in again
    c = hosts.node("gamma", "c")  # never connected to a: it must look a up by name
    assert c.call(nn.ping, a.name) == "pong"
    listing = hosts.net["alpha"].run([sys.executable, "-m", "actornet.epmd", "--names"])
    assert f"name {a.name.partition('@')[0]} at port" in listing.stdout


def test_pang_says_why_with_default_logging(hosts: Hosts) -> None:
    """The node command without -v logs warnings only, as does a program that calls
    `logging.basicConfig()`: each `pang` now comes with a warning that says why, naming
    the host and its address. Before, the reason was logged at INFO: a bare `pang`."""
    hosts.touched.add("gamma")
    hosts.net["gamma"].kill_epmd()
    done = hosts.net["alpha"].run([sys.executable, "-m", "actornet", "node", "--name",
                                   "u@alpha", "--cookie", "c", "--connect", "nobody@beta",
                                   "--connect", "nobody@gamma"])
    assert done.stdout.splitlines()[1:] == ["nobody@beta: pang", "nobody@gamma: pang"], done
    err = done.stderr
    assert re.search(r"WARNING node u@alpha: ping nobody@beta: pang: no node named 'nobody' "
                     r"is registered with the port mapper on beta \(10\.200\.0\.3\)", err), err
    assert re.search(r"WARNING node u@alpha: ping nobody@gamma: pang: no actornet port mapper "
                     r"answers on gamma:4370 \(10\.200\.0\.4\): Connection refused", err), err


# -- bad input and limits ----------------------------------------------------------------------


def test_a_name_with_an_unreachable_address_fails_in_time(hosts: Hosts) -> None:
    """"ghost" resolves, but nothing has its address; beta is cut (its packets dropped):
    each ping ends within its timeout, with a warning that names the host and address."""
    a = hosts.node("alpha", "a")
    answer, took = a.call(nn.ping_timed, "x@ghost", timeout=30)
    assert answer == "pang" and took < 11.0, took
    line = a.wait_log(r"ping x@ghost: pang")
    assert f"ghost:4370 ({GHOST})" in line, line
    hosts.net.cut("beta")
    answer, took = a.call(nn.ping_timed, "x@beta", timeout=30)
    assert answer == "pang" and took < 11.0, took
    line = a.wait_log(r"ping x@beta: pang")
    assert "beta:4370 (10.200.0.3)" in line, line
    answer, took = a.call(nn.ping_timed, "x@beta", 1.0)  # a shorter timeout is kept
    assert answer == "pang" and took < 2.0, took


def test_a_node_named_after_an_address_others_cannot_reach(hosts: Hosts) -> None:
    """A host part that resolves to loopback here (as a Debian host name does, 127.0.1.1)
    gets a warning; one that is not an address of this host at all is refused."""
    hosts.touched.add("alpha")
    hosts.net["alpha"].set_hosts({"alpha-lo": "127.0.1.1"})
    code = ("import actornet\n"
            "n = actornet.start_node('lo@alpha-lo', cookie='c')\n"
            "print(n.dist.endpoint)\n")
    out, err = run_python(hosts.net["alpha"], code)
    assert out.startswith("tcp://alpha-lo:"), (out, err)
    assert re.search(r"node lo@alpha-lo: alpha-lo resolves to 127\.0\.1\.1 here, a loopback "
                     r"address: other hosts cannot connect to this node", err), err
    cli = hosts.net["alpha"].run([sys.executable, "-m", "actornet", "node", "--name",
                                  "wrong@beta", "--cookie", "c", "--no-shell"])
    assert cli.returncode == 1
    assert ("'beta' resolves to 10.200.0.3 here, which is not an address of this host"
            in cli.stderr), cli.stderr


def test_hosts_that_disagree_on_an_address_fail_clearly(hosts: Hosts) -> None:
    """gamma's hosts file sends "beta" to alpha's address: gamma's pings of b@beta reach
    alpha's port mapper, which has no b, then (once alpha has a b of its own) alpha's b,
    which is not b@beta. Each fails at once, saying what it found where."""
    hosts.touched.add("gamma")
    hosts.net["gamma"].set_hosts({"beta": hosts.net["alpha"].address})
    b = hosts.node("beta", "b")
    short = b.name.partition("@")[0]
    c = hosts.node("gamma", "c")
    answer, took = c.call(nn.ping_timed, b.name)
    assert answer == "pang" and took < 5.0
    line = c.wait_log(rf"ping {b.name}: pang")
    assert f"no node named '{short}' is registered with the port mapper on beta (10.200.0.2)" \
        in line, line
    impostor = Agent(hosts.net["alpha"], f"{short}@alpha", COOKIE)  # same short name
    hosts.agents.append(impostor)
    answer, took = c.call(nn.ping_timed, b.name)
    assert answer == "pang" and took < 5.0
    c.wait_log(rf"ping {b.name}: pang: .*dialled '{b.name}', this is '{short}@alpha'")


def test_slow_connections_from_one_host_do_not_shut_out_the_others(hosts: Hosts) -> None:
    """Beta keeps 600 connections open on alpha's port mapper, each sending a byte now and
    then and opened again when closed: the port mapper keeps at most 8 from one address
    (closing the oldest), so a node on alpha still registers, and gamma, and beta itself,
    still look it up at once. (Before, 512 of them shut everyone out.)"""
    flood = hosts.net["beta"].spawn([sys.executable, "-c", FLOOD])
    assert flood.stdout is not None and flood.stdout.readline() == "open 600\n"
    a = hosts.node("alpha", "a")
    c = hosts.node("gamma", "c")
    answer, took = c.call(nn.ping_timed, a.name)
    assert answer == "pong" and took < 2.0, took
    b = hosts.node("beta", "b")
    answer, took = b.call(nn.ping_timed, a.name)
    assert answer == "pong" and took < 2.0, took
    assert any("make room (8 from one address)" in line for line in hosts.net["alpha"].epmd_log)
    assert flood.poll() is None  # it kept at it all along


FLOOD = """
import socket, time
def open_one():
    s = socket.create_connection(("alpha", 4370), timeout=5)
    s.send(b'{"op": ')
    s.setblocking(False)
    return s
socks = [open_one() for _ in range(600)]
print("open 600", flush=True)
while True:
    for i, s in enumerate(socks):
        try:
            s.send(b" ")
            s.recv(1)
            raise ConnectionResetError
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            socks[i] = open_one()
    time.sleep(0.5)
"""
