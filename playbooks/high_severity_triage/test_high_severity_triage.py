"""high_severity_triage: which alerts it takes, the verdict from two
threat-intel services queried in parallel (bounded), the Jira ticket, and what
happens when a service or Jira fails. HTTP is served by mock transports."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import high_severity
import httpx
import pytest
from kubesoar._local import main_match
from kubesoar.testing import (
    BackoffRecorder,
    FakeSecrets,
    MockHTTP,
    assert_attempts,
    assert_succeeded,
    load_alert,
    make_alert,
    run_playbook,
)

HERE = Path(__file__).parent
SAMPLE = HERE / "alert.json"
VT = "https://www.virustotal.com/api/v3"
ABUSE = re.compile(r"^https://api\.abuseipdb\.com/api/v2/check\?")
JIRA = "https://jira.example.com/rest/api/2/issue"


@pytest.fixture
def configured(fake_secrets: FakeSecrets, monkeypatch: pytest.MonkeyPatch) -> FakeSecrets:
    fake_secrets.set("virustotal", "apiKey", "vt-key")
    fake_secrets.set("abuseipdb", "apiKey", "abuse-key")
    fake_secrets.set("jira", "email", "soc-bot@example.com")
    fake_secrets.set("jira", "apiToken", "jira-token")
    monkeypatch.setenv("JIRA_URL", "https://jira.example.com/")
    monkeypatch.setenv("JIRA_PROJECT", "SEC")
    return fake_secrets


def vt_stats(malicious: int, suspicious: int = 0) -> dict[str, object]:
    stats = {"malicious": malicious, "suspicious": suspicious, "harmless": 60, "undetected": 10}
    return {"data": {"attributes": {"last_analysis_stats": stats}}}


def jira_created(mock: MockHTTP, key: str = "SEC-101") -> None:
    mock.add("POST", JIRA, status=201, json={"id": "10001", "key": key})


def sent_issue(mock: MockHTTP) -> dict[str, object]:
    [request] = [r for r in mock.requests if r.method == "POST"]
    fields: dict[str, object] = json.loads(request.content)["fields"]
    return fields


# --- which alerts it takes ---------------------------------------------------


def test_the_sample_alert_matches(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_match([str(HERE / "high_severity.py"), "--alert", str(SAMPLE), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row == {"name": "triage_high_severity", "order": 10, "matches": True, "reasons": []}


@pytest.mark.parametrize(
    ("fields", "matches"),
    [
        ({"severity": "high"}, True),
        ({"severity": "critical", "tags": ["edr"]}, True),
        ({"severity": "medium"}, False),
        ({"severity": "low"}, False),
        ({"severity": "critical", "tags": ["edr", "suppressed"]}, False),
    ],
)
def test_conditions(fields: dict[str, object], matches: bool) -> None:
    entry = high_severity.triage_high_severity.__kubesoar_playbook__
    assert entry.condition.matches(make_alert(**fields).as_match_dict()) is matches


async def test_a_medium_alert_runs_nothing(configured: FakeSecrets, mock_http: MockHTTP) -> None:
    run = await run_playbook(
        high_severity, make_alert(severity="medium", iocs={"ips": ["8.8.8.8"]})
    )
    assert run.results == []
    assert mock_http.requests == []


# --- happy path --------------------------------------------------------------


async def test_malicious_indicators_give_a_malicious_verdict_and_a_ticket(
    configured: FakeSecrets, mock_http: MockHTTP
) -> None:
    mock_http.add("GET", f"{VT}/ip_addresses/185.220.101.7", json=vt_stats(malicious=9))
    mock_http.add("GET", f"{VT}/domains/update-cdn-check.net", json=vt_stats(0, suspicious=1))
    mock_http.add("GET", f"{VT}/files/44d88612fea8a8f36de82e1278abb02f", status=404, json={})
    mock_http.add("GET", ABUSE, json={"data": {"abuseConfidenceScore": 100}})
    jira_created(mock_http)

    run = await run_playbook(high_severity, load_alert(SAMPLE))

    assert_succeeded(run)
    result = run.result_of("triage_high_severity")
    assert result["verdict"] == "malicious"
    assert result["ticket"] == "SEC-101"
    assert result["failedLookups"] == 0
    by_key = {(f["provider"], f["value"]): f["verdict"] for f in result["findings"]}
    assert by_key == {
        ("virustotal", "185.220.101.7"): "malicious",
        ("virustotal", "update-cdn-check.net"): "benign",
        ("virustotal", "44d88612fea8a8f36de82e1278abb02f"): "unknown",
        ("abuseipdb", "185.220.101.7"): "malicious",
    }
    # The private source address is not sent anywhere; the dest IP equals the IOC.
    assert not any("10.20.30.42" in str(r.url) for r in mock_http.requests)
    vt_requests = [r for r in mock_http.requests if r.url.host == "www.virustotal.com"]
    assert {r.headers["x-apikey"] for r in vt_requests} == {"vt-key"}
    [abuse] = [r for r in mock_http.requests if r.url.host == "api.abuseipdb.com"]
    assert abuse.headers["Key"] == "abuse-key"
    assert abuse.url.params["ipAddress"] == "185.220.101.7"

    issue = sent_issue(mock_http)
    assert issue["project"] == {"key": "SEC"}
    assert issue["priority"] == {"name": "Highest"}
    assert str(issue["summary"]).startswith("[MALICIOUS] Outbound connection")
    assert "verdict-malicious" in issue["labels"]  # type: ignore[operator]
    assert run.correlation_id in str(issue["description"])
    [post] = [r for r in mock_http.requests if r.method == "POST"]
    assert post.headers["Authorization"].startswith("Basic ")
    assert_attempts(run, "open_ticket", ["succeeded"])


async def test_an_alert_without_indicators_still_gets_a_ticket(
    configured: FakeSecrets, mock_http: MockHTTP
) -> None:
    jira_created(mock_http, "SEC-7")
    run = await run_playbook(
        high_severity.triage_high_severity, make_alert(severity="high", source_ip="10.0.0.5")
    )
    assert_succeeded(run)
    assert run.result_of("triage_high_severity")["verdict"] == "unknown"
    assert sent_issue(mock_http)["priority"] == {"name": "High"}
    assert len(mock_http.requests) == 1


async def test_lookups_run_in_parallel_but_never_more_than_the_bound(
    configured: FakeSecrets, mock_http: MockHTTP
) -> None:
    in_flight = 0
    peak = 0

    async def slow_clean(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(5):  # let the other lookups start, if they may
            await asyncio.sleep(0)
        in_flight -= 1
        if request.url.host == "api.abuseipdb.com":
            return httpx.Response(200, json={"data": {"abuseConfidenceScore": 0}})
        return httpx.Response(200, json=vt_stats(0))

    mock_http.add("GET", re.compile(r"virustotal|abuseipdb"), handler=slow_clean)  # type: ignore[arg-type]
    jira_created(mock_http)
    ips = [f"8.8.{i}.{i}" for i in range(1, 11)]

    run = await run_playbook(
        high_severity.triage_high_severity, make_alert(severity="critical", iocs={"ips": ips})
    )

    assert_succeeded(run)
    assert len([r for r in mock_http.requests if r.method == "GET"]) == 20
    assert 1 < peak <= high_severity.MAX_PARALLEL_LOOKUPS
    assert run.result_of("triage_high_severity")["verdict"] == "benign"


# --- failures ----------------------------------------------------------------


async def test_a_flaky_service_is_retried(
    configured: FakeSecrets, mock_http: MockHTTP, no_backoff: BackoffRecorder
) -> None:
    answers = iter([httpx.Response(429), httpx.Response(200, json=vt_stats(malicious=1))])
    mock_http.add("GET", f"{VT}/domains/example.org", handler=lambda request: next(answers))
    jira_created(mock_http)

    run = await run_playbook(
        high_severity.triage_high_severity,
        make_alert(severity="high", iocs={"domains": ["Example.ORG."]}),
    )

    assert_succeeded(run)
    assert_attempts(run, "virustotal_lookup", ["failed", "succeeded"])
    assert "virustotal answered 429" in str(run.attempts[0]["error"])
    assert no_backoff.delays == [1.5]
    assert run.result_of("triage_high_severity")["verdict"] == "suspicious"


async def test_a_service_that_keeps_failing_leaves_a_partial_verdict(
    configured: FakeSecrets, mock_http: MockHTTP, no_backoff: BackoffRecorder
) -> None:
    mock_http.add("GET", f"{VT}/ip_addresses/9.9.9.9", status=503)
    mock_http.add("GET", ABUSE, json={"data": {"abuseConfidenceScore": 40}})
    jira_created(mock_http)

    run = await run_playbook(
        high_severity.triage_high_severity, make_alert(severity="high", iocs={"ips": ["9.9.9.9"]})
    )

    assert_succeeded(run)
    assert_attempts(run, "virustotal_lookup", ["failed", "failed", "failed"])
    assert_attempts(run, "abuseipdb_lookup", ["succeeded"])
    assert no_backoff.delays == [1.5, 2.25]
    result = run.result_of("triage_high_severity")
    assert result["verdict"] == "suspicious"
    assert result["failedLookups"] == 1
    assert "lookup failed: virustotal answered 503" in str(sent_issue(mock_http)["description"])


async def test_a_jira_failure_fails_the_run_without_retrying(
    configured: FakeSecrets, mock_http: MockHTTP
) -> None:
    mock_http.add("POST", JIRA, status=503, json={"errorMessages": ["maintenance"]})

    run = await run_playbook(high_severity.triage_high_severity, make_alert(severity="high"))

    assert run.status == "failed"
    assert "503" in str(run.error)
    assert_attempts(run, "open_ticket", ["failed"])


async def test_a_missing_credential_fails_fast_and_names_it(
    fake_secrets: FakeSecrets, mock_http: MockHTTP, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JIRA_URL", "https://jira.example.com")
    fake_secrets.set("jira", "email", "soc-bot@example.com")
    fake_secrets.set("jira", "apiToken", "jira-token")
    fake_secrets.set("virustotal", "apiKey", "vt-key")

    run = await run_playbook(
        high_severity.triage_high_severity, make_alert(severity="high", iocs={"ips": ["1.1.1.1"]})
    )

    assert run.status == "failed"
    assert "'abuseipdb'" in str(run.error) and "'apiKey'" in str(run.error)
    assert mock_http.requests == []
    assert "jira-token" not in json.dumps(run.to_json(), default=str)
