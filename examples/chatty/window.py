"""A room sequencer's replication window: the rounds in flight, and which are done.

Pure bookkeeping, no messages and no clock (the sequencer, `examples.chatty.replication`,
does the sending and the timing): a *round* is a batch of numbered records handed
to every replica at once; the sequencer may have up to `Window.size` rounds out
before the first of them is answered. A round is *done* once each replica it was
handed to has answered it, or was given up (its process went down, or it did not
answer in time). Done rounds leave the window strictly in the order they were
opened, so their records are acknowledged in sequence order even when a later
round's answers come first.

Example:
    >>> w = Window(size=2)
    >>> first = w.open(["m1"], 1, 1, ["a", "b"])
    >>> second = w.open(["m2", "m3"], 2, 3, ["a", "b"])
    >>> w.full()
    True
    >>> for pid in ("a", "b"):
    ...     w.answered(second.number, pid)
    >>> w.done()  # the second round is answered, but the first is not
    []
    >>> w.answered(first.number, "a")
    >>> w.gone("b")  # b went down: no round waits for it any more
    >>> [r.items for r in w.done()]
    [['m1'], ['m2', 'm3']]
    >>> w.empty()
    True
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Round", "Window"]


@dataclass
class Round:
    """One batch handed to the replicas: what it carries and whom it still waits for."""

    number: int
    items: list[Any]  # what to acknowledge once the round is done, in order
    first: int  # the seq of its first record
    last: int  # the seq of its last record
    waiting: set[Hashable]
    repairs: dict[Hashable, int] = field(default_factory=dict)  # gap repairs per replica

    @property
    def complete(self) -> bool:
        return not self.waiting


class Window:
    """Up to `size` rounds in flight, released in the order they were opened."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a window holds at least one round, not {size}")
        self.size = size
        self.rounds: dict[int, Round] = {}  # by number; dicts keep the opening order
        self.next = 1  # never reused, so a late answer cannot count for a newer round

    def __len__(self) -> int:
        return len(self.rounds)

    def full(self) -> bool:
        return len(self.rounds) >= self.size

    def empty(self) -> bool:
        return not self.rounds

    def open(self, items: list[Any], first: int, last: int,
             replicas: Iterable[Hashable]) -> Round:
        """A new round of `items` (records `first`..`last`), waiting for each of `replicas`."""
        if self.full():
            raise RuntimeError(f"the window is full ({self.size} rounds in flight)")
        round_ = Round(self.next, items, first, last, set(replicas))
        self.rounds[round_.number] = round_
        self.next += 1
        return round_

    def get(self, number: int) -> Round | None:
        """The round `number` if it is still in flight (None: done, or never opened)."""
        return self.rounds.get(number)

    def answered(self, number: int, replica: Hashable) -> None:
        """`replica` has answered round `number` (a late or repeated answer changes nothing)."""
        round_ = self.rounds.get(number)
        if round_ is not None:
            round_.waiting.discard(replica)

    def gone(self, replica: Hashable) -> None:
        """`replica` will answer nothing more: no round waits for it."""
        for round_ in self.rounds.values():
            round_.waiting.discard(replica)

    def expire(self, number: int) -> set[Hashable]:
        """Give up waiting in round `number`; the replicas that had not answered it."""
        round_ = self.rounds.get(number)
        if round_ is None:
            return set()
        late, round_.waiting = round_.waiting, set()
        return late

    def waited_for(self) -> set[Hashable]:
        """Every replica some round in flight still waits for."""
        return set().union(*(r.waiting for r in self.rounds.values()))

    def done(self) -> list[Round]:
        """Take out the complete rounds at the head of the window, oldest first; a complete
        round behind an incomplete one stays until that one is done."""
        out = []
        for number, round_ in list(self.rounds.items()):
            if not round_.complete:
                break
            del self.rounds[number]
            out.append(round_)
        return out
