"""Exceptions raised by actornet, and `Crash`, the exit reason of a crashed process.

Every error actornet raises on purpose derives from `ActornetError`, and also
from the built-in exception a Python user would reach for (`LookupError`,
`ConnectionError`, `TimeoutError`, `ValueError`), so either can be caught.
"""

from __future__ import annotations

import traceback as _traceback
from typing import Any

__all__ = [
    "ActornetError",
    "AlreadyRegistered",
    "AuthenticationError",
    "BadArg",
    "CallError",
    "CallDeadlock",
    "Crash",
    "NoProc",
    "NodeDown",
    "PayloadTooLarge",
    "ProcessExit",
    "ProtocolError",
    "RemoteImportError",
    "DecodeError",
    "Timeout",
]


class ActornetError(Exception):
    """Base class of every error actornet raises on purpose.

    Example:
        >>> import actornet
        >>> try:
        ...     actornet.call("doc_nobody", "hi")
        ... except actornet.ActornetError as e:
        ...     print(type(e).__name__)
        NoProc
    """


class NoProc(ActornetError, KeyError):
    """The process or name does not exist (Erlang's ``noproc``).

    Example:
        >>> try:
        ...     raise NoProc("no process registered as 'x'")
        ... except KeyError as e:
        ...     print(e)
        no process registered as 'x'
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "noproc"


class NodeDown(ActornetError, ConnectionError):
    """The node hosting the process is down or unreachable (``noconnection``).

    Also raised when a node that is not distributed is asked to reach another.

    Example:
        >>> import actornet
        >>> with actornet.Node("doc@localhost") as local_only:
        ...     try:
        ...         local_only.send(("shell", "b@localhost"), "hi")
        ...     except ConnectionError as e:
        ...         print(type(e).__name__)
        NodeDown
    """


class Timeout(ActornetError, TimeoutError):
    """A `receive` or `call` ran out of time.

    Catch it as the built-in `TimeoutError` too.

    Example:
        >>> import actornet
        >>> try:
        ...     actornet.receive(timeout=0.01)
        ... except TimeoutError as e:
        ...     print(type(e).__name__, e)
        Timeout no matching message within 0.01 s
    """


class CallError(ActornetError):
    """The server of a `call` exited before replying; `reason` says why.

    Example:
        >>> err = CallError("call to <a@h.1.0> failed", reason="shutdown")
        >>> err.reason
        'shutdown'
    """

    def __init__(self, message: str, reason: Any = None) -> None:
        super().__init__(message)
        self.reason = reason


class CallDeadlock(ActornetError, RuntimeError):
    """A process called itself with `call`, which can never be answered.

    Example:
        >>> import actornet
        >>> try:
        ...     actornet.call(actornet.self(), "hello?")
        ... except actornet.CallDeadlock:
        ...     print("deadlock refused")
        deadlock refused
    """


class BadArg(ActornetError, ValueError):
    """A server was asked for something it does not understand (Erlang's ``badarg``).

    A server answers a request it has no clause for with `actornet.gen_server.badarg`;
    the caller's `call` raises this, and the server keeps serving.

    Example:
        >>> import actornet
        >>> sup = actornet.Supervisor.start([])
        >>> try:
        ...     actornet.call(sup, "no such request")
        ... except actornet.BadArg as e:
        ...     print(e)
        call to ... failed: badarg: unknown supervisor request 'no such request'
        >>> actornet.GenServer.stop(sup)
    """


class AlreadyRegistered(ActornetError, ValueError):
    """A name is already registered, or a process already has a name.

    Example:
        >>> import actornet
        >>> actornet.register("doc_taken", actornet.self())
        True
        >>> try:
        ...     actornet.register("doc_taken", actornet.self())
        ... except ValueError as e:
        ...     print(type(e).__name__)
        AlreadyRegistered
        >>> actornet.unregister("doc_taken")
    """


class PayloadTooLarge(ActornetError, ValueError):
    """An encoded message is larger than the node's size limit.

    Example:
        A `send` to a process on another node raises it at the sender::

            try:
                actornet.send(remote_pid, huge_blob)
            except actornet.PayloadTooLarge:
                ...  # split it, or raise the limit: start_node(max_message_size=...)
    """


class ProtocolError(ActornetError):
    """A peer broke the wire protocol (bad frame, wrong version, bad handshake).

    The node logs it, naming the peer: a bad handshake or a lost batch closes
    that connection, a malformed op from an authenticated peer is dropped
    alone. It reaches user code only from tools that talk the protocol directly.

    Example:
        >>> issubclass(DecodeError, ProtocolError), issubclass(AuthenticationError, ProtocolError)
        (True, True)
    """


class DecodeError(ProtocolError, ValueError):
    """Bytes from the network are not a valid actornet term.

    Example:
        >>> import actornet
        >>> from actornet import _codec
        >>> try:
        ...     _codec.decode(b"not a term")
        ... except actornet.DecodeError:
        ...     print("rejected")
        rejected
    """


class AuthenticationError(ProtocolError):
    """A peer could not prove it knows the cookie.

    Example:
        >>> issubclass(AuthenticationError, ActornetError)
        True
    """


class RemoteImportError(ActornetError, ImportError):
    """The remote node could not import the function it was asked to run.

    `actornet.rpc.call` raises it; a process spawned on another node with a
    function that node cannot import crashes with it.

    Example:
        >>> from actornet.errors import RemoteImportError
        >>> issubclass(RemoteImportError, ImportError)
        True
    """


class ProcessExit(BaseException):
    """Raised inside a process to end it with `reason`.

    Like `SystemExit`, it is not an `Exception`, so ``except Exception`` in
    user code does not swallow an exit signal.

    Example:
        >>> e = ProcessExit("shutdown")
        >>> e.reason
        'shutdown'
    """

    def __init__(self, reason: Any = "normal") -> None:
        super().__init__(reason)
        self.reason = reason


class Crash:
    """The exit reason of a process that raised an exception.

    It carries the exception's type name and message (and the formatted
    traceback), so it means the same thing on every node. Locally the original
    exception is kept in `exception` (``None`` after crossing nodes).

    Example:
        >>> c = Crash.from_exception(ZeroDivisionError("division by zero"))
        >>> c.type, c.message
        ('ZeroDivisionError', 'division by zero')
        >>> str(c)
        'ZeroDivisionError: division by zero'
    """

    __slots__ = ("exception", "message", "traceback", "type")

    def __init__(
        self,
        type: str,  # noqa: A002
        message: str,
        traceback: str = "",
        exception: BaseException | None = None,
    ) -> None:
        self.type = type
        self.message = message
        self.traceback = traceback
        self.exception = exception

    @classmethod
    def from_exception(cls, exc: BaseException) -> Crash:
        """Build the reason for a process that died of `exc`.

        Example:
            >>> Crash.from_exception(KeyError("k")).type
            'KeyError'
        """
        tb = "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(type(exc).__name__, str(exc), tb, exc)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Crash):
            return NotImplemented
        return (self.type, self.message) == (other.type, other.message)

    def __hash__(self) -> int:
        return hash((self.type, self.message))

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type

    def __repr__(self) -> str:
        return f"Crash({self.type!r}, {self.message!r})"
