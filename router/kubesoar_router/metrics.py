"""Prometheus metrics of the router, in a registry of their own (one per app).

Labels are the namespace and source of the URL only when that source exists,
so requests to made-up paths cannot grow the series without bound.

The tenant's namespace is labelled `tenant_namespace`, not `namespace`: a
scrape adds the target's own `namespace` (the router's), and Prometheus (and
so Prometheus Operator's ServiceMonitor, without `honorLabels`) renames a
colliding label of the metric to `exported_namespace`. `honorLabels: true`
would let the metric's label win instead, but it also lets a target overwrite
`job` and `instance`, and plain Prometheus configurations would still collide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

UNKNOWN = "-"
TENANT_LABEL = "tenant_namespace"


@dataclass(frozen=True)
class SourceMetrics:
    """The labelled children of one (namespace, source), looked up once: a
    `labels()` call costs a lock and a tuple per request on the ingest path."""

    received: Any
    duplicates: Any
    matched: Any
    delivered_ok: Any
    delivered_failed: Any
    delivery_seconds: Any


class RouterMetrics:
    def __init__(self) -> None:
        self._sources: dict[tuple[str, str], SourceMetrics] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        labels = (TENANT_LABEL, "source")
        self.received = Counter(
            "kubesoar_router_alerts_received", "Requests received", labels, registry=self.registry
        )
        self.rejected = Counter(
            "kubesoar_router_alerts_rejected",
            "Requests refused, by reason (the error code of the answer)",
            (*labels, "reason"),
            registry=self.registry,
        )
        self.duplicates = Counter(
            "kubesoar_router_alerts_duplicate",
            "Alerts dropped as duplicates",
            labels,
            registry=self.registry,
        )
        self.matched = Counter(
            "kubesoar_router_playbooks_matched",
            "Playbooks matched by accepted alerts (one per alert and Playbook)",
            labels,
            registry=self.registry,
        )
        self.delivered = Counter(
            "kubesoar_router_deliveries",
            "Deliveries to runtime pods, by outcome (ok, failed)",
            (*labels, "outcome"),
            registry=self.registry,
        )
        self.delivery_seconds = Histogram(
            "kubesoar_router_delivery_seconds",
            "Time to deliver one alert to one Playbook, retries included",
            labels,
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

        # The dispatcher (system of record). Playbook labels come from the database's
        # runs, i.e. from Playbooks that exist in namespaces this router serves.
        runs = (TENANT_LABEL, "playbook")
        self.runs_dispatched = Counter(
            "kubesoar_router_runs_dispatched",
            "Runs this replica handed to a runtime pod (each attempt counts)",
            runs,
            registry=self.registry,
        )
        self.runs_redelivered = Counter(
            "kubesoar_router_runs_redelivered",
            "Runs whose lease ran out and that went back to the queue, attempt + 1",
            runs,
            registry=self.registry,
        )
        self.runs_dead = Counter(
            "kubesoar_router_runs_dead",
            "Runs that ran out of attempts (status dead, the reason in the run record)",
            runs,
            registry=self.registry,
        )
        self.approvals_expired = Counter(
            "kubesoar_router_approvals_expired",
            "Approvals nobody decided within their TTL (denied as Expired, the run resumed)",
            runs,
            registry=self.registry,
        )
        self.runs_queued = Gauge(
            "kubesoar_router_runs_queued",
            "Runs waiting in the database for a runtime pod, as of the last dispatch round",
            runs,
            registry=self.registry,
        )

    def source(self, namespace: str, source: str) -> SourceMetrics:
        """Children for a source that exists (callers only pass known sources, so the
        cache is bounded by the AlertSources the router has served)."""
        key = (namespace, source)
        children = self._sources.get(key)
        if children is None:
            children = self._sources[key] = SourceMetrics(
                received=self.received.labels(namespace, source),
                duplicates=self.duplicates.labels(namespace, source),
                matched=self.matched.labels(namespace, source),
                delivered_ok=self.delivered.labels(namespace, source, "ok"),
                delivered_failed=self.delivered.labels(namespace, source, "failed"),
                delivery_seconds=self.delivery_seconds.labels(namespace, source),
            )
        return children

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
