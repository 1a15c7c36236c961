"""Data frames between authenticated nodes: operations and batches. No I/O.

After the handshake (`_handshake`), node A sends to node B over A's DEALER,
which B's ROUTER reads. What A sends is one *stream* of operations, each a u32
big-endian length and then a codec-encoded list [OP, args...], cut into
*batches* of at most `MAX_FRAME` bytes. Each ZeroMQ message is one batch of
two frames::

    frame 0   header: b"AD" + u64 big-endian sequence number of the batch, and
              on a plain (unencrypted) connection a 16-byte MAC of the batch
    frame 1   the next piece of the stream (whole operations, or a piece of
              one that is larger than a frame)

The MAC is HMAC-SHA256, keyed with the connection's session key (`_handshake`),
over the header's first 10 bytes and frame 1, cut to 16 bytes. It ties every
batch to the connection that authenticated: a program that relays a handshake
between two nodes learns neither the cookie nor the key, so it cannot add a
batch of its own, and one batch cannot be moved to another connection (another
key) or repeated or reordered in its own (the sequence number is covered). On an
encrypted connection CurveZMQ authenticates every frame, and there is no MAC.

One frame for many operations: ZeroMQ's per-frame cost in Python was most of
the cost of a small message. Frames of at most `MAX_FRAME` bytes: the node's
socket refuses any larger frame before reading it, so a peer that has not
authenticated can make it hold no more than that, while an authenticated peer
still sends messages up to the node's `max_message_size`. A message over the
receiver's `max_message_size` is skipped by its declared length (`OpStream`):
the stream stays in step, and the messages around it are delivered.

Sequence numbers start at 0 per connection and go up by one per batch, so a
lost batch is a detected gap (the connection is then declared broken, like a
dropped TCP connection in Erlang), never a silent hole.

Operations mirror Erlang's distribution protocol:

=================  ======================================================
``[SEND, id, creation, msg]``             message to a local pid
``[REG_SEND, from, name, msg]``           message to a registered name
``[LINK, from, to]`` / ``[UNLINK, ...]``  link bookkeeping
``[EXIT, from, to, reason]``              exit signal through a link
``[EXIT2, from, to, reason]``             ``exit/2``
``[MONITOR, watcher, target, ref]``       target is a pid or a name
``[DEMONITOR, watcher, target, ref]``
``[DOWN, watcher, ref, item, reason]``    a monitor fired
``[ALIAS, to, ref, msg]``                 a reply to a pending call
``[SPAWN, requester, ref, module, qualname, args, flags]``
``[SPAWN_REPLY, requester, ref, result, flags]``  result: Pid or error text
``[TICK]``                                keep-alive
``[GOODBYE]``                             the sender is stopping
``[NODES, [[name, endpoint], ...]]``      the sender's peers, for meshing
=================  ======================================================
"""

from __future__ import annotations

import hmac
import reprlib
import struct
from typing import Any

from actornet._address import is_name
from actornet._codec import decode, encode
from actornet._ids import Pid, Ref
from actornet.errors import ProtocolError

__all__ = [
    "pack_header",
    "unpack_header",
    "MAC_SIZE",
    "pack_ops",
    "cut_stream",
    "OpStream",
    "split_ops",
    "encode_op",
    "decode_op",
    "shown",
    "MAX_FRAME",
]

SEND = 1
REG_SEND = 2
LINK = 3
UNLINK = 4
EXIT = 5
EXIT2 = 6
MONITOR = 7
DEMONITOR = 8
DOWN = 9
ALIAS = 10
SPAWN = 11
SPAWN_REPLY = 12
TICK = 13
GOODBYE = 14
NODES = 15
SEND_MANY = 16  # one message for several local pids of the receiving node (pg.broadcast)
# the default of a node's max_message_size, in bytes: the largest op it sends or accepts
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
# ops that only carry a message: one skipped for its size loses that message alone
_PLAIN = (SEND, REG_SEND, SEND_MANY)

# spawn flags
SPAWN_LINK = 1
SPAWN_RPC = 2
SPAWN_MONITOR = 4
SPAWN_LIGHT = 8  # the function is `async def`: run it as a lightweight process

_HEADER = struct.Struct("!2sQ")
_OPLEN = struct.Struct("!I")
OP_OVERHEAD = _OPLEN.size
MAX_FRAME = 256 * 1024  # bytes in one data frame; also the most a stranger can make us hold
_MAGIC = b"AD"

