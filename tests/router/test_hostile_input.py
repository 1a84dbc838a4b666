"""Hostile input never makes the router answer 5xx: each shape the security probe found
(before and after authentication) is a 4xx with a JSON reason, through a real server.
A property test drives the shared body parser with arbitrary bytes and JSON."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kubesoar._bodies import BodyError, parse_json
from test_auth import ALERT, PATH, TOKEN, router_with_sources, signed_headers


@pytest.fixture
async def base_url(router_server):
    return await router_server(router_with_sources())


async def post(base_url: str, name: str, body: bytes, headers: dict) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url) as client:
        return await client.post(PATH.format(name=name), content=body, headers=headers)


def nested(depth: int) -> bytes:
    return b'{"title": "t", "raw": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(
    ("name", "headers"),
    [
        ("signed", {"X-Kubesoar-Timestamp": "9" * 400, "X-Kubesoar-Signature": "sha256=00"}),
        ("signed", {"X-Kubesoar-Timestamp": "1", "X-Kubesoar-Signature": b"sha256=\xff\xfe"}),
        ("bearer", {"Authorization": b"Bearer \xff\xfe\xfd"}),
        ("bearer", {"Authorization": b"Bearer " + TOKEN.encode() + b"\xc3\x28"}),
    ],
)
async def test_unauthenticated_hostile_headers_are_4xx(base_url, name, headers):
    if name == "signed" and headers["X-Kubesoar-Timestamp"] == "1":
        headers = {
            **headers,
            **{"X-Kubesoar-Timestamp": signed_headers(ALERT)["X-Kubesoar-Timestamp"]},
        }
    response = await post(base_url, name, ALERT, headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "unauthorized"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"title": "t", "n": ' + b"9" * 5000 + b"}", "number"),
        (nested(5000), "nested"),
        (nested(100), "nested"),
        (b'{"title": "t", "severity": Infinity}', "number"),
        (b'{"title": "t", "severity": NaN}', "number"),
        (b'{"title": "t", "severity": 1e400}', "range"),
        (b'{"title": "\\ud800"}', "surrogate"),
        (b'{"title": "t", "raw": {"\\udfff": 1}}', "surrogate"),
    ],
)
async def test_authenticated_hostile_bodies_are_400(base_url, body, words):
    response = await post(base_url, "bearer", body, {"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "malformed_json"
    assert words in response.json()["message"]


async def test_a_deep_but_allowed_body_is_still_accepted(base_url):
    response = await post(base_url, "bearer", nested(30), {"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 202, response.text


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_any_bytes_parse_or_raise_a_body_error(data: bytes) -> None:
    try:
        value = parse_json(data)
    except BodyError as exc:
        assert exc.status == 400 and exc.code and exc.message
    else:
        json.dumps(value).encode("utf-8")  # whatever passes survives the next hop


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_parses_or_raises_a_body_error(value) -> None:
    data = json.dumps(value, ensure_ascii=True).encode()
    try:
        parsed = parse_json(data)
    except BodyError as exc:
        assert exc.status == 400
    else:
        assert json.dumps(parsed).encode("utf-8")
