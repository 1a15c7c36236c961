"""A process mailbox with Erlang's selective receive.

Any thread may `put`; only the owning process receives. Incoming messages land
in a C-level `SimpleQueue`; messages that a selective receive passed over wait
in a private *save queue* (a deque) in arrival order, exactly like the BEAM's
save pointer, so the next receive looks at them first.

The mailbox also speaks pykka's inbox protocol (`put`, `get`, `empty`), so a
thread GenServer's pykka actor loop reads the very same mailbox. (A lightweight
process's mailbox is `actornet._light_mailbox.LightMailbox`.)
"""

from __future__ import annotations

import queue
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["Mailbox", "WAKE"]


class _Wake:
    """Sentinel put into a mailbox to wake its owner for a signal."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<wake>"


WAKE: Any = _Wake()


class Mailbox:
    """A multi-producer, single-consumer message queue with selective receive."""

    __slots__ = ("_incoming", "_saved", "blocked", "check", "closed", "put")

    def __init__(self) -> None:
        self._incoming: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._saved: deque[Any] = deque()
        self.put: Callable[[Any], None] = self._incoming.put
        # Called with no argument whenever the owner wakes; raises to abort the
        # receive (the owning process sets it to "raise if I was killed").
        self.check: Callable[[], None] = _no_check
        # Set once the owner is gone, so pykka's teardown stops draining.
        self.closed = False
        # True while the owner waits for a message (a signal handler may then wake it
        # instead of raising at an arbitrary point: actornet.__main__).
        self.blocked = False

    def put_wake(self) -> None:
        """Wake the owner so it looks at its process's state."""
        self._incoming.put(WAKE)

    def __len__(self) -> int:
        return len(self._saved) + self._incoming.qsize()

    def receive(self, match: Callable[[Any], object] | None, timeout: float | None) -> Any:
        """Remove and return the first message `match` accepts (any, if None).

        Raises `queue.Empty` when `timeout` seconds pass without one.
        """
        saved = self._saved
        deadline = None if timeout is None else time.monotonic() + timeout
        if match is None:
            if saved:
                return saved.popleft()
            return self._take(deadline)
        for i, msg in enumerate(saved):
            if match(msg):
                del saved[i]
                return msg
        while True:
            msg = self._take(deadline)
            # Saved before matching: a match function that raises loses nothing.
            saved.append(msg)
            if match(msg):
                saved.pop()
                return msg

    def offer(self, timeout: float | None) -> Iterator[Any]:
        """Offer the messages one by one, in mailbox order, waiting for more as needed.

        Each message is taken out of the mailbox as it is offered; asking for the
        next one puts it back in its place, so a message is consumed exactly when
        its consumer stops asking (Erlang's receive: a clause took it). Ends when
        `timeout` seconds pass with no message taken.
        """
        saved = self._saved
        deadline = None if timeout is None else time.monotonic() + timeout
        i = 0
        while i < len(saved):
            msg = saved[i]
            del saved[i]
            yield msg
            saved.insert(i, msg)  # passed over: back in its place
            i += 1
        while True:
            try:
                msg = self._take(deadline)
            except queue.Empty:
                return
            yield msg
            saved.append(msg)

    def _take(self, deadline: float | None) -> Any:
        get = self._incoming.get
        while True:
            self.blocked = True
            try:
                if deadline is None:
                    msg = get()
                else:
                    remaining = deadline - time.monotonic()
                    msg = get(True, remaining) if remaining > 0 else get(False)
            finally:
                self.blocked = False
            if msg is WAKE:
                # A signal woke us: let the owner act on it (it raises if the
                # process was killed), else keep waiting until the deadline.
                self.check()
                continue
            return msg

    # pykka's ActorInbox protocol -----------------------------------------------

    def get(self) -> _Letter:
        """Block for the next message, in the shape pykka's actor loop reads.

        `WAKE` is passed through (the GenServer looks at its state on it):
        raising here would reach pykka's loop, which stops every actor.
        """
        if self._saved:
            return _Letter(self._saved.popleft())
        return _Letter(self._incoming.get())

    def empty(self) -> bool:
        """True when no message is waiting."""
        return self.closed or (not self._saved and self._incoming.empty())


class _Letter:
    """One message as pykka's actor loop reads it: ``.message``, and nobody to reply to
    (actornet's calls reply through their own alias, not pykka's futures)."""

    __slots__ = ("message",)

    reply_to = None

    def __init__(self, message: Any) -> None:
        self.message = message


def _no_check() -> None:
    return None
