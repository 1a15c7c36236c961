"""The client's two front ends: a prompt on a terminal, and plain lines for programs.

Both hand what is typed to the client process one line at a time (`Feed`): the
next only once it has handled the last, so the room events that arrive
meanwhile are shown at once instead of waiting behind typed-ahead lines, and a
piped file of commands costs no more memory than one line.

Input is bounded: a line longer than `MAX_INPUT` characters is refused as it is
read (plain), or as it is typed or pasted (terminal), in time and memory that do
not grow with it.

On a terminal (`Prompt`): one prompt_toolkit application runs for the whole
session, so the terminal stays in raw mode and nothing typed ahead is echoed
twice; lines typed before the prompt appears (while connecting) wait, unechoed,
and show up in it (`held_input`). Ctrl-C clears a half-typed line, and on an
empty line quits, as does a second Ctrl-C; Ctrl-D on an empty line quits.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import IO, Any

import actornet

from .requests import MAX_INPUT

__all__ = ["Feed", "Plain", "Prompt", "RunLimit", "held_input", "read_line"]

_PASTE_START, _PASTE_END = "\x1b[200~", "\x1b[201~"


@contextlib.contextmanager
def held_input() -> Iterator[None]:
    """While connecting: keys typed are neither echoed nor lost (the prompt reads them)."""
    try:
        import termios
        import tty

        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
    except (ImportError, OSError, ValueError):  # not a terminal after all
        yield
        return
    tty.setcbreak(fd)  # no echo, no line editing by the terminal: the prompt does both
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class Feed:
    """Hands input to the client process one message at a time."""

    def __init__(self) -> None:
        self.taken = threading.Event()
        self.taken.set()
        self.pid: actornet.Pid | None = None
        self.done: threading.Event | None = None

    def handled(self) -> None:
        """Called by the client process when it has dealt with the last message."""
        self.taken.set()

    def put(self, msg: tuple[Any, ...]) -> bool:
        """Wait until the last message was handled, then send `msg`; False if the client
        has ended meanwhile."""
        assert self.pid is not None and self.done is not None
        while not self.taken.wait(0.1):
            if self.done.is_set():
                return False
        if self.done.is_set():
            return False
        self.taken.clear()
        actornet.send(self.pid, msg)
        return True


def read_line(stream: IO[bytes], limit: int = MAX_INPUT) -> tuple[str | None, int]:
    """The next line of `stream` (None at the end) and its length; a line longer than
    `limit` characters is read to its end and dropped (returned as ``("", length)``),
    holding at most about `limit` characters in memory.

    Example:
        >>> import io
        >>> stream = io.BytesIO(b"hello\\n" + b"x" * 50 + b"\\nbye")
        >>> read_line(stream, 10), read_line(stream, 10), read_line(stream, 10)
        (('hello', 5), ('', 50), ('bye', 3))
        >>> read_line(stream, 10)
        (None, 0)
    """
    budget = 4 * limit + 4  # bytes: UTF-8 takes up to 4 per character
    data = stream.readline(budget)
    if not data:
        return None, 0
    if data.endswith(b"\n") or len(data) < budget:
        text = data.decode("utf-8", "replace").rstrip("\r\n")
        return (text, len(text)) if len(text) <= limit else ("", len(text))
    length = len(data)
    while data and not data.endswith(b"\n"):  # skip the rest of an over-long line
        data = stream.readline(budget)
        length += len(data)
    # a count of bytes (not characters): enough to say how far over the limit it was
    return "", length - data.endswith(b"\n")


class RunLimit:
    r"""What the terminal sends, less the characters of one line beyond `limit`.

    prompt_toolkit handles each key typed in about 80 µs, so 100 KB pasted into a
    terminal that does not mark pastes would take 8 s; this filter, in front of its
    parser, drops a line's printable characters past the limit as they arrive
    (escape sequences, control keys and line ends pass), and within a marked
    (bracketed) paste keeps at most `limit` + 1 characters, so the paste is seen
    to be too long and refused whole. `dropped` counts what went since `clear`.

    Example:
        >>> f = RunLimit(3)
        >>> f.feed("abcdef\r"), f.dropped
        ('abc\r', 3)
        >>> f.clear(); f.feed("\x1b[200~" + "x" * 9 + "\x1b[201~"), f.dropped
        ('\x1b[200~xxxx\x1b[201~', 5)
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.run = 0  # printable characters in the line so far (or in the paste)
        self.dropped = 0
        self.escape = ""  # an escape sequence being read
        self.pasting = False

    def clear(self) -> None:
        self.dropped = 0

    def feed(self, data: str) -> str:
        out = []
        for ch in data:
            if self.escape or ch == "\x1b":
                out.append(ch)
                self.escape += ch
                if self.escape in (_PASTE_START, _PASTE_END):
                    self.pasting = self.escape == _PASTE_START
                    self.run = 0
                    self.escape = ""
                elif len(self.escape) > 1 and (self.escape[1] != "[" or (len(self.escape) > 2
                                               and "@" <= ch <= "~")):
                    self.escape = ""  # the end of some other sequence
            elif not self.pasting and (ch < " " or ch == "\x7f"):
                out.append(ch)  # Enter, Ctrl-C, Ctrl-U... end or change the line
                self.run = max(0, self.run - 1) if ch in "\x7f\x08" else 0
            elif self.run < self.limit + self.pasting:
                out.append(ch)
                self.run += 1
            else:
                self.dropped += 1
        return "".join(out)


