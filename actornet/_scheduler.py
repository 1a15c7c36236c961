"""The event loop a node's lightweight processes run on, and its watchdog.

A node's lightweight processes are asyncio tasks on one loop: the node's own
*scheduler thread* (started on first use), or an application's running loop
that the node was started from (`actornet.aio.start_node`). Any other thread
(a thread process, the transport's I/O thread, a timer) hands work to the loop
through `submit`, which batches: one ``call_soon_threadsafe`` (one write to
the loop's self-pipe) per batch of work, not one per message.

The watchdog notices a process that holds the loop (a CPU loop, a
``time.sleep``, a blocking call): every process on the loop is stalled while
it runs, so it is logged with its pid and function, once per stall, as
asyncio's debug mode reports a slow callback. The transport's ticks run on
their own thread, so such a stall never gets the node declared down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["Scheduler", "Deadlines", "scheduler_of", "on_loop_thread", "BLOCKED_AFTER",
           "TIMEOUT", "loop_threads"]

log = logging.getLogger("actornet")

BLOCKED_AFTER = 0.25
"""Seconds a process may hold the scheduler before the watchdog reports it."""

_BEAT = 0.05  # s between two heartbeats of a watched loop
_GRAIN = 0.005  # s: waits with deadlines in the same slice share one timer

TIMEOUT: Any = object()
"""What an expired waiter's future is resolved with (`Deadlines`)."""

_schedulers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Scheduler] = (
    weakref.WeakKeyDictionary()
)
_schedulers_lock = threading.Lock()
loop_threads: dict[int, asyncio.AbstractEventLoop] = {}  # thread id -> the loop it runs


