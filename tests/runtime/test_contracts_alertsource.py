"""The AlertSource CRD and the pydantic model agree; the schema is documented and valid."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubesoar.contracts.alertsource import Format, parse_spec
from pydantic import ValidationError

CRD = Path(__file__).parents[2] / "crds" / "alertsource.yaml"


@pytest.fixture(scope="module")
def schema():
    crd = yaml.safe_load(CRD.read_text())
    assert crd["metadata"]["name"] == "alertsources.kubesoar.dev"
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(node, path="$"):
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")


def test_every_field_has_a_description(schema):
    missing = [p for p, n in walk(schema) if p != "$.metadata" and not n.get("description")]
    assert missing == []


def test_format_enum_matches(schema):
    assert schema["properties"]["spec"]["properties"]["format"]["enum"] == [f.value for f in Format]


def test_defaults_match(schema):
    spec = schema["properties"]["spec"]["properties"]
    model = parse_spec({"auth": {"hmac": {"secretRef": {"name": "s", "key": "k"}}}})
    assert spec["format"]["default"] == model.format.value
    hmac = spec["auth"]["properties"]["hmac"]["properties"]
    assert hmac["replayWindowSeconds"]["default"] == model.auth.hmac.replay_window_seconds
    assert hmac["signatureHeader"]["default"] == model.auth.hmac.signature_header
    assert hmac["timestampHeader"]["default"] == model.auth.hmac.timestamp_header
    dedup = spec["dedup"]["properties"]
    assert dedup["key"]["default"] == model.dedup.key
    assert dedup["windowSeconds"]["default"] == model.dedup.window_seconds
    assert spec["suspend"]["default"] is model.suspend


def test_model_fields_are_in_the_schema(schema):
    spec = schema["properties"]["spec"]["properties"]
    assert set(spec) == {"format", "auth", "dedup", "rateLimit", "suspend"}
    assert set(spec["dedup"]["properties"]) == {"key", "keys", "windowSeconds"}
    assert set(spec["rateLimit"]["properties"]) == {"requestsPerSecond", "burst"}


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"auth": {}},
        {"auth": {"bearer": {"secretRef": {"name": "Bad_Name", "key": "k"}}}},
        {"auth": {"bearer": {"secretRef": {"name": "s", "key": "k"}}}, "format": "qradar"},
        {
            "auth": {"bearer": {"secretRef": {"name": "s", "key": "k"}}},
            "dedup": {"key": "a", "keys": ["b"]},
        },
    ],
)
def test_invalid_specs(spec):
    with pytest.raises(ValidationError):
        parse_spec(spec)


def test_dedup_keys_with_the_schema_default_key():
    spec = parse_spec(
        {
            "auth": {"bearer": {"secretRef": {"name": "s", "key": "k"}}},
            "dedup": {"key": "source_id", "keys": ["rule_name", "hostname"]},
        }
    )
    assert spec.dedup.paths == ("rule_name", "hostname")