def _bounded_input(limit: RunLimit) -> Any:
    """prompt_toolkit's terminal input with `limit` in front of its parser (its default
    input if this version of it does not read that way)."""
    from prompt_toolkit.input import create_input
    from prompt_toolkit.input.vt100 import Vt100Input

    class Bounded(Vt100Input):
        def read_keys(self) -> Any:
            self.vt100_parser.feed(limit.feed(self.stdin_reader.read()))
            keys, self._buffer = self._buffer, []
            return keys

    plain = create_input()
    if not isinstance(plain, Vt100Input) or not all(
            hasattr(plain, a) for a in ("stdin_reader", "vt100_parser", "_buffer")):
        return plain
    return Bounded(sys.stdin)


def _is_quit(line: str) -> bool:
    return line.strip().lower() == "/quit"


def _wait_either(a: threading.Event, b: threading.Event) -> bool:
    """Wait until `a` (connected) or `b` (finished) is set; True if connected."""
    while not (a.is_set() or b.is_set()):
        a.wait(0.05)
    return a.is_set() and not b.is_set()


class Plain(Feed):
    """One command per line from stdin, one event per line to stdout."""

    def out(self, line: str) -> None:
        print(line, flush=True)

    def run(self, pid: actornet.Pid, ready: threading.Event, done: threading.Event) -> None:
        self.pid, self.done = pid, done
        if not _wait_either(ready, done):
            return
        while not done.is_set():
            line, length = read_line(sys.stdin.buffer)
            if line is None:
                self.put(("eof",))
                return
            if not self.put(("input", line) if length <= MAX_INPUT else ("too_long", length)):
                return
            if _is_quit(line):
                return  # don't wait for more input (or EOF) once told to quit


