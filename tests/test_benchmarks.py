"""The benchmark harness never rots: ``python -m benchmarks --quick`` runs every figure
(once each, ``--reps 1``)."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(240)
def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    from benchmarks.__main__ import FIGURES

    out = tmp_path / "results.json"
    chart = tmp_path / "chart.png"
    proc = subprocess.run(
        # one repetition: this checks that every figure runs and reports, not the figures
        [sys.executable, "-m", "benchmarks", "--quick", "--reps", "1", "--out", str(out),
         "--chart", str(chart)],
        cwd=ROOT, capture_output=True, text=True, timeout=200, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    results = json.loads(out.read_text())
    assert results["meta"]["quick"] is True
    assert list(results["figures"]) == list(FIGURES)
    for name, fig in results["figures"].items():
        assert not fig.get("error"), f"{name}: {fig['error']}"
        assert fig["rows"], name
        for row in fig["rows"]:
            mine = row["series"]["actornet"]
            assert mine["median"] > 0, (name, row["label"])
            assert len(mine["samples"]) >= 1
            for series in row["series"].values():  # every column is a number or says why not
                assert "median" in series or series.get("skipped"), (name, row["label"])
    # every acknowledged chat message reached every member of the room
    chat_notes = results["figures"]["chat"]["notes"]
    assert any(n.startswith("chat: delivered: all ") for n in chat_notes), chat_notes
    assert any(n.startswith("chat, many publishers: delivered: all ") for n in chat_notes), \
        chat_notes
    # seed 002's two tables: every client and every subscriber got every message, in order
    seed_notes = results["figures"]["seed002"]["notes"]
    assert "seed002: delivered: every client got every message once, in order, in every " \
        "cell" in seed_notes, seed_notes
    assert "seed002, experiment 2: delivered: every subscriber got every message once, in " \
        "order, in every cell" in seed_notes, seed_notes
    assert not any("MESSAGES LOST" in n for n in seed_notes), seed_notes
    assert any(r["label"].startswith("seed 002, exp. 2: ")
               for r in results["figures"]["seed002"]["rows"])
    assert "| figure |" in proc.stdout  # the table was printed
    if find_spec("matplotlib") is not None:
        assert chart.read_bytes()[:4] == b"\x89PNG"
    else:
        assert "matplotlib" in results["meta"]["chart"]


def test_list_names_every_figure() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--list"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    for name in ("local_send", "remote_call", "fanout", "pg_join", "global_register", "spawn",
                 "failure_detection", "chat"):
        assert name in proc.stdout
