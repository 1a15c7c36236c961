"""Benchmarks of actornet beside its baselines, measured in the same run.

``python -m benchmarks`` runs every figure (see `benchmarks.__main__`), prints a
table of medians with min-max over repetitions, writes ``benchmarks/results.json``
and draws ``docs/performance.png``. Baselines run interleaved with actornet
(A B A B ...), so the *ratios* are meaningful on a shared, noisy machine even
when absolute numbers are not.

Modules: `local` (in-process send, call, spawn), `remote` (two OS processes),
`fanout` (one sender, many receivers on another node), `cluster` (pg, global_,
failure detection), `erlang` (the same workloads on Erlang/OTP, when installed)
and `report` (table, JSON, chart).
"""

from __future__ import annotations

__all__: list[str] = []
