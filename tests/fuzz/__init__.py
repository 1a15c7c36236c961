"""Fuzzing of the wire decoder, the batch framing and the handshake state machine.

``python -m tests.fuzz --target codec|wire|handshake|all --inputs N [--seed S] [--atheris]``
runs a fast generate-and-mutate loop (`harness.Fuzzer`) over the targets of
`targets`: only the documented errors may come out, no input may take over a
second, and memory must stay bounded. ``tests/test_fuzz_short.py`` runs a short
version in the test suite. See `cli` for the options.

This package imports nothing on purpose: atheris must instrument actornet
before anything imports it (see `atheris_run`).
"""
