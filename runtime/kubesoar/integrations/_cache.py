"""Answers of lookups kept for a time-to-live, so a burst of alerts about the
same IP costs one vendor request, not one per alert.

Keys carry the integration, a fingerprint of the credential and the base
URL, so two Playbooks (or two API keys) never read each other's answers. The
JSON text is stored, not the object: a playbook mutating an answer cannot
change what the next run reads. Only successful answers are cached.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Final

from kubesoar.integrations._clock import get_clock

__all__ = ["MAX_CACHED_ANSWER_CHARS", "MAX_CACHE_ENTRIES", "AnswerCache", "answer_cache"]

MAX_CACHE_ENTRIES: Final = 10_000
MAX_CACHED_ANSWER_CHARS: Final = 256 * 1024


class AnswerCache:
    def __init__(self, max_entries: int = MAX_CACHE_ENTRIES) -> None:
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._max_entries = max_entries
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> tuple[bool, Any]:
        """(True, answer) while fresh, else (False, None)."""
        entry = self._entries.get(key)
        if entry is None or get_clock().now() >= entry[0]:
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return False, None
        self._entries.move_to_end(key)
        self.hits += 1
        return True, json.loads(entry[1])

    def put(self, key: str, answer: Any, ttl_seconds: float) -> None:
        if ttl_seconds <= 0:
            return
        try:
            text = json.dumps(answer)
        except (TypeError, ValueError):
            return
        if len(text) > MAX_CACHED_ANSWER_CHARS:
            return  # big answers are rare; keeping them would crowd out the rest
        self._entries[key] = (get_clock().now() + ttl_seconds, text)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)


answer_cache = AnswerCache()
