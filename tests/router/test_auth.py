"""Sender authentication through the real ingest server: the bearer/HMAC matrix.

Every refusal before authentication is the same 401 `unauthorized` (it must not tell
whether the source exists); which check failed is on the rejected-alerts metric."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from kubesoar.contracts.http import ingest_path as alerts_path
from kubesoar_router.auth import ReplayCache, sign
from kubesoar_router.snapshot import build_namespace
from router_objects import alertsource, new_router

TOKEN = "s3cret-token-value"
REPO = Path(__file__).resolve().parents[2]
HMAC_KEY = "hmac-shared-secret"
ALERT = json.dumps({"title": "Suspicious login", "source_id": "evt-1"}).encode()
PATH = "/v1/namespaces/tenant-a/sources/{name}/alerts"


def router_with_sources():
    router = new_router()
    router.snapshot.put(
        build_namespace(
            "tenant-a",
            alertsources=[
                alertsource("bearer"),
                alertsource(
                    "signed",
                    spec={"auth": {"hmac": {"secretRef": {"name": "ingest", "key": "hmac"}}}},
                ),
                alertsource(
                    "signed-too",
                    spec={"auth": {"hmac": {"secretRef": {"name": "ingest", "key": "hmac"}}}},
                ),
                alertsource(
                    "both",
                    spec={
                        "auth": {
                            "bearer": {"secretRef": {"name": "ingest", "key": "token"}},
                            "hmac": {
                                "secretRef": {"name": "ingest", "key": "hmac"},
                                "signatureHeader": "X-Sig",
                                "timestampHeader": "X-Ts",
                                "replayWindowSeconds": 60,
                            },
                        }
                    },
                ),
            ],
            secrets={"ingest": {"token": TOKEN.encode(), "hmac": HMAC_KEY.encode()}},
        )
    )
    router.snapshot.put(
        build_namespace(
            "tenant-b",
            alertsources=[
                alertsource(
                    "signed",
                    spec={"auth": {"hmac": {"secretRef": {"name": "ingest", "key": "hmac"}}}},
                )
            ],
            secrets={"ingest": {"hmac": HMAC_KEY.encode()}},
        )
    )
    return router


def signed_headers(
    body: bytes,
    *,
    at: float | None = None,
    key: str = HMAC_KEY,
    namespace: str = "tenant-a",
    source: str = "signed",
) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    path = alerts_path(namespace, source)
    return {
        "X-Kubesoar-Timestamp": timestamp,
        "X-Kubesoar-Signature": sign(key.encode(), timestamp, body, path=path),
    }


@pytest.fixture
async def base_url(router_server):
    return await router_server(router_with_sources())


async def post(base_url: str, name: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url) as client:
        return await client.post(PATH.format(name=name), content=body, headers=headers)


# The one answer to every request that did not authenticate.
UNAUTHORIZED = {"error": "unauthorized", "message": "authentication failed for this source"}


async def assert_refused(
    base_url: str,
    response: httpx.Response,
    reason: str,
    *,
    source: str,
    namespace: str = "tenant-a",
) -> None:
    """`response` is the uniform 401, and the router counted it under `reason`."""
    assert response.status_code == 401, response.text
    assert response.json() == UNAUTHORIZED
    assert "Retry-After" not in response.headers
    async with httpx.AsyncClient(base_url=base_url) as client:
        metrics = (await client.get("/metrics")).text
    series = (
        "kubesoar_router_alerts_rejected_total"
        f'{{reason="{reason}",source="{source}",tenant_namespace="{namespace}"}}'
    )
    assert series in metrics, metrics


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "missing_credentials"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, 401, "missing_credentials"),
        ({"Authorization": "Bearer wrong-token"}, 401, "invalid_token"),
        ({"Authorization": f"Bearer {TOKEN}x"}, 401, "invalid_token"),
        ({"Authorization": f"Bearer {TOKEN}"}, 202, None),
        ({"Authorization": f"bearer {TOKEN}"}, 202, None),
    ],
)
async def test_bearer(base_url, headers, status, code):
    response = await post(base_url, "bearer", ALERT, headers)
    assert response.status_code == status, response.text
    if code:
        await assert_refused(base_url, response, code, source="bearer")
        assert TOKEN not in response.text
    else:
        assert response.json()["duplicate"] is False


async def test_hmac_good_signature_is_accepted_once(base_url):
    headers = signed_headers(ALERT)
    first = await post(base_url, "signed", ALERT, headers)
    assert first.status_code == 202, first.text
    replayed = await post(base_url, "signed", ALERT, headers)
    await assert_refused(base_url, replayed, "replayed_request", source="signed")


async def test_hmac_missing_headers(base_url):
    response = await post(base_url, "signed", ALERT, {})
    await assert_refused(base_url, response, "missing_signature", source="signed")


async def test_hmac_tampered_body_is_refused(base_url):
    headers = signed_headers(ALERT)
    tampered = ALERT.replace(b"Suspicious", b"Harmless!!")
    response = await post(base_url, "signed", tampered, headers)
    await assert_refused(base_url, response, "signature_mismatch", source="signed")


async def test_hmac_wrong_secret_is_refused(base_url):
    response = await post(base_url, "signed", ALERT, signed_headers(ALERT, key="other"))
    await assert_refused(base_url, response, "signature_mismatch", source="signed")


# Well outside the 300 s window: the header carries whole seconds (int() drops up to 1 s)
# and the router reads its clock later, so ±301 could land inside it on a slow machine.
@pytest.mark.parametrize("offset", [-310, 310])
async def test_hmac_stale_timestamp(base_url, offset):
    headers = signed_headers(ALERT, at=time.time() + offset)
    response = await post(base_url, "signed", ALERT, headers)
    await assert_refused(base_url, response, "stale_timestamp", source="signed")


async def test_hmac_timestamp_not_a_number(base_url):
    headers = signed_headers(ALERT)
    headers["X-Kubesoar-Timestamp"] = "yesterday"
    response = await post(base_url, "signed", ALERT, headers)
    await assert_refused(base_url, response, "invalid_timestamp", source="signed")


async def test_both_methods_are_required_when_both_are_set(base_url):
    timestamp = str(int(time.time()))
    signature = sign(HMAC_KEY.encode(), timestamp, ALERT, path=alerts_path("tenant-a", "both"))
    only_hmac = {"X-Ts": timestamp, "X-Sig": signature}
    response = await post(base_url, "both", ALERT, only_hmac)
    await assert_refused(base_url, response, "missing_credentials", source="both")
    only_bearer = {"Authorization": f"Bearer {TOKEN}"}
    response = await post(base_url, "both", ALERT, only_bearer)
    await assert_refused(base_url, response, "missing_signature", source="both")
    response = await post(base_url, "both", ALERT, {**only_hmac, **only_bearer})
    assert response.status_code == 202, response.text


async def test_a_failed_request_releases_its_signature(router_server):
    """A 503 (here: no runtime for a matched Playbook) must not burn the signature,
    so the sender can retry the very same signed request."""
    from router_objects import playbook

    router = router_with_sources()
    state = router.snapshot.get("tenant-a")
    router.snapshot.put(
        build_namespace(
            "tenant-a",
            alertsources=[
                alertsource(
                    "signed",
                    spec={"auth": {"hmac": {"secretRef": {"name": "ingest", "key": "hmac"}}}},
                )
            ],
            secrets={"ingest": {"hmac": HMAC_KEY.encode()}},
            playbooks=[playbook("catch-all", [{"name": "all", "trigger": "webhook"}])],
        )
    )
    assert state is not None
    base_url = await router_server(router)
    headers = signed_headers(ALERT)
    first = await post(base_url, "signed", ALERT, headers)
    assert first.status_code == 503
    again = await post(base_url, "signed", ALERT, headers)
    assert again.json()["error"] == "delivery_failed"  # not "replayed_request"


def test_replay_cache_is_bounded_and_expires():
    cache = ReplayCache(max_entries=3)
    for index in range(5):
        assert cache.reserve(bytes([index]), expires_at=100.0, now=0.0)
    assert len(cache) == 3
    assert not cache.reserve(bytes([4]), expires_at=100.0, now=1.0)
    assert cache.reserve(bytes([4]), expires_at=300.0, now=101.0)  # the window ended
    assert len(cache) == 1


async def test_a_signature_is_bound_to_its_source_and_namespace(base_url):
    """Signed for tenant-a/signed: refused by another source and another namespace that
    share the key (scheme v1 covers method and path), accepted where it was meant to go."""
    headers = signed_headers(ALERT)
    async with httpx.AsyncClient(base_url=base_url) as client:
        elsewhere = [
            await client.post(PATH.format(name="signed-too"), content=ALERT, headers=headers),
            await client.post(
                "/v1/namespaces/tenant-b/sources/signed/alerts", content=ALERT, headers=headers
            ),
        ]
    await assert_refused(base_url, elsewhere[0], "signature_mismatch", source="signed-too")
    await assert_refused(
        base_url, elsewhere[1], "signature_mismatch", source="signed", namespace="tenant-b"
    )
    assert (await post(base_url, "signed", ALERT, headers)).status_code == 202


def test_the_documented_worked_example():
    body = b'{"title":"Phishing email reported","severity":"high"}'
    path = alerts_path("acme", "siem")
    expected = "v1=ae8aa4b2b2ff638ee1f1b3f6500d0afbf703a55253b8aee1425b1a688344e0b4"
    assert sign(b"example-secret", "1715677200", body, path=path) == expected
    for doc in ("docs/reference/alertsource.md", "docs/reference/ingest-openapi.yaml"):
        assert expected in (REPO / doc).read_text()
