"""Tests of the handshake state machine, driven in memory (and one CURVE socket pair)."""

from __future__ import annotations

import doctest
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zmq.utils import z85

from actornet import _handshake as hs
from actornet._handshake import (
    MAX_HANDSHAKE_FRAME,
    PROTOCOL_VERSION,
    Acceptor,
    Established,
    Failed,
    Initiator,
    Send,
    curve_keypair,
)
from actornet.errors import AuthenticationError, DecodeError, ProtocolError

COOKIE = b"the-shared-cookie-0123456789"
HELLO, CHALLENGE, RESPONSE, ACK, REJECT = 1, 2, 3, 4, 5
Event = Send | Established | Failed


# -- helpers ------------------------------------------------------------------------------


def make_initiator(cookie: bytes = COOKIE, peer_name: str = "b@host", **kw: Any) -> Initiator:
    args: dict[str, Any] = {"name": "a@host", "creation": 11, "endpoint": "tcp://127.0.0.1:5555"}
    args.update(kw)
    return Initiator(cookie, peer_name=peer_name, **args)


def make_acceptor(cookie: bytes = COOKIE, name: str = "b@host", **kw: Any) -> Acceptor:
    args: dict[str, Any] = {"creation": 22}
    args.update(kw)
    return Acceptor(cookie, name, **args)


HEADER = b"ACN" + bytes([PROTOCOL_VERSION])


def frame(kind: int, body: Any, version: int = PROTOCOL_VERSION) -> bytes:
    return b"ACN" + bytes([version, kind]) + msgpack.packb(body, use_bin_type=True)


def decode(data: bytes) -> tuple[int, dict[str, Any]]:
    assert data[:4] == b"ACN" + bytes([PROTOCOL_VERSION])
    return data[4], msgpack.unpackb(data[5:], raw=False)


def sent(events: list[Event]) -> list[bytes]:
    return [e.frame for e in events if isinstance(e, Send)]


def failure(events: list[Event]) -> ProtocolError:
    assert isinstance(events[-1], Failed), events
    return events[-1].error


def drive(a: Initiator, b: Acceptor) -> tuple[list[tuple[str, bytes]], list[Event], list[Event]]:
    """Run a handshake in memory; return the wire (sender, frame) and each side's events."""
    wire = [("a", a.start())]
    a_events: list[Event] = []
    b_events: list[Event] = []
    for sender, data in wire:  # grows while we iterate
        target, log = (b, b_events) if sender == "a" else (a, a_events)
        if target.state in ("established", "failed"):
            continue
        events = target.receive(data)
        log.extend(events)
        wire.extend(("b" if target is b else "a", f) for f in sent(events))
    return wire, a_events, b_events


# -- success ------------------------------------------------------------------------------


def test_success_both_sides_learn_each_other() -> None:
    a = make_initiator(flags=1)
    b = make_acceptor(flags=3)
    wire, a_events, b_events = drive(a, b)
    assert [decode(f)[0] for _, f in wire] == [HELLO, CHALLENGE, RESPONSE, ACK]
    assert [s for s, _ in wire] == ["a", "b", "a", "b"]
    assert a_events[-1] == Established("b@host", 22, 3, None)
    assert b_events[-1] == Established("a@host", 11, 1, "tcp://127.0.0.1:5555")
    assert a.state == b.state == "established"
    assert all(len(f) <= MAX_HANDSHAKE_FRAME for _, f in wire)


def test_both_sides_learn_one_session_key_that_only_cookie_holders_can_compute() -> None:
    """The session key MACs a plain connection's batches (`_wire`): both sides must get the
    same one, a fresh one per handshake, and it must depend on the cookie, which a relay
    of the handshake does not have (it sees every other input)."""
    keys = []
    for _ in range(2):
        _, a_events, b_events = drive(make_initiator(), make_acceptor())
        a_key, b_key = a_events[-1].session_key, b_events[-1].session_key
        assert a_key == b_key and len(a_key) == 32
        keys.append(a_key)
    assert keys[0] != keys[1], "a session key came twice"
    # Everything on the wire, recomputed with another cookie, gives another key.
    a, b = make_initiator(), make_acceptor()
    wire, _, b_events = drive(a, b)
    (_, hello), (_, challenge), (_, response) = wire[:3]
    i, c, r = decode(hello)[1], decode(challenge)[1], decode(response)[1]
    fields = (i["name"], i["creation"], i["flags"], i["endpoint"], c["name"], c["creation"],
              c["flags"], c["nonce"], r["nonce"])
    assert hs._digest(COOKIE, "session", *fields) == b_events[-1].session_key
    assert hs._digest(b"a guess", "session", *fields) != b_events[-1].session_key
    assert b_events[-1].session_key not in b"".join(f for _, f in wire)


