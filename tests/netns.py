"""Test hosts: network namespaces on one virtual switch, for tests across hosts.

``Net(["alpha", "beta", "gamma"])`` makes one host per name. Each host is a network
namespace with one interface, ``eth0``, plugged into a bridge (the switch) that lives in a
namespace of its own, an address in the private test range ``10.200.0.0/24`` (nothing
routes out: the switch has no uplink, and nothing is added to the machine's own network
namespace), its own ``/etc/hosts`` naming every host (``/etc/netns/NS/hosts``, which
``ip netns exec`` mounts over ``/etc/hosts``) and, unless ``epmd=False``, its own port
mapper on the standard port (4370). `Host.spawn` runs a command inside a host.

Faults, all silent (nothing answers with a reset, as when a cable is pulled or a firewall
drops packets): `Net.partition` and `Net.cut` drop every IP packet between hosts at the
switch (nftables rules in the switch's namespace; address resolution still works, as
behind a firewall, so senders get no "no route to host" either), `Net.drop` one direction
only, and `Net.link_down` takes a host's switch port down (a pulled cable: then address
resolution fails too); `Net.heal` undoes them all.

Everything made is removed by `Net.close` (every process in the namespaces killed, the
namespaces and their hosts files deleted), also when a test fails; namespaces left by a
runner that died are swept away by the next `Net`. Where namespaces cannot be made (not
root, no ``ip``), `unavailable` says why, and the tests that need them skip with it.

Example::

    with Net(["alpha", "beta"]) as net:
        proc = net["alpha"].spawn(["python", "-m", "actornet.epmd", "--names"])
        net.partition(["alpha"], ["beta"])
        net.heal()
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from tests.cluster import ROOT, _die_with_parent

SUBNET = "10.200.0"  # hosts get .2, .3, ...; a private range, inside our namespaces only
PREFIX = "anet"  # namespace names: anet<runner pid>n<serial>-<host>
ETC_NETNS = Path("/etc/netns")
RUN_NETNS = Path("/run/netns")
WAIT = 15.0  # seconds: the longest a harness step may take on a loaded 2-core machine

_serial = itertools.count(1)
_reason: str | None = None
_checked = False


class Unavailable(RuntimeError):
    """Network namespaces (or the packet filter) cannot be used here; the text says why."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=WAIT)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result


def unavailable() -> str | None:
    """Why test hosts cannot be made here, or None when they can (checked once)."""
    global _reason, _checked
    if _checked:
        return _reason
    _checked = True
    if not sys.platform.startswith("linux"):
        _reason = "network namespaces are Linux only"
    elif os.geteuid() != 0:
        _reason = "making network namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    elif shutil.which("ip") is None:
        _reason = "the `ip` command (iproute2) is not installed"
    else:
        probe = f"{PREFIX}{os.getpid()}probe"
        made = _ip("netns", "add", probe, check=False)
        if made.returncode != 0:
            _reason = f"cannot make a network namespace: {made.stderr.strip()}"
        else:
            link = _ip("-n", probe, "link", "add", "br0", "type", "bridge", check=False)
            if link.returncode != 0:
                _reason = f"cannot make a bridge in a namespace: {link.stderr.strip()}"
            _ip("netns", "del", probe, check=False)
    return _reason


def filter_unavailable() -> str | None:
    """Why packet-dropping cuts cannot be made here (`nft` missing), or None."""
    reason = unavailable()
    if reason is None and shutil.which("nft") is None:
        reason = "the `nft` command is not installed (apt-get install nftables)"
    return reason


