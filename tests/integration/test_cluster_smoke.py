"""The local cluster works end to end: control plane, controllers, scheduler, node agent,
loopback EndpointSlices and PodSecurity admission.

A Deployment of the http-echo image becomes a ReplicaSet and a Pod on the agent's
node, the Pod turns Running and Ready, its EndpointSlice lists its address, the
address answers HTTP, and deleting the Deployment garbage-collects the Pod and
stops its process. Unknown images wait with a clear reason, and a restricted
namespace rejects a privileged pod but admits a compliant one.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from support.cluster import ClusterHandle, process_alive, wait_for

pytestmark = pytest.mark.cluster

ECHO_IMAGE = "kubesoar.dev/test/http-echo:1"
LABELS = {"app": "echo"}


def echo_container(**extra: Any) -> dict[str, Any]:
    return {
        "name": "echo",
        "image": ECHO_IMAGE,
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "PORT", "value": "8080"},
        ],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
        **extra,
    }


def condition(obj: Any, kind: str) -> str | None:
    for cond in obj.status.conditions or []:
        if cond.type == kind:
            return str(cond.status)
    return None


def test_deployment_pod_endpointslice_http_and_garbage_collection(
    local_cluster: ClusterHandle, k8s_client: Any, namespace: str
) -> None:
    apps, core = client.AppsV1Api(k8s_client), client.CoreV1Api(k8s_client)
    discovery = client.DiscoveryV1Api(k8s_client)
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "echo"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": LABELS},
                "template": {
                    "metadata": {"labels": LABELS},
                    "spec": {"containers": [echo_container()]},
                },
            },
        },
    )
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "echo"},
            "spec": {"selector": LABELS, "ports": [{"port": 80, "targetPort": "http"}]},
        },
    )

    replica_set = wait_for(
        lambda: next(iter(apps.list_namespaced_replica_set(namespace).items), None),
        "the ReplicaSet",
    )
    assert replica_set.metadata.owner_references[0].name == "echo"

    def ready_pod() -> Any:
        pods = core.list_namespaced_pod(namespace).items
        return next((p for p in pods if condition(p, "Ready") == "True"), None)

    pod = wait_for(ready_pod, "a Ready echo pod")
    assert pod.metadata.owner_references[0].name == replica_set.metadata.name
    assert pod.spec.node_name == local_cluster.node_name
    assert pod.status.phase == "Running"
    assert pod.status.pod_ip.startswith("127.1.")
    assert pod.status.container_statuses[0].ready is True
    assert pod.status.container_statuses[0].state.running is not None

    def ready_address() -> str | None:
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=echo"
        ).items
        for endpoint_slice in slices:
            for endpoint in endpoint_slice.endpoints or []:
                if endpoint.conditions.ready and endpoint.target_ref.name == pod.metadata.name:
                    assert endpoint_slice.ports[0].port == 8080  # named targetPort resolved
                    return str(endpoint.addresses[0])
        return None

    address = wait_for(ready_address, "the pod's address, ready, in an EndpointSlice")
    assert address == pod.status.pod_ip

    with urllib.request.urlopen(f"http://{address}:8080/hello", timeout=5) as resp:
        assert resp.status == 200
        body = json.loads(resp.read())
    assert body["pod"] == pod.metadata.name
    assert body["path"] == "/hello"

    pid = local_cluster.container_pid(namespace, pod.metadata.name, "echo")
    assert pid is not None and process_alive(pid)
    assert "listening" in local_cluster.pod_log(namespace, pod.metadata.name, "echo")

    apps.delete_namespaced_deployment("echo", namespace, propagation_policy="Background")
    wait_for(
        lambda: not core.list_namespaced_pod(namespace).items or None,
        "the pod to be garbage-collected",
    )
    wait_for(lambda: not process_alive(pid), f"process {pid} to exit")
    wait_for(lambda: ready_address() is None or None, "the address to leave the EndpointSlice")


def test_unknown_image_waits_with_a_clear_reason(k8s_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s_client)
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "nginx"},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
        },
    )

    def waiting_state() -> Any:
        statuses = core.read_namespaced_pod("nginx", namespace).status.container_statuses or []
        return statuses[0].state.waiting if statuses and statuses[0].state.waiting else None

    waiting = wait_for(
        lambda: (w := waiting_state()) and w.reason == "ErrImageNeverPull" and w,
        "ErrImageNeverPull",
    )
    assert "nginx:1.27" in waiting.message
    assert core.read_namespaced_pod("nginx", namespace).status.phase == "Pending"


RESTRICTED_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def test_pod_security_restricted_namespace(k8s_client: Any, make_namespace: Any) -> None:
    core = client.CoreV1Api(k8s_client)
    namespace = make_namespace("psa", labels={"pod-security.kubernetes.io/enforce": "restricted"})

    privileged = {
        "metadata": {"name": "privileged"},
        "spec": {
            "containers": [
                {"name": "echo", "image": ECHO_IMAGE, "securityContext": {"privileged": True}}
            ]
        },
    }
    with pytest.raises(ApiException) as rejected:
        core.create_namespaced_pod(namespace, privileged)
    assert rejected.value.status == 403
    assert "violates PodSecurity" in rejected.value.body

    compliant = {
        "metadata": {"name": "restricted"},
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [echo_container(securityContext=RESTRICTED_SECURITY)],
        },
    }
    core.create_namespaced_pod(namespace, compliant)
    wait_for(
        lambda: (
            condition(core.read_namespaced_pod("restricted", namespace), "Ready") == "True" or None
        ),
        "the restricted pod to be Ready",
    )
