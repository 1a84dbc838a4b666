"""Metrics that survive scraping, and alert rules that use them.

A scrape adds target labels (`namespace`, `pod`, `job`, ...); a metric label of
the same name is renamed `exported_<name>` by Prometheus (the chart's
ServiceMonitor keeps `honorLabels: false`). So: no kubesoar metric may expose
one, the chart's optional PrometheusRule (rendered by the real helm) groups
only by labels the metrics expose, and its rules are the ones
docs/operations.md shows.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from kubesoar._metrics import RuntimeMetrics
from kubesoar_operator import metrics as operator_metrics
from kubesoar_router.metrics import RouterMetrics
from packaging_support import REPO, one
from prometheus_client.parser import text_string_to_metric_families

# Labels Prometheus (and Prometheus Operator's ServiceMonitor) put on every target.
TARGET_LABELS = {"namespace", "pod", "service", "job", "instance", "container", "endpoint"}
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")
SERIES = re.compile(r"\b(kubesoar_[a-z_]+|up)\b(?:\{([^}]*)\})?")
MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def _exposed(exposition: str) -> dict[str, set[str]]:
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        names = labels.setdefault(family.name, set())
        for sample in family.samples:
            names |= set(sample.labels) - {"le"}
    return labels


def exposed_labels() -> dict[str, set[str]]:
    """Metric name (without _total, _bucket...) -> the labels it is exposed with."""
    router = RouterMetrics()
    router.source("tenant-a", "siem").delivered_ok.inc()
    router.rejected.labels("tenant-a", "siem", "invalid_token").inc()
    runtime = RuntimeMetrics()
    runtime.runs.labels("failed").inc()
    runtime.action_attempts.labels("vt.lookup", "failed").inc()
    runtime.rejected.labels("queue_full").inc()
    labels = _exposed(router.exposition().decode()) | _exposed(runtime.render().decode())
    # The operator's metrics live in the process-wide registry: read their definitions.
    for metric in (
        operator_metrics.RECONCILES,
        operator_metrics.FAILURES,
        operator_metrics.TRANSITIONS,
        operator_metrics.DURATION,
        operator_metrics.PLAYBOOKS,
    ):
        labels[metric._name] = set(metric._labelnames)
    return labels


def test_no_metric_exposes_a_label_that_scraping_adds():
    labels = exposed_labels()
    assert {"kubesoar_router_deliveries", "kubesoar_runs", "kubesoar_operator_playbooks"} <= set(
        labels
    )
    collisions = {
        name: found & TARGET_LABELS for name, found in labels.items() if found & TARGET_LABELS
    }
    assert collisions == {}
    assert labels["kubesoar_router_deliveries"] == {"tenant_namespace", "source", "outcome"}


def _base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_labels(expr: str, labels: dict[str, set[str]]) -> None:
    """Every label `expr` groups by is exposed by the metrics it reads; every
    label it matches on is exposed or a target label."""
    series = SERIES.findall(expr)
    assert series, expr
    readable: set[str] = set()
    for name, matchers in series:
        exposed = set() if name == "up" else labels[_base(name)]
        readable |= exposed
        for label in MATCHER.findall(matchers):
            assert label in exposed | TARGET_LABELS, f"{label!r} in {name}: {expr}"
        if name.endswith("_bucket"):
            readable.add("le")
    for group in GROUPING.findall(expr):
        for label in (g.strip() for g in group.split(",")):
            assert label in readable, f"groups by {label!r}, not a label of its metrics: {expr}"


@pytest.fixture(scope="module")
def chart_rules(chart) -> dict[str, dict[str, Any]]:
    assert not [o for o in chart() if o["kind"] == "PrometheusRule"]  # off by default
    rule = one(
        chart({"prometheusRule": {"enabled": True, "labels": {"role": "alerts"}}}), "PrometheusRule"
    )
    assert rule["metadata"]["labels"]["role"] == "alerts"
    (group,) = rule["spec"]["groups"]
    return {r["alert"]: r for r in group["rules"]}


def doc_rules() -> dict[str, dict[str, Any]]:
    text = (REPO / "docs" / "operations.md").read_text()
    section = text.split("## Alerts worth setting", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block
    (group,) = yaml.safe_load(block.group(1))["groups"]
    return {r["alert"]: r for r in group["rules"]}


def test_chart_rules_use_labels_the_metrics_expose(chart_rules):
    labels = exposed_labels()
    for rule in chart_rules.values():
        check_labels(rule["expr"], labels)
    per_tenant = [r["expr"] for r in chart_rules.values() if "kubesoar_router_" in r["expr"]]
    assert any("by (tenant_namespace, source)" in e for e in per_tenant)
    # Each selector is narrowed to the release's namespace (a target label).
    for rule in chart_rules.values():
        for _, matchers in SERIES.findall(rule["expr"]):
            assert 'namespace="kubesoar-system"' in matchers, rule["expr"]


def test_doc_rules_use_labels_the_metrics_expose():
    labels = exposed_labels()
    for rule in doc_rules().values():
        check_labels(rule["expr"], labels)


def _normal(expr: str) -> str:
    expr = re.sub(r'namespace="kubesoar-system",?', "", expr).replace("{}", "")
    return "".join(expr.split())  # PromQL ignores whitespace; YAML folding adds some


def test_chart_rules_are_the_documented_ones(chart_rules):
    documented = doc_rules()
    assert set(chart_rules) == set(documented)
    for name, rule in documented.items():
        if re.search(r"\bup\{", rule["expr"]):
            # The chart names the release's Services instead of a job pattern.
            assert "job=" in chart_rules[name]["expr"]
        else:
            assert _normal(chart_rules[name]["expr"]) == _normal(rule["expr"]), name
        assert chart_rules[name].get("for") == rule.get("for"), name
        assert chart_rules[name].get("annotations") == rule.get("annotations"), name


def test_the_service_monitor_keeps_target_labels(chart):
    objects = chart({"serviceMonitor": {"enabled": True}})
    (endpoint,) = one(objects, "ServiceMonitor")["spec"]["endpoints"]
    # The targets' namespace/job/instance win; the metrics' tenant label never collides.
    assert endpoint["honorLabels"] is False
