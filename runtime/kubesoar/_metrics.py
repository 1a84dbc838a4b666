"""Prometheus metrics of one runtime, on a registry of its own (so several
runtimes in one test process do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["RuntimeMetrics"]


class RuntimeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.runs = Counter(
            "kubesoar_runs", "Finished runs by status.", ["status"], registry=self.registry
        )
        self.run_duration = Histogram(
            "kubesoar_run_duration_seconds",
            "Wall time of a run, all its entry points.",
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )
        self.queue_depth = Gauge(
            "kubesoar_queue_depth", "Accepted runs waiting for a worker.", registry=self.registry
        )
        self.in_flight = Gauge(
            "kubesoar_runs_in_flight", "Runs being executed.", registry=self.registry
        )
        self.action_attempts = Counter(
            "kubesoar_action_attempts",
            "Action attempts by action and status.",
            ["action", "status"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "kubesoar_rejected_requests",
            "Run requests refused, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.loaded = Gauge(
            "kubesoar_module_loaded", "1 when the playbook module imported.", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
