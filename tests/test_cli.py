"""``python -m actornet node`` as a scripted program: ``--eval``, ``--run``, ``--no-shell``,
a shell fed through a pipe, the exit status, and output a driver sees line by line.

Every node is a real child process on loopback (``--port 0``: no port mapper), killed at
the end of its test whatever happens.
"""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import pytest

from tests.cluster import COOKIE, unique
from tests.helpers import wait_until
from tests.programs import WAIT, Program, child_env, programs_fixture

NODE = [sys.executable, "-m", "actornet", "node"]


class Node(Program):
    """``python -m actornet node --name NAME --port 0 ARGS...``."""

    def __init__(self, name: str, *args: str, **kw: object) -> None:
        super().__init__(name, [*NODE, "--name", name, "--port", "0", *args],
                         env=child_env(ACTORNET_COOKIE=COOKIE), **kw)  # type: ignore[arg-type]

    def address(self) -> str:
        port = re.search(r":(\d+)$", self.line(r"listening on tcp://"))
        assert port is not None
        return f"{self.name}:{port.group(1)}"


programs = pytest.fixture(programs_fixture)


def start(programs: list[Program], prefix: str, *args: str, **kw: object) -> Node:
    program = Node(unique(prefix), *args, **kw)
    programs.append(program)
    return program


# -- the shell, fed through a pipe -------------------------------------------------------------


def test_a_piped_shell_runs_each_line_prints_values_and_goes_on_after_an_error(
        programs: list[Program]) -> None:
    server = start(programs, "srv", "--no-shell", "--eval",
                   "echo = spawn(lambda: [send(m[0], ('echo', m[1])) for m in iter(receive, None)])"
                   "\nregister('echo', echo)")
    shell = start(programs, "sh")
    server_address = server.address()
    shell.type(f"ping({server_address!r})",
               "1 / 0",
               "def double(x):",
               "    return 2 * x",
               "",
               "double(21)",
               f"send(('echo', {server.name!r}), (self(), 'hi'))",
               "receive(lambda m: m[0] == 'echo', timeout=10)",
               "register('shell', self())")
    shell.close_input()
    status, out, err = shell.finished()
    assert status == 0, err
    # Values as the interactive shell shows them, and no prompt: send returns the message.
    assert out[1:3] == ["'pong'", "42"]
    assert re.fullmatch(rf"\(<{re.escape(shell.name)}\.[0-9.]+>, 'hi'\)", out[3]), out
    assert out[4:] == ["('echo', 'hi')", "True"]
    assert "ZeroDivisionError: division by zero" in err, err


def test_end_of_input_stops_the_node_and_its_peer_sees_it(programs: list[Program]) -> None:
    watcher = start(programs, "watch")
    shell = start(programs, "eof")
    watcher.type(f"ping({shell.address()!r})", "monitor_node(" + repr(shell.name) + ")",
                 "print('down:', receive(timeout=15))")
    watcher.expect("'pong'")
    shell.close_input()
    assert shell.finished()[0] == 0
    watcher.expect(re.escape(f"down: ('nodedown', '{shell.name}')"))


# -- --eval, --run and the exit status ---------------------------------------------------------


@pytest.fixture
def module_dir(tmp_path: Path) -> Path:
    """A directory holding ``jobs.py``, the node's working directory (on its path)."""
    (tmp_path / "jobs.py").write_text(
        "import sys\n"
        "import actornet\n\n"
        "def greet(*names):\n"
        "    print('hello', *names, 'from', actornet.node())\n\n"
        "def fail(what):\n"
        "    raise ValueError(what)\n\n"
        "def leave(reason):\n"
        "    raise actornet.ProcessExit(reason)\n\n"
        "def spin():\n"
        "    print('spinning', flush=True)\n"
        "    while True:\n"
        "        pass\n\n"
        "def serve():\n"
        "    actornet.register('jobs', actornet.self())\n"
        "    print('serving', flush=True)\n"
        "    while (msg := actornet.receive()) != 'stop':\n"
        "        pass\n",
        encoding="utf-8")
    return tmp_path


