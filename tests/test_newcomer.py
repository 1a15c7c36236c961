"""A newcomer's first hour, so that it cannot rot: a fresh virtualenv, the project installed
with the README's command, the README's demo, and getting started's three-node script run
exactly as the page shows it (three nodes, each its own OS process, scripted through the
node program's options and a piped shell), its output compared with the page's.

Nothing here uses the test runner's own environment: the commands run with the fresh
virtualenv first on PATH and no PYTHONPATH, from the checkout, as a newcomer would.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
GETTING_STARTED = ROOT / "docs" / "getting-started.md"
INSTALL_TIMEOUT = 150.0
RUN_TIMEOUT = 60.0

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 3 * RUN_TIMEOUT)


def readme_command(after: str) -> str:
    """The README's shell command of the block that follows the sentence `after`."""
    text = README.read_text(encoding="utf-8")
    found = re.search(re.escape(after) + r".*?```sh\n(.*?)\n```", text, re.DOTALL)
    assert found, f"README.md has no sh block after {after!r}"
    return found.group(1).strip()


def getting_started_script() -> tuple[str, list[str]]:
    """The three-node script of getting started and the output the page says it prints."""
    text = GETTING_STARTED.read_text(encoding="utf-8")
    found = re.search(r"^```sh\n(cd docs/examples\b.*?)^```\n.*?^```text\n(.*?)^```",
                      text, re.DOTALL | re.MULTILINE)
    assert found, "getting-started.md lost its three-node script or the output after it"
    return found.group(1), found.group(2).splitlines()


def _no_ports(lines: list[str]) -> list[str]:
    return [re.sub(r"tcp://127\.0\.0\.1:\d+", "tcp://127.0.0.1:PORT", line) for line in lines]


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of a newcomer's shell: a fresh virtualenv with the project installed
    by the README's command (its install half), first on PATH."""
    home = tmp_path_factory.mktemp("newcomer")
    venv = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                   timeout=RUN_TIMEOUT)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONUNBUFFERED", "VIRTUAL_ENV", "ACTORNET_COOKIE",
                        "ACTORNET_EPMD_PORT")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv),
               HOME=str(home), ACTORNET_EPMD_PORT=str(free_port()))
    install, _, _ = readme_command("Run the tests:").partition(" && ")
    assert install == "python -m pip install -e '.[test]'", install
    done = subprocess.run(["bash", "-c", install.replace("-m pip install", "-m pip install -q")],
                          cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=INSTALL_TIMEOUT, check=False)
    assert done.returncode == 0, f"{install} failed:\n{done.stdout}\n{done.stderr}"
    yield env


def run(command: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run `command` with bash in its own process group; kill the group if it overruns."""
    proc = subprocess.Popen(["bash", "-ec", command], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever the script left behind
        proc.wait(RUN_TIMEOUT)
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def test_the_install_is_the_library_alone(newcomer: dict[str, str], tmp_path: Path) -> None:
    probe = (
        "import importlib.metadata as m, importlib.util as u, json\n"
        "print(json.dumps({'requires': m.requires('actornet'),"
        " 'examples': u.find_spec('examples') is not None}))\n"
    )
    done = run(f"python -c {shlex.quote(probe)}", newcomer, cwd=tmp_path)  # outside the checkout
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    plain = [r for r in found["requires"] if "extra ==" not in r]
    assert sorted(re.split(r"[<>=;\s]", r)[0].lower() for r in plain) == [
        "msgpack", "pykka", "pyzmq"]
    assert any(r.startswith("prompt_toolkit") and 'extra == "chat"' in r
               for r in found["requires"]), found["requires"]
    assert found["examples"] is False, "a top-level 'examples' package was installed"


def test_the_readme_demo_runs_from_the_checkout(newcomer: dict[str, str]) -> None:
    _, _, demo = readme_command("Run the chatty demo").partition(" && ")
    assert demo == "python -m examples.chatty demo", demo
    done = run(demo, newcomer)
    assert done.returncode == 0, f"{demo}:\n{done.stdout}\n{done.stderr}"
    assert "chatty demo: every step showed what it should" in done.stdout


def test_getting_started_three_nodes_as_written(newcomer: dict[str, str]) -> None:
    script, shown = getting_started_script()
    done = run(script, newcomer)
    assert done.returncode == 0, f"the script failed:\n{done.stdout}\n{done.stderr}"
    assert _no_ports(done.stdout.splitlines()) == _no_ports(shown), done.stderr
    assert "Traceback" not in done.stderr, done.stderr
