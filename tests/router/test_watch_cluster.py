"""The watch side against the real API server: Playbooks (hand-written status),
AlertSources, their Secrets and runtime EndpointSlices become routes, and changes
to each are picked up. Alerts go through the router to a real runtime server."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import httpx
import pytest
from kubernetes import client as k8s
from kubesoar_router import statuswriter
from kubesoar_router.app import create_ingest_app
from kubesoar_router.ingest import Router
from kubesoar_router.kubeapi import KubeApi
from kubesoar_router.snapshot import Snapshot
from kubesoar_router.watch import Watcher
from router_objects import TINY_ENTRY_POINTS, serve

pytestmark = pytest.mark.cluster

CRDS = Path(__file__).parents[2] / "crds"
GROUP, VERSION = "kubesoar.dev", "v1alpha1"
TOKEN = "cluster-test-token"


@pytest.fixture(scope="module")
def crds(local_cluster):
    for name in ("playbook.yaml", "alertsource.yaml"):
        local_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS / name))
    for name in ("playbooks", "alertsources"):
        local_cluster.kubectl(
            "wait", "--for=condition=Established", f"crd/{name}.{GROUP}", "--timeout=60s"
        )


def create_tenant(k8s_client, namespace, runtime, *, ready=True):
    core, custom = k8s.CoreV1Api(k8s_client), k8s.CustomObjectsApi(k8s_client)
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "ingest"},
            "data": {"token": base64.b64encode(TOKEN.encode()).decode()},
        },
    )
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "alertsources",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AlertSource",
            "metadata": {"name": "siem"},
            "spec": {
                "auth": {"bearer": {"secretRef": {"name": "ingest", "key": "token"}}},
                "dedup": {"windowSeconds": 0},
            },
        },
    )
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "playbooks",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Playbook",
            "metadata": {"name": "triage"},
            "spec": {
                "source": {
                    "git": {"url": "https://git.example.com/p.git", "ref": {"branch": "main"}}
                },
                "module": "tinybook",
            },
        },
    )
    set_playbook_ready(k8s_client, namespace, ready)
    k8s.DiscoveryV1Api(k8s_client).create_namespaced_endpoint_slice(
        namespace,
        {
            "metadata": {
                "name": "triage-1",
                "labels": {
                    "kubernetes.io/service-name": "triage",
                    "app.kubernetes.io/component": "runtime",
                    "kubesoar.dev/playbook": "triage",
                },
            },
            # The API refuses loopback addresses in IPv4 slices; the local cluster
            # publishes pods as FQDN slices of dotted addresses, and so do we.
            "addressType": "FQDN",
            "ports": [{"name": "http", "port": runtime.port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [runtime.host], "conditions": {"ready": True}}],
        },
    )


def set_playbook_ready(k8s_client, namespace, ready):
    k8s.CustomObjectsApi(k8s_client).patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        "playbooks",
        "triage",
        {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True" if ready else "False",
                        "reason": "Test",
                        "message": "hand-written",
                        "lastTransitionTime": "2024-01-01T00:00:00Z",
                    }
                ],
                "playbooks": TINY_ENTRY_POINTS,
            }
        },
    )


async def eventually(check, timeout=20.0):
    """Poll `check` (async, returns truthy when the watch caught up), bounded."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.2)


async def test_watch_routes_and_follows_changes(
    crds, local_cluster, k8s_client, make_namespace, runtime_factory
):
    runtime_a, runtime_b = runtime_factory(), runtime_factory()
    ns_a, ns_b = make_namespace("rt-a"), make_namespace("rt-b")
    create_tenant(k8s_client, ns_a, runtime_a)
    create_tenant(k8s_client, ns_b, runtime_b)

    api = KubeApi.from_config(str(local_cluster.kubeconfig))
    router = Router(snapshot=Snapshot())
    watcher = Watcher(api, router.snapshot, [ns_a, ns_b])
    try:
        await asyncio.wait_for(watcher.start(), 60)
        assert router.snapshot.synced
        async with (
            serve(create_ingest_app(router)) as base_url,
            httpx.AsyncClient(base_url=base_url, timeout=30) as http,
        ):

            async def send(namespace, alert):
                return await http.post(
                    f"/v1/namespaces/{namespace}/sources/siem/alerts",
                    content=json.dumps(alert),
                    headers={"Authorization": f"Bearer {TOKEN}"},
                )

            high = {"title": "t", "severity": "critical"}
            response = await send(ns_a, {**high, "source_id": "1"})
            assert response.status_code == 202, response.text
            run_id = response.json()["deliveries"][0]["runId"]
            assert runtime_a.run(run_id) is not None
            assert runtime_b.run(run_id) is None

            # The Playbook turns unready (a rollout): still routed to its ready pods.
            set_playbook_ready(k8s_client, ns_a, False)
            response = await send(ns_a, {**high, "source_id": "during-rollout"})
            assert response.status_code == 202 and len(response.json()["deliveries"]) == 1

            # The Playbook is suspended: no longer routed.
            k8s.CustomObjectsApi(k8s_client).patch_namespaced_custom_object(
                GROUP, VERSION, ns_a, "playbooks", "triage", {"spec": {"suspend": True}}
            )

            async def unrouted():
                response = await send(ns_a, {**high, "source_id": f"u{time.monotonic()}"})
                return response.status_code == 202 and response.json()["deliveries"] == []

            assert await eventually(unrouted)

            # Tenant b is untouched by a's changes.
            response = await send(ns_b, {**high, "source_id": "2"})
            assert response.status_code == 202 and len(response.json()["deliveries"]) == 1

            # The Secret goes away: nobody can authenticate to the source (the uniform
            # 401 `unauthorized`, as for a source that does not exist), and comes back.
            core = k8s.CoreV1Api(k8s_client)
            core.delete_namespaced_secret("ingest", ns_b)

            async def not_ready():
                response = await send(ns_b, {**high, "source_id": "3"})
                return response.status_code == 401

            assert await eventually(not_ready)
            core.create_namespaced_secret(
                ns_b,
                {
                    "metadata": {"name": "ingest"},
                    "data": {"token": base64.b64encode(b"rotated").decode()},
                },
            )

            async def rotated():
                response = await http.post(
                    f"/v1/namespaces/{ns_b}/sources/siem/alerts",
                    content=json.dumps({**high, "source_id": "4"}),
                    headers={"Authorization": "Bearer rotated"},
                )
                return response.status_code == 202

            assert await eventually(rotated)

            # The endpoint turns unready: delivery fails with 503.
            k8s.DiscoveryV1Api(k8s_client).patch_namespaced_endpoint_slice(
                "triage-1",
                ns_b,
                {"endpoints": [{"addresses": [runtime_b.host], "conditions": {"ready": False}}]},
            )

            async def undeliverable():
                response = await http.post(
                    f"/v1/namespaces/{ns_b}/sources/siem/alerts",
                    content=json.dumps({**high, "source_id": f"5{time.monotonic()}"}),
                    headers={"Authorization": "Bearer rotated"},
                )
                return response.status_code == 503

            assert await eventually(undeliverable)

        # The router adds its counts to the AlertSource's status.
        await statuswriter.flush(api, router.counters)
        source = k8s.CustomObjectsApi(k8s_client).get_namespaced_custom_object(
            GROUP, VERSION, ns_a, "alertsources", "siem"
        )
        counters = source["status"]["counters"]
        assert counters["received"] >= 2 and counters["accepted"] >= 2
        assert counters["rejected"] == 0 and counters["lastAlertTime"].endswith("Z")
    finally:
        await watcher.stop()
        await api.close()
