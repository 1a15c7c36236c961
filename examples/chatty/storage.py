"""Room history on disk: one append-only log per room on each node.

File ``<data dir>/rooms/<room>.log`` is a sequence of records, each a 4-byte
big-endian length and then one actornet wire term ``[seq, eid, event]`` (the same
safe codec as the network: nothing is unpickled). A replica appends every event
it applies, and with ``fsync="always"`` (the default) it calls ``fsync`` before
it answers the sequencer, so an acknowledged message is on the disk of every
replica. With ``fsync="never"`` the OS decides when to write: a crash of the
machine (not just the process) can then lose the last events, which the
other replicas still have.

A record cut short by a crash is dropped on replay (the file is truncated to
the last whole record).

A log holds no file descriptor between writes: records appended are kept in
memory until `RoomLog.sync`, which opens the file, writes them, fsyncs (per the
policy) and closes it. Every replica syncs before it answers the sequencer, so
this costs one open and close per replication round, and a node with hundreds
of idle rooms holds no descriptor for them. When a replica takes over another replica's history (a
sync from the sequencer, or a merge after a partition), the part of its log
from the first record that differs is rewritten, atomically.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import Any

from actornet._codec import decode, encode
from actornet.errors import DecodeError

__all__ = ["ROOM", "configure", "open_room", "rooms_on_disk", "RoomLog"]

# A valid room name; it is also the name of the room's log file, so nothing else may be.
ROOM = re.compile(r"^[a-z0-9][a-z0-9_-]{0,29}$")

_LEN = struct.Struct(">I")
_config: dict[str, Any] = {"dir": None, "fsync": True}


def configure(data_dir: str | os.PathLike[str] | None, fsync: bool = True) -> None:
    """Where this node keeps room logs (None: in memory only), and the fsync policy."""
    _config["dir"] = None if data_dir is None else Path(data_dir)
    _config["fsync"] = fsync
    if data_dir is not None:
        (Path(data_dir) / "rooms").mkdir(parents=True, exist_ok=True)


def rooms_on_disk() -> list[str]:
    """Rooms this node has a log for."""
    base = _config["dir"]
    if base is None:
        return []
    return sorted(p.stem for p in (base / "rooms").glob("*.log") if ROOM.fullmatch(p.stem))


def open_room(room: str) -> RoomLog | None:
    """The log of `room` in the data directory (None when logs are not kept).

    A name that is not a valid room name is refused, whatever its caller
    checked: the name becomes a file name under the data directory.

    Example:
        >>> open_room("../etc")
        Traceback (most recent call last):
        ...
        ValueError: invalid room name '../etc'
    """
    if not isinstance(room, str) or not ROOM.fullmatch(room):
        raise ValueError(f"invalid room name {room!r}")
    base = _config["dir"]
    return None if base is None else RoomLog(base / "rooms" / f"{room}.log", _config["fsync"])


class RoomLog:
    """The append-only log of one room on this node (no descriptor held between syncs)."""

    def __init__(self, path: Path, fsync: bool) -> None:
        self.path = path
        self.fsync = fsync
        self.pending: list[bytes] = []  # records appended since the last sync
        # created now (mode 0600), so that `rooms_on_disk` lists a room as soon as it is used
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))

    def replay(self) -> list[tuple[int, int, tuple[Any, ...]]]:
        """Every whole record ``(seq, eid, event)``, in order; a torn tail is cut off."""
        data = Path(self.path).read_bytes()
        events: list[tuple[int, int, tuple[Any, ...]]] = []
        offset = 0
        while offset + _LEN.size <= len(data):
            (size,) = _LEN.unpack_from(data, offset)
            end = offset + _LEN.size + size
            if end > len(data):
                break
            try:
                seq, eid, event = decode(data[offset + _LEN.size:end])
                events.append((int(seq), int(eid), tuple(event)))
            except (DecodeError, ValueError, TypeError):
                break
            offset = end
        if offset != len(data):
            os.truncate(self.path, offset)  # the crash cut the last record short
        return events

    def append(self, seq: int, eid: int, event: tuple[Any, ...]) -> None:
        """Add a record; it reaches the file at the next `sync`."""
        body = encode([seq, eid, event])
        self.pending.append(_LEN.pack(len(body)) + body)

    def sync(self) -> None:
        """Write what was appended, make it durable (per the fsync policy), close the file."""
        if not self.pending:
            return
        data, self.pending = b"".join(self.pending), []
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def rewrite(self, events: list[tuple[int, int, tuple[Any, ...]]]) -> None:
        """Replace the log from the first of `events` on, atomically (write, fsync, rename).

        Older records stay: a replica keeps only recent events in memory, and a
        merge or a sync replaces only the part of the history that differs.
        """
        self.sync()
        first = events[0][0] if events else 1
        kept = [r for r in self.replay() if r[0] < first]
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for seq, eid, event in [*kept, *events]:
                body = encode([seq, eid, event])
                f.write(_LEN.pack(len(body)) + body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def close(self) -> None:
        """Write what is still pending (the log holds nothing open)."""
        self.sync()