class Deadlines:
    """Timeouts for many short waits: one loop timer per 5 ms slice of deadlines.

    A call or a receive with a timeout usually ends long before it: a timer per
    wait (``loop.call_later``) would cost more than the wait itself. A waiter
    joins the set of its slice; when the slice's time comes, every future still
    in it is resolved with `TIMEOUT`. A deadline is thus kept to within 5 ms,
    never early. Loop thread only.
    """

    __slots__ = ("_loop", "_slices")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._slices: dict[int, set[asyncio.Future[Any]]] = {}

    def add(self, delay: float, fut: asyncio.Future[Any]) -> int:
        """Resolve `fut` with `TIMEOUT` in `delay` seconds unless it is done; its slice."""
        key = -int(-(self._loop.time() + delay) // _GRAIN)  # rounded up: never early
        waiters = self._slices.get(key)
        if waiters is None:
            waiters = self._slices[key] = set()
            self._loop.call_at(key * _GRAIN, self._expire, key)
        waiters.add(fut)
        return key

    def discard(self, key: int, fut: asyncio.Future[Any]) -> None:
        waiters = self._slices.get(key)
        if waiters is not None:
            waiters.discard(fut)

    def _expire(self, key: int) -> None:
        for fut in self._slices.pop(key, ()):
            if not fut.done():
                fut.set_result(TIMEOUT)


class Scheduler:
    """One event loop, and a batched way for other threads to run work on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread_id: int, owner: str) -> None:
        self.loop = loop
        self.deadlines = Deadlines(loop)
        self.thread_id = thread_id
        self.owner = owner  # for log lines: the node, or "an application loop"
        self._foreign: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._pending = False
        self._thread: threading.Thread | None = None  # when the scheduler owns its loop
        self._watchdog: threading.Thread | None = None
        self._watching = threading.Event()  # set: stop watching
        self.last_beat = time.monotonic()
        self.blocked_after = BLOCKED_AFTER

    # -- starting and stopping ----------------------------------------------------------

    @classmethod
    def start_thread(cls, owner: str) -> Scheduler:
        """A new loop on a new daemon thread, named after `owner` (the node)."""
        ready = threading.Event()
        box: list[Scheduler] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            sched = cls(loop, threading.get_ident(), owner)
            _register(sched)
            box.append(sched)
            ready.set()
            try:
                loop.run_forever()
            finally:
                _unregister(sched)
                _cancel_all(loop)
                loop.close()

        thread = threading.Thread(target=run, name=f"actornet-scheduler {owner}", daemon=True)
        thread.start()
        ready.wait()
        sched = box[0]
        sched._thread = thread
        sched.watch()
        return sched

    @classmethod
    def attach(cls, loop: asyncio.AbstractEventLoop, owner: str) -> Scheduler:
        """The scheduler of a loop that already runs (in the calling thread)."""
        sched = scheduler_of(loop)
        sched.owner = owner
        sched.watch()
        return sched

    def stop(self) -> None:
        """Stop watching; stop and close the loop if this scheduler owns it."""
        self._watching.set()
        thread = self._thread
        if thread is None:
            return
        with contextlib.suppress(RuntimeError):  # closed already
            self.loop.call_soon_threadsafe(self.loop.stop)
        if thread is not threading.current_thread():
            thread.join(5.0)

    @property
    def owns_loop(self) -> bool:
        return self._thread is not None

    def on_loop(self) -> bool:
        """True in the thread that runs this scheduler's loop."""
        return threading.get_ident() == self.thread_id

    # -- running work on the loop ----------------------------------------------------------

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop soon; from any thread, in submission order."""
        self._foreign.append((fn, args))
        if not self._pending:
            self._pending = True
            try:
                self.loop.call_soon_threadsafe(self._run_foreign)
            except RuntimeError:  # the loop is closed: the node is stopping
                self._pending = False

    def _run_foreign(self) -> None:
        # Cleared before draining: work submitted from now on schedules another drain.
        self._pending = False
        work = self._foreign
        for _ in range(len(work)):  # what is here now; later work gets its own turn
            fn, args = work.popleft()
            try:
                fn(*args)
            except Exception:
                log.exception("actornet scheduler of %s: %r failed", self.owner, fn)

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` now if on the loop's thread, else soon on the loop."""
        if threading.get_ident() == self.thread_id:
            fn(*args)
        else:
            self.submit(fn, *args)

    def wake(self, fut: asyncio.Future[Any], value: Any = None) -> None:
        """Resolve `fut` (a waiter of this loop) with `value`, from any thread."""
        if threading.get_ident() == self.thread_id:
            if not fut.done():
                fut.set_result(value)
        else:
            self.submit(_resolve, fut, value)

    # -- the watchdog ------------------------------------------------------------------------

    def watch(self) -> None:
        """Start the heartbeat and the thread that reports a blocked loop (once)."""
        if self._watchdog is not None:
            return
        self.last_beat = time.monotonic()
        self.call(self._beat)
        self._watchdog = threading.Thread(target=self._watch, daemon=True,
                                          name=f"actornet-watchdog {self.owner}")
        self._watchdog.start()

    def _beat(self) -> None:
        self.last_beat = time.monotonic()
        if not self._watching.is_set():
            self.loop.call_later(_BEAT, self._beat)

    def _watch(self) -> None:
        reported = False
        while not self._watching.wait(_BEAT):
            held = time.monotonic() - self.last_beat
            if held < self.blocked_after + _BEAT:
                if reported:
                    log.warning("the scheduler of %s runs again", self.owner)
                reported = False
                continue
            if not reported:
                reported = True
                log.warning("the scheduler of %s has been blocked for %.2f s by %s: every "
                            "lightweight process on it waits meanwhile. Await instead of "
                            "blocking (e.g. `await asyncio.sleep`, `await actornet.aio."
                            "receive`), or run blocking code in a thread process",
                            self.owner, held, self.culprit())

    def culprit(self) -> str:
        """What the loop's thread is running now: a process (pid and function) if it can tell."""
        frame = sys._current_frames().get(self.thread_id)
        where = _where(frame) if frame is not None else "?"
        task = asyncio.current_task(self.loop)  # read from this thread: a dict lookup
        proc = getattr(task, "actornet_proc", None)
        if proc is not None:
            return f"lightweight process {proc.pid!r} running {proc.function} (at {where})"
        if task is not None:
            return f"the asyncio task {task.get_name()} (at {where})"
        return f"code that is not a process (at {where})"


def _where(frame: FrameType) -> str:
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


def _resolve(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _register(sched: Scheduler) -> None:
    with _schedulers_lock:
        _schedulers[sched.loop] = sched
        loop_threads[sched.thread_id] = sched.loop


def _unregister(sched: Scheduler) -> None:
    with _schedulers_lock:
        _schedulers.pop(sched.loop, None)
        if loop_threads.get(sched.thread_id) is sched.loop:
            del loop_threads[sched.thread_id]


def scheduler_of(loop: asyncio.AbstractEventLoop) -> Scheduler:
    """The scheduler of `loop`, made on first use (for a loop running in this thread)."""
    sched = _schedulers.get(loop)
    if sched is None:
        with _schedulers_lock:
            sched = _schedulers.get(loop)
            if sched is None:
                sched = Scheduler(loop, threading.get_ident(), "an asyncio loop")
                _schedulers[loop] = sched
                loop_threads[sched.thread_id] = loop
    return sched


def on_loop_thread() -> bool:
    """True if the calling thread is running an asyncio event loop right now."""
    return asyncio._get_running_loop() is not None


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on a loop that stops, and let it unwind."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
