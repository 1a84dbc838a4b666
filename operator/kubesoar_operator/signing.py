"""Signed, expiring artifact URLs: one tenant cannot fetch another's code.

The signature is HMAC-SHA256, under the operator's key, over namespace, name,
digest and expiry; changing any of them (another tenant's namespace, another
digest, a later expiry) invalidates it. Expiry is rounded to a window so that
every reconcile inside the window renders the same URL and the pod template
does not change; pods started later (rescheduling, scale-up) fetch within the
URL's remaining lifetime, and a new window re-signs (rolling the pods once).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from pathlib import Path
from urllib.parse import urlencode

from kubesoar.contracts import caller

DEFAULT_TTL_SECONDS = 7 * 24 * 3600
KEY_BYTES = 32


class Signer:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("signing key must be at least 16 bytes")
        self._key = key

    @classmethod
    def from_file(cls, path: Path | None) -> Signer:
        """Key from a file (raw bytes, whitespace stripped), or a fresh random key."""
        if path is None:
            return cls(secrets.token_bytes(KEY_BYTES))
        return cls(path.read_bytes().strip())

    def caller_token(self, namespace: str, name: str) -> str:
        """The Playbook's runtime caller token (kubesoar.contracts.caller)."""
        return caller.caller_token(self._key, namespace, name)

    def signature(self, namespace: str, name: str, digest: str, expires: int) -> str:
        message = f"{namespace}\n{name}\n{digest}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def verify(
        self, namespace: str, name: str, digest: str, expires: int, sig: str, *, now: float
    ) -> bool:
        expected = self.signature(namespace, name, digest, expires)
        # Compare first, in constant time, then check expiry: no timing hint either way.
        valid = hmac.compare_digest(expected.encode(), sig.encode())
        return valid and now < expires

    def url(
        self,
        base_url: str,
        namespace: str,
        name: str,
        digest: str,
        *,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        now: float | None = None,
    ) -> str:
        expires = window_expiry(time.time() if now is None else now, ttl_seconds)
        query = urlencode(
            {"expires": expires, "sig": self.signature(namespace, name, digest, expires)}
        )
        return f"{base_url.rstrip('/')}/artifacts/{namespace}/{name}/{digest}.tar.gz?{query}"


def window_expiry(now: float, ttl_seconds: int) -> int:
    """An expiry between `ttl` and `2*ttl` from now, constant within each ttl window."""
    return (int(now) // ttl_seconds + 2) * ttl_seconds
