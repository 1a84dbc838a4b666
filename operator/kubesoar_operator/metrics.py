"""Prometheus metrics of the operator (served by `--metrics-port`)."""

from __future__ import annotations

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

_ready_by_playbook: dict[tuple[str, str], str] = {}


def record_ready(namespace: str, name: str, ready: str | None) -> None:
    """Remember a Playbook's Ready status (None when deleted) and refresh the gauge."""
    key = (namespace, name)
    if ready is None:
        _ready_by_playbook.pop(key, None)
    else:
        _ready_by_playbook[key] = ready
    for value in ("True", "False", "Unknown"):
        PLAYBOOKS.labels(ready=value).set(sum(1 for v in _ready_by_playbook.values() if v == value))