def test_states_step_by_step() -> None:
    a, b = make_initiator(), make_acceptor()
    assert (a.state, b.state) == ("idle", "wait_hello")
    [challenge] = sent(b.receive(a.start()))
    assert (a.state, b.state) == ("wait_challenge", "wait_response")
    [response] = sent(a.receive(challenge))
    assert a.state == "wait_ack"
    ack, est = b.receive(response)
    assert isinstance(ack, Send) and isinstance(est, Established) and b.state == "established"
    assert a.receive(ack.frame) == [Established("b@host", 22, 0, None)]


def test_cookie_never_on_wire_and_nonces_are_fresh() -> None:
    runs = [drive(make_initiator(), make_acceptor())[0] for _ in range(2)]
    for wire in runs:
        assert not any(COOKIE in f for _, f in wire)
    (_, c1), (_, c2) = runs[0][1], runs[1][1]
    assert decode(c1)[1]["nonce"] != decode(c2)[1]["nonce"]
    assert decode(runs[0][2][1])[1]["nonce"] != decode(runs[1][2][1])[1]["nonce"]


def test_module_doctests() -> None:
    result = doctest.testmod(hs)
    assert result.attempted > 0 and result.failed == 0


# -- authentication failures -----------------------------------------------------------------


def test_wrong_cookie_both_sides_fail_and_acceptor_sends_no_digest() -> None:
    a = make_initiator(cookie=b"wrong cookie")
    b = make_acceptor()
    [challenge] = sent(b.receive(a.start()))
    [response] = sent(a.receive(challenge))
    b_events = b.receive(response)
    err = failure(b_events)
    assert isinstance(err, AuthenticationError) and "'a@host'" in str(err)
    assert b.state == "failed"
    [reject] = sent(b_events)
    kind, body = decode(reject)
    assert kind == REJECT and body == {"reason": "bad cookie", "auth": True}
    a_events = a.receive(reject)
    a_err = failure(a_events)
    assert a_events == [Failed(a_err)] and isinstance(a_err, AuthenticationError)
    assert "bad cookie" in str(a_err) and "'b@host'" in str(a_err)
    assert a.state == "failed"


def test_forged_ack_fails_initiator_with_authentication_error() -> None:
    a, b = make_initiator(), make_acceptor(cookie=b"impostor")
    [challenge] = sent(b.receive(a.start()))  # an impostor can issue a challenge...
    a.receive(challenge)
    events = a.receive(frame(ACK, {"digest": bytes(32)}))  # ...but not prove the cookie
    err = failure(events)
    assert isinstance(err, AuthenticationError) and "failed to prove the cookie" in str(err)
    assert decode(sent(events)[0])[0] == REJECT and a.state == "failed"


def test_replayed_response_into_fresh_acceptor_fails() -> None:
    wire, _, b_events = drive(make_initiator(), make_acceptor())
    assert isinstance(b_events[-1], Established)
    hello, response = wire[0][1], wire[2][1]
    b2 = make_acceptor()
    [challenge] = sent(b2.receive(hello))  # the recorded HELLO still gets a (new) challenge
    assert decode(challenge)[0] == CHALLENGE
    events = b2.receive(response)
    assert isinstance(failure(events), AuthenticationError)
    assert [decode(f)[0] for f in sent(events)] == [REJECT]
    assert not any(isinstance(e, Established) for e in events)


def test_replayed_challenge_and_ack_into_fresh_initiator_fails() -> None:
    """Someone posing as the acceptor cannot replay its recorded answers either."""
    wire, _, _ = drive(make_initiator(), make_acceptor())
    challenge, ack = wire[1][1], wire[3][1]
    a = make_initiator()
    a.start()
    [response] = sent(a.receive(challenge))
    assert decode(response)[0] == RESPONSE
    events = a.receive(ack)
    assert isinstance(failure(events), AuthenticationError) and a.state == "failed"


