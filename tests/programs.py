"""Child programs driven as a user or a script would: stdin written, stdout and stderr read
line by line, and each one killed at the end of its test, pass or fail."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.cluster import _die_with_parent
from tests.helpers import pump_lines

ROOT = Path(__file__).resolve().parent.parent
WAIT = 20.0


def child_env(**extra: str) -> dict[str, str]:
    """The test's environment with this checkout importable, plus `extra`; without
    PYTHONUNBUFFERED, so that a child's output is buffered as it would be for a user."""
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class Program:
    """One child process: its stdin, and its stdout and stderr lines."""

    def __init__(self, label: str, argv: list[str], *, env: dict[str, str],
                 cwd: Path = ROOT, stdin: bool = True, stdout: Any = subprocess.PIPE) -> None:
        self.name = label
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=stdout, stderr=subprocess.PIPE, text=True, preexec_fn=_die_with_parent,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = threading.Condition()
        self._open: list[object] = [self.proc.stderr]
        if self.proc.stdout is not None:
            self._open.append(self.proc.stdout)
        for stream, lines in [(self.proc.stderr, self.err), (self.proc.stdout, self.out)]:
            if stream is not None:
                threading.Thread(target=pump_lines, daemon=True, args=(
                    stream, lines, self._changed, lambda s=stream: self._open.remove(s))).start()

    def expect(self, pattern: str, lines: list[str] | None = None,
               after: int = 0) -> int:
        """Wait until a line of stdout (or `lines`) from index `after` on matches `pattern`;
        return its index."""
        lines = self.out if lines is None else lines

        def found() -> int | None:
            return next((i for i in range(after, len(lines)) if re.search(pattern, lines[i])),
                        None)

        with self._changed:
            if not self._changed.wait_for(lambda: found() is not None, WAIT):
                raise AssertionError(f"{self.name} never printed {pattern!r}:\n"
                                     + "\n".join([*self.out, "-- stderr:", *self.err]))
            index = found()
            assert index is not None
            return index

    def line(self, pattern: str, lines: list[str] | None = None) -> str:
        """The first line of stdout (or `lines`) that matches `pattern`, once printed."""
        lines = self.out if lines is None else lines
        return lines[self.expect(pattern, lines)]

    def type(self, *lines: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(line + "\n" for line in lines))
        self.proc.stdin.flush()

    def close_input(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def finished(self) -> tuple[int, list[str], list[str]]:
        """Wait for the end of the program and of its output: (status, stdout, stderr)."""
        status = self.proc.wait(WAIT)
        with self._changed:
            assert self._changed.wait_for(lambda: not self._open, WAIT), "output never ended"
        return status, self.out, self.err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT)


def programs_fixture() -> Iterator[list[Program]]:
    """A list to append started programs to; every one is killed at the end, the last
    started first: a node outlived by its port mapper for a moment would start another,
    which would outlive the test."""
    started: list[Program] = []
    try:
        yield started
    finally:
        for p in reversed(started):
            p.kill()
