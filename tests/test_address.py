"""Node names, addresses and endpoints (`actornet._address`): what a node accepts from a
caller or a peer is what libzmq and the handshake accept, and nothing else gets through."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from actornet import _address
from actornet import _handshake as hs


@pytest.fixture(scope="module")
def zctx() -> Iterator[zmq.Context[Any]]:
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        yield ctx
    finally:
        ctx.destroy(linger=0)


def libzmq_takes(ctx: zmq.Context[Any], endpoint: str) -> bool:
    """Whether libzmq's connect takes `endpoint` (it checks the syntax; a name is looked up
    later, in its own thread: hosts here end in .invalid, which fails at once)."""
    sock = ctx.socket(zmq.DEALER)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, -1)
        sock.connect(endpoint)
    except zmq.ZMQError:
        return False
    finally:
        sock.close(linger=0)
    return True


# host shapes: (host, whether a node takes it); each is dialled once under .invalid
HOSTS = [("h", True), ("h1", True), ("1h", True), ("h-1", True), ("h_1", True), ("h.lan", True),
         ("h.", True), ("-h", False), ("_h", False), (".h", False), ("h h", False),
         ("h;x", False), ("*", False), ("h/x", False), ("[h]", False), ("", False)]


@pytest.mark.parametrize(("host", "taken"), HOSTS, ids=[h or "empty" for h, _ in HOSTS])
def test_a_host_a_node_takes_is_one_libzmq_takes(
    zctx: zmq.Context[Any], host: str, taken: bool
) -> None:
    endpoint = f"tcp://{host}.invalid:5555" if host else "tcp://:5555"
    name = f"n@{host}.invalid" if host else "n@"
    assert _address.is_name(name) is taken
    assert _address.is_endpoint(endpoint) is taken
    if taken:
        assert libzmq_takes(zctx, endpoint), f"libzmq refuses {endpoint!r}"
        assert hs._CHECKS["name"][0](name) and hs._CHECKS["endpoint"][0](endpoint)


@pytest.mark.parametrize("port", [0, 1, 65535, 65536, 99999, "01", "x"])
def test_ports_are_1_to_65535(zctx: zmq.Context[Any], port: object) -> None:
    ok = port in (1, 65535, "01")
    assert _address.is_endpoint(f"tcp://127.0.0.1:{port}") is ok
    if ok:
        assert _address.parse(f"b@127.0.0.1:{port}") == (
            "b@127.0.0.1", f"tcp://127.0.0.1:{int(str(port))}")
        assert libzmq_takes(zctx, f"tcp://127.0.0.1:{port}")
    else:
        with pytest.raises(ValueError, match="port 1 to 65535"):
            _address.parse(f"b@127.0.0.1:{port}")


@given(st.text(max_size=40) | st.from_regex(r"[\w.+-]{1,8}@[\w.-]{1,8}(:\d{1,6})?",
                                            fullmatch=True))
@settings(max_examples=300, deadline=None)
def test_parse_returns_a_name_and_an_endpoint_or_raises_value_error(text: str) -> None:
    try:
        name, endpoint = _address.parse(text)
    except ValueError as e:
        assert "looks like" in str(e)
        return
    assert _address.is_name(name) and name in text
    assert endpoint is None or _address.is_endpoint(endpoint)
