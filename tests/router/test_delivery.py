"""Delivery to real runtime servers (`python -m kubesoar runtime` on 127.x addresses):
round-robin, failover when an endpoint dies, 503 when none accepts, no double runs
on retry, and tenant isolation between two namespaces with the same names."""

from __future__ import annotations

import json

import httpx
from kubesoar.operator.router.snapshot import build_namespace
from router_objects import TINY_ENTRY_POINTS, alertsource, endpointslice, new_router, playbook

HIGH = {"title": "Brute force", "severity": "high", "source_id": "e-1"}


def tenant(namespace, token, runtimes, *, ready=True):
    return build_namespace(
        namespace,
        alertsources=[alertsource("siem", dedup={"windowSeconds": 0})],
        secrets={"ingest": {"token": token.encode()}},
        playbooks=[playbook("triage", TINY_ENTRY_POINTS)],
        endpointslices=[endpointslice("triage", r.host, r.port, ready=ready) for r in runtimes],
    )


async def send(base_url, namespace, token, alert, **headers):
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        return await client.post(
            f"/v1/namespaces/{namespace}/sources/siem/alerts",
            content=json.dumps(alert),
            headers={"Authorization": f"Bearer {token}", **headers},
        )


async def test_delivers_matched_entry_points_round_robin(runtime_factory, router_server):
    runtimes = [runtime_factory(), runtime_factory()]
    router = new_router()
    router.snapshot.put(tenant("tenant-a", "tok-a", runtimes))
    base_url = await router_server(router)
    owners = []
    for index in range(4):
        response = await send(base_url, "tenant-a", "tok-a", {**HIGH, "source_id": f"e-{index}"})
        assert response.status_code == 202, response.text
        answer = response.json()
        assert [d["playbook"] for d in answer["deliveries"]] == ["triage"]
        run_id = answer["deliveries"][0]["runId"]
        owners.append([r.run(run_id) is not None for r in runtimes].index(True))
    assert sorted(owners) == [0, 0, 1, 1]
    assert [r.runs_total() for r in runtimes] == [2, 2]
    # Not matching any entry point: accepted, nothing delivered.
    response = await send(base_url, "tenant-a", "tok-a", {"title": "noise", "severity": "low"})
    assert response.status_code == 202 and response.json()["deliveries"] == []


async def test_failover_when_an_endpoint_dies(runtime_factory, router_server):
    alive, dying = runtime_factory(), runtime_factory()
    router = new_router()
    router.snapshot.put(tenant("tenant-a", "tok-a", [alive, dying]))
    base_url = await router_server(router)
    dying.stop()
    for index in range(4):
        response = await send(base_url, "tenant-a", "tok-a", {**HIGH, "source_id": f"f-{index}"})
        assert response.status_code == 202, response.text
        assert alive.run(response.json()["deliveries"][0]["runId"])["status"] == "succeeded"
    assert alive.runs_total() == 4


async def test_503_when_no_endpoint_accepts_and_the_retry_runs_once(runtime_factory, router_server):
    runtime = runtime_factory()
    router = new_router()
    router.snapshot.put(tenant("tenant-a", "tok-a", [runtime], ready=False))
    base_url = await router_server(router)
    response = await send(base_url, "tenant-a", "tok-a", HIGH)
    assert response.status_code == 503
    assert response.json()["error"] == "delivery_failed"
    assert "no ready runtime endpoint" in response.json()["message"]
    assert int(response.headers["Retry-After"]) > 0
    assert runtime.runs_total() == 0

    # The endpoint turns ready: the sender's retry goes through (dedup did not keep it)...
    router.snapshot.put(tenant("tenant-a", "tok-a", [runtime]))
    first = await send(base_url, "tenant-a", "tok-a", HIGH)
    assert first.status_code == 202, first.text
    # ...and the same request again reaches the runtime with the same idempotency key,
    # which answers with the first run instead of running it again.
    again = await send(base_url, "tenant-a", "tok-a", HIGH)
    assert again.status_code == 202
    assert again.json()["deliveries"] == first.json()["deliveries"]
    assert runtime.run(first.json()["deliveries"][0]["runId"])["status"] == "succeeded"
    assert runtime.runs_total() == 1


async def test_503_when_every_endpoint_is_down(runtime_factory, router_server):
    runtimes = [runtime_factory(), runtime_factory()]
    router = new_router()
    router.snapshot.put(tenant("tenant-a", "tok-a", runtimes))
    base_url = await router_server(router)
    for runtime in runtimes:
        runtime.stop()
    response = await send(base_url, "tenant-a", "tok-a", HIGH)
    assert response.status_code == 503
    assert "triage" in response.json()["message"]


async def test_tenant_isolation(runtime_factory, router_server):
    runtime_a, runtime_b = runtime_factory(), runtime_factory()
    router = new_router()
    router.snapshot.put(tenant("tenant-a", "tok-a", [runtime_a]))
    router.snapshot.put(tenant("tenant-b", "tok-b", [runtime_b]))
    base_url = await router_server(router)

    # One tenant's token does not open the other's source of the same name.
    response = await send(base_url, "tenant-b", "tok-a", HIGH)
    assert response.status_code == 401

    a_runs = []
    for index in range(3):
        response = await send(base_url, "tenant-a", "tok-a", {**HIGH, "source_id": f"a{index}"})
        assert response.status_code == 202
        a_runs.append(response.json()["deliveries"][0]["runId"])
    response = await send(base_url, "tenant-b", "tok-b", {**HIGH, "source_id": "b0"})
    assert response.status_code == 202
    b_run = runtime_b.run(response.json()["deliveries"][0]["runId"])

    # Each run happened on its own tenant's runtime only, with its own tenant on the alert.
    assert b_run is not None and b_run["results"][0]["result"]["tenant"] == "tenant-b"
    for run_id in a_runs:
        run = runtime_a.run(run_id)
        assert run is not None and run["results"][0]["result"]["tenant"] == "tenant-a"
        assert runtime_b.run(run_id) is None
    assert runtime_a.run(b_run["runId"]) is None
    assert (runtime_a.runs_total(), runtime_b.runs_total()) == (3, 1)
