"""Security item 7: before authentication, the router's answer must not tell whether an
AlertSource exists, and a slow sender cannot hold a handler past the body timeout.

(a) For any request without valid credentials the status, headers and body are the same,
byte for byte, for an existing source, a source that cannot authenticate anyone (its
Secret is gone), a suspended source, an unknown source and an unknown namespace.
(b) A body that stalls is answered 408 `body_timeout` once `Router.body_timeout` passes.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

import httpx
import pytest
from kubesoar_router.ingest import BODY_TIMEOUT_SECONDS, Router
from kubesoar_router.snapshot import build_namespace
from router_objects import alertsource
from test_auth import ALERT, HMAC_KEY, TOKEN, UNAUTHORIZED, router_with_sources, signed_headers

CORRELATION = {"X-Correlation-Id": "probe-1"}


def probing_router() -> Router:
    router = router_with_sources()
    state = router.snapshot.get("tenant-a")
    assert state is not None
    hmac_auth = {"hmac": {"secretRef": {"name": "ingest", "key": "hmac"}}}
    router.snapshot.put(
        build_namespace(
            "tenant-c",
            alertsources=[
                alertsource("bearer"),
                alertsource("signed", spec={"auth": hmac_auth}),
                alertsource("paused", suspend=True),
                alertsource("paused-signed", spec={"auth": hmac_auth, "suspend": True}),
                alertsource(
                    "nosecret",
                    spec={"auth": {"bearer": {"secretRef": {"name": "gone", "key": "t"}}}},
                ),
                alertsource(
                    "nohmac", spec={"auth": {"hmac": {"secretRef": {"name": "gone", "key": "h"}}}}
                ),
            ],
            secrets={"ingest": {"token": TOKEN.encode(), "hmac": HMAC_KEY.encode()}},
        )
    )
    return router


def answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    """Everything a caller sees but the Date header."""
    headers = [(k.lower(), v) for k, v in response.headers.multi_items() if k.lower() != "date"]
    return response.status_code, sorted(headers), response.content


# Paths that exist, in several states, and paths that do not.
EXISTING = [
    "tenant-c/sources/bearer",
    "tenant-c/sources/signed",
    "tenant-c/sources/paused",
    "tenant-c/sources/paused-signed",
    "tenant-c/sources/nosecret",
    "tenant-c/sources/nohmac",
]
MISSING = ["tenant-c/sources/nope", "nowhere/sources/bearer", "nowhere/sources/nope"]


def bad_credentials() -> list[dict[str, str]]:
    now = time.time()
    return [
        {},
        {"Authorization": "Basic dXNlcjpwdw=="},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"X-Kubesoar-Timestamp": str(int(now)), "X-Kubesoar-Signature": "v1=00"},
        {"X-Kubesoar-Timestamp": "yesterday", "X-Kubesoar-Signature": "v1=00"},
        # Well formed and signed with the right key, but for another path: a mismatch.
        signed_headers(ALERT),
        # Signed for tenant-c/signed, but stale.
        signed_headers(ALERT, at=now - 3600, namespace="tenant-c"),
    ]


@pytest.mark.parametrize("credentials", range(len(bad_credentials())))
async def test_bad_credentials_get_the_same_bytes_whether_the_source_exists_or_not(
    router_server, credentials
):
    base_url = await router_server(probing_router())
    headers = {**bad_credentials()[credentials], **CORRELATION}
    answers = {}
    async with httpx.AsyncClient(base_url=base_url) as client:
        for path in EXISTING + MISSING:
            response = await client.post(
                f"/v1/namespaces/{path}/alerts", content=ALERT, headers=headers
            )
            answers[path] = answer(response)
    reference = answers[MISSING[0]]
    status, header_list, body = reference
    assert status == 401
    assert json.loads(body) == UNAUTHORIZED
    assert ("x-correlation-id", "probe-1") in header_list
    assert not any(name == "retry-after" for name, _ in header_list)
    for path, seen in answers.items():
        assert seen == reference, path


async def test_a_replayed_signature_is_the_same_answer_as_an_unknown_source(router_server):
    base_url = await router_server(probing_router())
    headers = {**signed_headers(ALERT, namespace="tenant-c"), **CORRELATION}
    async with httpx.AsyncClient(base_url=base_url) as client:
        first = await client.post(
            "/v1/namespaces/tenant-c/sources/signed/alerts", content=ALERT, headers=headers
        )
        assert first.status_code == 202, first.text
        replayed = await client.post(
            "/v1/namespaces/tenant-c/sources/signed/alerts", content=ALERT, headers=headers
        )
        unknown = await client.post(
            "/v1/namespaces/tenant-c/sources/nope/alerts", content=ALERT, headers=headers
        )
    assert answer(replayed) == answer(unknown)
    assert replayed.status_code == 401


async def test_states_are_told_only_after_authentication(router_server):
    base_url = await router_server(probing_router())
    async with httpx.AsyncClient(base_url=base_url) as client:
        paused = await client.post(
            "/v1/namespaces/tenant-c/sources/paused/alerts",
            content=ALERT,
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        signed = await client.post(
            "/v1/namespaces/tenant-c/sources/paused-signed/alerts",
            content=ALERT,
            headers=signed_headers(ALERT, namespace="tenant-c", source="paused-signed"),
        )
    for response in (paused, signed):
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "source_suspended"
        assert "Retry-After" in response.headers


async def test_internal_reasons_stay_on_the_metrics(router_server):
    base_url = await router_server(probing_router())
    async with httpx.AsyncClient(base_url=base_url) as client:
        for path in ("tenant-c/sources/nope", "tenant-c/sources/nosecret"):
            await client.post(f"/v1/namespaces/{path}/alerts", content=ALERT)
        metrics = (await client.get("/metrics")).text
    name = "kubesoar_router_alerts_rejected_total"
    assert f'{name}{{reason="unknown_source",source="-",tenant_namespace="-"}} 1.0' in metrics
    assert (
        f'{name}{{reason="source_not_ready",source="nosecret",tenant_namespace="tenant-c"}} 1.0'
        in metrics
    )


def test_the_body_timeout_defaults_to_the_module_constant():
    assert Router(snapshot=probing_router().snapshot).body_timeout == BODY_TIMEOUT_SECONDS


async def _stalled_request(base_url: str, head: bytes, partial: bytes) -> tuple[float, bytes]:
    """Send `head` and `partial`, then nothing: (seconds until the answer, the answer).

    The connection stays open after the answer while aiohttp lingers for the rest of the
    body (at most its lingering time); the answer is read by its Content-Length."""
    url = urlsplit(base_url)
    assert url.hostname is not None and url.port is not None
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        started = time.monotonic()
        writer.write(head + partial)
        await writer.drain()
        head_bytes = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        took = time.monotonic() - started
        length = next(
            int(line.split(b":", 1)[1])
            for line in head_bytes.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = await asyncio.wait_for(reader.readexactly(length), timeout=10)
        return took, head_bytes + body
    finally:
        writer.close()


def _head(path: str, *, length: int | None, token: str = TOKEN) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST {path} HTTP/1.1\r\n"
        "Host: router\r\n"
        "Content-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\n"
        f"{framing}\r\n"
        "\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("path", "chunked"),
    [
        ("/v1/namespaces/tenant-a/sources/bearer/alerts", False),
        ("/v1/namespaces/tenant-a/sources/bearer/alerts", True),
        ("/v1/namespaces/tenant-a/sources/nope/alerts", False),
    ],
)
async def test_a_stalled_body_is_408(router_server, path, chunked):
    router = router_with_sources()
    router.body_timeout = 0.5
    base_url = await router_server(router)
    if chunked:
        head, partial = _head(path, length=None), b"a\r\n" + b'{"title": '[:10] + b"\r\n"
    else:
        head, partial = _head(path, length=100), b'{"title": '
    took, raw = await _stalled_request(base_url, head, partial)
    status_line, _, rest = raw.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout", raw
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert json.loads(body)["error"] == "body_timeout"
    assert b"connection: close" in headers.lower()
    assert 0.4 <= took < 5


async def test_a_complete_body_within_the_timeout_goes_through(router_server):
    router = router_with_sources()
    router.body_timeout = 0.5
    base_url = await router_server(router)
    path = "/v1/namespaces/tenant-a/sources/bearer/alerts"
    url = urlsplit(base_url)
    assert url.hostname is not None and url.port is not None
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(_head(path, length=len(ALERT)) + ALERT[:5])
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(ALERT[5:])
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 202"), status_line


async def test_request_heads_are_bounded(router_server):
    """aiohttp's parser refuses a head past app.HANDLER_ARGS before any handler runs."""
    from kubesoar_router.app import MAX_HEADERS, MAX_LINE_SIZE

    base_url = await router_server(router_with_sources())
    path = "/v1/namespaces/tenant-a/sources/bearer/alerts"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base_url) as client:
        many = {f"X-Extra-{index}": "v" for index in range(MAX_HEADERS + 1)}
        response = await client.post(path, content=ALERT, headers={**auth, **many})
        assert response.status_code == 400
        response = await client.post(path + "?" + "a" * MAX_LINE_SIZE, content=ALERT, headers=auth)
        assert 400 <= response.status_code < 500
        few = {f"X-Extra-{index}": "v" for index in range(20)}
        response = await client.post(path, content=ALERT, headers={**auth, **few})
        assert response.status_code == 202, response.text
