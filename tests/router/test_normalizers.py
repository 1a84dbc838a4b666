"""Each normaliser on realistic payloads: fields, severity mapping, raw kept, bad shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from kubesoar_router.normalizers import (
    NormalizeError,
    build_alert,
    severity_from_risk_score,
)
from router_objects import PAYLOADS

NOW = datetime(2024, 5, 14, 9, 13, tzinfo=UTC)


def normalize(fmt: str, name: str):
    payload = json.loads((PAYLOADS / name).read_text())
    alert = build_alert(fmt, payload, alert_id="al-1", tenant="tenant-a", received_at=NOW)
    assert alert.raw == payload  # the payload is always kept whole
    assert (alert.id, alert.tenant, alert.received_at) == ("al-1", "tenant-a", NOW)
    return alert


def test_generic():
    alert = normalize("generic", "generic.json")
    assert alert.source == "generic"
    assert alert.source_id == "mail-4711"
    assert alert.severity == "high"
    assert alert.title == "Phishing email reported"
    assert alert.tags == ["phishing", "email"]
    assert alert.iocs.urls == ["https://login.examp1e.com/reset"]
    assert alert.iocs.domains == ["examp1e.com"]


def test_elastic_flattened_detection_alert():
    alert = normalize("elastic", "elastic_detection.json")
    assert alert.source == "elastic"
    assert alert.source_id.startswith("3b8f6c0e")
    assert alert.title == alert.rule_name == "Potential SSH Brute Force Detected"
    assert alert.severity == "high"
    assert alert.status == "new"
    assert (alert.source_ip, alert.dest_ip) == ("203.0.113.45", "10.20.0.15")
    assert alert.hostname == "web-01"
    assert alert.iocs.ips == ["203.0.113.45", "10.20.0.15"]
    assert alert.iocs.hashes == ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
    assert "Tactic: Credential Access" in alert.tags
    assert alert.description.startswith("authentication event")


def test_elastic_nested_with_risk_score_only():
    alert = normalize("elastic", "elastic_risk_score_only.json")
    assert alert.severity == "low"  # risk score 21
    assert alert.status == "in_progress"
    assert alert.iocs.domains == ["xj3k9.badexample.net"]
    assert alert.iocs.urls == ["http://xj3k9.badexample.net/payload.bin"]


@pytest.mark.parametrize(
    ("score", "severity"),
    [
        (0, "low"),
        (21, "low"),
        (22, "medium"),
        (47, "medium"),
        (48, "high"),
        (73, "high"),
        (74, "critical"),
        (100, "critical"),
        ("high", "medium"),
    ],
)
def test_elastic_risk_score_mapping(score, severity):
    assert severity_from_risk_score(score) == severity


def test_splunk():
    alert = normalize("splunk", "splunk_webhook.json")
    assert alert.source == "splunk"
    assert alert.source_id.startswith("scheduler__admin__search")
    assert alert.title == alert.rule_name == "Excessive Failed Logins"
    assert alert.severity == "critical"  # from urgency
    assert (alert.source_ip, alert.dest_ip) == ("198.51.100.23", "10.1.2.3")
    assert alert.hostname == "dc01.corp.example.com"
    assert alert.iocs.hashes == ["44d88612fea8a8f36de82e1278abb02f"]
    assert "Failed password" in alert.description


def test_defender_graph_v2():
    alert = normalize("defender", "defender_graph_v2.json")
    assert alert.source == "defender"
    assert alert.source_id == "da637578995287051192_756343937"
    assert alert.severity == "high"
    assert alert.status == "in_progress"
    assert alert.hostname == "tempdevice-0.contoso.com"
    assert alert.iocs.ips == ["192.0.2.99"]
    assert alert.iocs.urls == ["https://malicious.example.org/x"]
    assert alert.iocs.hashes == [
        "5f1e8acedc065031aea553bda36e5f3f6d4e4bc2",
        "8963a19fb992ad9a76576c5638fd68292cffb9aaac29eb8285f9abf6196a7dec",
    ]
    assert alert.tags == ["DefenseEvasion", "T1564.001"]


def test_defender_endpoint_api_shape():
    alert = normalize("defender", "defender_endpoint_api.json")
    assert alert.severity == "medium"
    assert alert.status == "new"
    assert alert.hostname == "temp123.middleeast.corp.microsoft.com"
    assert alert.iocs.ips == ["198.51.100.7"]
    assert alert.iocs.hashes == ["5f1e8acedc065031aea553bda36e5f3f6d4e4bc2"]


def test_defender_graph_list_with_one_alert_is_unwrapped():
    payload = {"value": [json.loads((PAYLOADS / "defender_graph_v2.json").read_text())]}
    alert = build_alert("defender", payload, alert_id="a", tenant="t", received_at=NOW)
    assert alert.title == "Suspicious execution of hidden file"


@pytest.mark.parametrize(
    ("fmt", "payload", "reason"),
    [
        ("generic", [1, 2], "must be a JSON object"),
        ("generic", {"severity": "high"}, "title"),
        ("generic", {"title": "x", "tags": "a,b"}, "tags"),
        ("generic", {"title": "x", "iocs": ["1.2.3.4"]}, "iocs"),
        ("generic", {"title": "x", "severity": "apocalyptic"}, "severity"),
        ("elastic", {"host": {"name": "a"}}, "kibana.alert.rule.name"),
        ("splunk", {"search_name": "s", "result": "oops"}, "result"),
        ("defender", {"title": "no id"}, "'id'"),
        ("defender", {"value": []}, "one alert per request"),
    ],
)
def test_bad_shapes_say_why(fmt, payload, reason):
    with pytest.raises(NormalizeError, match=reason):
        build_alert(fmt, payload, alert_id="a", tenant="t", received_at=NOW)
