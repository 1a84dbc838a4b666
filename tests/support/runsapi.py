"""The runs.kubesoar.dev API on the local test bed: a router process serving it on
127.0.0.1 over HTTPS, registered with the kube-apiserver's aggregator (for tests/api and
bench/api).

The router runs as a process, not a pod, so its Service has no selector and we publish
its endpoint ourselves: an EndpointSlice of addressType FQDN holding "127.0.0.1" (the
API refuses loopback IPs in IPv4 slices; the aggregator, with
--enable-aggregator-routing, dials the endpoint address as a host name). The serving
certificate comes from the cluster CA, so the APIService's caBundle is that CA and the
aggregator verifies the router. The chart's aggregated ClusterRoles are rendered with
helm and applied, so `view` / `edit` bindings mean what they mean in a real install.
"""

from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hack.localcluster import pki
from support.cluster import ClusterHandle
from support.stack import REPO, wait_for

API_NAMESPACE = "kubesoar-system"
SERVICE = "kubesoar-runs-api"
APISERVICE = "v1alpha1.runs.kubesoar.dev"
SERVING_STEM = "kubesoar-runs-api"


@dataclass(frozen=True)
class ServingCert:
    cert: Path
    key: Path

    def router_args(self, port: int) -> list[str]:
        return [
            "--api-listen", f"127.0.0.1:{port}",
            "--api-tls-cert-file", str(self.cert),
            "--api-tls-key-file", str(self.key),
        ]  # fmt: skip


def serving_cert(cluster: ClusterHandle) -> ServingCert:
    assert cluster.local is not None, "needs the local test bed's PKI"
    pki_dir = cluster.local.pki_dir
    pki.ensure_extension_serving_cert(pki_dir, SERVING_STEM, (f"{SERVICE}.{API_NAMESPACE}.svc",))
    return ServingCert(pki_dir / f"{SERVING_STEM}.crt", pki_dir / f"{SERVING_STEM}.key")


def apply(cluster: ClusterHandle, *objects: dict[str, Any]) -> None:
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
    cluster.kubectl("apply", "-f", "-", input=body)


def registration(port: int, ca_bundle: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": API_NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE, "namespace": API_NAMESPACE},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": SERVICE,
                "namespace": API_NAMESPACE,
                "labels": {
                    "kubernetes.io/service-name": SERVICE,
                    "endpointslice.kubernetes.io/managed-by": "tests.kubesoar.dev",
                },
            },
            "addressType": "FQDN",
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": APISERVICE},
            "spec": {
                "group": "runs.kubesoar.dev",
                "version": "v1alpha1",
                "groupPriorityMinimum": 1000,
                "versionPriority": 100,
                "service": {"name": SERVICE, "namespace": API_NAMESPACE, "port": 443},
                "caBundle": ca_bundle,
            },
        },
    ]


def chart_rbac(cluster: ClusterHandle) -> str:
    """The chart's runs.kubesoar.dev RBAC (aggregated ClusterRoles), rendered by helm."""
    rendered = subprocess.run(
        [str(cluster.helm_bin), "template", "kubesoar", str(REPO / "helm" / "kubesoar"),
         "--show-only", "templates/api-rbac.yaml",
         "--set", "router.runsApi.enabled=true", "--set", "database.existingSecret=unused"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return rendered.stdout


def available(cluster: ClusterHandle) -> bool:
    out = cluster.kubectl("get", "apiservice", APISERVICE, "-o", "json", check=False)
    if out.returncode != 0:
        return False
    conditions = json.loads(out.stdout).get("status", {}).get("conditions", [])
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)


def register(cluster: ClusterHandle, port: int) -> None:
    """APIService, Service, EndpointSlice and RBAC; returns once the APIService is Available."""
    assert cluster.local is not None
    ca_bundle = base64.b64encode((cluster.local.pki_dir / "ca.crt").read_bytes()).decode()
    apply(cluster, *registration(port, ca_bundle))
    cluster.kubectl("apply", "-f", "-", input=chart_rbac(cluster))
    wait_for(f"APIService {APISERVICE} to be Available", lambda: available(cluster), timeout=90)


def unregister(cluster: ClusterHandle) -> None:
    """Remove the APIService first: one nobody serves blocks namespace deletion cluster-wide."""
    cluster.kubectl("delete", "apiservice", APISERVICE, "--ignore-not-found", check=False)
    cluster.kubectl(
        "-n", API_NAMESPACE, "delete", "service,endpointslice", SERVICE, "--ignore-not-found",
        check=False,
    )  # fmt: skip


def binding(namespace: str, user: str, role: str) -> dict[str, Any]:
    """A RoleBinding of `user` to the built-in ClusterRole `role` in `namespace`."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"{user}-{role}", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }


def user_kubeconfig(cluster: ClusterHandle, user: str) -> Path:
    """A kubeconfig for `user`: a client certificate from the cluster CA, no groups."""
    assert cluster.local is not None
    identity = pki.ClientIdentity(f"user-{user}", user)
    pki.ensure_client_cert(cluster.local.pki_dir, identity)
    path = cluster.state_dir / "kubeconfigs" / f"user-{user}.kubeconfig"
    path.write_text(cluster.local._kubeconfig_text(cluster.server, identity))
    path.chmod(0o600)
    return path
