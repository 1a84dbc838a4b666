"""phishing_triage: which reports it takes, URL extraction (defanged, deduplicated,
capped), reputation and sandbox verdicts, quarantine only when malicious, and
the failure paths of each integration. HTTP is served by mock transports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import phishing
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
VT_URL = re.compile(r"^https://www\.virustotal\.com/api/v3/urls/")
VT_DOMAIN = "https://www.virustotal.com/api/v3/domains/"
SCAN = "https://urlscan.io/api/v1/scan/"
RESULT = re.compile(r"^https://urlscan\.io/api/v1/result/")
QUARANTINE = "https://mailgw.example.com/api/v1/messages/quarantine"


@pytest.fixture
def configured(fake_secrets: FakeSecrets, monkeypatch: pytest.MonkeyPatch) -> FakeSecrets:
    fake_secrets.set("virustotal", "apiKey", "vt-key")
    fake_secrets.set("urlscan", "apiKey", "urlscan-key")
    fake_secrets.set("mailgateway", "token", "gw-token")
    monkeypatch.setenv("MAIL_GATEWAY_URL", "https://mailgw.example.com/")
    monkeypatch.setenv("SANDBOX_POLL_SECONDS", "0")
    return fake_secrets


def vt(malicious: int, suspicious: int = 0) -> dict[str, object]:
    stats = {"malicious": malicious, "suspicious": suspicious, "harmless": 70}
    return {"data": {"attributes": {"last_analysis_stats": stats}}}


def domains_clean(mock: MockHTTP) -> None:
    mock.add("GET", re.compile(r"/api/v3/domains/"), json=vt(0))


def scans(mock: MockHTTP, verdicts: dict[str, bool], pending_polls: int = 0) -> None:
    """urlscan: a submission answers a uuid per URL; results are 404 for
    `pending_polls` polls, then the verdict."""
    polls: dict[str, int] = {}

    def submit(request: httpx.Request) -> httpx.Response:
        url = json.loads(request.content)["url"]
        scan_id = f"scan-{list(verdicts).index(url)}"
        return httpx.Response(200, json={"uuid": scan_id, "visibility": "private"})

    def result(request: httpx.Request) -> httpx.Response:
        scan_id = request.url.path.rstrip("/").rsplit("/", 1)[1]
        polls[scan_id] = polls.get(scan_id, 0) + 1
        if polls[scan_id] <= pending_polls:
            return httpx.Response(404, json={"message": "Scan is not finished yet"})
        malicious = list(verdicts.values())[int(scan_id.split("-")[1])]
        return httpx.Response(
            200, json={"verdicts": {"overall": {"malicious": malicious, "score": 100 * malicious}}}
        )

    mock.add("POST", SCAN, handler=submit)
    mock.add("GET", RESULT, handler=result)


def gateway_posts(mock: MockHTTP) -> list[httpx.Request]:
    return [r for r in mock.requests if r.url.host == "mailgw.example.com"]


# --- which reports it takes ---------------------------------------------------


def test_the_sample_report_matches(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_match([str(HERE / "phishing.py"), "--alert", str(SAMPLE), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["name"] == "triage_phishing_report" and row["matches"] is True


@pytest.mark.parametrize(
    ("fields", "matches"),
    [
        ({"tags": ["phishing-report"], "raw": {"email": {"message_id": "<a@b>"}}}, True),
        ({"rule_name": "User reported PHISH", "raw": {"email": {"message_id": "<a@b>"}}}, True),
        ({"tags": ["phishing-report"], "raw": {"email": {"subject": "no id"}}}, False),
        ({"tags": ["malware"], "raw": {"email": {"message_id": "<a@b>"}}}, False),
    ],
)
def test_conditions(fields: dict[str, object], matches: bool) -> None:
    entry = phishing.triage_phishing_report.__kubesoar_playbook__
    assert entry.condition.matches(make_alert(**fields).as_match_dict()) is matches


# --- extraction -----------------------------------------------------------------


def test_urls_are_refanged_deduplicated_and_capped() -> None:
    body = "See hxxps://bad[.]example/a, then https://bad.example/a. And (https://x.test/p)\n"
    body += " ".join(f"https://n{i}.test/" for i in range(30))
    alert = make_alert(
        iocs={"urls": ["https://first.test/"]},
        raw={"email": {"subject": "hXXp://subj[.]test/x", "body": body}},
    )
    urls = phishing.extract_urls(alert)
    assert urls[:4] == [
        "https://first.test/",
        "http://subj.test/x",
        "https://bad.example/a",
        "https://x.test/p",
    ]
    assert len(urls) == phishing.MAX_URLS


def test_domains_include_the_sender_and_skip_ip_hosts() -> None:
    alert = make_alert(raw={"email": {"from": "Pay <billing@Evil.Example>"}})
    urls = ["http://192.0.2.1/login", "https://cdn.evil.example/x", "https://Evil.example./"]
    assert phishing.extract_domains(alert, urls) == ["cdn.evil.example", "evil.example"]


# --- verdicts and quarantine ----------------------------------------------------


async def test_a_malicious_detonation_quarantines_the_message(
    configured: FakeSecrets, mock_http: MockHTTP
) -> None:
    mock_http.add("GET", VT_URL, status=404, json={})
    domains_clean(mock_http)
    scans(
        mock_http,
        {
            "https://invoice-portal.top/view?id=44817": True,
            "https://docs.example-help.com/contact": False,
        },
        pending_polls=2,
    )
    mock_http.add("POST", QUARANTINE, json={"id": "q-77", "mailboxes": 1})

    run = await run_playbook(phishing, load_alert(SAMPLE))

    assert_succeeded(run)
    result = run.result_of("triage_phishing_report")
    assert result["verdict"] == "malicious"
    assert {d["url"]: d["verdict"] for d in result["detonations"]} == {
        "https://invoice-portal.top/view?id=44817": "malicious",
        "https://docs.example-help.com/contact": "benign",
    }
    assert result["quarantine"] == {"status": "quarantined", "id": "q-77", "mailboxes": 1}
    [post] = gateway_posts(mock_http)
    assert post.headers["Authorization"] == "Bearer gw-token"
    sent = json.loads(post.content)
    assert sent["messageId"] == "<CAF3x9k2=Qm7@mail.invoice-portal.top>"
    assert sent["recipients"] == ["j.doe@example.com"]
    assert "invoice-portal.top/view" in sent["reason"]
    assert sent["correlationId"] == run.correlation_id
    submissions = [json.loads(r.content) for r in mock_http.requests if str(r.url) == SCAN]
    assert all(s["visibility"] == "private" for s in submissions)
    assert {r.headers["API-Key"] for r in mock_http.requests if r.url.host == "urlscan.io"} == {
        "urlscan-key"
    }
    assert_attempts(run, "quarantine_message", ["succeeded"])


async def test_a_url_virustotal_knows_is_bad_is_not_detonated(
    configured: FakeSecrets, mock_http: MockHTTP
) -> None:
    mock_http.add("GET", VT_URL, json=vt(malicious=12))
    domains_clean(mock_http)
    mock_http.add("POST", QUARANTINE, status=409, json={"error": "already quarantined"})
    alert = make_alert(
        tags=["phishing-report"],
        raw={"email": {"message_id": "<m1@x>", "body": "Login at https://login-bank.test/"}},
    )

    run = await run_playbook(phishing.triage_phishing_report, alert)

    assert_succeeded(run)
    result = run.result_of("triage_phishing_report")
    assert result["verdict"] == "malicious"
    assert result["detonations"] == []
    assert result["quarantine"] == {"status": "already-quarantined"}
    assert not any(r.url.host == "urlscan.io" for r in mock_http.requests)
    vt_url = next(r for r in mock_http.requests if "/urls/" in r.url.path)
    # VirusTotal's URL id: unpadded url-safe base64 of the URL.
    assert vt_url.url.path.endswith("/urls/aHR0cHM6Ly9sb2dpbi1iYW5rLnRlc3Qv")


async def test_a_clean_message_is_left_alone(configured: FakeSecrets, mock_http: MockHTTP) -> None:
    mock_http.add("GET", VT_URL, json=vt(0))
    domains_clean(mock_http)
    scans(mock_http, {"https://intranet.example.com/news": False})
    alert = make_alert(
        tags=["phishing-report"],
        raw={"email": {"message_id": "<m2@x>", "body": "https://intranet.example.com/news"}},
    )

    run = await run_playbook(phishing.triage_phishing_report, alert)

    assert_succeeded(run)
    result = run.result_of("triage_phishing_report")
    assert result["verdict"] == "benign"
    assert result["quarantine"] is None
    assert gateway_posts(mock_http) == []


# --- failures ---------------------------------------------------------------------


async def test_a_sandbox_that_never_finishes_leaves_the_reputation_verdict(
    configured: FakeSecrets, mock_http: MockHTTP, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_MAX_POLLS", "3")
    mock_http.add("GET", VT_URL, json=vt(0, suspicious=1))
    domains_clean(mock_http)
    scans(mock_http, {"https://slow.example.net/": True}, pending_polls=100)
    alert = make_alert(
        tags=["phishing-report"],
        raw={"email": {"message_id": "<m3@x>", "body": "https://slow.example.net/"}},
    )

    run = await run_playbook(phishing.triage_phishing_report, alert)

    assert_succeeded(run)
    result = run.result_of("triage_phishing_report")
    assert result["verdict"] == "suspicious"
    [detonation] = result["detonations"]
    assert "did not finish in time" in detonation["error"]
    assert len([r for r in mock_http.requests if RESULT.search(str(r.url))]) == 3
    assert_attempts(run, "detonate", ["failed"])  # never resubmitted
    assert gateway_posts(mock_http) == []


async def test_a_gateway_failure_is_retried_then_fails_the_run(
    configured: FakeSecrets, mock_http: MockHTTP, no_backoff: BackoffRecorder
) -> None:
    mock_http.add("GET", VT_URL, json=vt(malicious=5))
    domains_clean(mock_http)
    mock_http.add("POST", QUARANTINE, status=502)
    alert = make_alert(
        tags=["phishing-report"],
        raw={"email": {"message_id": "<m4@x>", "body": "https://evil.example.org/"}},
    )

    run = await run_playbook(phishing.triage_phishing_report, alert)

    assert run.status == "failed"
    assert "mail gateway answered 502" in str(run.error)
    assert_attempts(run, "quarantine_message", ["failed", "failed", "failed"])
    assert len(gateway_posts(mock_http)) == 3
    assert no_backoff.delays == [1.5, 2.25]


async def test_a_missing_gateway_url_fails_before_any_call(
    fake_secrets: FakeSecrets, mock_http: MockHTTP, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAIL_GATEWAY_URL", raising=False)
    fake_secrets.set("virustotal", "apiKey", "vt-key")
    fake_secrets.set("urlscan", "apiKey", "k")
    fake_secrets.set("mailgateway", "token", "t")

    run = await run_playbook(phishing, load_alert(SAMPLE))

    assert run.status == "failed"
    assert "MAIL_GATEWAY_URL" in str(run.error)
    assert mock_http.requests == []
