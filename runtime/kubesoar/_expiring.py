"""A map whose entries expire, in bounded memory: the one implementation behind the
router's replay cache, dedup cache and delivery pins, and the runtime's idempotency
cache.

Time is passed in (`now`) rather than read here, so callers choose the clock (wall
time for signature windows, monotonic time for the rest) and tests need no sleeping.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["ExpiringMap"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringMap(Generic[K, V]):
    """Keys with a value and an expiry time, oldest first; past `max_entries` the
    oldest is evicted. An entry is live while `now < expires_at`.

    Entries go in roughly in expiry order (writing a key moves it to the end), so a
    write sweeps expired entries from the front and stops at the first live one. With
    lifetimes that differ per key the sweep is approximate, which is why a lookup
    checks the entry's own expiry too and the bound caps the rest.
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 0:
            raise ValueError(f"max_entries must be 0 or more, got {max_entries}")
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._max_entries = max_entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, now: float) -> V | None:
        """The value of `key` if it is live (an expired entry is dropped on the way)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at <= now:
            del self._entries[key]
            return None
        return value

    def live(self, key: K, now: float) -> bool:
        entry = self._entries.get(key)
        if entry is None:
            return False
        if entry[0] <= now:
            del self._entries[key]
            return False
        return True

    def put(self, key: K, value: V, *, expires_at: float, now: float) -> None:
        """Set `key` (as the newest entry), drop expired entries, then evict past the bound."""
        self._entries.pop(key, None)
        self._entries[key] = (expires_at, value)
        self._sweep(now)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)

    def _sweep(self, now: float) -> None:
        while self._entries:
            expires_at, _ = next(iter(self._entries.values()))
            if expires_at > now:
                return
            self._entries.popitem(last=False)
