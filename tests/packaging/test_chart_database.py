"""The chart's system-of-record wiring, rendered by the real helm: the router and the
operator get the database URL file (and nothing else does), migrations run as a hook
Job, and the evaluation PostgreSQL is restricted and reachable only by kubesoar's pods."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from kubesoar_router.cli import parse_args
from packaging_support import HelmError, container, find, one

URL_FILE = "--database-url-file=/var/run/kubesoar/database/url"


def _volume(deployment: dict[str, Any], name: str) -> dict[str, Any] | None:
    volumes = deployment["spec"]["template"]["spec"].get("volumes") or []
    return next((v for v in volumes if v["name"] == name), None)


def test_without_a_database_nothing_mentions_one(chart):
    objects = chart()
    for name in ("-router", "-operator"):
        deployment = one(objects, "Deployment", name)
        assert URL_FILE not in container(deployment)["args"]
        assert _volume(deployment, "database") is None
    assert find(objects, "Job") == [] and find(objects, "StatefulSet") == []


def test_an_existing_secret_reaches_the_router_and_operator_only(chart):
    objects = chart({"database": {"existingSecret": "pg-app", "urlKey": "uri"}})
    for name in ("-router", "-operator"):
        deployment = one(objects, "Deployment", name)
        main = container(deployment)
        assert URL_FILE in main["args"]
        assert _volume(deployment, "database")["secret"] == {
            "secretName": "pg-app",
            "defaultMode": 0o440,
            "items": [{"key": "uri", "path": "url"}],
        }
        mount = next(m for m in main["volumeMounts"] if m["name"] == "database")
        assert mount["readOnly"] is True
    router_env = {e["name"]: e for e in container(one(objects, "Deployment", "-router"))["env"]}
    assert router_env["KUBESOAR_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    job = one(objects, "Job", "-db-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container(job)["args"] == ["db", "migrate", URL_FILE]
    assert container(job)["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert find(objects, "StatefulSet") == []  # the evaluation PostgreSQL is not rendered


def test_the_evaluation_postgresql_is_restricted_and_fenced(chart):
    objects = chart({"database": {"postgresql": {"enabled": True}}})
    secret = one(objects, "Secret", "-postgresql")
    url = base64.b64decode(secret["data"]["url"]).decode()
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert (
        url
        == f"postgresql://kubesoar:{password}@ks-kubesoar-postgresql.kubesoar-system.svc:5432/kubesoar"
    )
    assert len(password) == 32
    statefulset = one(objects, "StatefulSet", "-postgresql")
    pod = statefulset["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    main = container(statefulset)
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    policy = one(objects, "NetworkPolicy", "-postgresql")
    allowed = [
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for peer in policy["spec"]["ingress"][0]["from"]
    ]
    assert sorted(allowed) == ["db-migrate", "operator", "router"]  # never runtime pods
    assert one(objects, "Job", "-db-migrate")["metadata"]["annotations"]["helm.sh/hook"] == (
        "post-install,pre-upgrade"  # the StatefulSet exists only once installed
    )
    # The router and operator may reach it, and use the generated Secret.
    router = one(objects, "Deployment", "-router")
    assert _volume(router, "database")["secret"]["secretName"] == "ks-kubesoar-postgresql"
    router_policy = one(objects, "NetworkPolicy", "-router")
    assert any(
        rule.get("ports") == [{"protocol": "TCP", "port": 5432}]
        for rule in router_policy["spec"]["egress"]
    )


def test_retention_values_become_the_routers_flags_and_parse(chart):
    objects = chart(
        {
            "database": {"existingSecret": "pg-app"},
            "router": {
                "retention": {
                    "days": 14,
                    "maxAlertsPerNamespace": 2000000,
                    "namespaces": {
                        "acme": {"days": 90, "maxAlerts": 5000000},
                        "globex": {"days": 7.5},
                    },
                }
            },
        }
    )
    args = container(one(objects, "Deployment", "-router"))["args"]
    assert "--retention-days=14" in args and "--max-alerts-per-namespace=2000000" in args
    assert "--namespace-retention=acme=90,5000000" in args  # integers, never 5e+06
    assert "--namespace-retention=globex=7.5," in args
    parsed = parse_args(args[1:])  # the router's own parser takes what the chart renders
    assert dict(parsed.namespace_retention)["acme"].max_alerts == 5_000_000
    assert dict(parsed.namespace_retention)["globex"].days == 7.5


def test_a_namespace_retention_without_terms_is_refused(chart):
    retention = {"namespaces": {"acme": {}}}
    with pytest.raises(HelmError, match="minProperties"):
        chart({"database": {"existingSecret": "pg-app"}, "router": {"retention": retention}})
