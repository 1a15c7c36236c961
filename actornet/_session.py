"""One peer's distribution session, as a pure state machine: no sockets, threads or clocks.

After the handshake (`_handshake`) two nodes exchange *batches* (`_wire`) over two
connections, one each way: this node's DEALER carries what it sends, its ROUTER reads what
the peer sends. A `Session` is everything about that exchange with one peer that is
protocol, not I/O (in the style of h11): the transport moves the bytes, owns the sockets
and tells the session what happened, with the current time; the session says what to send
and what it means.

Out: ops queued (`queue`) are cut into batches of at most `_BATCH` ops and `MAX_FRAME`
bytes, numbered from 0 and, on a plain connection, MACed with the session key
(`next_batch`, then `sent` once the socket took it).

In: each batch (`feed`, or `receive` for a list) must carry the next sequence number and,
on a plain connection, a valid MAC; its ops are reassembled (`OpStream`), decoded and
checked. What they mean comes back in order: the ops for the node (`Ops` from `receive`),
`Mesh` (a peer's peers), `Down` (a GOODBYE, lost data, a signal over `max_message_size`),
`Refused` (too many malformed ops), `Broken` (a batch that is not the peer's: the
connection cannot be trusted), `Dropped` for each malformed thing dropped and `Oversized`
for ops skipped (for the log). TICKs only keep it alive.

Time: `tick` runs the failure detector (a connection attempt past its deadline; no
connection back within `tick_time`; nothing heard for `tick_time`) and says when a TICK is
due (nothing sent for `tick_time / 4`). `lost` starts the lost-peer grace: a peer whose
outbound connection dropped stays up until its connection into this node has closed too,
or `LOST_GRACE` has passed, so that what it sent before (its last messages, a GOODBYE) is
read first (`settled`).

States of the outbound half (the peer is *connected* in `UP`)::

    NEW, DOWN    connect        -> CONNECTING
    CONNECTING   connect        -> CONNECTING  (started over)
    CONNECTING   established    -> UP
    any          down           -> DOWN        (from UP: with a GOODBYE batch to send)

The inbound half is up between `inbound_up` (its handshake succeeded) and
`inbound_down` or `down`.

>>> a, b = Session("b@h", mesh=False), Session("a@h", mesh=False)
>>> a.connect(now=0.0, timeout=5.0); a.established(b"", now=0.1); b.inbound_up(b"", now=0.1)
>>> a.queue(encode_op([SEND, 1, 1, "hi"]))
>>> header, payload = a.next_batch(); a.sent(now=0.2)
>>> b.receive(header, payload, now=0.2)
[Ops(ops=[[1, 1, 1, 'hi']])]
>>> a.tick(now=4.2)  # b's connection back to a never came: the failure detector says so
Down(reason='it never connected back')
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

from actornet import _wire as w
from actornet._address import is_endpoint, is_name
from actornet._wire import (
    DEFAULT_MAX_MESSAGE_SIZE,
    GOODBYE,
    MAX_FRAME,
    OP_OVERHEAD,
    SEND,
    TICK,
    OpStream,
    cut_stream,
    decode_op,
    encode_op,
    pack_header,
    pack_ops,
    shown,
    unpack_header,
)
from actornet.errors import DecodeError, ProtocolError

__all__ = ["Broken", "Down", "Dropped", "Event", "LOST_GRACE", "Mesh", "Ops", "Oversized",
           "Refused", "Session", "State", "Tick"]

_BATCH = 512  # ops per batch at most
STRIKES = 100  # malformed ops from one peer within STRIKE_WINDOW s before it is refused
STRIKE_WINDOW = 60.0
# s a peer whose outbound connection dropped stays up while its connection into this node
# is still open, so that what it sent before (its last messages, a GOODBYE) is read first
LOST_GRACE = 0.2
_TICK_OP = encode_op([TICK])
_GOODBYE_OP = encode_op([GOODBYE])


class State(str, enum.Enum):
    """The outbound half of a session (a str: ``"up"`` in `node_info` and log lines)."""

    NEW = "new"
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Ops:
    """Ops for the node, decoded and checked (`_wire.decode_op`), in the order sent."""

    ops: list[list[Any]]


@dataclass(frozen=True, slots=True)
class Mesh:
    """The peer's other peers, ``[name, endpoint]`` each, checked (Erlang's mesh)."""

    entries: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Dropped:
    """Something malformed from the peer was dropped (for the log); counted in bad_frames."""

    why: str


@dataclass(frozen=True, slots=True)
class Oversized:
    """Ops over max_message_size were skipped (their sizes); counted in oversized_in."""

    sizes: list[int]


@dataclass(frozen=True, slots=True)
class Down:
    """The peer is down for `reason` (a GOODBYE, lost data, silence, ...)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Refused:
    """The peer sent too many malformed ops: down, and its connection in is closed."""

    reason: str