def test_run_calls_module_function_with_string_args_and_ends_with_0(
        programs: list[Program], module_dir: Path) -> None:
    node = start(programs, "run", "--eval", "print('eval first')", "--run", "jobs:greet", "a",
                 "b", cwd=module_dir, stdin=False)
    status, out, err = node.finished()
    assert status == 0, err
    assert out[1:] == ["eval first", f"hello a b from {node.name}"]


@pytest.mark.parametrize("args, status, message", [
    (["--run", "jobs:fail", "boom"], 1, "--run jobs:fail boom raised ValueError: boom"),
    (["--run", "jobs:leave", "shutdown"], 1, "--run jobs:leave shutdown raised ProcessExit"),
    (["--run", "jobs:leave", "normal"], 0, None),
    (["--run", "jobs:nosuch"], 1, "has no attribute 'nosuch'"),
    (["--run", "nosuchmodule:f"], 1, "No module named 'nosuchmodule'"),
    (["--eval", "halt(3)", "--no-shell"], 3, None),
    (["--eval", "spawn(halt, 4)", "--no-shell"], 4, None),
    (["--eval", "import sys; sys.exit(5)"], 5, None),
    (["--eval", "1 +"], 1, "--eval '1 +' raised SyntaxError"),
])
def test_exit_status_says_how_the_node_ended(programs: list[Program], module_dir: Path,
                                             args: list[str], status: int,
                                             message: str | None) -> None:
    node = start(programs, "st", *args, cwd=module_dir, stdin=False)
    got, _, err = node.finished()
    assert got == status, err
    if message is None:
        assert err == []
    else:
        assert any(message in line for line in err), err
        assert any(line.startswith("Traceback") for line in err)


def test_a_bad_run_option_is_a_usage_error(programs: list[Program]) -> None:
    node = start(programs, "bad", "--run", "no_colon_here", stdin=False)
    status, _, err = node.finished()
    assert status == 2
    assert any("--run wants MODULE:FUNCTION, got 'no_colon_here'" in line for line in err)


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
@pytest.mark.parametrize("function", ["serve", "spin"])
def test_a_signal_stops_a_node_without_a_shell(programs: list[Program], module_dir: Path,
                                               sig: int, status: int, function: str) -> None:
    # serve waits in receive (the signal is raised from inside it, where no lock is
    # held); spin never waits (it is raised in its loop, as Python does)
    node = start(programs, "sig", "--run", f"jobs:{function}", cwd=module_dir, stdin=False)
    node.line("^serving$" if function == "serve" else "^spinning$")
    node.proc.send_signal(sig)
    got, _, err = node.finished()
    assert got == status, err
    assert not any("Traceback" in line for line in err), err


def test_a_run_function_keeps_the_node_up_until_it_returns(programs: list[Program],
                                                             module_dir: Path) -> None:
    server = start(programs, "srv", "--run", "jobs:serve", cwd=module_dir, stdin=False)
    server.line("^serving$")
    shell = start(programs, "ctl")
    shell.type(f"ping({server.address()!r})", f"send(('jobs', {server.name!r}), 'stop')")
    shell.expect("'pong'")
    assert server.finished()[0] == 0


# -- output a driver can follow ---------------------------------------------------------------


def test_output_to_a_file_is_written_line_by_line(programs: list[Program],
                                                  tmp_path: Path) -> None:
    log = tmp_path / "node.out"
    with log.open("w", encoding="utf-8") as out:
        node = start(programs, "file", "--eval", "print('first line')", "--no-shell",
                     stdin=False, stdout=out)
        # Still running: the line is in the file now, not when the buffer fills or at exit.
        wait_until(lambda: "first line\n" in log.read_text(encoding="utf-8"), WAIT,
                   what="the printed line in the file")
        assert node.proc.poll() is None
        node.proc.terminate()
        assert node.proc.wait(WAIT) == 0


def test_warnings_are_logged_without_verbose(programs: list[Program]) -> None:
    peer = start(programs, "peer", "--no-shell", stdin=False)
    shell = start(programs, "log")
    shell.type(f"ping({peer.address()!r})")
    shell.expect("'pong'")
    peer.proc.kill()
    shell.expect(rf"WARNING .*node {re.escape(peer.name)} is down", shell.err)