@pytest.fixture
def fixed_nonces(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Make `_nonce` return queued values, so a test can reuse a nonce on purpose."""
    queue: list[bytes] = []
    monkeypatch.setattr(hs, "_nonce", lambda: queue.pop(0))
    yield queue


def test_reflection_of_digests_fails(fixed_nonces: list[bytes]) -> None:
    nb, na = b"B" * 16, b"A" * 16
    fixed_nonces += [nb, na]
    wire, _, _ = drive(make_initiator(), make_acceptor())
    hello, response, ack = wire[0][1], wire[2][1], wire[3][1]
    digest_a, digest_b = decode(response)[1]["digest"], decode(ack)[1]["digest"]
    # Same nonce_b again: only the role label tells the digests apart.
    fixed_nonces += [nb, nb]
    control = make_acceptor()
    control.receive(hello)
    assert isinstance(control.receive(response)[-1], Established)  # replay with same nonce works
    b2 = make_acceptor()
    b2.receive(hello)
    events = b2.receive(frame(RESPONSE, {"nonce": na, "digest": digest_b}))
    assert isinstance(failure(events), AuthenticationError)
    # The other way: the initiator's own digest offered back to it as the ACK.
    fixed_nonces += [na]
    a = make_initiator()
    a.start()
    a.receive(wire[1][1])
    assert isinstance(failure(a.receive(frame(ACK, {"digest": digest_a}))), AuthenticationError)


@pytest.mark.parametrize(
    ("index", "key", "value"),
    [
        (0, "flags", 0),
        (0, "creation", 99),
        (0, "endpoint", "tcp://evil:1"),
        (1, "flags", 0),
        (1, "creation", 99),
    ],
)
def test_tampering_with_hello_or_challenge_is_detected(index: int, key: str, value: Any) -> None:
    """A man in the middle who rewrites a field (say, drops the secure flag) is caught."""
    a, b = make_initiator(flags=1), make_acceptor(flags=1)
    relay = {"a": b, "b": a}
    data, sender = a.start(), "a"
    results: list[Event] = []
    for step in range(4):
        if step == index:
            kind, body = decode(data)
            data = frame(kind, {**body, key: value})
        target = relay[sender]
        results = target.receive(data)
        if not sent(results) or target.state == "failed":
            break
        data, sender = sent(results)[0], "b" if target is b else "a"
    assert b.state == "failed" and isinstance(failure(results), AuthenticationError)


# -- protocol errors ------------------------------------------------------------------------


def test_version_mismatch_seen_by_acceptor() -> None:
    b = make_acceptor()
    hello = bytearray(make_initiator().start())
    other = PROTOCOL_VERSION + 1
    hello[3] = other
    events = b.receive(bytes(hello))
    err = failure(events)
    assert type(err) is ProtocolError and b.state == "failed"
    speaks = f"peer speaks {other}, this node speaks {PROTOCOL_VERSION}"
    assert f"protocol version mismatch: {speaks}" in str(err)
    [reject] = sent(events)
    kind, body = decode(reject)
    assert kind == REJECT and body["auth"] is False
    assert speaks in body["reason"]
    a = make_initiator()
    a.start()
    a_err = failure(a.receive(reject))
    assert type(a_err) is ProtocolError and speaks in str(a_err)


@pytest.mark.parametrize("version", [0, PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1, 255])
def test_version_mismatch_seen_by_initiator(version: int) -> None:
    a = make_initiator()
    [challenge] = sent(make_acceptor().receive(a.start()))
    data = bytearray(challenge)
    data[3] = version
    err = failure(a.receive(bytes(data)))
    assert type(err) is ProtocolError
    assert (f"protocol version mismatch: peer 'b@host' speaks {version}, "
            f"this node speaks {PROTOCOL_VERSION}") in str(err)


def test_wrong_peer_name_is_refused() -> None:
    a = make_initiator(peer_name="c@host")
    b = make_acceptor(name="b@host")
    wire, a_events, b_events = drive(a, b)
    b_err, a_err = failure(b_events), failure(a_events)
    assert type(b_err) is ProtocolError and "'c@host'" in str(b_err) and "'b@host'" in str(b_err)
    assert type(a_err) is ProtocolError and "rejected" in str(a_err) and "'c@host'" in str(a_err)
    assert [decode(f)[0] for _, f in wire] == [HELLO, REJECT]


def test_challenge_from_unexpected_node_is_refused() -> None:
    a = make_initiator()
    a.start()
    challenge = frame(
        CHALLENGE, {"name": "evil@host", "creation": 1, "flags": 0, "nonce": bytes(16)}
    )
    err = failure(a.receive(challenge))
    assert type(err) is ProtocolError and "'evil@host'" in str(err)


def test_unexpected_frame_order() -> None:
    a, b = make_initiator(), make_acceptor()
    hello = a.start()
    b_err = failure(b.receive(frame(RESPONSE, {"nonce": bytes(16), "digest": bytes(32)})))
    assert "unexpected RESPONSE" in str(b_err) and b.state == "failed"
    a_err = failure(a.receive(frame(ACK, {"digest": bytes(32)})))
    assert "unexpected ACK" in str(a_err) and a.state == "failed"
    b = make_acceptor()
    b.receive(hello)
    assert "unexpected HELLO" in str(failure(b.receive(hello)))
    a = make_initiator()
    a.start()
    assert "unexpected HELLO" in str(failure(a.receive(hello)))


def test_idle_and_double_start() -> None:
    a = make_initiator()
    events = a.receive(frame(CHALLENGE, {}))
    assert events == [Failed(failure(events))] and a.state == "failed"
    a = make_initiator()
    a.start()
    with pytest.raises(RuntimeError):
        a.start()


@pytest.mark.parametrize("final", ["established", "failed"])
def test_receive_after_finish_reports_and_never_raises(final: str) -> None:
    a = make_initiator(cookie=COOKIE if final == "established" else b"x")
    b = make_acceptor()
    wire, _, _ = drive(a, b)
    assert a.state == b.state == final
    for machine in (a, b):
        for data in [f for _, f in wire] + [b"", b"junk"]:
            events = machine.receive(data)
            assert len(events) == 1 and isinstance(events[0], Failed)
            assert "already finished" in str(events[0].error) and machine.state == final


def test_oversize_frame_rejected_before_decoding() -> None:
    body = {"name": "a@host", "creation": 1, "flags": 0, "endpoint": "tcp://h:1",
            "to": "b@host"}
    base = len(frame(HELLO, {**body, "pad": b""}))
    pad = MAX_HANDSHAKE_FRAME - base - 1  # a bin 16 header is one byte longer than bin 8
    exact = frame(HELLO, {**body, "pad": b"x" * pad})
    assert len(exact) == MAX_HANDSHAKE_FRAME
    assert decode(sent(make_acceptor().receive(exact))[0])[0] == CHALLENGE
    events = make_acceptor().receive(exact + b"x")
    err = failure(events)
    assert isinstance(err, DecodeError) and "4097 bytes" in str(err) and "4096" in str(err)
    assert decode(sent(events)[0])[0] == REJECT


GOOD_HELLO = {"name": "a@host", "creation": 1, "flags": 0, "endpoint": "tcp://h:1", "to": "b@host"}


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "not an actornet handshake frame"),
        (b"ACN", "not an actornet handshake frame"),
        (b"XYZ\x01\x01\x80", "not an actornet handshake frame"),
        (HEADER + b"\x09\x80", "unknown kind 9"),
        (HEADER + b"\x01\xc1", "not valid msgpack"),
        (frame(HELLO, GOOD_HELLO) + b"\x00", "not valid msgpack"),
        (HEADER + b"\x01\xa2\xff\xfe", "not valid msgpack"),  # invalid UTF-8 str
        (frame(HELLO, [1, 2]), "not a map"),
        (frame(HELLO, {**GOOD_HELLO, "creation": "1"}), "'creation' must be"),
        (frame(HELLO, {**GOOD_HELLO, "creation": True}), "'creation' must be"),
        (frame(HELLO, {**GOOD_HELLO, "creation": -1}), "'creation' must be"),
        (frame(HELLO, {**GOOD_HELLO, "flags": 1.5}), "'flags' must be"),
        (frame(HELLO, {**GOOD_HELLO, "name": ""}), "'name' must be"),
        (frame(HELLO, {**GOOD_HELLO, "name": b"a@host"}), "'name' must be"),
        (frame(HELLO, {k: v for k, v in GOOD_HELLO.items() if k != "to"}), "'to' must be"),
    ],
)
def test_malformed_frames_give_decode_errors(data: bytes, words: str) -> None:
    events = make_acceptor().receive(data)
    err = failure(events)
    assert isinstance(err, DecodeError) and words in str(err) and "peer" in str(err)
    assert decode(sent(events)[0])[0] == REJECT


def test_bad_nonce_and_digest_sizes() -> None:
    a = make_initiator()
    a.start()
    ch = {"name": "b@host", "creation": 1, "flags": 0, "nonce": bytes(15)}
    assert "'nonce' must be 16 bytes" in str(failure(a.receive(frame(CHALLENGE, ch))))
    b = make_acceptor()
    b.receive(make_initiator().start())
    resp = {"nonce": bytes(16), "digest": bytes(31)}
    assert "'digest' must be 32 bytes" in str(failure(b.receive(frame(RESPONSE, resp))))


def test_non_bytes_and_bytes_like_input() -> None:
    for junk in (None, "text", 12, [b"x"]):
        err = failure(make_acceptor().receive(junk))  # type: ignore[arg-type]
        assert type(err) is ProtocolError and "not bytes" in str(err)
    hello = make_initiator().start()
    for like in (bytearray(hello), memoryview(hello)):
        assert decode(sent(make_acceptor().receive(like))[0])[0] == CHALLENGE  # type: ignore[arg-type]


def test_peer_reject_reason_is_sanitised() -> None:
    a = make_initiator()
    a.start()
    err = failure(a.receive(frame(REJECT, {"reason": "evil\x1b[31m\n", "auth": False})))
    assert "\x1b" not in str(err) and "\\x1b" in str(err)


def test_bad_local_arguments_raise() -> None:
    with pytest.raises(ValueError):
        Acceptor(b"", "b@host", 1)
    with pytest.raises(ValueError) as info:
        Acceptor("a str cookie", "b@host", 1)  # type: ignore[arg-type]
    assert "a str cookie" not in str(info.value)  # a cookie is never echoed
    with pytest.raises(ValueError):
        Acceptor(COOKIE, "", 1)
    with pytest.raises(ValueError):
        Initiator(COOKIE, "a@host", -1, "tcp://h:1", "b@host")
    with pytest.raises(ValueError):
        Initiator(COOKIE, "a@host", 1, "tcp://h:1", "b@host", flags=2**64)


# -- fuzzing --------------------------------------------------------------------------------

STATES = [
    ("initiator", "idle"),
    ("initiator", "wait_challenge"),
    ("initiator", "wait_ack"),
    ("initiator", "established"),
    ("initiator", "failed"),
    ("acceptor", "wait_hello"),
    ("acceptor", "wait_response"),
    ("acceptor", "established"),
    ("acceptor", "failed"),
]


def machine_in(role: str, state: str) -> Initiator | Acceptor:
    a, b = make_initiator(), make_acceptor()
    if role == "acceptor" and state == "wait_hello":
        return b
    if role == "initiator" and state == "idle":
        return a
    if state == "failed":
        m: Initiator | Acceptor = a if role == "initiator" else b
        if role == "initiator":
            a.start()
        m.receive(b"garbage")
        return m
    [challenge] = sent(b.receive(a.start()))
    if (role, state) == ("initiator", "wait_challenge"):
        return a
    if (role, state) == ("acceptor", "wait_response"):
        return b
    [response] = sent(a.receive(challenge))
    if state == "wait_ack":
        return a
    [ack] = sent(b.receive(response))
    a.receive(ack)
    return a if role == "initiator" else b


def _valid_frames() -> list[bytes]:
    wire, _, _ = drive(make_initiator(), make_acceptor())
    bad, _, _ = drive(make_initiator(cookie=b"other"), make_acceptor())
    return [f for _, f in wire] + [bad[-1][1]]


VALID_FRAMES = _valid_frames()


def check_events(machine: Initiator | Acceptor, before: str, events: list[Event]) -> None:
    """Only documented events, well-formed, consistent with the machine's new state."""
    assert isinstance(events, list) and events
    assert all(type(e) in (Send, Established, Failed) for e in events)
    finals = [e for e in events if not isinstance(e, Send)]
    assert len(finals) <= 1 and (not finals or events[-1] is finals[0])
    for e in events:
        if isinstance(e, Send):
            assert isinstance(e.frame, bytes) and e.frame[:4] == HEADER
            assert len(e.frame) <= MAX_HANDSHAKE_FRAME
        if isinstance(e, Failed):
            assert isinstance(e.error, ProtocolError) and "internal" not in str(e.error)
    if before in ("established", "failed"):
        assert len(events) == 1 and isinstance(events[0], Failed) and machine.state == before
    elif isinstance(events[-1], Failed):
        assert machine.state == "failed"
    elif isinstance(events[-1], Established):
        assert machine.state == "established"


def mutate(data: st.DataObject, frame_: bytes) -> bytes:
    out = bytearray(frame_)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "set"]))
        i = data.draw(st.integers(0, len(out)))
        if op == "flip" and i < len(out):
            out[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del out[i:]
        elif op == "insert":
            out[i:i] = data.draw(st.binary(max_size=8))
        elif i < len(out):
            out[i] = data.draw(st.integers(0, 255))
    return bytes(out)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = ["name", "creation", "flags", "endpoint", "to", "nonce", "digest", "reason", "auth"]

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(
    state=st.sampled_from(STATES), frames=st.lists(st.binary(max_size=64), min_size=1, max_size=3)
)
def test_fuzz_random_bytes(state: tuple[str, str], frames: list[bytes]) -> None:
    machine = machine_in(*state)
    for data in frames:
        before = machine.state
        events = machine.receive(data)
        check_events(machine, before, events)
        assert not any(isinstance(e, Established) for e in events)


@FUZZ
@given(state=st.sampled_from(STATES), data=st.data())
def test_fuzz_mutated_valid_frames(state: tuple[str, str], data: st.DataObject) -> None:
    machine = machine_in(*state)
    for _ in range(data.draw(st.integers(1, 3))):
        original = data.draw(st.sampled_from(VALID_FRAMES))
        before = machine.state
        check_events(machine, before, machine.receive(mutate(data, original)))


@FUZZ
@given(
    state=st.sampled_from(STATES),
    kind=st.integers(0, 7),
    body=st.dictionaries(st.sampled_from(FIELDS), msgpack_values, max_size=6) | msgpack_values,
)
def test_fuzz_well_framed_bodies(state: tuple[str, str], kind: int, body: Any) -> None:
    machine = machine_in(*state)
    before = machine.state
    events = machine.receive(HEADER + bytes([kind]) + msgpack.packb(body, use_bin_type=True))
    check_events(machine, before, events)
    if before == "wait_response":
        assert not any(isinstance(e, Established) for e in events)  # no digest can be guessed


# -- CURVE keys --------------------------------------------------------------------------------


def test_curve_keypair_is_deterministic_and_cookie_specific() -> None:
    public, secret = curve_keypair(COOKIE)
    assert curve_keypair(COOKIE) == (public, secret)
    assert len(public) == len(secret) == 40 and len(z85.decode(secret)) == 32
    assert zmq.curve_public(secret) == public
    others = {curve_keypair(c) for c in (b"other", COOKIE + b"x", COOKIE[:-1])}
    assert len(others) == 3 and (public, secret) not in others
    with pytest.raises(ValueError):
        curve_keypair(b"")


def _curve_pair(
    ctx: zmq.Context[zmq.Socket[bytes]], server_cookie: bytes, client_cookie: bytes
) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
    server_public, server_secret = curve_keypair(server_cookie)
    client_public, client_secret = curve_keypair(client_cookie)
    server = ctx.socket(zmq.PAIR)
    server.curve_server = True
    server.curve_publickey, server.curve_secretkey = server_public, server_secret
    port = server.bind_to_random_port("tcp://127.0.0.1")
    client = ctx.socket(zmq.PAIR)
    client.curve_serverkey = curve_keypair(client_cookie)[0]
    client.curve_publickey, client.curve_secretkey = client_public, client_secret
    for s in (server, client):
        s.linger = 0
    client.connect(f"tcp://127.0.0.1:{port}")
    return server, client


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq built without CURVE")
def test_curve_keys_work_with_zmq() -> None:
    ctx = zmq.Context()
    try:
        server, client = _curve_pair(ctx, COOKIE, COOKIE)
        client.send(b"ping")
        assert server.poll(5000) and server.recv() == b"ping"
        server.send(b"pong")
        assert client.poll(5000) and client.recv() == b"pong"
        server2, client2 = _curve_pair(ctx, COOKIE, b"another cookie")
        client2.send(b"ping")
        assert not server2.poll(300)  # a different cookie cannot complete the CURVE handshake
    finally:
        ctx.destroy(linger=0)
