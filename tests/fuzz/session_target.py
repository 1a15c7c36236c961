"""The ``session`` fuzz target: `Session.receive` fed batches a peer might send.

Each input is a run of batches for one session whose connection in is up (plain, with a
known key, or encrypted). Most batches carry the header the peer would write (the next
sequence number and its MAC), so the ops reach the decoder and the session's own clauses
(TICK, GOODBYE, NODES, strikes, the oversize policy); some carry a wrong sequence number, a
forged MAC or any bytes. What must hold:

* `receive` raises nothing, and returns only the documented events;
* after a `Down`, `Refused` or `Broken` nothing more comes in that batch;
* every op in `Ops` has its shape (`_wire.decode_op`) and is not one the session keeps
  (TICK, GOODBYE, NODES); every `Mesh` entry is a node name and an endpoint;
* a batch is taken (the next sequence number is due) exactly when its header was the
  right one; the counters only go up.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar, Final

from actornet import _address, _wire
from actornet._session import (
    Broken,
    Down,
    Dropped,
    Mesh,
    Ops,
    Oversized,
    Refused,
    Session,
    Tick,
)

from .base import OracleError, Target
from .gen import mutate, random_bytes

__all__ = ["SessionTarget"]

KEY: Final = b"fuzz session key 0123456789abcdef"
_ENDINGS: Final = (Down, Refused, Broken)
_KEPT: Final = (_wire.TICK, _wire.GOODBYE, _wire.NODES)
# header kinds: the right one, a later or an earlier sequence number, a forged MAC, any bytes
_RIGHT, _AHEAD, _BEHIND, _FORGED, _RAW = range(5)


def session_input(plain: bool, limit: int, batches: list[tuple[int, bytes]]) -> bytes:
    """A session fuzz input: flags, limit (u16), then (header kind, u24 length, payload)."""
    out = bytearray([int(plain), *limit.to_bytes(2, "big")])
    for kind, payload in batches:
        payload = payload[:2**24 - 1]
        out += bytes([kind]) + len(payload).to_bytes(3, "big") + payload
    return bytes(out)


def parse_session_input(data: bytes) -> tuple[bool, int, list[tuple[int, bytes]]]:
    plain = bool(data[0] & 1) if data else True
    limit = int.from_bytes(data[1:3], "big") or _wire.DEFAULT_MAX_MESSAGE_SIZE
    batches, pos = [], 3
    while pos < len(data) and len(batches) < 8:
        kind = data[pos]
        n = int.from_bytes(data[pos + 1:pos + 4], "big")
        batches.append((kind, data[pos + 4:pos + 4 + n]))
        pos += 4 + n
    return plain, limit, batches


class SessionTarget(Target):
    """`Session.receive` on batches an authenticated peer might send (module docstring)."""

    name: ClassVar[str] = "session"
    documented: ClassVar[str] = "no exception (documented events only)"

    def __init__(self, seed: int = 0, pool_size: int = 200) -> None:
        from .targets import WireTarget  # (targets imports this module)

        super().__init__(seed)
        self._wire = WireTarget(seed, pool_size)
        rng = random.Random(f"{seed}:session:pool")
        own = [_wire.encode_op([_wire.TICK]), _wire.encode_op([_wire.GOODBYE]),
               _wire.encode_op([_wire.NODES, [["c@h", "tcp://127.0.0.1:1"], ["x", 1]]])]
        self.pool = [*own, *self._wire.op_pool]
        self.corpus_inputs = [
            session_input(rng.random() < 0.5, 0, [(_RIGHT, _wire.pack_ops(
                rng.sample(self.pool, rng.randint(1, 5)))) for _ in range(rng.randint(1, 3))])
            for _ in range(50)]

    def corpus(self) -> list[bytes]:
        return self.corpus_inputs

    def generate(self, rng: random.Random) -> bytes:
        plain = rng.random() < 0.7
        limit = 0 if rng.random() < 0.8 else rng.choice((1, 16, 64, 300, 1000))
        batches = []
        for _ in range(rng.choice((1, 1, 2, 3, 5))):
            kind = rng.choices((_RIGHT, _AHEAD, _BEHIND, _FORGED, _RAW), (85, 4, 4, 4, 3))[0]
            r = rng.random()
            if r < 0.6:
                ops = rng.sample(self.pool, rng.randint(1, 6))
                if rng.random() < 0.3:
                    k = rng.randrange(len(ops))
                    ops[k] = mutate(rng, ops[k], self.pool)
                payload = _wire.pack_ops(ops)
            elif r < 0.8:
                payload = _wire.pack_ops(
                    [_wire.encode_op(self._wire.random_op(rng, wrong=True))
                     for _ in range(rng.randint(1, 3))])
            elif r < 0.9:  # an op cut across batches
                stream = _wire.pack_ops(rng.sample(self.pool, rng.randint(1, 4)))
                cut = rng.randint(0, len(stream))
                batches.append((kind, stream[:cut]))
                payload = stream[cut:]
            else:
                payload = random_bytes(rng, 80)
            batches.append((kind, payload))
        return session_input(plain, limit, batches)

    def check(self, data: bytes) -> str:
        plain, limit, batches = parse_session_input(data)
        key = KEY if plain else b""
        session = Session("peer@h", tick_time=4.0, max_message_size=limit, mesh=True)
        session.connect(0.0, 5.0)
        session.established(key, 0.0)
        session.inbound_up(key, 0.0)
        outcome = "none"
        for i, (kind, payload) in enumerate(batches):
            seq = session.in_seq
            header = self._header(kind, seq, key, payload)
            before = dict(session.stats)
            events = session.receive(header, payload, 1.0 + i)
            self._check_events(events)
            right = kind == _RIGHT or (kind == _FORGED and not plain)
            if plain or kind != _RAW:
                want = seq + 1 if right else seq
                if session.in_seq != want:
                    raise OracleError(f"a batch with header kind {kind} moved in_seq from "
                                      f"{seq} to {session.in_seq}")
            if any(session.stats[k] < v for k, v in before.items()):
                raise OracleError(f"a counter went down: {before} -> {session.stats}")
            if events:
                outcome = type(events[-1]).__name__
            if any(isinstance(e, _ENDINGS) for e in events):
                break
            if session.state != "up":
                raise OracleError(f"the session left UP without saying so: {session.state}")
        return f"{'plain' if plain else 'curve'} {outcome}"

    @staticmethod
    def _header(kind: int, seq: int, key: bytes, payload: bytes) -> bytes:
        if kind == _AHEAD:
            return _wire.pack_header(seq + 1, key, payload)
        if kind == _BEHIND:
            return _wire.pack_header(max(seq - 1, 0) if seq else 2**64 - 1, key, payload)
        if kind == _FORGED:
            return _wire.pack_header(seq, b"another key".ljust(32), payload) if key else \
                _wire.pack_header(seq)
        if kind == _RIGHT:
            return _wire.pack_header(seq, key, payload)
        return payload[:26]  # any bytes

    @staticmethod
    def _check_events(events: Any) -> None:
        if not isinstance(events, list):
            raise OracleError(f"receive returned {events!r:.100}")
        for i, event in enumerate(events):
            if type(event) not in (Ops, Mesh, Dropped, Oversized, Down, Refused, Broken, Tick):
                raise OracleError(f"an undocumented event: {event!r:.200}")
            if isinstance(event, _ENDINGS) and i != len(events) - 1:
                raise OracleError(f"events after {event!r}: {events[i + 1:]!r:.200}")
            if isinstance(event, Ops):
                if not event.ops:
                    raise OracleError("an empty Ops event")
                for op in event.ops:
                    if op[0] in _KEPT or op[0] not in _wire._SHAPES:
                        raise OracleError(f"an op the node must not see: {op!r:.100}")
            elif isinstance(event, Mesh):
                for name, endpoint in event.entries:
                    if not (_address.is_name(name) and _address.is_endpoint(endpoint)):
                        raise OracleError(f"a bad mesh entry passed: {name!r:.60}")
            elif isinstance(event, Dropped) and not (isinstance(event.why, str) and event.why):
                raise OracleError(f"a Dropped that says nothing: {event!r}")
