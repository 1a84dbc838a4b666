"""Prometheus metrics of the operator (served by `--metrics-port`)."""

from __future__ import annotations

import threading
from collections import Counter as Tally

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "kubesoar_operator_reconciles_total",
    "Playbook reconciles, by result (succeeded, failed, suspended).",
    ["result"],
)
FAILURES = Counter(
    "kubesoar_operator_reconcile_failures_total",
    "Failed Playbook reconciles, by condition reason.",
    ["reason"],
)
TRANSITIONS = Counter(
    "kubesoar_operator_transitions_total",
    "Playbook condition changes posted as Events (NewRevision, Ready, SourceFailed, ...).",
    ["reason"],
)
DURATION = Histogram(
    "kubesoar_operator_reconcile_duration_seconds",
    "Time one Playbook reconcile took.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
PLAYBOOKS = Gauge(
    "kubesoar_operator_playbooks",
    "Playbooks this operator watches, by Ready status.",
    ["ready"],
)

READY_VALUES = ("True", "False", "Unknown")


class ReadyCounts:
    """Each Playbook's Ready status, counted by status into a gauge.

    Called from kopf's handler threads and the refresher's at once, so every update
    and the gauge it sets happen under one lock: without it a count could iterate a
    changing dict, or an older count overwrite a newer one. Counts are kept as they
    change rather than recounted, so an update costs the same at 1,000 Playbooks as at 1.
    """

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge
        self._lock = threading.Lock()
        self._ready: dict[tuple[str, str], str] = {}
        self._counts: Tally[str] = Tally()

    def record(self, namespace: str, name: str, ready: str | None) -> None:
        """Remember a Playbook's Ready status (None when deleted) and refresh the gauge."""
        key = (namespace, name)
        with self._lock:
            before = self._ready.pop(key, None)
            if before is not None:
                self._counts[before] -= 1
            if ready is not None:
                self._ready[key] = ready
                self._counts[ready] += 1
            for value in READY_VALUES:
                self._gauge.labels(ready=value).set(self._counts[value])

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {value: self._counts[value] for value in READY_VALUES}


_READY = ReadyCounts(PLAYBOOKS)


def record_ready(namespace: str, name: str, ready: str | None) -> None:
    """Remember a Playbook's Ready status (None when deleted) and refresh the gauge."""
    _READY.record(namespace, name, ready)
