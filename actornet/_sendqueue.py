"""The crossing from process threads to a node's I/O thread, and back-pressure.

Process threads encode an operation (raising `TypeError` for an unsendable value, right at
the `send`) and put ``(peer, bytes)`` on the outbox, a `SimpleQueue`, waking the I/O thread
through an eventfd only when it sleeps. Commands for the I/O thread (connect, cut,
disconnect, stop) go the same way as ``(None, command)``, so that what was queued before a
command goes out before it runs.

Back-pressure: when what is queued for a peer and not yet handed to ZeroMQ passes
`busy_limit` bytes, or the outbox passes `OUTBOX_ITEMS` ops, senders to that peer wait
until it drains (as the BEAM suspends a sender on a busy distribution port). A task on an
event loop (a lightweight process) does not wait in the send: it owes the wait, and pays
it at its next `actornet.aio` await (`_backpressure`). Nothing is dropped while the peer is
connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
from typing import Any, Protocol

from actornet import _backpressure

__all__ = ["COUNTED", "OUTBOX_ITEMS", "Flow", "Queued", "SendQueue"]

log = logging.getLogger("actornet.dist")

OUTBOX_ITEMS = 16384  # ops in the outbox (all peers) before senders wait for the I/O thread
COUNTED = 1024  # ops of this many bytes or more are counted in bytes while in the outbox
# (so smaller ones, bounded by number, hold at most OUTBOX_ITEMS KiB: 16 MiB)


class Flow:
    """What the senders to one peer and the I/O thread share about its queue."""

    def __init__(self) -> None:
        # Bytes of its large ops (`COUNTED`) in the outbox: put - taken. `put` is written by
        # senders, under `put_lock`; `taken` by the I/O thread. Small ops in the outbox are
        # bounded by their number instead (`OUTBOX_ITEMS`), which costs a sender no lock.
        self.put = 0
        self.put_lock = threading.Lock()
        self.taken = 0
        self.waiters = 0  # senders waiting for its queue to drain (`SendQueue.wait_drained`)
        self.drained = threading.Condition()
        # lightweight senders' waits (`SendQueue.drain_waiter`), resolved on their loop
        self.async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.drain_waiter: _backpressure.Waiter | None = None
        self.hard_limit_said = False  # a lightweight sender went past 2 x busy_limit


class Queued(Protocol):
    """A peer as the send queue sees it."""

    name: str
    flow: Flow

    @property
    def backlog(self) -> int:
        """Bytes queued for it in the I/O thread, not yet handed to ZeroMQ."""

    @property
    def idle(self) -> bool:
        """Neither connected nor connecting: nothing queued for it will drain."""


class SendQueue:
    """The outbox of one node, its wake-up, and the waits of senders to busy peers."""

    def __init__(self, node_name: str, busy_limit: int) -> None:
        self.node_name = node_name
        self.busy_limit = busy_limit
        self.outbox: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
        self.fd = os.eventfd(0, os.EFD_NONBLOCK)
        self._wake_lock = threading.Lock()  # a wake-up never writes to a closed (reused) fd
        self.sleeping = False  # the I/O thread is (about to be) asleep in poll
        self.running = True
        self.io_thread: threading.Thread | None = None
        self.busy: set[Queued] = set()  # peers a sender waits on (`wait_drained`)

    def wake(self) -> None:
        """Wake the I/O thread if it sleeps."""
        if self.sleeping:
            with self._wake_lock:  # the I/O thread may be closing the eventfd just now
                if self.sleeping and self.fd >= 0:
                    self.sleeping = False
                    os.eventfd_write(self.fd, 1)

    def woken(self) -> None:
        """The I/O thread saw the eventfd readable: reset it."""
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.fd)

    def close(self) -> None:
        """The I/O thread is gone: close the eventfd (a late wake-up writes nowhere)."""
        self.running = False
        with self._wake_lock:
            os.close(self.fd)
            self.fd = -1

    def put(self, peer: Queued, data: bytes) -> None:
        """Queue encoded op `data` for `peer`, after waiting while it is busy."""
        flow = peer.flow
        if ((flow.waiters or self.outbox.qsize() > OUTBOX_ITEMS
                or flow.put - flow.taken + peer.backlog > self.busy_limit)
                and threading.current_thread() is not self.io_thread
                and not self._owed(peer)):
            self.wait_drained(peer)
        if len(data) >= COUNTED:
            with flow.put_lock:
                flow.put += len(data)
        self.outbox.put((peer, data))
        if self.sleeping:
            self.wake()

    def command(self, cmd: tuple[Any, ...]) -> None:
        """Queue a command for the I/O thread (after what is queued before it)."""
        self.outbox.put((None, cmd))
        self.wake()

    def busy_now(self, peer: Queued) -> bool:
        """Whether a sender waits on `peer`, or what is queued for it is over the limit."""
        flow = peer.flow
        return flow.waiters > 0 or flow.put - flow.taken + peer.backlog > self.busy_limit

    def wait_drained(self, peer: Queued) -> None:
        """Wait until what is queued for `peer` has drained to half of `busy_limit` and the
        outbox to half of `OUTBOX_ITEMS`, or `peer` is down, or this node stops (as the
        BEAM suspends a process that sends on a busy distribution port)."""
        flow = peer.flow
        with flow.drained:
            flow.waiters += 1  # while any waits, later senders queue up behind it
            try:
                while not self.drained(peer):
                    self.busy.add(peer)  # (again) before every wait: see `check_busy`
                    self.wake()
                    flow.drained.wait(0.5)  # normally `check_busy` wakes it first
            finally:
                flow.waiters -= 1

    def _owed(self, peer: Queued) -> bool:
        """Whether a sender on an event loop owes its wait for `peer` instead of waiting
        (`_backpressure`): a task, while the queue is under twice the limit. Else it waits
        here, loop and all, so that memory stays bounded."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False  # a thread process: it waits, as on the BEAM
        task = asyncio.current_task(loop)
        if task is None:
            return False  # a plain callback: nothing to suspend later
        flow = peer.flow
        if (flow.put - flow.taken + peer.backlog > 2 * self.busy_limit
                or self.outbox.qsize() > 2 * OUTBOX_ITEMS):
            if not flow.hard_limit_said:
                flow.hard_limit_said = True
                log.warning("node %s: a task on an event loop went on sending to %s past "
                            "twice busy_limit without awaiting an actornet.aio function; "
                            "its loop waits until %s drains", self.node_name, peer.name,
                            peer.name)
            return False
        wait = flow.drain_waiter
        if wait is None:
            wait = flow.drain_waiter = lambda loop: self.drain_waiter(peer, loop)
        _backpressure.owe(task, wait)
        return True

    def drain_waiter(self, peer: Queued,
                     loop: asyncio.AbstractEventLoop) -> asyncio.Future[None] | None:
        """A future on `loop` that completes once `peer` has drained, or None if it has."""
        fut = loop.create_future()
        flow = peer.flow
        with flow.drained:
            flow.async_waiters.append((loop, fut))
            if self.drained(peer):  # checked after joining: see `release`
                flow.async_waiters.remove((loop, fut))
                return None
            self.busy.add(peer)
        self.wake()
        return fut

    def drained(self, peer: Queued) -> bool:
        flow = peer.flow
        return ((flow.put - flow.taken + peer.backlog <= self.busy_limit // 2
                 and self.outbox.qsize() <= OUTBOX_ITEMS // 2)
                or peer.idle or not self.running)

    def check_busy(self) -> None:
        """Wake the senders waiting on a busy peer (`wait_drained`) whose queue has drained.
        Runs at the end of every loop turn. A waiting sender joins `busy` before each wait,
        holding the peer's lock from its own check to the wait, and wakes this thread: the
        notify, which needs that lock, cannot fall between the two."""
        for peer in list(self.busy):
            if self.drained(peer):
                self.release(peer)

    def release(self, peer: Queued) -> None:
        """Wake every sender waiting on `peer`."""
        self.busy.discard(peer)
        flow = peer.flow
        with flow.drained:
            flow.drained.notify_all()
            waiters, flow.async_waiters = flow.async_waiters, []
        for loop, fut in waiters:
            with contextlib.suppress(RuntimeError):  # its loop closed meanwhile
                loop.call_soon_threadsafe(_resolve, fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