class Prompt(Feed):
    """An interactive prompt; what arrives prints above it."""

    def __init__(self) -> None:
        super().__init__()
        self.app: Any = None
        self.lines: list[str] = []  # accepted lines waiting for the client process
        self.more = threading.Condition()

    def out(self, line: str) -> None:
        print(line, flush=True)  # patch_stdout puts it above the prompt

    def run(self, pid: actornet.Pid, ready: threading.Event, done: threading.Event) -> None:
        from prompt_toolkit.patch_stdout import patch_stdout

        self.pid, self.done = pid, done
        if not _wait_either(ready, done):
            return
        app = self._application()
        self.app = app
        threading.Thread(target=self._feed, daemon=True).start()
        threading.Thread(target=self._exit_when, args=(done,), daemon=True).start()
        with patch_stdout(raw=True):
            app.run()
        with self.more:  # the session is over: nothing more goes to the client
            self.lines.clear()
            self.more.notify_all()

    def _exit_when(self, done: threading.Event) -> None:
        done.wait()
        app = self.app
        with contextlib.suppress(Exception):  # it may have exited already
            app.loop.call_soon_threadsafe(lambda: app.is_running and app.exit())

    def _feed(self) -> None:
        """Hand accepted lines to the client process, one at a time."""
        assert self.done is not None
        while not self.done.is_set():
            with self.more:
                while not self.lines and not self.done.is_set():
                    self.more.wait(0.2)
                if not self.lines:
                    return
                line = self.lines.pop(0)
            msg = ("eof",) if line is None else ("input", line)
            if not self.put(msg) or msg[0] == "eof" or _is_quit(line or ""):
                return

    def _submit(self, line: str | None) -> None:
        with self.more:
            if len(self.lines) >= 100:  # a paste of many lines: bounded, and said
                print("! too many lines at once: the rest was dropped", flush=True)
                return
            self.lines.append(line)  # type: ignore[arg-type]
            self.more.notify_all()

    def _application(self) -> Any:
        from prompt_toolkit.application import Application
        from prompt_toolkit.buffer import Buffer
        from prompt_toolkit.history import InMemoryHistory
        from prompt_toolkit.key_binding import KeyBindings, merge_key_bindings
        from prompt_toolkit.key_binding.defaults import load_key_bindings
        from prompt_toolkit.keys import Keys
        from prompt_toolkit.layout import Layout, Window
        from prompt_toolkit.layout.controls import BufferControl
        from prompt_toolkit.layout.processors import BeforeInput

        refused = [False]  # said "too long" for the line being typed
        limit = RunLimit(MAX_INPUT)

        def accept(buffer: Buffer) -> bool:
            line = buffer.text
            refused[0] = False
            print(f"-> {line}", flush=True)  # the line stays in the transcript, as typed
            self._submit(line)
            return False  # clear the line; the application keeps running

        buffer = Buffer(multiline=False, accept_handler=accept, history=InMemoryHistory())
        keys = KeyBindings()

        def too_long(n: int) -> None:
            if not refused[0]:
                refused[0] = True
                print(f"! too long: a line holds at most {MAX_INPUT} characters; the rest "
                      "was refused", flush=True)
            limit.clear()

        @keys.add(Keys.Any)
        def _(event: Any) -> None:
            data = event.data * event.arg if event.arg > 1 else event.data
            if limit.dropped or len(buffer.text) + len(data) > MAX_INPUT:
                too_long(len(data) + limit.dropped)
                return
            buffer.insert_text(data)

        @keys.add(Keys.BracketedPaste)
        def _(event: Any) -> None:
            data = event.data.replace("\r\n", "\n").replace("\r", "\n")
            first, sep, _rest = data.partition("\n")
            if limit.dropped or len(first) + len(buffer.text) > MAX_INPUT:
                too_long(len(data) + limit.dropped)
                return
            buffer.insert_text(first)
            if sep:  # a pasted line break sends the line, like typing Enter
                buffer.validate_and_handle()
                for line in _rest.split("\n")[:100]:
                    if len(line) > MAX_INPUT:
                        too_long(len(line))
                    elif line:
                        print(f"-> {line}", flush=True)
                        self._submit(line)

        @keys.add("c-c")
        def _(event: Any) -> None:
            limit.clear()
            if buffer.text:
                buffer.reset()
                refused[0] = False
                print("* line cleared (Ctrl-C on an empty line, or /quit, quits)", flush=True)
            else:
                self._submit(None)

        @keys.add("c-d")
        def _(event: Any) -> None:
            if not buffer.text:
                self._submit(None)
            else:
                buffer.delete()

        control = BufferControl(buffer, input_processors=[BeforeInput("-> ")])
        return Application(layout=Layout(Window(control, height=1)),
                           key_bindings=merge_key_bindings([load_key_bindings(), keys]),
                           input=_bounded_input(limit), full_screen=False,
                           erase_when_done=True)