# op code -> the types its arguments must have (after the op code)
_SHAPES: dict[int, tuple[Any, ...]] = {
    SEND: (int, int, object),
    REG_SEND: (Pid, str, object),
    LINK: (Pid, Pid),
    UNLINK: (Pid, Pid),
    EXIT: (Pid, Pid, object),
    EXIT2: (Pid, Pid, object),
    MONITOR: (Pid, (Pid, str), Ref),
    DEMONITOR: (Pid, (Pid, str), Ref),
    DOWN: (Pid, Ref, object, object),
    ALIAS: (Pid, Ref, object),
    SPAWN: (Pid, Ref, str, str, tuple, int),
    SPAWN_REPLY: (Pid, Ref, (Pid, str), int),
    TICK: (),
    GOODBYE: (),
    NODES: (list,),
    SEND_MANY: (list, object),  # [[id, creation], ...], msg
}


MAC_SIZE = 16  # bytes of a batch's MAC


def pack_header(seq: int, key: bytes = b"", payload: bytes = b"") -> bytes:
    """The first frame of batch number `seq`; with a session `key`, followed by the MAC of
    the batch whose second frame is `payload`.

    >>> len(pack_header(7)), len(pack_header(7, b"k" * 32, b"ops"))
    (10, 26)
    """
    head = _HEADER.pack(_MAGIC, seq)
    if key:
        return head + _mac(key, head, payload)
    return head


def unpack_header(frame: bytes, key: bytes = b"", payload: bytes = b"") -> int:
    """The sequence number of a batch header; `ProtocolError` if it is not one, or if,
    with a session `key`, its MAC is not that of the batch whose second frame is `payload`.

    >>> key = b"k" * 32
    >>> unpack_header(pack_header(7, key, b"ops"), key, b"ops")
    7
    >>> unpack_header(pack_header(7, key, b"ops"), key, b"forged")
    Traceback (most recent call last):
    ...
    actornet.errors.ProtocolError: batch 7 failed its MAC: not sent by the peer that ...
    """
    size = _HEADER.size + (MAC_SIZE if key else 0)
    if len(frame) != size or frame[:2] != _MAGIC:
        raise ProtocolError(f"not a data batch header ({len(frame)} bytes, {size} expected)")
    head = frame[:_HEADER.size]
    seq = int(_HEADER.unpack(head)[1])
    if key and not hmac.compare_digest(frame[_HEADER.size:], _mac(key, head, payload)):
        raise ProtocolError(f"batch {seq} failed its MAC: not sent by the peer that "
                            "authenticated on this connection")
    return seq


def _mac(key: bytes, head: bytes, payload: bytes) -> bytes:
    return hmac.digest(key, head + payload, "sha256")[:MAC_SIZE]


def pack_ops(ops: list[bytes]) -> bytes:
    """The second frame of a batch: each op prefixed by its length."""
    pack = _OPLEN.pack
    return b"".join([piece for op in ops for piece in (pack(len(op)), op)])


def cut_stream(ops: list[bytes], limit: int = 0) -> list[bytes]:
    """The frames that carry `ops`: their stream cut into pieces of at most `limit` bytes."""
    stream = pack_ops(ops)
    limit = limit or MAX_FRAME
    if len(stream) <= limit:
        return [stream]
    return [stream[i:i + limit] for i in range(0, len(stream), limit)]


