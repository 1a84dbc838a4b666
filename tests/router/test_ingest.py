"""The ingest API's refusals (each a 4xx/5xx with a JSON reason), rate limit, dedup,
suspend, probes and metrics, through a real server with a snapshot built in the test."""

from __future__ import annotations

import json

import httpx
import pytest
from kubesoar_router.ingest import Router
from kubesoar_router.snapshot import Snapshot, build_namespace
from router_objects import alertsource, new_router

TOKEN = "tenant-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
URL = "/v1/namespaces/tenant-a/sources/{}/alerts"


def router_for(*sources, max_body_bytes: int = 4096, secrets=None):
    router = new_router(max_body_bytes=max_body_bytes)
    router.snapshot.put(
        build_namespace(
            "tenant-a",
            alertsources=list(sources),
            secrets=secrets if secrets is not None else {"ingest": {"token": TOKEN.encode()}},
        )
    )
    return router


async def post(base_url, name, content, headers=AUTH):
    async with httpx.AsyncClient(base_url=base_url) as client:
        return await client.post(URL.format(name), content=content, headers=headers)


@pytest.fixture
async def base_url(router_server):
    return await router_server(
        router_for(
            alertsource("siem"),
            alertsource("limited", rateLimit={"requestsPerSecond": 0.001, "burst": 2}),
            alertsource("paused", suspend=True),
            alertsource("splunk", format="splunk"),
            alertsource(
                "nosecret", spec={"auth": {"bearer": {"secretRef": {"name": "gone", "key": "t"}}}}
            ),
        )
    )


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (b"", "malformed_json", "empty"),
        (b"{not json", "malformed_json", "line 1 column 2"),
        (b"\xff\xfe", "malformed_json", "UTF-8"),
        (b"[1, 2]", "invalid_alert", "JSON object"),
        (b'{"severity": "high"}', "invalid_alert", "title"),
    ],
)
async def test_malformed_bodies_are_400_with_a_reason(base_url, body, code, words):
    response = await post(base_url, "siem", body)
    assert response.status_code == 400
    assert response.json()["error"] == code
    assert words in response.json()["message"]


async def test_wrong_shape_for_the_format(base_url):
    response = await post(base_url, "splunk", json.dumps({"title": "generic"}))
    assert response.status_code == 400
    assert "search_name" in response.json()["message"]


async def test_oversized_body_is_413(base_url):
    big = json.dumps({"title": "x", "description": "a" * 5000})
    response = await post(base_url, "siem", big)
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"


async def test_oversized_chunked_body_is_413(base_url):
    async def chunks():
        for _ in range(10):
            yield b"a" * 1000

    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post(URL.format("siem"), content=chunks(), headers=AUTH)
    assert response.status_code == 413


UNAUTHORIZED = {"error": "unauthorized", "message": "authentication failed for this source"}


async def test_unknown_source_and_namespace_are_the_uniform_401(base_url):
    response = await post(base_url, "nope", b"{}")
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post(
            "/v1/namespaces/other/sources/siem/alerts", content=b"{}", headers=AUTH
        )
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


async def test_oversized_body_to_an_unknown_source_is_413_too(base_url):
    big = json.dumps({"title": "x", "description": "a" * 5000})
    response = await post(base_url, "nope", big)
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"


async def test_rate_limit_is_429_with_retry_after(base_url):
    statuses = []
    for index in range(3):
        response = await post(base_url, "limited", json.dumps({"title": f"a{index}"}))
        statuses.append(response.status_code)
    assert statuses == [202, 202, 429]
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"] == "rate_limited"


async def test_duplicates_within_the_window(base_url):
    body = {"title": "login", "source_id": "evt-7"}
    first = await post(base_url, "siem", json.dumps(body))
    assert first.json()["duplicate"] is False
    # A different body with the same source_id is the same alert for dedup.
    second = await post(base_url, "siem", json.dumps({**body, "description": "again"}))
    assert second.status_code == 202
    assert second.json()["duplicate"] is True
    other = await post(base_url, "siem", json.dumps({**body, "source_id": "evt-8"}))
    assert other.json()["duplicate"] is False


async def test_suspended_source_is_503(base_url):
    response = await post(base_url, "paused", json.dumps({"title": "x"}))
    assert response.status_code == 503
    assert response.json()["error"] == "source_suspended"
    assert "Retry-After" in response.headers


async def test_suspended_source_is_told_only_after_authentication(base_url):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = await post(base_url, "paused", json.dumps({"title": "x"}), headers)
        assert response.status_code == 401
        assert response.json() == UNAUTHORIZED
        assert "Retry-After" not in response.headers


async def test_source_without_its_secret_is_the_uniform_401(base_url):
    """Nobody can authenticate to it; the missing Secret is on its status and in the
    rejected-alerts metric, not in the answer."""
    response = await post(base_url, "nosecret", json.dumps({"title": "x"}))
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    assert "Retry-After" not in response.headers
    async with httpx.AsyncClient(base_url=base_url) as client:
        metrics = (await client.get("/metrics")).text
    series = (
        "kubesoar_router_alerts_rejected_total"
        '{reason="source_not_ready",source="nosecret",tenant_namespace="tenant-a"}'
    )
    assert f"{series} 1.0" in metrics


async def test_correlation_id_is_echoed_or_made(base_url):
    response = await post(
        base_url, "siem", json.dumps({"title": "c"}), {**AUTH, "X-Correlation-Id": "abc-123"}
    )
    assert response.json()["correlationId"] == "abc-123"
    assert response.headers["X-Correlation-Id"] == "abc-123"
    response = await post(
        base_url,
        "siem",
        json.dumps({"title": "d"}),
        {**AUTH, "X-Correlation-Id": "bad id with spaces"},
    )
    assert len(response.json()["correlationId"]) == 32


async def test_probes_and_metrics(router_server):
    router = Router(snapshot=Snapshot())
    base_url = await router_server(router)
    async with httpx.AsyncClient(base_url=base_url) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 503
        response = await client.post(URL.format("siem"), content=b"{}", headers=AUTH)
        assert response.status_code == 503 and response.json()["error"] == "not_ready"
        router.snapshot.synced = True
        assert (await client.get("/readyz")).status_code == 200
        await client.post(URL.format("siem"), content=b"{}", headers=AUTH)
        metrics = (await client.get("/metrics")).text
    series = (
        "kubesoar_router_alerts_rejected_total"
        '{reason="unknown_source",source="-",tenant_namespace="-"}'
    )
    assert f"{series} 1.0" in metrics


async def test_counters_for_status(router_server):
    router = router_for(alertsource("siem"))
    base_url = await router_server(router)
    await post(base_url, "siem", json.dumps({"title": "a", "source_id": "1"}))
    await post(base_url, "siem", json.dumps({"title": "a", "source_id": "1"}))
    await post(base_url, "siem", b"nope")
    counts = router.counters.take()[("tenant-a", "siem")]
    assert (counts.received, counts.accepted, counts.duplicates, counts.rejected) == (3, 1, 1, 1)
    assert counts.last_alert_time is not None
