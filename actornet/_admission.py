"""Who may hold what of a node before authenticating. Pure: no sockets, no clocks.

Two parts, used by the transport (ZAP by `_listener`, pending connections by `_inbound`):

**ZAP** (ZeroMQ's authentication protocol, RFC 27): on an encrypted node, libzmq asks
before it lets a CurveZMQ client in. `zap_reply` admits a client only if its public key is
the cluster's, which proves it holds the cluster's secret key (CurveZMQ's INITIATE command
is signed with it), so a program without the cookie is turned away inside ZeroMQ's own
handshake, before a single message of its reaches the node.

**Pending connections**: every TCP connection the node accepts is bounded until it has
authenticated. `Pending` tracks each from the moment libzmq says it accepted it (before it
sends anything: a connection that goes silent after ZeroMQ's greeting, or stops half-way
through a frame, never produces a message the node could see), and says which to close:

- one that has not authenticated `deadline` seconds after it was accepted;
- one that has received more than `budget` bytes before authenticating. Authenticating
  takes a few KiB (ZeroMQ's greeting, a HELLO of at most 4 KiB, a RESPONSE; CurveZMQ adds
  some hundred bytes), so a connection over that is sending something else: a stream of
  messages libzmq would hold for it (under a routing id already in use, which the node
  never reads), or a multipart message it never finishes, which libzmq holds whole.

The transport feeds it what libzmq's socket monitor says (accepted, closed) and
authentications, and asks it which connections are `due` for a look at their byte count
(``TCP_INFO``): each every `interval` seconds, at most `per_check` at a time (spread over
more time when there are more, so that a flood of connections costs a bounded number of
system calls). libzmq reads the connections itself, so no readiness event could tell the
node that one has data: by the time the node looked, libzmq might have read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = ["Pending", "Unauthenticated", "zap_reply"]

ZAP_VERSION: Final = b"1.0"


def zap_reply(request: list[bytes], cluster_key: bytes) -> tuple[list[bytes], str | None]:
    """The reply to a ZAP `request` (its frames, after the envelope), and why the client
    was turned away (None: admitted). `cluster_key` is the cluster's CurveZMQ public key,
    32 bytes.

    Example:
        >>> key = bytes(32)
        >>> request = [b"1.0", b"7", b"actornet", b"127.0.0.1", b"", b"CURVE", key]
        >>> zap_reply(request, key)
        ([b'1.0', b'7', b'200', b'OK', b'', b''], None)
        >>> zap_reply(request[:-1] + [b"x" * 32], key)[0][2:4]
        [b'400', b'not a key of this cluster']
    """
    if len(request) < 6 or request[0] != ZAP_VERSION:
        # Not a request this protocol version can answer; libzmq never sends one.
        request_id = request[1] if len(request) > 1 else b""
        return [ZAP_VERSION, request_id, b"500", b"malformed ZAP request", b"", b""], (
            "a malformed ZAP request")
    request_id, address, mechanism, credentials = request[1], request[3], request[5], request[6:]
    if mechanism != b"CURVE":
        why = f"{_text(mechanism)} mechanism (only CURVE is allowed)"
    elif credentials != [cluster_key]:
        why = "not a key of this cluster"
    else:
        return [ZAP_VERSION, request_id, b"200", b"OK", b"", b""], None
    return [ZAP_VERSION, request_id, b"400", why.encode(), b"", b""], (
        f"{why}, from {_text(address)}")


def _text(raw: bytes) -> str:
    return raw[:64].decode("ascii", "replace")


@dataclass
class Unauthenticated:
    """One accepted TCP connection that has not authenticated yet."""

    fd: int  # its descriptor, in libzmq
    accept: int  # the serial number of its accept (a descriptor is reused)
    conn: Any  # what identifies it (a `_tcpconn.TcpConn`), for the transport to close it
    since: float  # when it was accepted
    received: int = 0  # bytes received on it, as last seen
    check_at: float = 0.0  # when its byte count is next due for a look


class Pending:
    """The connections accepted and not authenticated yet, and which to close.

    Example:
        >>> p = Pending(deadline=5.0, budget=16384)
        >>> p.accepted(fd=9, accept=1, conn="c1", now=100.0)
        >>> p.over_budget(9, received=2000), p.expired(now=104.0)
        (None, [])
        >>> [u.conn for u in p.due(now=100.0)], p.due(now=100.005)
        (['c1'], [])
        >>> p.over_budget(9, received=20000).conn
        'c1'
        >>> p.accepted(fd=10, accept=2, conn="c2", now=101.0)
        >>> p.authenticated(10, accept=2)
        >>> p.accepted(fd=11, accept=3, conn="c3", now=102.0)
        >>> p.next_deadline()
        107.0
        >>> [u.conn for u in p.expired(now=107.5)], p.next_deadline()
        (['c3'], None)
    """

    def __init__(self, deadline: float, budget: int, interval: float = 0.01,
                 per_check: int = 64) -> None:
        self.deadline = deadline
        self.budget = budget
        self.interval = interval
        self.per_check = per_check
        self._by_fd: dict[int, Unauthenticated] = {}

    def __len__(self) -> int:
        return len(self._by_fd)

    def __contains__(self, fd: object) -> bool:
        return fd in self._by_fd

    def get(self, fd: int) -> Unauthenticated | None:
        return self._by_fd.get(fd)

    def accepted(self, fd: int, accept: int, conn: Any, now: float) -> None:
        """libzmq accepted a connection on `fd` (its `accept`-th accept)."""
        self._by_fd.pop(fd, None)  # (re-inserted: the table stays in order of acceptance)
        self._by_fd[fd] = Unauthenticated(fd, accept, conn, now, check_at=now)

    def closed(self, fd: int, accept: int | None = None) -> Unauthenticated | None:
        """The connection on `fd` is gone (closed by libzmq or by the node): forget it, if
        it is that connection (`accept`, when given). Returns what was forgotten."""
        entry = self._by_fd.get(fd)
        if entry is None or (accept is not None and entry.accept != accept):
            return None
        del self._by_fd[fd]
        return entry

    def authenticated(self, fd: int, accept: int) -> None:
        """The connection on `fd` (its `accept`-th accept) authenticated: no longer bounded."""
        self.closed(fd, accept)

    def over_budget(self, fd: int, received: int) -> Unauthenticated | None:
        """The connection on `fd` has received `received` bytes: itself if that is over the
        budget (it is then forgotten: the caller closes it), else None."""
        entry = self._by_fd.get(fd)
        if entry is None:
            return None
        entry.received = received
        if received <= self.budget:
            return None
        del self._by_fd[fd]
        return entry

    def expired(self, now: float) -> list[Unauthenticated]:
        """The connections past their deadline at `now`, forgotten: the caller closes them."""
        late = []
        for entry in self._by_fd.values():  # oldest first
            if now - entry.since < self.deadline:
                break
            late.append(entry)
        for entry in late:
            del self._by_fd[entry.fd]
        return late

    def due(self, now: float) -> list[Unauthenticated]:
        """The connections whose byte count is due for a look at `now` (`per_check` at most),
        each then scheduled for its next one."""
        found = []
        for entry in self._by_fd.values():
            if entry.check_at <= now:
                found.append(entry)
                if len(found) == self.per_check:
                    break
        spread = max(1.0, len(self._by_fd) / self.per_check)  # many: each less often
        for entry in found:
            entry.check_at = now + self.interval * spread
        return found

    def next_deadline(self) -> float | None:
        """When the oldest pending connection's deadline passes, or None if there is none."""
        for entry in self._by_fd.values():  # oldest first
            return entry.since + self.deadline
        return None

    def entries(self) -> list[Unauthenticated]:
        return list(self._by_fd.values())
