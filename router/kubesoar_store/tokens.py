"""Per-run tokens: minted at claim, shown once to the dispatcher, stored only as sha256."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def mint() -> tuple[str, bytes]:
    """A new token and the hash to store."""
    token = secrets.token_urlsafe(32)
    return token, digest(token)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def matches(token: str, stored_hash: bytes | None) -> bool:
    """Constant-time: whether `token` is the one whose hash is stored."""
    if stored_hash is None:
        return False
    return hmac.compare_digest(digest(token), stored_hash)
