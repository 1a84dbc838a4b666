"""Keys that expire, in bounded memory: what the replay cache and dedup have in common."""

from __future__ import annotations

from collections import OrderedDict


class ExpiringKeys:
    """Keys with their expiry time, oldest first; past `max_entries` the oldest is evicted.

    Entries go in roughly in expiry order, so expiring stops at the first live entry;
    with windows that differ per key this is approximate, which is why a lookup checks
    the entry's own expiry too (`live`) and the bound caps the rest.
    """

    def __init__(self, max_entries: int) -> None:
        self._expiry: OrderedDict[bytes, float] = OrderedDict()
        self._max_entries = max_entries

    def __len__(self) -> int:
        return len(self._expiry)

    def live(self, key: bytes, now: float) -> bool:
        expires_at = self._expiry.get(key)
        if expires_at is None:
            return False
        if expires_at <= now:
            del self._expiry[key]
            return False
        return True

    def put(self, key: bytes, expires_at: float, now: float) -> None:
        self._expiry.pop(key, None)
        self._expiry[key] = expires_at
        self._expire(now)
        while len(self._expiry) > self._max_entries:
            self._expiry.popitem(last=False)

    def discard(self, key: bytes) -> None:
        self._expiry.pop(key, None)

    def _expire(self, now: float) -> None:
        while self._expiry:
            key, expires_at = next(iter(self._expiry.items()))
            if expires_at > now:
                return
            del self._expiry[key]