class OpStream:
    """Reassembles operations from a peer's frames, in sequence order.

    `feed` returns the operations completed by one frame; an operation cut
    across frames waits in a buffer. An operation whose declared length is over
    `max_size` is skipped instead, none of it buffered: its bytes are consumed as
    they come (across frames if need be), its size is appended to `skipped`, and
    the operations before and after it are returned as usual. The stream stays in
    step because every operation's length is declared, so one too large is no
    reason to doubt the next. A skipped operation that is not a plain message
    (`SEND`, `REG_SEND`: a signal, a call's reply, a spawn) also counts in
    `signals_skipped`, since losing it would break a link, a monitor or a call;
    its first two bytes, which say what it is, are waited for before it is skipped.

    >>> s = OpStream(max_size=4)
    >>> [bytes(op) for op in s.feed(pack_ops([b"ok", b"too large", b"ok"]))], s.skipped
    ([b'ok', b'ok'], [9])
    >>> s.signals_skipped  # b"to..." is not the start of a SEND
    1
    """

    __slots__ = ("_buf", "_max", "_skip", "signals_skipped", "skipped")

    def __init__(self, max_size: int) -> None:
        self._buf = bytearray()
        self._max = max_size
        self._skip = 0  # bytes of a skipped operation still to come
        # sizes of operations skipped, and how many of them were not plain messages;
        # the reader clears both
        self.skipped: list[int] = []
        self.signals_skipped = 0

    def feed(self, frame: bytes) -> list[bytes | memoryview]:
        offset = 0
        if self._skip:  # the rest of an operation over the limit: consume, never buffer
            if len(frame) <= self._skip:
                self._skip -= len(frame)
                return []
            offset, self._skip = self._skip, 0
        if self._buf:
            self._buf += frame
            data: bytes | bytearray = self._buf
        else:
            data = frame
        view = memoryview(data)
        ops: list[bytes | memoryview] = []
        end, size = len(view), _OPLEN.size
        while end - offset >= size:
            (n,) = _OPLEN.unpack_from(view, offset)
            start = offset + size
            if n > self._max:
                if end - start < min(n, 2):
                    break  # what it is shows in its first two bytes: wait for them
                self.skipped.append(n)
                if n < 2 or view[start] & 0xF0 != 0x90 or view[start + 1] not in _PLAIN:
                    self.signals_skipped += 1
                if end - start < n:
                    self._skip = n - (end - start)
                    offset = end
                    break
                offset = start + n
                continue
            if end - start < n:
                break
            ops.append(view[start:start + n] if data is frame else bytes(view[start:start + n]))
            offset = start + n
        rest = bytes(view[offset:])
        view.release()
        self._buf = bytearray(rest)
        return ops

    @property
    def pending(self) -> int:
        """Bytes of an operation not complete yet (0 while skipping one).

        >>> s = OpStream(max_size=100)
        >>> s.feed(pack_ops([b"abc"])[:5]), s.pending
        ([], 5)
        """
        return len(self._buf)


def split_ops(payload: bytes) -> list[memoryview]:
    """The ops of a batch's second frame; `ProtocolError` if it is cut or padded."""
    view = memoryview(payload)
    ops = []
    offset, end, size = 0, len(view), _OPLEN.size
    unpack = _OPLEN.unpack_from
    while offset < end:
        if offset + size > end:
            raise ProtocolError("a batch ends inside an op's length")
        (n,) = unpack(view, offset)
        offset += size
        if offset + n > end:
            raise ProtocolError(f"an op of {n} bytes runs past the end of its batch")
        ops.append(view[offset:offset + n])
        offset += n
    return ops


def encode_op(op: list[Any], max_size: int | None = None) -> bytes:
    """Encode one operation (raises `TypeError` for an unsendable value in it)."""
    return encode(op, max_size=max_size)


def decode_op(frame: bytes | memoryview, max_size: int | None = None) -> list[Any]:
    """Decode and validate one operation; `ProtocolError`/`DecodeError` if malformed."""
    op = decode(frame, max_size=max_size)
    # The common case first, checked inline: [SEND, id, creation, msg].
    if (op.__class__ is list and len(op) == 4 and op[0].__class__ is int and op[0] == SEND
            and op[1].__class__ is int and op[2].__class__ is int):
        return op
    if op.__class__ is not list or not op or op[0].__class__ is not int:
        raise ProtocolError("an operation is a list starting with an op code, got "
                            f"{shown(op, 80)}")
    shape = _SHAPES.get(op[0])
    if shape is None:
        raise ProtocolError(f"unknown op code {shown(op[0], 24)}")
    if len(op) != len(shape) + 1:
        raise ProtocolError(f"op {op[0]} takes {len(shape)} arguments, got {len(op) - 1}")
    for arg, want in zip(op[1:], shape, strict=True):
        if want is not object and (not isinstance(arg, want) or (
                arg.__class__ is Pid and not is_name(arg.node))):
            raise ProtocolError(f"op {op[0]}: bad argument {shown(arg, 60)}")
    return op


_REPR = reprlib.Repr()  # bounded in time: a few items of each container, a few levels
_REPR.maxstring = _REPR.maxother = 80


def shown(value: Any, limit: int) -> str:
    """`value` for a log line or an error message: its repr cut to `limit` characters, or
    what it is if it has none (a peer's value may be an int too long to print, or nested
    too deeply for repr); never raises.

    >>> shown(list(range(100)), 20)
    '[0, 1, 2, 3, 4, 5...'
    >>> shown(10**5000, 40)
    'an int of 16610 bits'
    """
    try:
        text = _REPR.repr(value)
    except Exception:  # whatever it is, a line must still be logged
        if isinstance(value, int):
            return f"an int of {value.bit_length()} bits"
        return f"a {type(value).__name__} that cannot be shown"
    return text if len(text) <= limit else text[:max(limit - 3, 1)] + "..."
