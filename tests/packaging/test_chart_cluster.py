"""The chart against the real API server (local control plane).

Covers: every rendered object (CRDs included) admitted by a server-side dry
run, for the default values and for namespaced RBAC with two tenants, ingress
and ServiceMonitor on; the operator and router pods admitted in a namespace
that enforces the restricted Pod Security Standard (and a weakened pod
rejected there, so the check is real); the chart's RBAC applied for real and
probed with `kubectl auth can-i` as the operator's and router's
ServiceAccounts, in both RBAC scopes; NOTES.txt from a server dry-run install.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from packaging_support import CHART, Kubectl, find, run_helm

pytestmark = pytest.mark.cluster

# Just enough of the Prometheus Operator's CRD for a ServiceMonitor to be admitted.
SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "names": {
            "kind": "ServiceMonitor",
            "plural": "servicemonitors",
            "singular": "servicemonitor",
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture
def service_monitor_crd(kubectl: Kubectl) -> Iterator[None]:
    existed = kubectl.run("get", "crd", SERVICE_MONITOR_CRD["metadata"]["name"], check=False)
    if existed.returncode != 0:
        kubectl.apply([SERVICE_MONITOR_CRD])
        kubectl.run(
            "wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com"
        )
    yield
    if existed.returncode != 0:
        kubectl.run("delete", "crd", SERVICE_MONITOR_CRD["metadata"]["name"], "--wait=false")


def server_dry_run(kubectl: Kubectl, objects: list[dict[str, Any]]) -> list[str]:
    """Apply with --dry-run=server; returns the lines kubectl printed, one per object."""
    proc = kubectl.apply(objects, "--server-side", "--force-conflicts", "--dry-run=server")
    assert "Warning" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == len(objects), proc.stdout
    assert all(line.endswith("(server dry run)") for line in lines), proc.stdout
    return lines


def test_default_install_passes_server_side_dry_run(chart, kubectl, make_namespace, release_name):
    system = make_namespace("kubesoar-system")
    objects = chart(release=release_name, namespace=system, crds=True)
    assert {o["kind"] for o in objects} >= {"CustomResourceDefinition", "Deployment", "ClusterRole"}
    server_dry_run(kubectl, objects)


def test_namespaced_install_with_ingress_and_service_monitor_passes_server_side_dry_run(
    chart, kubectl, make_namespace, release_name, service_monitor_crd
):
    system = make_namespace("kubesoar-system")
    tenants = [make_namespace("tenant-a"), make_namespace("tenant-b")]
    values = {
        "rbac": {"scope": "namespaced", "tenantNamespaces": tenants},
        "router": {
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "hosts": ["alerts.example.com"],
                "tls": [{"secretName": "alerts-tls", "hosts": ["alerts.example.com"]}],
            }
        },
        "serviceMonitor": {"enabled": True},
        "networkPolicy": {"apiServer": {"cidrs": ["10.0.0.1/32"], "ports": [6443]}},
    }
    objects = chart(values, release=release_name, namespace=system)
    assert {o["kind"] for o in objects} >= {"Ingress", "ServiceMonitor", "Role", "RoleBinding"}
    assert {o["metadata"].get("namespace") for o in find(objects, "Role")} == set(tenants)
    server_dry_run(kubectl, objects)


def pod_from(deployment: dict[str, Any], namespace: str) -> dict[str, Any]:
    template = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": deployment["metadata"]["name"],
            "namespace": namespace,
            "labels": template["metadata"]["labels"],
        },
        "spec": copy.deepcopy(template["spec"]),
    }


def test_restricted_namespace_admits_the_operator_and_router_pods(chart, kubectl, make_namespace):
    system = make_namespace(
        "kubesoar-restricted",
        labels={
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/warn": "restricted",
        },
    )
    objects = chart(namespace=system)
    # Pods need their ServiceAccounts to exist; the rest is a dry run.
    kubectl.apply(find(objects, "ServiceAccount"))
    deployments = find(objects, "Deployment")
    assert len(deployments) == 2
    # The Deployments draw no PodSecurity warning ...
    server_dry_run(kubectl, deployments)
    # ... and the pods they would create are admitted under enforcement.
    pods = [pod_from(d, system) for d in deployments]
    proc = kubectl.run("create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(pods))
    assert proc.stdout.count("(server dry run)") == 2, proc.stdout

    # The same pod without its container securityContext is refused: the
    # namespace really enforces the standard.
    weakened = copy.deepcopy(pods[0])
    del weakened["spec"]["containers"][0]["securityContext"]
    proc = kubectl.run(
        "create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(weakened), check=False
    )
    assert proc.returncode != 0
    assert 'violates PodSecurity "restricted' in proc.stderr


# (verb, resource, subresource): what the operator needs in a served namespace.
OPERATOR_NEEDS = [
    ("watch", "playbooks.kubesoar.dev", None),
    ("patch", "playbooks.kubesoar.dev", None),
    ("patch", "playbooks.kubesoar.dev", "status"),
    ("update", "playbooks.kubesoar.dev", "finalizers"),
    ("list", "alertsources.kubesoar.dev", None),
    ("patch", "alertsources.kubesoar.dev", "status"),
    ("create", "events", None),
    ("create", "events.events.k8s.io", None),
    ("get", "secrets", None),
    ("create", "deployments.apps", None),
    ("patch", "deployments.apps", None),
    ("create", "services", None),
    ("create", "serviceaccounts", None),
    ("create", "networkpolicies.networking.k8s.io", None),
    ("watch", "pods", None),
    ("list", "endpointslices.discovery.k8s.io", None),
]
# What it must not do, anywhere.
OPERATOR_MUST_NOT = [
    # Children go with their Playbook through the garbage collector.
    ("delete", "deployments.apps", None),
    ("delete", "services", None),
    ("create", "pods", None),
    ("create", "pods", "exec"),
    ("list", "secrets", None),
    ("create", "secrets", None),
    ("delete", "playbooks.kubesoar.dev", None),
    ("create", "roles.rbac.authorization.k8s.io", None),
    ("create", "rolebindings.rbac.authorization.k8s.io", None),
    ("escalate", "roles.rbac.authorization.k8s.io", None),
    ("bind", "roles.rbac.authorization.k8s.io", None),
    ("impersonate", "serviceaccounts", None),
    ("create", "serviceaccounts", "token"),
    ("create", "daemonsets.apps", None),
]
ROUTER_NEEDS = [
    ("watch", "playbooks.kubesoar.dev", None),
    ("watch", "alertsources.kubesoar.dev", None),
    ("patch", "alertsources.kubesoar.dev", "status"),
    ("watch", "secrets", None),
    ("watch", "endpointslices.discovery.k8s.io", None),
]
ROUTER_MUST_NOT = [
    ("patch", "playbooks.kubesoar.dev", None),
    ("patch", "playbooks.kubesoar.dev", "status"),
    ("create", "deployments.apps", None),
    ("create", "pods", None),
    ("create", "secrets", None),
    ("create", "events", None),
]
CLUSTER_MUST_NOT = [
    ("delete", "namespaces", None),
    ("create", "namespaces", None),
    ("create", "clusterroles.rbac.authorization.k8s.io", None),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", None),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", None),
    ("bind", "clusterroles.rbac.authorization.k8s.io", None),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", None),
    ("update", "customresourcedefinitions.apiextensions.k8s.io", None),
    ("create", "validatingwebhookconfigurations.admissionregistration.k8s.io", None),
    ("list", "nodes", None),
]


def check(
    kubectl: Kubectl,
    sa: str,
    rules: list[tuple[str, str, str | None]],
    namespace: str | None,
    expected: bool,
) -> None:
    wrong = [
        (verb, resource, sub, namespace)
        for verb, resource, sub in rules
        if kubectl.can_i(sa, verb, resource, namespace, sub) is not expected
    ]
    assert wrong == [], f"{sa} can{'not' if expected else ''}: {wrong}"


def test_namespaced_rbac_grants_tenants_only(
    chart, kubectl, make_namespace, release_name, applied_rbac
):
    system = make_namespace("kubesoar-system")
    tenants = [make_namespace("tenant-a"), make_namespace("tenant-b")]
    outsider = make_namespace("outsider")
    values = {"rbac": {"scope": "namespaced", "tenantNamespaces": tenants}}
    applied_rbac(chart(values, release=release_name, namespace=system))
    operator = f"{system}/{release_name}-kubesoar-operator"
    router = f"{system}/{release_name}-kubesoar-router"

    for tenant in tenants:
        check(kubectl, operator, OPERATOR_NEEDS, tenant, True)
        check(kubectl, operator, OPERATOR_MUST_NOT, tenant, False)
        check(kubectl, router, ROUTER_NEEDS, tenant, True)
        check(kubectl, router, ROUTER_MUST_NOT, tenant, False)
    # Nothing outside the tenants: not their Secrets, not even in its own namespace.
    for namespace in (outsider, system, "kube-system", "default"):
        check(kubectl, operator, OPERATOR_NEEDS, namespace, False)
        check(kubectl, router, ROUTER_NEEDS, namespace, False)
    for sa in (operator, router):
        check(kubectl, sa, CLUSTER_MUST_NOT, None, False)
        check(kubectl, sa, [("get", "secrets", None)], None, False)
    # kopf discovers its resources and follows the namespaces it serves: the
    # operator (only) reads CRDs and namespace names.
    check(
        kubectl,
        operator,
        [
            ("list", "customresourcedefinitions.apiextensions.k8s.io", None),
            ("watch", "namespaces", None),
        ],
        None,
        True,
    )
    check(kubectl, router, [("list", "namespaces", None)], None, False)
    check(
        kubectl,
        router,
        [("list", "customresourcedefinitions.apiextensions.k8s.io", None)],
        None,
        False,
    )


def granted(kubectl: Kubectl, sa: str, namespace: str) -> set[str]:
    """Rows of `kubectl auth can-i --list` for the ServiceAccount in a namespace."""
    ns, name = sa.split("/")
    proc = kubectl.run(
        "auth",
        "can-i",
        "--list",
        f"--namespace={namespace}",
        f"--as=system:serviceaccount:{ns}:{name}",
    )
    return {" ".join(line.split()) for line in proc.stdout.splitlines()[1:] if line.strip()}


def test_namespaced_rbac_adds_nothing_outside_the_tenants_but_crd_discovery(
    chart, kubectl, make_namespace, release_name, applied_rbac
):
    system = make_namespace("kubesoar-system")
    tenant = make_namespace("tenant-a")
    outsider = make_namespace("outsider")
    kubectl.run("create", "serviceaccount", "baseline", f"--namespace={system}")
    applied_rbac(
        chart(
            {"rbac": {"scope": "namespaced", "tenantNamespaces": [tenant]}},
            release=release_name,
            namespace=system,
        )
    )
    baseline = granted(kubectl, f"{system}/baseline", outsider)
    operator_extra = (
        granted(kubectl, f"{system}/{release_name}-kubesoar-operator", outsider) - baseline
    )
    assert operator_extra == {
        "customresourcedefinitions.apiextensions.k8s.io [] [] [get list watch]",
        "namespaces [] [] [get list watch]",
    }
    assert granted(kubectl, f"{system}/{release_name}-kubesoar-router", outsider) == baseline


def test_cluster_rbac_serves_every_namespace_without_escalation(
    chart, kubectl, make_namespace, release_name, applied_rbac
):
    system = make_namespace("kubesoar-system")
    anywhere = make_namespace("tenant-any")
    applied_rbac(chart(release=release_name, namespace=system))
    operator = f"{system}/{release_name}-kubesoar-operator"
    router = f"{system}/{release_name}-kubesoar-router"
    check(kubectl, operator, OPERATOR_NEEDS, anywhere, True)
    check(kubectl, operator, OPERATOR_MUST_NOT, anywhere, False)
    check(kubectl, router, ROUTER_NEEDS, anywhere, True)
    check(kubectl, router, ROUTER_MUST_NOT, anywhere, False)
    for sa in (operator, router):
        check(kubectl, sa, CLUSTER_MUST_NOT, None, False)
    # Serving the whole cluster, kopf does not list namespaces.
    check(kubectl, operator, [("list", "namespaces", None)], None, False)


def test_install_dry_run_shows_notes(helm_bin, local_cluster, make_namespace, release_name):
    system = make_namespace("kubesoar-system")
    tenants = [make_namespace("tenant-a"), make_namespace("tenant-b")]
    values = {"rbac": {"scope": "namespaced", "tenantNamespaces": tenants}}
    out = run_helm(
        helm_bin,
        "install",
        release_name,
        str(CHART),
        f"--namespace={system}",
        f"--kubeconfig={local_cluster.kubeconfig}",
        "--dry-run=server",
        values=values,
    )
    notes = out[out.index("NOTES:") :]
    assert f"deployment/{release_name}-kubesoar-operator (1 replica)" in notes
    assert f"serving Playbooks and AlertSources in: {tenants[0]}, {tenants[1]}" in notes
    assert "kubectl -n <tenant> apply -f playbook.yaml" in notes
