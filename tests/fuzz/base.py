"""What every fuzz target is: a generator of inputs and a checker of one input (see
`targets` for the rules they follow)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

__all__ = ["OracleError", "Target"]


class OracleError(AssertionError):
    """The code under test returned (rather than raised) something it must not."""


class Target:
    """One fuzz target: a generator of inputs and a checker of one input."""

    name: ClassVar[str] = ""
    documented: ClassVar[str] = ""  # the errors the code under test may raise, for messages

    def __init__(self, seed: int = 0) -> None:
        """Build the target's pool of valid inputs (deterministic for `seed`)."""
        self.seed = seed
        # Set by `check` under tracemalloc: the allocation peak of the code under test
        # alone, when the oracles after it allocate too (None: the whole check's peak).
        self.alloc_peak: int | None = None

    def generate(self, rng: random.Random) -> bytes:
        """One fuzz input."""
        raise NotImplementedError

    def check(self, data: bytes) -> str:
        """Feed `data` to the code under test; return an outcome label, or raise."""
        raise NotImplementedError

    def corpus(self) -> list[bytes]:
        """Valid and interesting inputs to start coverage-guided fuzzing from."""
        return []

    @contextmanager
    def active(self) -> Iterator[None]:
        """The context `check` runs in (the handshake target fixes nonces in it)."""
        yield

    def close(self) -> None:
        """Let go of what `check` started (a node, sockets); the harness calls it last."""
