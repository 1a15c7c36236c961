"""Session tokens and passwords of gateway users: pure, no I/O.

A gateway client is told a *session token* when it connects (``SESSION <token>``):
the nickname, a random session id, and a MAC over both made with a key every chat
node derives from the cluster's cookie. Any chat node's gateway can check a token
without asking anyone, so a client whose gateway died resumes through another
with it, and a client cannot resume as a nickname it was never given: it does not
hold the key. The token is the client's proof of identity across reconnects; it
is never shown to other users.

A password (optional, per nickname) is kept only as a salted ``hashlib.scrypt``
hash, checked in constant time.

Example:
    >>> key = gateway_key(b"cookie")
    >>> token = issue(key, "ann")
    >>> verify(key, token)[0]
    'ann'
    >>> verify(key, token.replace("ann", "bob")) is None
    True
    >>> stored = hash_password("s3cret pass")
    >>> check_password(stored, "s3cret pass"), check_password(stored, "guess")
    (True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["check_password", "gateway_key", "hash_password", "issue", "verify"]

_MAC_BYTES = 16
# scrypt's cost: 16 MiB of memory and about 50 ms a check, so a stolen hash is slow to
# guess at; the parameters are stored with each hash, so they can be raised later.
_N, _R, _P = 2 ** 14, 8, 1


def gateway_key(cookie: bytes) -> bytes:
    """The key that signs session tokens: derived from the cluster's cookie, so every chat
    node has it and no client does (it is not the cookie itself)."""
    return hashlib.sha256(b"chatty gateway session tokens\0" + cookie).digest()


def _mac(key: bytes, nick: str, sid: str) -> str:
    return hmac.new(key, f"{nick}.{sid}".encode(), hashlib.sha256).hexdigest()[:2 * _MAC_BYTES]


def issue(key: bytes, nick: str, sid: str | None = None) -> str:
    """A token for session `sid` (a new one if None) of user `nick`: ``nick.sid.mac``."""
    sid = sid or secrets.token_hex(8)
    return f"{nick}.{sid}.{_mac(key, nick, sid)}"


def verify(key: bytes, token: str) -> tuple[str, str] | None:
    """``(nick, sid)`` of a token this cluster issued; None for any other string."""
    parts = token.split(".") if isinstance(token, str) and len(token) < 200 else []
    if len(parts) != 3:
        return None
    nick, sid, mac = parts
    if not hmac.compare_digest(mac.encode(), _mac(key, nick, sid).encode()):
        return None
    return nick, sid


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (hex): what is stored for a password, never the password."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P,
                            maxmem=64 * 1024 * 1024)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def check_password(stored: str, password: str) -> bool:
    """True if `password` is the one `stored` (from `hash_password`) was made from."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                             p=int(p), maxmem=64 * 1024 * 1024)
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(got, bytes.fromhex(digest))