@dataclass(frozen=True, slots=True)
class Broken:
    """A batch on the connection into this node is not the peer's (its MAC failed): that
    connection is dropped and closed, and the peer down if it was up."""

    reason: str


@dataclass(frozen=True, slots=True)
class Tick:
    """A TICK is queued: nothing went to the peer for a while. Flush the session."""


Event = Ops | Mesh | Dropped | Oversized | Down | Refused | Broken | Tick


class Session:
    """The protocol of one peer connection pair (the module docstring).

    Args:
        name: the peer's node name (for messages).
        tick_time: seconds of silence before the peer is declared down.
        max_message_size: the largest op accepted; a larger one is skipped.
        mesh: whether the peer's NODES ops are taken (`Mesh`) or ignored.
        stats: counters to add to (bytes_in/out, batches_in/out, ticks_out,
            bad_frames, oversized_in); a fresh dict by default.
    """

    def __init__(self, name: str, *, tick_time: float = 4.0,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, mesh: bool = True,
                 stats: dict[str, int] | None = None) -> None:
        self.name = name
        self.tick_time = tick_time
        self.max_message_size = max_message_size
        self.mesh = mesh
        self.stats = stats if stats is not None else dict.fromkeys(
            ("bytes_out", "bytes_in", "batches_out", "batches_in", "ticks_out", "bad_frames",
             "oversized_in"), 0)
        self.state = State.NEW
        self.deadline = 0.0  # when a connection attempt times out
        # out: encoded ops not yet cut, the frames cut from them not yet sent
        self._ops: deque[bytes] = deque()
        self._frames: deque[bytes] = deque()
        self.backlog = 0  # bytes in `_ops`
        self.seq = 0  # of the next batch out
        self._key = b""  # MACs what goes out (plain connections)
        self.up_since = 0.0
        self.last_sent = 0.0
        self._lost: tuple[float, str] | None = None  # (since, why): `lost`
        # in
        self.inbound = False  # the connection into this node is authenticated
        self.in_seq = 0
        self._in_key = b""
        self._stream = OpStream(max_message_size)
        self.last_seen = 0.0
        self.strikes = 0  # malformed ops since strikes_since
        self.strikes_since = -math.inf  # the window starts at the first strike

    def __repr__(self) -> str:
        return f"<Session {self.name} {self.state} seq={self.seq} in_seq={self.in_seq}>"

    # -- transitions ------------------------------------------------------------------------

    def _move(self, to: State) -> None:
        """Change state; every allowed transition is here (the module docstring)."""
        match (self.state, to):
            case (State.NEW | State.DOWN | State.CONNECTING, State.CONNECTING):
                pass
            case (State.CONNECTING, State.UP):
                pass
            case (_, State.DOWN):
                pass
            case (was, _):
                raise ProtocolError(f"session with {self.name}: no transition {was} -> {to}")
        self.state = to

    def connect(self, now: float, timeout: float) -> None:
        """A connection attempt starts (or starts over); it fails at `now + timeout`."""
        self._move(State.CONNECTING)
        self.deadline = now + timeout

    def established(self, key: bytes, now: float) -> None:
        """The outbound handshake succeeded; `key` MACs each batch (b"": encrypted)."""
        self._move(State.UP)
        self.seq = 0
        self._frames.clear()
        self._key = key
        self.up_since = self.last_sent = now
        self._lost = None

    def down(self) -> tuple[bytes, bytes] | None:
        """The peer is down: drop what was queued for it and forget both connections.
        From `UP`, the GOODBYE batch to send on the connection being dropped (so the peer
        sees the link go too, instead of talking on into one no longer read)."""
        goodbye = None
        if self.state is State.UP:
            payload = pack_ops([_GOODBYE_OP])
            goodbye = (pack_header(self.seq, self._key, payload), payload)
        self._move(State.DOWN)
        self._ops.clear()
        self._frames.clear()
        self.backlog = self.seq = 0
        self._key = b""
        self._lost = None
        self.inbound_down()
        return goodbye

    def inbound_up(self, key: bytes, now: float) -> None:
        """The peer's connection into this node authenticated; `key` checks its MACs."""
        self.inbound = True
        self.in_seq = 0
        self._in_key = key
        self._stream = OpStream(self.max_message_size)
        self.last_seen = now

    @property
    def in_key(self) -> bytes:
        """The key that checks the MAC of each batch in (b"": encrypted, or not up)."""
        return self._in_key

    def inbound_down(self) -> None:
        """The peer's connection into this node is gone (or no longer its own)."""
        self.inbound = False
        self._in_key = b""

    # -- out --------------------------------------------------------------------------------

    def queue(self, op: bytes) -> None:
        """Queue an encoded op (`_wire.encode_op`)."""
        self._ops.append(op)
        self.backlog += len(op)

    def goodbye(self) -> None:
        """Queue a GOODBYE: this node is stopping."""
        self.queue(_GOODBYE_OP)

    @property
    def pending(self) -> bool:
        """Whether anything waits to be sent."""
        return bool(self._frames or self._ops)

    def next_batch(self) -> tuple[bytes, bytes] | None:
        """The next batch to send, header and payload (or None: nothing is queued). It is
        the same batch until `sent` says the socket took it."""
        frames = self._frames
        if not frames:
            ops = self._ops
            if not ops:
                return None
            taken = [ops.popleft()]
            size = len(taken[0])
            while (ops and len(taken) < _BATCH
                   and size + len(ops[0]) + OP_OVERHEAD <= MAX_FRAME):
                op = ops.popleft()
                taken.append(op)
                size += len(op) + OP_OVERHEAD
            frames.extend(cut_stream(taken))
            self.backlog -= sum(len(op) for op in taken)
        frame = frames[0]
        return pack_header(self.seq, self._key, frame), frame

    def sent(self, now: float) -> None:
        """The batch `next_batch` gave went out."""
        size = len(self._frames.popleft())
        self.seq += 1
        self.last_sent = now
        stats = self.stats
        stats["bytes_out"] += size
        stats["batches_out"] += 1

    # -- in ---------------------------------------------------------------------------------

    def receive(self, header: bytes, payload: bytes, now: float) -> list[Event]:
        """A batch on the peer's connection into this node: what it means, in order, with
        the ops for the node grouped into `Ops` events (`feed`, as a list)."""
        events: list[Event] = []
        ops: list[list[Any]] = []
        for item in self.feed(header, payload, now):
            if isinstance(item, list):
                ops.append(item)
                continue
            if ops:
                events.append(Ops(ops))
                ops = []
            events.append(item)
        if ops:
            events.append(Ops(ops))
        return events

    def feed(self, header: bytes, payload: bytes,
             now: float) -> Iterator[list[Any] | Event]:
        """A batch on the peer's connection into this node: each op for the node (a list,
        checked by `_wire.decode_op`) and each event, in order, as they are decoded. After
        a `Down`, `Refused` or `Broken` nothing more of it is taken. (One op at a time, so
        that the I/O thread holds no batch of decoded ops: `receive` groups them.)"""
        self.last_seen = now
        stats = self.stats
        stats["batches_in"] += 1
        try:
            seq = unpack_header(header, self._in_key, payload)
        except ProtocolError as e:
            stats["bad_frames"] += 1
            yield Dropped(f"bad batch header: {e}")
            if self._in_key:
                # Not from whoever authenticated on this connection (or corrupted):
                # nothing more that comes on it can be trusted.
                yield Broken("a batch on its connection into this node failed its MAC")
                return
            refused = self.strike(now)
            if refused is not None:
                yield refused
            return
        if seq != self.in_seq:
            stats["bad_frames"] += 1
            yield Dropped(f"batch {seq} arrived when {self.in_seq} was due: data was lost")
            yield Down("lost data on the connection")
            return
        self.in_seq += 1
        stats["bytes_in"] += len(payload)
        limit = self.max_message_size
        stream = self._stream
        for frame in stream.feed(payload):
            try:
                op = decode_op(frame, limit)
            except (DecodeError, ProtocolError) as e:
                stats["bad_frames"] += 1
                yield Dropped(str(e))
                refused = self.strike(now)
                if refused is not None:
                    yield refused
                    return
                continue
            code = op[0]
            if code == SEND:  # the common case first
                yield op
                continue
            match code:
                case w.TICK:  # it only keeps the connection alive
                    pass
                case w.GOODBYE:
                    yield Down("it stopped")
                    return
                case w.NODES:
                    if self.mesh:
                        refused = yield from self._meet(op[1], now)
                        if refused is not None:
                            yield refused
                            return
                case _:
                    yield op
        if stream.skipped:
            yield from self._oversized(stream)

    def _meet(self, entries: list[Any], now: float) -> Generator[Event, None, Refused | None]:
        """A `Mesh` of the well-formed ``[name, endpoint]`` entries of a NODES op; each
        other entry is dropped and struck. Returns the refusal, if the strikes reach it."""
        good: list[tuple[str, str]] = []
        refused = None
        for entry in entries:
            match entry:
                case [str() as name, str() as endpoint] if (
                        is_name(name) and is_endpoint(endpoint)):
                    good.append((name, endpoint))
                case _:
                    self.stats["bad_frames"] += 1
                    yield Dropped(f"a bad entry in its list of peers: {shown(entry, 80)}")
                    refused = self.strike(now)
                    if refused is not None:
                        break
        if good:
            yield Mesh(good)
        return refused

    def _oversized(self, stream: OpStream) -> Iterator[Event]:
        """Ops over max_message_size were skipped. A plain message is lost alone; a lost
        signal or reply would leave a link, monitor or call waiting for ever, so then the
        peer is down (its links, monitors and calls fire with noconnection)."""
        signals = stream.signals_skipped
        self.stats["oversized_in"] += len(stream.skipped)
        sizes = list(stream.skipped)
        stream.skipped.clear()
        stream.signals_skipped = 0
        yield Oversized(sizes)
        if signals and self.state is State.UP:
            yield Down(f"it sent {signals} signal(s) or repl(ies) over max_message_size")

    def strike(self, now: float) -> Refused | None:
        """The peer sent something malformed (each is reported where it is found): refuse
        it once it has sent `STRIKES` within `STRIKE_WINDOW` seconds."""
        if now - self.strikes_since > STRIKE_WINDOW:
            self.strikes, self.strikes_since = 0, now
        self.strikes += 1
        if self.strikes < STRIKES:
            return None
        why = f"it sent {self.strikes} malformed messages in {now - self.strikes_since:.0f} s"
        self.strikes = 0
        return Refused(why)

    # -- time -------------------------------------------------------------------------------

    def tick(self, now: float) -> Down | Tick | None:
        """The failure detector, run every `tick_time / 8` s or so: `Down` if the peer is
        to be declared down now, `Tick` if a TICK was queued (nothing sent for
        `tick_time / 4`), else None."""
        match self.state:
            case State.CONNECTING if now > self.deadline:
                return Down("connection timed out")
            case State.UP:
                if not self.inbound:
                    if now - self.up_since > self.tick_time:
                        return Down("it never connected back")
                elif now - self.last_seen > self.tick_time:
                    return Down(f"no tick for {now - self.last_seen:.1f} s")
                if now - self.last_sent >= self.tick_time / 4:
                    self.queue(_TICK_OP)
                    self.stats["ticks_out"] += 1
                    return Tick()
        return None

    def lost(self, why: str, now: float) -> None:
        """The outbound connection of an `UP` peer dropped: it is down once what it sent
        before is read (`settled`); the first reason given stands."""
        if self.state is State.UP and self._lost is None:
            self._lost = (now, why)

    @property
    def losing(self) -> bool:
        """Whether `lost` was said and the peer is not down yet."""
        return self._lost is not None

    def settled(self, now: float, inbound_closed: bool) -> bool:
        """Whether a lost peer may be declared down now: its connection into this node is
        gone or has closed (`inbound_closed`; libzmq reads a connection's data before its
        end), or `LOST_GRACE` has passed."""
        lost = self._lost
        return lost is not None and (not self.inbound or inbound_closed
                                     or now - lost[0] >= LOST_GRACE)

    def take_lost(self) -> Down | None:
        """The `Down` of a lost peer (once it has `settled` and what it sent was read), or
        None if it went down meanwhile."""
        lost, self._lost = self._lost, None
        if lost is None or self.state is not State.UP:
            return None
        return Down(lost[1])
