"""Remembers the answer given for each idempotency key, so a retried
delivery gets the same answer and runs nothing twice. Bounded by entries and
by age.

The bound decides how late a retry may come: the router retries an unsure
delivery on the same pod within the request, but a sender retries a 503 after
`Retry-After` (5 s) or later. 50,000 keys cover 25 s of retries at 2,000 runs/s
on one pod, minutes at ordinary rates, for about 20 MB (the service stores
compact answers: about 370 bytes a key)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubesoar._expiring import ExpiringMap

__all__ = ["DEFAULT_MAX_ENTRIES", "IdempotencyCache"]

DEFAULT_MAX_ENTRIES = 50_000


class IdempotencyCache:
    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        ttl_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: ExpiringMap[str, tuple[int, Any]] = ExpiringMap(max_entries)
        self._ttl = ttl_seconds
        self._clock = clock

    def get(self, key: str) -> tuple[int, Any] | None:
        """The (status, body) first answered for `key`, if still remembered."""
        return self._entries.get(key, self._clock())

    def put(self, key: str, status: int, body: Any) -> None:
        now = self._clock()
        self._entries.put(key, (status, body), expires_at=now + self._ttl, now=now)

    def __len__(self) -> int:
        return len(self._entries)
