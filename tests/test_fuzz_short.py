"""A short run of the fuzz harness (``tests/fuzz``); ``python -m tests.fuzz`` runs the long one.

The first test is the CI fuzz run: a fixed seed, about 20,000 inputs, no
findings allowed. The others prove the harness can fail: each plants a bug
(an undocumented exception, a wrong result, slowness, memory) in a target for
some inputs and checks that the harness reports, saves and replays it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actornet import _codec, _session, _wire
from actornet import _handshake as hs
from tests.fuzz import atheris_run, cli
from tests.fuzz.harness import Fuzzer, Report, minimize, run_fuzz, signature_of, split_budget
from tests.fuzz.targets import TARGETS, CodecTarget

SEED = 20240611
BUDGET = {"codec": 8000, "wire": 5000, "handshake": 7000, "session": 3000, "dial": 3000,
          "dispatch": 1500}


def run(budget: dict[str, int], findings: Path, **options: Any) -> Report:
    """The harness in-process, quiet, without the hang watchdog (pytest-timeout has that)."""
    return run_fuzz(budget, SEED, findings_dir=findings, log=None, hang_limit=None, **options)


def test_short_fuzz_run_finds_nothing(tmp_path: Path) -> None:
    report = run(BUDGET, tmp_path)
    assert [f.describe() for f in report.findings] == []
    assert report.ok and report.inputs == sum(BUDGET.values())
    for name, n in BUDGET.items():
        stats = report.stats[name]
        assert stats.inputs == n and stats.findings == 0 and stats.traced > 0
        assert stats.slowest < 1.0 and len(stats.outcomes) > 1
    assert report.stats["codec"].outcomes.keys() == {"accepted", "rejected"}
    assert any("decoded-3" in k for k in report.stats["wire"].outcomes)
    assert any(k.endswith("->established") and "established->" not in k
               for k in report.stats["handshake"].outcomes)  # fuzzing reaches the end too
    # and the session's clauses: ops through, a goodbye, a refused batch
    assert {"plain Ops", "plain Down", "plain Broken"} <= report.stats["session"].outcomes.keys()
    assert not list(tmp_path.iterdir())  # nothing saved
    assert "findings=0" in report.summary()


def _planted(original: Callable[..., Any], when: Callable[[Any], bool],
             effect: Callable[[], Any]) -> Callable[..., Any]:
    """`original`, except that for a first argument where `when` holds it does `effect`."""

    def wrapper(data: Any, *args: Any, **kwargs: Any) -> Any:
        if when(data):
            return effect()
        return original(data, *args, **kwargs)

    return wrapper


def _raise(exc: BaseException) -> Callable[[], Any]:
    def effect() -> Any:
        raise exc

    return effect


def _has_c1(data: Any) -> bool:
    """Whether a frame holds byte 0xc1 (msgpack never uses it: no valid input has it)."""
    return "\xc1" in data if isinstance(data, str) else b"\xc1" in bytes(data)


def _kind_0(frame: Any) -> bool:
    """Whether a handshake frame is of kind 0 (none is: setup's valid frames never are)."""
    return len(frame) > 4 and frame[4] in (0, "\x00")


def _always(data: Any) -> bool:
    return True


# target, module, function, when the bug strikes, what it does, the kind of finding it makes
PLANTED = [
    ("codec", _codec, "decode", _has_c1, _raise(KeyError("planted")), "KeyError"),
    ("codec", _codec, "decode", _has_c1, lambda: object(), "OracleError"),  # not a term
    ("wire", _wire, "split_ops", _has_c1, _raise(IndexError("planted")), "IndexError"),
    ("wire", _wire, "decode_op", _has_c1, lambda: ["not an op"], "OracleError"),
    ("wire", _wire, "unpack_header", lambda h: len(h) != 10, lambda: 1, "OracleError"),
    # receive catches it: the event says "internal handshake error", which the oracle refuses
    ("handshake", hs, "_parse", _kind_0, _raise(KeyError("planted")), "OracleError"),
    # every digest "matches": handshakes succeed, on digests the protocol does not specify
    ("handshake", hs, "_digest", _always, lambda: b"\x00" * 32, "OracleError"),
    # an exception out of the session's decoding, and a session that misreads every header
    ("session", _session, "decode_op", _has_c1, _raise(KeyError("planted")), "KeyError"),
    ("session", _session, "unpack_header", _always, lambda: 7, "OracleError"),
]


@pytest.mark.parametrize(("target", "module", "name", "when", "effect", "kind"), PLANTED,
                         ids=[f"{p[0]}-{p[2]}-{p[5]}" for p in PLANTED])
def test_harness_reports_a_planted_bug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, module: Any, name: str,
    when: Callable[[Any], bool], effect: Callable[[], Any], kind: str,
) -> None:
    monkeypatch.setattr(module, name, _planted(getattr(module, name), when, effect))
    report = run({target: 300}, tmp_path)
    assert not report.ok and report.stats[target].findings == len(report.findings) > 0
    assert {f.kind for f in report.findings} == {kind}
    assert "findings=0" not in report.summary()
    finding = report.findings[0]
    assert finding.path is not None and finding.path.read_bytes() == finding.data
    assert finding.path.name.startswith(f"{target}-") and finding.path.suffix == ".bin"
    assert finding.path.with_suffix(".txt").exists()
    again = TARGETS[target](SEED)
    assert signature_of(again, finding.data) == finding.signature  # the saved input replays
    monkeypatch.undo()
    assert signature_of(again, finding.data) is None  # and only because of the planted bug


