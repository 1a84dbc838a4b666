"""The chart's runs.kubesoar.dev pieces (router.runsApi): the APIService trusts the
certificate the router serves, the router gets the flags, port and Secret, its RBAC is
what an extension API server needs, and the API's rules reach users only through the
built-in view / edit / admin roles."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from packaging_support import HelmError, container, find, one

ENABLED = {"router": {"runsApi": {"enabled": True}}, "database": {"existingSecret": "db"}}
Chart = Callable[..., list[dict[str, Any]]]


def test_off_by_default(chart: Chart) -> None:
    objects = chart()
    assert find(objects, "APIService") == []
    assert not [o for o in find(objects, "ClusterRole") if "runs" in o["metadata"]["name"]]
    assert not any(
        a.startswith("--api-listen")
        for a in container(one(objects, "Deployment", "-router"))["args"]
    )


def test_the_apiservice_trusts_the_certificate_the_router_serves(
    chart: Chart, tmp_path: Path
) -> None:
    objects = chart(ENABLED)
    apiservice = one(objects, "APIService")
    assert apiservice["metadata"]["name"] == "v1alpha1.runs.kubesoar.dev"
    assert apiservice["spec"]["service"] == {
        "name": "ks-kubesoar-runs-api",
        "namespace": "kubesoar-system",
        "port": 443,
    }
    assert "insecureSkipTLSVerify" not in apiservice["spec"]
    secret = one(objects, "Secret", "-runs-api-tls")
    ca = tmp_path / "ca.crt"
    cert = tmp_path / "tls.crt"
    ca.write_bytes(base64.b64decode(apiservice["spec"]["caBundle"]))
    cert.write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
    # The aggregator verifies the name <service>.<namespace>.svc against this CA.
    verified = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(ca),
            "-verify_hostname",
            "ks-kubesoar-runs-api.kubesoar-system.svc",
            str(cert),
        ],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    service = one(objects, "Service", "-runs-api")
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "runs-api", "protocol": "TCP"}
    ]
    router = one(objects, "Deployment", "-router")
    c = container(router)
    assert "--api-listen=0.0.0.0:8443" in c["args"]
    assert {"name": "runs-api", "containerPort": 8443, "protocol": "TCP"} in c["ports"]
    volumes = {v["name"]: v for v in router["spec"]["template"]["spec"]["volumes"]}
    assert volumes["runs-api-tls"]["secret"]["secretName"] == "ks-kubesoar-runs-api-tls"


def test_rbac_for_the_router_and_for_users(chart: Chart) -> None:
    objects = chart(ENABLED)
    delegator = one(objects, "ClusterRoleBinding", "-router-auth-delegator")
    assert delegator["roleRef"]["name"] == "system:auth-delegator"
    assert delegator["subjects"][0]["name"] == "ks-kubesoar-router"
    reader = one(objects, "RoleBinding", "-router-auth-reader")
    assert reader["metadata"]["namespace"] == "kube-system"
    assert reader["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "extension-apiserver-authentication-reader",
    }
    view = one(objects, "ClusterRole", "-runs-view")
    labels = view["metadata"]["labels"]
    for role in ("view", "edit", "admin"):
        assert labels[f"rbac.authorization.k8s.io/aggregate-to-{role}"] == "true"
    assert view["rules"] == [
        {
            "apiGroups": ["runs.kubesoar.dev"],
            "resources": ["runs", "alerts"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    edit = one(objects, "ClusterRole", "-alerts-edit")
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in edit["metadata"]["labels"]
    assert edit["rules"][0]["resources"] == ["alerts"]
    assert edit["rules"][0]["verbs"] == ["patch", "update"]
    assert edit["rules"][1] == {
        "apiGroups": ["runs.kubesoar.dev"],
        "resources": ["runs/redeliver"],
        "verbs": ["create"],
    }


def test_approving_comes_with_edit_unless_turned_off(chart: Chart) -> None:
    approve = {
        "apiGroups": ["runs.kubesoar.dev"],
        "resources": ["runs/approval"],
        "verbs": ["create", "approve"],
    }
    on = chart(ENABLED)
    assert approve in one(on, "ClusterRole", "-alerts-edit")["rules"]
    approver = one(on, "ClusterRole", "-runs-approve")
    # Granted only where someone binds it: aggregated into no built-in role.
    assert not [k for k in approver["metadata"]["labels"] if "aggregate-to" in k]
    assert approve in approver["rules"]
    off = chart({**ENABLED, "router": {"runsApi": {"enabled": True, "editApproves": False}}})
    assert approve not in one(off, "ClusterRole", "-alerts-edit")["rules"]
    assert approve in one(off, "ClusterRole", "-runs-approve")["rules"]


def test_a_brought_certificate_needs_its_ca(chart: Chart) -> None:
    mine = {**ENABLED, "router": {"runsApi": {"enabled": True, "tls": {"existingSecret": "t"}}}}
    with pytest.raises(HelmError, match="caBundle"):
        chart(mine)
    mine["router"]["runsApi"]["tls"]["caBundle"] = base64.b64encode(b"pem").decode()
    objects = chart(mine)
    assert find(objects, "Secret", "-runs-api-tls") == []
    router = one(objects, "Deployment", "-router")
    volumes = {v["name"]: v for v in router["spec"]["template"]["spec"]["volumes"]}
    assert volumes["runs-api-tls"]["secret"]["secretName"] == "t"


def test_the_api_needs_the_database(chart: Chart) -> None:
    with pytest.raises(HelmError, match="serves runs and alerts from the database"):
        chart({"router": {"runsApi": {"enabled": True}}})


def test_the_aggregator_may_reach_the_api_port(chart: Chart) -> None:
    objects = chart(ENABLED)
    policy = one(objects, "NetworkPolicy", "-router")
    api_rules = [r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "runs-api"]
    assert api_rules == [{"ports": [{"protocol": "TCP", "port": "runs-api"}]}]
    narrowed = chart({**ENABLED, "networkPolicy": {"apiServer": {"cidrs": ["10.0.0.1/32"]}}})
    policy = one(narrowed, "NetworkPolicy", "-router")
    [rule] = [r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "runs-api"]
    assert rule["from"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    assert not [
        r
        for r in one(chart(), "NetworkPolicy", "-router")["spec"]["ingress"]
        if r["ports"][0]["port"] == "runs-api"
    ]
