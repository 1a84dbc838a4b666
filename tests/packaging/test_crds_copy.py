"""The chart ships byte-identical copies of the top-level CRDs (the single source)."""

from __future__ import annotations

from packaging_support import CHART, REPO

FIX = "cp crds/*.yaml helm/kubesoar/crds/"


def test_chart_crds_are_identical_to_the_top_level_crds():
    source = {p.name: p.read_bytes() for p in sorted((REPO / "crds").glob("*.yaml"))}
    copies = {p.name: p.read_bytes() for p in sorted((CHART / "crds").glob("*.yaml"))}
    assert {"playbook.yaml", "alertsource.yaml"} <= set(source), "crds/ lost a CRD"
    assert sorted(copies) == sorted(source), f"the chart's CRD files differ; run: {FIX}"
    for name, data in source.items():
        assert copies[name] == data, f"helm/kubesoar/crds/{name} is stale; run: {FIX}"


def test_rendered_crds_are_the_kubesoar_ones(chart):
    crds = [o for o in chart(crds=True) if o["kind"] == "CustomResourceDefinition"]
    assert sorted(c["metadata"]["name"] for c in crds) == [
        "alertsources.kubesoar.dev",
        "playbooks.kubesoar.dev",
    ]
