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
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["DEFAULT_MAX_ENTRIES", "IdempotencyCache"]

DEFAULT_MAX_ENTRIES = 50_000


class IdempotencyCache:
    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        ttl_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[str, tuple[float, int, Any]] = OrderedDict()
        self._max_entries = max_entries
        self._ttl = ttl_seconds
        self._clock = clock

    def get(self, key: str) -> tuple[int, Any] | None:
        """The (status, body) first answered for `key`, if still remembered."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored_at, status, body = entry
        if self._clock() - stored_at > self._ttl:
            del self._entries[key]
            return None
        return status, body

    def put(self, key: str, status: int, body: Any) -> None:
        self._entries[key] = (self._clock(), status, body)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
