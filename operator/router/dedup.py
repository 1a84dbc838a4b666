"""Duplicate suppression: an alert's key remembered for a window, in bounded memory.

The key is the JSON of the values at the AlertSource's dedup paths in the
normalised alert, hashed (so memory per entry is fixed whatever the values).
An alert whose key paths are all absent is never treated as a duplicate.
A key is only recorded once the alert was delivered, so a retry after a 503
goes through.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from kubesoar._conditions import MISSING, lookup_path

MAX_ENTRIES = 200_000


def dedup_key(scope: str, alert: Mapping[str, Any], paths: Sequence[str]) -> bytes | None:
    values = [lookup_path(alert, path) for path in paths]
    if all(value is MISSING or value is None for value in values):
        return None
    shown = [None if value is MISSING else value for value in values]
    text = json.dumps(shown, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(f"{scope}\0{text}".encode()).digest()[:16]


class DedupCache:
    """Keys with their expiry; the oldest entry is evicted once `max_entries` is reached."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._expiry: OrderedDict[bytes, float] = OrderedDict()
        self._max_entries = max_entries

    def __len__(self) -> int:
        return len(self._expiry)

    def seen(self, key: bytes, now: float) -> bool:
        expires_at = self._expiry.get(key)
        if expires_at is None:
            return False
        if expires_at <= now:
            del self._expiry[key]
            return False
        return True

    def remember(self, key: bytes, window_seconds: float, now: float) -> None:
        self._expiry.pop(key, None)
        self._expiry[key] = now + window_seconds
        self._expire(now)
        while len(self._expiry) > self._max_entries:
            self._expiry.popitem(last=False)

    def _expire(self, now: float) -> None:
        # Windows differ per source, so this is approximate: it stops at the first
        # live entry; `seen` rejects any expired straggler and the bound caps the rest.
        while self._expiry:
            key, expires_at = next(iter(self._expiry.items()))
            if expires_at > now:
                return
            del self._expiry[key]
