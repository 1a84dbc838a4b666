"""Per-AlertSource totals the router adds to `status.counters` (see statuswriter.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SourceCounts:
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    last_alert_time: float | None = None

    def empty(self) -> bool:
        return not (self.received or self.accepted or self.rejected or self.duplicates)


class CounterBook:
    """Deltas since the last flush, keyed by (namespace, source)."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], SourceCounts] = {}

    def of(self, namespace: str, source: str) -> SourceCounts:
        key = (namespace, source)
        counts = self._pending.get(key)
        if counts is None:
            counts = self._pending[key] = SourceCounts()
        return counts

    def take(self) -> dict[tuple[str, str], SourceCounts]:
        """Hand over the pending deltas and start afresh."""
        pending, self._pending = self._pending, {}
        return {key: counts for key, counts in pending.items() if not counts.empty()}

    def give_back(self, key: tuple[str, str], counts: SourceCounts) -> None:
        """Return deltas that could not be written, to be added on the next flush."""
        mine = self.of(*key)
        mine.received += counts.received
        mine.accepted += counts.accepted
        mine.rejected += counts.rejected
        mine.duplicates += counts.duplicates
        if counts.last_alert_time and (mine.last_alert_time or 0) < counts.last_alert_time:
            mine.last_alert_time = counts.last_alert_time
