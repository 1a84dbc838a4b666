"""Bearer credentials in `Authorization` headers: one parser and one constant-time check,
shared by the router (AlertSource tokens) and the runtime (caller tokens)."""

from __future__ import annotations

import hmac


def presented_token(header: str | None) -> str | None:
    """The token of `Authorization: Bearer <token>`, or None when there is none."""
    scheme, _, presented = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return None
    return presented.strip()


def header_bytes(value: str) -> bytes:
    """A header value as the bytes a secret is compared with.

    aiohttp decodes header bytes that are not UTF-8 as lone surrogates; such a value can
    never match, and must be a 401/403, not an UnicodeEncodeError (a 500).
    """
    try:
        return value.strip().encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte: matches nothing
        return value.strip().encode("utf-8", "surrogatepass")


def matches(presented: str, secret: bytes) -> bool:
    """Constant-time comparison of a presented header value with a secret."""
    return hmac.compare_digest(header_bytes(presented), secret)