def test_slow_and_memory_hungry_inputs_are_findings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = run({"codec": 20}, tmp_path, slow_limit=0.0, trace_every=0)
    assert {f.kind for f in report.findings} == {"slow"} and len(report.findings) == 20
    monkeypatch.setattr(Fuzzer, "alloc_limit", staticmethod(lambda size: 0))
    report = run({"handshake": 20}, tmp_path, trace_every=5)
    assert {f.kind for f in report.findings} == {"memory"} and len(report.findings) == 4


def test_inputs_replay_by_seed_and_index() -> None:
    fuzzer = Fuzzer(SEED, findings_dir=None, log=None)
    for name in TARGETS:
        first, second = TARGETS[name](SEED), TARGETS[name](SEED)
        for index in (0, 1, 977):
            assert fuzzer.input_for(first, index) == fuzzer.input_for(second, index)
        assert fuzzer.input_for(first, 1) != fuzzer.input_for(first, 2)


def test_minimize_shrinks_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_codec, "decode", _planted(
        _codec.decode, lambda data: b"\xc1" in bytes(data), _raise(KeyError("planted"))))
    target = CodecTarget(SEED, pool_size=50)
    data = bytes(random.Random(1).randbytes(300)) + b"\xc1" + bytes(200)
    assert minimize(target, data) == b"\xc1"
    assert minimize(target, b"\x90") == b"\x90"  # no finding: unchanged


def test_budget_split_and_atheris_is_optional(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert split_budget(["codec", "wire", "handshake"], 1_000_000) == {
        "codec": 400_000, "wire": 300_000, "handshake": 300_000}
    assert split_budget(["wire"], 5) == {"wire": 5}
    monkeypatch.setenv("PYTHONHASHSEED", "0")  # else main() runs itself again
    monkeypatch.setattr(atheris_run, "available", lambda: False)
    assert cli.main(["--atheris", "--target", "codec", "--inputs", "10"]) == 0
    assert "atheris is not installed" in capsys.readouterr().out


def test_the_dispatch_target_reports_what_raises_in_the_io_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An op whose handling raises (here every LINK) is contained by the node, which logs
    it: the dispatch target must report that as a finding all the same."""
    from actornet.node import Node

    def planted(self: Node, *args: Any) -> None:
        raise KeyError("planted")

    monkeypatch.setattr(Node, "signal_link", planted)
    report = run({"dispatch": 300}, tmp_path)
    assert not report.ok and {f.kind for f in report.findings} == {"OracleError"}
    assert "something raised in the I/O thread" in report.findings[0].message


def test_the_dial_target_reports_an_endpoint_libzmq_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the checks let through an endpoint libzmq's connect refuses (which used to kill
    the I/O thread), the dial target says so."""
    from actornet import _address

    monkeypatch.setattr(_address, "is_endpoint", lambda value: isinstance(value, str)
                        and value.startswith("tcp://"))
    report = run({"dial": 3000}, tmp_path)
    assert not report.ok and {f.kind for f in report.findings} == {"OracleError"}
    assert any("libzmq refuses" in f.message for f in report.findings)
