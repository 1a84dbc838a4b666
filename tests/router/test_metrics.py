"""The router's metrics: labelled children are looked up once per source and count
into the same series as `labels()` does."""

from __future__ import annotations

from kubesoar_router.metrics import RouterMetrics


def test_source_children_are_cached_and_exported() -> None:
    metrics = RouterMetrics()
    first = metrics.source("tenant-a", "siem")
    assert metrics.source("tenant-a", "siem") is first
    assert metrics.source("tenant-b", "siem") is not first
    first.received.inc()
    first.matched.inc(2)
    first.delivered_ok.inc()
    first.delivery_seconds.observe(0.002)
    metrics.received.labels("tenant-a", "siem").inc()
    text = metrics.exposition().decode()
    assert (
        'kubesoar_router_alerts_received_total{source="siem",tenant_namespace="tenant-a"} 2.0'
        in text
    )
    assert (
        'kubesoar_router_playbooks_matched_total{source="siem",tenant_namespace="tenant-a"} 2.0'
        in text
    )
    assert (
        'kubesoar_router_deliveries_total{outcome="ok",source="siem",'
        'tenant_namespace="tenant-a"} 1.0' in text
    )
    # The failed series exists from the first alert on, so rate() alerts have a baseline.
    assert (
        'kubesoar_router_deliveries_total{outcome="failed",source="siem",'
        'tenant_namespace="tenant-a"} 0.0' in text
    )
    assert (
        'kubesoar_router_delivery_seconds_count{source="siem",tenant_namespace="tenant-a"} 1.0'
        in text
    )
