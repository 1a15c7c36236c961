"""The soak under faults, short enough for CI (the long one is ``python -m tests.soak``).

Runs ``python -m tests.soak --rounds 1 --seed <fixed>`` as a subprocess with a hard
timeout: one round of faults, every kind once in the seed's order (at most 1.5 minutes).
Then it checks the machine-readable summary line the soak prints last
(``SOAK-RESULT {...}``): every kind of fault was injected at least once, and nothing
was found (no lost or out-of-order message, no monitor firing twice or never, no
deadlock, no divergence after a heal, no acknowledged chat message lost).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from .cluster import ROOT

SEED = 20240611
MINUTES = 1.5  # the bound; one round of the six kinds ends well before it
HARD_TIMEOUT = 175.0  # seconds: setup, at most 1.5 minutes of faults, the final checks
FAULT_KINDS = {"kill", "stop", "cut", "chat_kill", "chat_stop", "chat_cut"}


@pytest.fixture(autouse=True)
def node() -> Iterator[None]:
    """Overrides the suite's local node: the soak runs in its own process."""
    yield None


def _report(out: str) -> str:
    """The findings and the summary of the soak's output (or its tail)."""
    lines = out.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("==== findings")),
                 max(0, len(lines) - 60))
    return "\n".join(lines[start:])[-12000:]


def _result(out: str) -> dict[str, Any]:
    marked = [line for line in out.splitlines() if line.startswith("SOAK-RESULT ")]
    assert marked, f"the soak printed no result:\n{out[-6000:]}"
    result: dict[str, Any] = json.loads(marked[-1].removeprefix("SOAK-RESULT "))
    return result


@pytest.mark.timeout(200)
def test_short_soak_under_faults_finds_nothing() -> None:
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tests.soak", "--minutes", str(MINUTES), "--rounds", "1",
             "--seed", str(SEED)],
            cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=HARD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout if isinstance(e.stdout, str) else (e.stdout or b"").decode()
        pytest.fail(f"the soak did not finish within {HARD_TIMEOUT:.0f} s:\n{out[-6000:]}")
    out = proc.stdout + proc.stderr
    result = _result(out)
    findings = {kind: n for kind, n in result["findings"].items() if n}
    assert not findings, f"the soak found {findings} (seed {SEED}):\n{_report(out)}"
    missing = FAULT_KINDS - set(result["faults"])
    assert not missing, f"faults never injected: {sorted(missing)}\n{_report(out)}"
    assert result["messages"]["received"] > 0 and result["chat"]["acked"] > 0
    assert proc.returncode == 0, _report(out)
