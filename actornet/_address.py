"""Node names, addresses and endpoints: what each may be. Pure functions, no I/O.

A node *name* is ``short@host``: `short` of letters, digits and ``_.+-``, `host` a host name or
IPv4 address (letters, digits and ``_.-``, starting with a letter or digit; no IPv6, no
port). An *address* is a name, or a name
with a port to dial without the port mapper: ``short@host:port``. An *endpoint* is what
libzmq dials, ``tcp://host:port``.

Everything a node is given to reach another, by a caller (`ping`, `send` to
``(name, node)``, ``spawn(node=)``) or by a peer (the name and endpoint in a handshake, the
peers it tells of), is checked here first: a caller gets a `ValueError` saying what is wrong,
and a peer's value is refused, before anything reaches libzmq, which would refuse it in the
node's I/O thread instead.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["check_endpoint", "check_name", "is_endpoint", "is_name", "parse"]

MAX_NAME: Final = 255  # characters, as the handshake allows
_SHORT = r"[\w.+-]+"
_HOST = r"[A-Za-z0-9][A-Za-z0-9_.-]*"  # libzmq refuses a host that starts otherwise
_NAME = re.compile(rf"({_SHORT})@({_HOST})")
_ADDRESS = re.compile(rf"({_SHORT}@{_HOST})(?::(\d{{1,5}}))?")
_ENDPOINT = re.compile(rf"tcp://({_HOST}):(\d{{1,5}})")


def is_name(value: object) -> bool:
    """True if `value` is a node name, ``short@host``.

    Example:
        >>> is_name("a@127.0.0.1"), is_name("a@127.0.0.1:5555"), is_name("a"), is_name(7)
        (True, False, False, False)
    """
    return (isinstance(value, str) and len(value) <= MAX_NAME
            and _NAME.fullmatch(value) is not None)


def check_name(value: object) -> str:
    """`value` if it is a node name, else a `ValueError` saying what a name looks like.

    Example:
        >>> check_name("a@host")
        'a@host'
        >>> check_name("a@[::1]")
        Traceback (most recent call last):
        ...
        ValueError: a node name looks like 'name@host' (host: ...), got 'a@[::1]'
    """
    if not is_name(value):
        raise ValueError("a node name looks like 'name@host' (host: a host name or IPv4 "
                         f"address), got {_shown(value)}")
    return value  # type: ignore[return-value]


def parse(address: object) -> tuple[str, str | None]:
    """The node name of `address` and the endpoint it gives (None: ask the port mapper).

    Raises:
        ValueError: `address` is neither ``name@host`` nor ``name@host:port`` with a port
            in 1..65535.

    Example:
        >>> parse("b@127.0.0.1"), parse("b@127.0.0.1:5555")
        (('b@127.0.0.1', None), ('b@127.0.0.1', 'tcp://127.0.0.1:5555'))
        >>> parse("b@127.0.0.1:99999")
        Traceback (most recent call last):
        ...
        ValueError: a node address looks like ... got 'b@127.0.0.1:99999'
    """
    m = _ADDRESS.fullmatch(address) if isinstance(address, str) else None
    if (m is None or len(m.group(1)) > MAX_NAME
            or (m.group(2) is not None and not 0 < int(m.group(2)) < 65536)):
        raise ValueError("a node address looks like 'name@host' or 'name@host:port' (port 1 "
                         f"to 65535), got {_shown(address)}")
    name, port = m.group(1), m.group(2)
    return name, None if port is None else f"tcp://{name.partition('@')[2]}:{int(port)}"


def is_endpoint(value: object) -> bool:
    """True if `value` is an endpoint a node may dial, ``tcp://host:port``.

    Example:
        >>> is_endpoint("tcp://127.0.0.1:5555"), is_endpoint("tcp://a;b:1"), is_endpoint("x")
        (True, False, False)
    """
    if not isinstance(value, str) or len(value) > MAX_NAME + 12:
        return False
    m = _ENDPOINT.fullmatch(value)
    return m is not None and 0 < int(m.group(2)) < 65536


def check_endpoint(value: object) -> str:
    """`value` if it is an endpoint (`is_endpoint`), else a `ValueError`.

    Example:
        >>> check_endpoint("tcp://127.0.0.1:0")
        Traceback (most recent call last):
        ...
        ValueError: an endpoint looks like 'tcp://host:port' (port 1 to 65535), got 'tcp://127.0.0.1:0'
    """
    if not is_endpoint(value):
        raise ValueError(f"an endpoint looks like 'tcp://host:port' (port 1 to 65535), got "
                         f"{_shown(value)}")
    return value  # type: ignore[return-value]


def _shown(value: object) -> str:
    """`value` for an error message: a repr of at most 80 characters, whatever it is."""
    if isinstance(value, str):
        text = repr(value[:80])
        return text if len(value) <= 80 else f"{text[:-1]}...' ({len(value)} characters)"
    return f"a value of type {type(value).__name__}"
