"""The docs cannot rot: their examples run, and what the docs show is what runs.

- Every ``docs/examples/*.py`` runs in a fresh interpreter, exits 0 within
  `RUN_TIMEOUT` seconds, writes nothing to stderr, and prints exactly the lines
  of its trailing ``# Output:`` comment block; except the modules that run on
  nodes of their own (`NODE_EXAMPLES`), each of which has a session that runs it
  on several nodes, each its own OS process, scripted through the node program.
- Every fenced ``python`` block in ``docs/*.md`` whose first line is
  ``# docs/examples/NAME.py`` is byte-identical to that file, and every
  example file is shown in some doc.
- Every ``pycon`` block (``>>>`` lines) in ``docs/*.md`` passes as a doctest,
  one fresh interpreter per document, blocks run in order.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from actornet import epmd
from tests.cluster import free_port
from tests.helpers import wait_until
from tests.programs import WAIT, Program, child_env, programs_fixture

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
RUN_TIMEOUT = 20.0

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.py"))
# Modules run on nodes of their own, each tested by a session of its own: the messenger and
# the web counter below, cluster_counter by getting started's three-node script
# (tests/test_newcomer.py).
NODE_EXAMPLES = {"messenger.py", "cluster_counter.py", "web_counter.py"}
SCRIPT_FILES = [p for p in EXAMPLE_FILES if p.name not in NODE_EXAMPLES]
DOC_FILES = sorted(DOCS.glob("*.md"))

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
_EXAMPLE_HEADER = re.compile(r"# (docs/examples/[\w-]+\.py)\n")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # Import the package from this checkout, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONIOENCODING"] = "utf-8"
    env.pop("ACTORNET_COOKIE", None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
        encoding="utf-8", timeout=RUN_TIMEOUT, check=False,
    )


def expected_output(source: str) -> list[str]:
    """The lines of the example's trailing ``# Output:`` block, without the ``# ``."""
    _, sep, tail = source.rpartition("\n# Output:\n")
    assert sep, "an example ends with a '# Output:' comment block listing what it prints"
    lines = tail.splitlines()
    assert lines and all(line == "#" or line.startswith("# ") for line in lines), (
        "every line after '# Output:' is a comment ('# text', or '#' for an empty line)"
    )
    return [line[2:] for line in lines]


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of each fenced block; `body` ends with a newline."""
    return [(m.group(1), m.group(2)) for m in _FENCE.finditer(text)]


def shown_examples() -> dict[str, list[tuple[str, str]]]:
    """Example path -> ``(doc name, block body)`` for each doc block that claims to be it."""
    shown: dict[str, list[tuple[str, str]]] = {}
    for doc in DOC_FILES:
        for lang, body in fenced_blocks(doc.read_text(encoding="utf-8")):
            header = _EXAMPLE_HEADER.match(body)
            if lang == "python" and header:
                shown.setdefault(header.group(1), []).append((doc.name, body))
    return shown


def test_there_are_examples_and_docs() -> None:
    assert EXAMPLE_FILES, f"no examples in {EXAMPLES}"
    assert {"getting-started.md", "reference.md", "porting-guide.md"} <= {
        d.name for d in DOC_FILES
    }


@pytest.mark.parametrize("path", SCRIPT_FILES, ids=lambda p: p.name)
def test_example_runs_and_prints_what_it_says(path: Path, tmp_path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert source.startswith(f"# docs/examples/{path.name}\n"), (
        "the first line names the file, so the doc block that shows it can be checked"
    )
    want = expected_output(source)
    result = _run([str(path)], cwd=tmp_path)
    assert result.returncode == 0, f"{path.name} exited {result.returncode}:\n{result.stderr}"
    assert result.stderr == "", f"{path.name} wrote to stderr:\n{result.stderr}"
    assert result.stdout.splitlines() == want


def test_doc_blocks_are_byte_identical_to_their_example_files() -> None:
    shown = shown_examples()
    for rel, blocks in shown.items():
        path = ROOT / rel
        assert path.is_file(), f"{blocks[0][0]} shows {rel}, which does not exist"
        on_disk = path.read_bytes()
        for doc, body in blocks:
            assert body.encode("utf-8") == on_disk, (
                f"{doc}: the block for {rel} differs from the file; copy the file into the doc"
            )


def test_every_example_is_shown_in_a_doc() -> None:
    shown = shown_examples()
    missing = [p.name for p in EXAMPLE_FILES if f"docs/examples/{p.name}" not in shown]
    assert not missing, f"examples not shown in any docs/*.md: {missing}"


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: p.name)
def test_doc_pycon_blocks_pass_as_doctests(doc: Path, tmp_path: Path) -> None:
    blocks = [body for lang, body in fenced_blocks(doc.read_text(encoding="utf-8"))
              if lang == "pycon"]
    if not blocks:
        pytest.skip(f"{doc.name} has no pycon blocks")
    # Blank lines between blocks end each block's expected output.
    script = tmp_path / f"{doc.stem}.doctest.txt"
    script.write_text("\n".join(blocks), encoding="utf-8")
    result = _run(["-m", "doctest", "-o", "ELLIPSIS", str(script)], cwd=tmp_path)
    assert result.returncode == 0, f"{doc.name} doctests failed:\n{result.stdout}{result.stderr}"


# -- the messenger (Erlang's Getting Started guide) on five nodes ---------------------------------


programs = pytest.fixture(programs_fixture)


@pytest.fixture
def port_mapper(programs: list[Program]) -> int:
    """A private port mapper on a free port; its port."""
    port = free_port()
    programs.append(Program("epmd", [sys.executable, "-m", "actornet.epmd", "--port", str(port),
                                     "--address", "127.0.0.1"], env=child_env()))

    def up() -> bool:
        try:
            epmd.names(epmd_port=port, timeout=0.5)
        except epmd.EpmdError:
            return False
        return True

    wait_until(up, WAIT, interval=0.05, what="the port mapper")
    return port


class Shell(Program):
    """A node of the messenger session: ``python -m actornet node`` with its shell on a pipe,
    run from docs/examples so that ``import messenger`` finds the example."""

    def __init__(self, name: str, epmd_port: int) -> None:
        super().__init__(name, [sys.executable, "-m", "actornet", "node", "--name", name],
                         cwd=EXAMPLES, env=child_env(ACTORNET_COOKIE="messenger-session",
                                                     ACTORNET_EPMD_PORT=str(epmd_port)))
        self.expect("listening on")
        self.type("import messenger")

    def run(self, command: str, *expected: str) -> None:
        """Type `command`, then wait for the `expected` lines (regexes), in that order."""
        at = len(self.out)
        self.type(command)
        for pattern in expected:
            at = self.expect(pattern, after=at) + 1


def until_logged_off(shell: Shell, name: str) -> None:
    """Send `name` messages from `shell` until the server answers receiver_not_found.

    The server learns of a lost client through an exit signal, which no message from
    another node is ordered with: each try is one round trip, until the server has it.
    """
    for _ in range(100):
        at = len(shell.out)
        shell.type(f'messenger.message("{name}", "are you there?")')
        if shell.out[shell.expect("^(sent|receiver_not_found)$", after=at)] != "sent":
            return
    raise AssertionError(f"the server never logged {name} off")


def test_messenger_runs_on_five_nodes_and_survives_a_killed_one(
        programs: list[Program], port_mapper: int) -> None:
    def shell(name: str) -> Shell:
        programs.append(Shell(f"{name}@127.0.0.1", port_mapper))
        return programs[-1]  # type: ignore[return-value]

    server = shell("messenger")
    server.run("messenger.start_server()", "^True$")
    c1, c2, c3 = shell("c1"), shell("c2"), shell("c3")
    c1.run('messenger.logon("peter")', "^logged_on$")
    c2.run('messenger.logon("james")', "^logged_on$")
    c3.run('messenger.logon("fred")', "^logged_on$")

    c1.run('messenger.message("fred", "hello")', "^sent$")
    c3.expect("^Message from peter: hello$")
    server.expect(r"^list is now: \['(peter|james|fred)', '(peter|james|fred)', "
                  r"'(peter|james|fred)'\]$")
    c3.run("""messenger.message("peter", "go away, I'm busy")""", "^sent$")
    c1.expect("^Message from fred: go away, I'm busy$")
    c1.run('messenger.logon("peter")', "^'already_logged_on'$")
    c2.run('messenger.message("nobody", "hi")', "^receiver_not_found$")

    # james's node dies without a logoff: the server's link to his client fires
    # ("EXIT", pid, "noconnection") and it logs him off, so james can log on again.
    c2.proc.kill()
    c2.proc.wait(WAIT)
    until_logged_off(c1, "james")
    c4 = shell("c4")
    c4.run('messenger.logon("james")', "^logged_on$")
    c4.run('messenger.message("peter", "back again")', "^sent$")
    c1.expect("^Message from james: back again$")

    c3.run("messenger.logoff()", "^'logoff'$")
    until_logged_off(c1, "fred")  # the client's exit reaches the server through their link
    for node in (c1, c3, c4, server):
        node.close_input()
        status, _, err = node.finished()
        assert status == 0, err
        assert not [line for line in err if "Traceback" in line], err


# -- a web app awaiting a GenServer on another node (aiohttp + actornet.aio) ----------------------


def _http(method: str, url: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_web_counter_awaits_a_counter_on_another_node(
        programs: list[Program], port_mapper: int) -> None:
    env = child_env(ACTORNET_COOKIE="web-session", ACTORNET_EPMD_PORT=str(port_mapper))
    counter = Program("counter", [
        sys.executable, "-m", "actornet", "node", "--name", "counter@127.0.0.1", "--no-shell",
        "--eval", "import web_counter; web_counter.start_counter()"],
        cwd=EXAMPLES, env=env, stdin=False)
    programs.append(counter)
    counter.expect("listening on")
    port = free_port()
    app = Program("web", [sys.executable, "web_counter.py", "--name", "web@127.0.0.1",
                          "--counter", "counter@127.0.0.1", "--port", str(port)],
                  cwd=EXAMPLES, env=env, stdin=False)
    programs.append(app)
    app.expect("serving on")
    url = f"http://127.0.0.1:{port}/count"
    # the counter registers itself once its node is up: until then, 503 and why
    wait_until(lambda: _http("GET", url) == (200, {"count": 0}), WAIT, what="the counter")
    assert _http("POST", url) == (200, {"count": 1})
    assert _http("POST", url) == (200, {"count": 2})
    assert _http("GET", url) == (200, {"count": 2})
    counter.kill()
    status, body = _http("GET", url)
    assert status == 503 and "counter@127.0.0.1" in str(body["error"]), body
