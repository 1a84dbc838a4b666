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
from collections.abc import Mapping, Sequence
from typing import Any

from kubesoar._conditions import MISSING, lookup_path
from kubesoar._expiring import ExpiringMap

MAX_ENTRIES = 200_000


def dedup_key(scope: str, alert: Mapping[str, Any], paths: Sequence[str]) -> bytes | None:
    values = [lookup_path(alert, path) for path in paths]
    if all(value is MISSING or value is None for value in values):
        return None
    shown = [None if value is MISSING else value for value in values]
    text = json.dumps(shown, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(f"{scope}\0{text}".encode()).digest()[:16]


class DedupCache(ExpiringMap[bytes, None]):
    """Alert keys with the end of their window; bounded, oldest evicted first."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        super().__init__(max_entries)

    def seen(self, key: bytes, now: float) -> bool:
        return self.live(key, now)

    def remember(self, key: bytes, window_seconds: float, now: float) -> None:
        self.put(key, None, expires_at=now + window_seconds, now=now)
