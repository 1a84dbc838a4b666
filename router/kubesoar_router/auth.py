"""Sender authentication: bearer tokens and HMAC-SHA256 signatures with replay protection.

Bearer: `Authorization: Bearer <token>`, compared in constant time.
HMAC, signature scheme v1: `<timestampHeader>: <Unix seconds>` and
`<signatureHeader>: v1=<hex of HMAC-SHA256(secret, message)>` where message is

    "v1\n" + timestamp + "\n" + METHOD + "\n" + path + "\n" + body

with path `/v1/namespaces/{namespace}/sources/{source}/alerts`. Binding the method and
the path (namespace and source) means a signature made for one AlertSource is refused
by every other, even one that shares the key. The timestamp must lie within the replay
window of the router's clock, and a signature is accepted once.

Answers: 401 for missing or invalid credentials (no header, wrong token, bad or
stale timestamp, a replayed signature), 403 when a signature is well formed but
does not match the body (tampering, or the wrong secret).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from kubesoar import _bearer as bearer
from kubesoar._expiring import ExpiringMap
from kubesoar.contracts.alertsource import Auth

from kubesoar_router.errors import IngestError

SIGNATURE_PREFIX = "v1="
MAX_REPLAY_ENTRIES = 200_000


@dataclass(frozen=True, repr=False)
class Credentials:
    """Secret values of one AlertSource; repr hides them so they never reach a log."""

    bearer_token: bytes | None = None
    hmac_secret: bytes | None = None

    def __repr__(self) -> str:
        return "Credentials(<redacted>)"


def sign(secret: bytes, timestamp: str, body: bytes, *, path: str, method: str = "POST") -> str:
    """The signature header value a sender computes (scheme v1; the module docstring)."""
    head = f"v1\n{timestamp}\n{method.upper()}\n{path}\n".encode()
    return SIGNATURE_PREFIX + hmac.new(secret, head + body, hashlib.sha256).hexdigest()


class ReplayCache(ExpiringMap[bytes, None]):
    """Signatures seen within their window; bounded, oldest evicted first.

    A signature is reserved while its request is processed and released when the
    request fails (so a sender may retry a 503 with the same signed request), kept
    until its window ends when the request succeeds. Eviction past the bound weakens
    replay protection for the oldest entries only; the bound keeps memory fixed.
    """

    def __init__(self, max_entries: int = MAX_REPLAY_ENTRIES) -> None:
        super().__init__(max_entries)

    def reserve(self, key: bytes, expires_at: float, now: float) -> bool:
        if self.live(key, now):
            return False
        self.put(key, None, expires_at=expires_at, now=now)
        return True

    def release(self, key: bytes) -> None:
        self.discard(key)


def authenticate(
    auth: Auth,
    credentials: Credentials,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    replay_cache: ReplayCache,
    path: str,
    method: str = "POST",
) -> bytes | None:
    """Check every configured method; return the replay-cache key reserved, if any.

    `path` is the canonical `contracts.http.ingest_path` of the source; the signature covers it.
    Raises `IngestError` (401/403) when a check fails.
    """
    if auth.bearer is not None:
        _check_bearer(credentials.bearer_token, headers.get("Authorization"))
    if auth.hmac is None:
        return None
    signature = headers.get(auth.hmac.signature_header)
    timestamp = headers.get(auth.hmac.timestamp_header)
    if not signature or not timestamp:
        raise IngestError(
            401,
            "missing_signature",
            f"send {auth.hmac.signature_header} and {auth.hmac.timestamp_header} headers",
        )
    window = auth.hmac.replay_window_seconds
    sent_at = _parse_timestamp(timestamp, auth.hmac.timestamp_header)
    if abs(now - sent_at) > window:
        raise IngestError(
            401, "stale_timestamp", f"the timestamp is more than {window}s from the router's clock"
        )
    secret = credentials.hmac_secret
    if secret is None:  # the snapshot never serves a source without its secret
        raise IngestError(503, "source_not_ready", "the source's HMAC secret is not available")
    expected = sign(secret, timestamp, body, path=path, method=method)
    if not bearer.matches(signature, expected.encode()):
        raise IngestError(
            403, "signature_mismatch", "the signature does not match the timestamp and body"
        )
    key = hashlib.sha256(f"{path}\0{expected}".encode()).digest()
    if not replay_cache.reserve(key, expires_at=sent_at + window, now=now):
        raise IngestError(401, "replayed_request", "this signature was already used; sign anew")
    return key


def _check_bearer(token: bytes | None, header: str | None) -> None:
    presented = bearer.presented_token(header)
    if presented is None:
        raise IngestError(401, "missing_credentials", "send Authorization: Bearer <token>")
    if token is None:
        raise IngestError(503, "source_not_ready", "the source's token is not available")
    if not bearer.matches(presented, token):
        raise IngestError(401, "invalid_token", "the bearer token is not valid for this source")


def _parse_timestamp(text: str, header: str) -> float:
    digits = text.strip()
    try:
        # Unix seconds fit in 12 digits for 30,000 years; a longer value would
        # overflow float() (a 500) and can never be inside the replay window anyway.
        if len(digits) > 12:
            raise ValueError(digits)
        value = int(digits)
    except ValueError:
        raise IngestError(
            401, "invalid_timestamp", f"{header} must be Unix seconds (an integer)"
        ) from None
    return float(value)