def sweep() -> None:
    """Remove the namespaces (and their processes) of harness runs whose runner is dead."""
    if not RUN_NETNS.is_dir():
        return
    for entry in RUN_NETNS.iterdir():
        m = re.fullmatch(rf"{PREFIX}(\d+)(?:n\d+-.*|probe)", entry.name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            _destroy(entry.name)


def _destroy(ns: str) -> None:
    """Kill every process of namespace `ns`, then delete it and its hosts files."""
    deadline = time.monotonic() + WAIT
    while True:
        pids = _ip("netns", "pids", ns, check=False).stdout.split()
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        if time.monotonic() > deadline:
            break  # a process stuck in the kernel: delete the name anyway
        time.sleep(0.01)
    _ip("netns", "del", ns, check=False)
    shutil.rmtree(ETC_NETNS / ns, ignore_errors=True)


class Host:
    """One test host: a network namespace with an address, a name and a hosts file."""

    def __init__(self, net: Net, name: str, index: int) -> None:
        self.net = net
        self.name = name
        self.index = index
        self.address = f"{SUBNET}.{index + 2}"
        self.ns = f"{net.tag}-{name}"
        self.port = f"p{index}"  # its port on the switch
        self.epmd: subprocess.Popen[str] | None = None
        self.epmd_log: list[str] = []

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.address}>"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a command on this host: the standard port mapper port."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("ACTORNET_EPMD_PORT", "ACTORNET_COOKIE")}
        env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        env.update(extra or {})
        return env

    def spawn(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
              stdin: int | None = subprocess.DEVNULL, stdout: int | None = subprocess.PIPE,
              stderr: int | None = subprocess.PIPE) -> subprocess.Popen[str]:
        """Start `argv` inside this host (it dies with the test runner); text mode."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, *argv], cwd=ROOT, env=self.env(env),
            stdin=stdin, stdout=stdout, stderr=stderr, text=True, bufsize=1,
            preexec_fn=_die_with_parent,
        )
        self.net.procs.append(proc)
        return proc

    def start(self, label: str, argv: Sequence[str],
              env: dict[str, str] | None = None) -> Lines:
        """Start `argv` inside this host with its stdin, stdout and stderr as `Lines`."""
        return Lines(label, self.spawn(argv, env=env, stdin=subprocess.PIPE))

    def run(self, argv: Sequence[str], timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside this host to its end (with an empty input); its output,
        whatever its status."""
        return subprocess.run(["ip", "netns", "exec", self.ns, *argv], cwd=ROOT, input="",
                              env=self.env(), capture_output=True, text=True, timeout=timeout)

    def set_hosts(self, entries: dict[str, str]) -> None:
        """Make this host's /etc/hosts map each name of `entries` to its address (the
        other names unchanged). Written in place: running programs see it too."""
        table = {**self.net.names, **entries}
        lines = ["127.0.0.1 localhost"] + [f"{addr} {name}" for name, addr in table.items()]
        with (ETC_NETNS / self.ns / "hosts").open("r+") as f:
            f.truncate()
            f.write("\n".join(lines) + "\n")

    # -- its port mapper --------------------------------------------------------------------

    def start_epmd(self, *extra: str) -> subprocess.Popen[str]:
        """Start this host's port mapper (``python -m actornet.epmd`` on port 4370, its
        log kept in `epmd_log`) and wait until it listens."""
        proc = self.spawn([sys.executable, "-m", "actornet.epmd", *extra])
        self.epmd = proc
        self.epmd_log = log = []
        listening = threading.Event()

        def pump() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                log.append(line.rstrip("\n"))
                if "listening on" in line:
                    listening.set()
            listening.set()

        threading.Thread(target=pump, daemon=True).start()
        if not listening.wait(WAIT) or proc.poll() is not None:
            raise RuntimeError(f"the port mapper of {self.name} did not start:\n"
                               + "\n".join(log))
        return proc

    def kill_epmd(self) -> None:
        """SIGKILL the port mappers running on this host now (the harness's, or one a node
        started); one started after this call began (by a node that lost its own) lives."""
        for pid in self.pids("actornet.epmd"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.epmd is not None:
            self.epmd.kill()
            self.epmd.wait(WAIT)

    def pids(self, word: str) -> list[int]:
        """The processes of this host whose command line has `word` as one argument."""
        found = []
        for pid in _ip("netns", "pids", self.ns, check=False).stdout.split():
            with contextlib.suppress(OSError):
                if word.encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                    found.append(int(pid))
        return found


class Lines:
    """A child process driven by lines: what it prints (stdout in `lines`, stderr in
    `errors`), waited for with deadlines, and lines typed into its stdin."""

    def __init__(self, label: str, proc: subprocess.Popen[str]) -> None:
        self.label = label
        self.proc = proc
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.cond = threading.Condition()
        self.eof = False
        threading.Thread(target=self._pump, args=(proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._pump, args=(proc.stderr, self.errors), daemon=True).start()

    def _pump(self, stream: Iterable[str] | None, into: list[str]) -> None:
        for line in stream or ():
            with self.cond:
                into.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            if into is self.lines:
                self.eof = True
            self.cond.notify_all()

    def mark(self) -> int:
        """How many lines it printed so far: where to `expect` the answer to what follows."""
        with self.cond:
            return len(self.lines)

    def expect(self, pattern: str, since: int = 0, timeout: float = WAIT) -> re.Match[str]:
        """The first line printed from line `since` on that `pattern` matches in full."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[since:]:
                    m = rx.fullmatch(line)
                    if m:
                        return m
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.eof:
                    raise AssertionError(f"{self.label} never printed /{pattern}/ (after line "
                                         f"{since})\n{self.report()}")
                self.cond.wait(remaining)

    def say(self, line: str) -> int:
        """Type `line`; returns the mark from before it."""
        mark = self.mark()
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return mark

    def ask(self, line: str, pattern: str) -> re.Match[str]:
        """Type `line` and wait for the line after it that `pattern` matches."""
        return self.expect(pattern, since=self.say(line))

    def report(self) -> str:
        with self.cond:
            out = "\n".join(f"  {x}" for x in self.lines[-60:])
            err = "\n".join(f"  {x}" for x in self.errors[-30:])
        return f"--- {self.label} stdout:\n{out}\n--- {self.label} stderr:\n{err}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT)


class Net:
    """Test hosts on one switch; see the module docstring."""

    def __init__(self, names: Sequence[str], *, epmd: bool = True,
                 extra_names: dict[str, str] | None = None) -> None:
        reason = unavailable()
        if reason is not None:
            raise Unavailable(reason)
        sweep()
        self.tag = f"{PREFIX}{os.getpid()}n{next(_serial)}"
        self.switch = f"{self.tag}-switch"
        self.hosts = {name: Host(self, name, i) for i, name in enumerate(names)}
        # Every host's hosts file: each host's name, plus any extra (e.g. an address nobody has).
        self.names = {h.name: h.address for h in self.hosts.values()} | dict(extra_names or {})
        self.procs: list[subprocess.Popen[str]] = []
        self.dropped: set[tuple[str, str]] = set()  # (from, to) host names
        self.down: set[str] = set()
        self._made: list[str] = []
        try:
            self._build()
            if epmd:
                for h in self.hosts.values():
                    h.start_epmd()
        except BaseException:
            self.close()
            raise

    def describe(self) -> str:
        """What another process needs to `attach` to these hosts (JSON)."""
        return json.dumps({"tag": self.tag, "hosts": list(self.hosts)})

    @classmethod
    def attach(cls, description: str) -> Net:
        """The hosts that another process made (`describe`), to run commands on and to cut
        from this process; closing it removes nothing (their maker does)."""
        desc = json.loads(description)
        net = cls.__new__(cls)
        net.tag = desc["tag"]
        net.switch = f"{net.tag}-switch"
        net.hosts = {name: Host(net, name, i) for i, name in enumerate(desc["hosts"])}
        net.names = {h.name: h.address for h in net.hosts.values()}
        net.procs, net.dropped, net.down, net._made = [], set(), set(), []
        return net

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __enter__(self) -> Net:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        _ip("netns", "add", self.switch)
        self._made.append(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for h in self.hosts.values():
            _ip("netns", "add", h.ns)
            self._made.append(h.ns)
            (ETC_NETNS / h.ns).mkdir(parents=True, exist_ok=True)
            (ETC_NETNS / h.ns / "hosts").write_text("")
            # No name server: a name missing from the hosts file fails at once.
            (ETC_NETNS / h.ns / "resolv.conf").write_text("# a test host: no DNS\n")
            h.set_hosts({})
            _ip("link", "add", h.port, "netns", self.switch, "type", "veth",
                "peer", "name", "eth0", "netns", h.ns)
            _ip("-n", self.switch, "link", "set", h.port, "master", "br0")
            _ip("-n", self.switch, "link", "set", h.port, "up")
            _ip("-n", h.ns, "link", "set", "lo", "up")
            _ip("-n", h.ns, "addr", "add", f"{h.address}/24", "dev", "eth0")
            _ip("-n", h.ns, "link", "set", "eth0", "up")

    def close(self) -> None:
        """Kill every process on the hosts and remove everything this `Net` made."""
        for proc in self.procs:
            with contextlib.suppress(OSError):
                proc.kill()
        for ns in reversed(self._made):
            _destroy(ns)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(WAIT)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        self._made.clear()

    # -- faults -----------------------------------------------------------------------------

    def partition(self, *groups: Iterable[str]) -> None:
        """Drop every IP packet between hosts of different groups (hosts in no group keep
        their links); adds to the cuts already made."""
        sets = [list(g) for g in groups]
        for i, a in enumerate(sets):
            for b in sets[i + 1:]:
                for x in a:
                    for y in b:
                        self.dropped |= {(x, y), (y, x)}
        self._apply()

    def cut(self, *names: str) -> None:
        """Drop every IP packet between each of these hosts and every other host."""
        for x in names:
            for y in self.hosts:
                if y != x:
                    self.dropped |= {(x, y), (y, x)}
        self._apply()

    def drop(self, source: str, target: str) -> None:
        """Drop the IP packets from `source` to `target` only (a one-way cut)."""
        self.dropped.add((source, target))
        self._apply()

    def link_down(self, name: str) -> None:
        """Take the host's switch port down, as if its cable were pulled at the switch."""
        _ip("-n", self.switch, "link", "set", self.hosts[name].port, "down")
        self.down.add(name)

    def heal(self, *names: str) -> None:
        """Undo the cuts and link downs that involve these hosts (all, without names)."""
        which = set(names) or set(self.hosts)
        self.dropped = {(x, y) for x, y in self.dropped if x not in which and y not in which}
        self._apply()
        for name in sorted(self.down & which):
            _ip("-n", self.switch, "link", "set", self.hosts[name].port, "up")
            self.down.discard(name)

    def _apply(self) -> None:
        """Replace the switch's drop rules with `dropped`, in one nftables transaction."""
        if not self.dropped and shutil.which("nft") is None:
            return  # nothing to drop, nothing to undo
        reason = filter_unavailable()
        if reason is not None:
            raise Unavailable(reason)
        # IP only: address resolution still works, as behind a firewall or a router that
        # lost its route, so a sender is told nothing at all (no "no route to host").
        rules = "\n".join(
            f'add rule bridge actornet_cuts drops iifname "{self.hosts[x].port}" '
            f'oifname "{self.hosts[y].port}" ether type ip drop' for x, y in sorted(self.dropped))
        script = ("add table bridge actornet_cuts\n"
                  "add chain bridge actornet_cuts drops "
                  "{ type filter hook forward priority 0; policy accept; }\n"
                  "flush chain bridge actornet_cuts drops\n" + rules + "\n")
        result = subprocess.run(["ip", "netns", "exec", self.switch, "nft", "-f", "-"],
                                input=script, capture_output=True, text=True, timeout=WAIT)
        if result.returncode != 0:
            raise RuntimeError(f"nft: {result.stderr.strip()}\n{script}")
