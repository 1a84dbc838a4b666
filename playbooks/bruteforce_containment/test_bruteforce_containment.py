"""bruteforce_containment: which alerts it takes, the guardrails (dry run by
default, allow-listed accounts and networks, never a private address), the
Okta and firewall calls when enforcing, and partial failures. HTTP is served
by mock transports."""

from __future__ import annotations

import json
from pathlib import Path

import bruteforce
import httpx
import pytest
from kubesoar import Alert
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
OKTA = "https://acme.okta.com/api/v1/users"
USER_ID = "00u1ab2cd3EF4gh5i6j7"
BLOCKLIST = "https://fw.example.com/v1/blocklist"


@pytest.fixture
def configured(fake_secrets: FakeSecrets, monkeypatch: pytest.MonkeyPatch) -> FakeSecrets:
    fake_secrets.set("okta", "apiToken", "okta-token")
    monkeypatch.setenv("OKTA_URL", "https://acme.okta.com")
    for name in ("DRY_RUN", "ALLOWLIST_ACCOUNTS", "ALLOWLIST_CIDRS", "BLOCK_TTL_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    return fake_secrets


@pytest.fixture
def enforcing(configured: FakeSecrets, monkeypatch: pytest.MonkeyPatch) -> FakeSecrets:
    configured.set("firewall", "token", "fw-token")
    monkeypatch.setenv("FIREWALL_API_URL", "https://fw.example.com/")
    monkeypatch.setenv("DRY_RUN", "false")
    return configured


def okta_user(mock: MockHTTP, login: str = "m.rossi@example.com", status: str = "ACTIVE") -> None:
    user = {"id": USER_ID, "status": status, "profile": {"login": login}}
    mock.add("GET", f"{OKTA}/{login}", json=user)


def okta_containment(mock: MockHTTP) -> None:
    mock.add("POST", f"{OKTA}/{USER_ID}/lifecycle/suspend", json={})
    mock.add("DELETE", f"{OKTA}/{USER_ID}/sessions", status=204, text="")


def calls(mock: MockHTTP) -> list[tuple[str, str]]:
    return [(r.method, str(r.url)) for r in mock.requests]


def alert(**overrides: object) -> Alert:
    return load_alert(SAMPLE, **overrides)


# --- which alerts it takes -------------------------------------------------------


def test_the_sample_alert_matches(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_match([str(HERE / "bruteforce.py"), "--alert", str(SAMPLE), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["name"] == "contain_bruteforce" and row["matches"] is True


@pytest.mark.parametrize(
    ("fields", "matches"),
    [
        (
            {"rule_name": "Failed sign-ins", "raw": {"failed_logins": 12, "user": {"name": "a"}}},
            True,
        ),
        ({"rule_name": "Bruteforce", "raw": {"failed_logins": 9, "user": {"name": "a"}}}, False),
        ({"rule_name": "Brute force", "raw": {"failed_logins": 50}}, False),
        (
            {"rule_name": "Malware found", "raw": {"failed_logins": 50, "user": {"name": "a"}}},
            False,
        ),
        (
            {"rule_name": "Brute force", "raw": {"failed_logins": "50", "user": {"name": "a"}}},
            False,
        ),
    ],
)
def test_conditions(fields: dict[str, object], matches: bool) -> None:
    entry = bruteforce.contain_bruteforce.__kubesoar_playbook__
    assert entry.condition.matches(make_alert(**fields).as_match_dict()) is matches


@pytest.mark.parametrize(
    ("ip", "allowlist", "refused"),
    [
        ("185.220.101.34", "", None),
        ("10.1.2.3", "", "10.1.2.3 is not a public address"),
        ("127.0.0.1", "", "127.0.0.1 is not a public address"),
        ("185.220.101.34", "185.220.100.0/22", "in the allow-listed network 185.220.100.0/22"),
        ("2a0b:f4c2::1", "", None),
        (None, "", "the alert has no source IP"),
        ("not-an-ip", "", "is not an IP address"),
    ],
)
def test_ip_guardrails(
    ip: str | None, allowlist: str, refused: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALLOWLIST_CIDRS", allowlist)
    refusal = bruteforce.ip_block_refusal(ip)
    if refused is None:
        assert refusal is None
    else:
        assert refusal is not None and refused in refusal


# --- dry run (the default) ----------------------------------------------------------


async def test_the_default_dry_run_plans_and_changes_nothing(
    configured: FakeSecrets, mock_http: MockHTTP
) -> None:
    okta_user(mock_http)

    run = await run_playbook(bruteforce, alert())

    assert_succeeded(run)
    result = run.result_of("contain_bruteforce")
    assert result["mode"] == "dry-run"
    assert result["account"]["action"] == "planned"
    assert result["account"]["plan"] == ["suspend", "revoke-sessions"]
    assert result["ip"] == {"ip": "185.220.101.34", "ttlSeconds": 86400, "action": "planned"}
    # One read, no write; the firewall's credentials are not even needed.
    assert calls(mock_http) == [("GET", f"{OKTA}/m.rossi@example.com")]
    assert mock_http.requests[0].headers["Authorization"] == "SSWS okta-token"


# --- enforcing -------------------------------------------------------------------------


async def test_enforcing_suspends_ends_sessions_and_blocks(
    enforcing: FakeSecrets, mock_http: MockHTTP, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLOCK_TTL_SECONDS", "3600")
    okta_user(mock_http)
    okta_containment(mock_http)
    mock_http.add("POST", BLOCKLIST, status=201, json={"id": "blk-1"})

    run = await run_playbook(bruteforce, alert())

    assert_succeeded(run)
    result = run.result_of("contain_bruteforce")
    assert result["mode"] == "enforce"
    assert result["account"]["action"] == "contained"
    assert result["ip"] == {"ip": "185.220.101.34", "ttlSeconds": 3600, "action": "blocked"}
    made = calls(mock_http)
    assert ("POST", f"{OKTA}/{USER_ID}/lifecycle/suspend") in made
    assert ("DELETE", f"{OKTA}/{USER_ID}/sessions") in made
    [block] = [r for r in mock_http.requests if str(r.url) == BLOCKLIST]
    assert block.headers["Authorization"] == "Bearer fw-token"
    body = json.loads(block.content)
    assert body["ip"] == "185.220.101.34" and body["ttlSeconds"] == 3600
    assert run.correlation_id in body["comment"]
    for name in ("find_user", "suspend_user", "revoke_sessions", "block_ip"):
        assert_attempts(run, name, ["succeeded"])


async def test_an_allowlisted_account_is_never_touched(
    enforcing: FakeSecrets, mock_http: MockHTTP, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALLOWLIST_ACCOUNTS", "breakglass@example.com, SVC-*")
    mock_http.add("POST", BLOCKLIST, status=409, json={"error": "exists"})

    run = await run_playbook(
        bruteforce, alert(raw={"user": {"name": "svc-backup"}, "failed_logins": 40})
    )

    assert_succeeded(run)
    result = run.result_of("contain_bruteforce")
    assert result["account"] == {
        "login": "svc-backup",
        "action": "skipped",
        "reason": "account is allow-listed",
    }
    assert result["ip"]["action"] == "already-blocked"
    assert not any(r.url.host == "acme.okta.com" for r in mock_http.requests)


async def test_a_private_source_is_not_blocked_and_a_locked_user_only_loses_sessions(
    enforcing: FakeSecrets, mock_http: MockHTTP
) -> None:
    okta_user(mock_http, status="LOCKED_OUT")
    okta_containment(mock_http)

    run = await run_playbook(bruteforce, alert(source_ip="192.168.4.20"))

    assert_succeeded(run)
    result = run.result_of("contain_bruteforce")
    assert result["account"]["plan"] == ["revoke-sessions"]
    assert result["ip"]["action"] == "skipped"
    assert "not a public address" in result["ip"]["reason"]
    made = calls(mock_http)
    assert not any("suspend" in url for _, url in made)
    assert not any(r.url.host == "fw.example.com" for r in mock_http.requests)


async def test_an_unknown_user_is_reported_not_an_error(
    enforcing: FakeSecrets, mock_http: MockHTTP
) -> None:
    mock_http.add("GET", f"{OKTA}/ghost%2Buser@example.com", status=404, json={})
    mock_http.add("POST", BLOCKLIST, status=201, json={})

    run = await run_playbook(
        bruteforce, alert(raw={"user": {"name": "ghost+user@example.com"}, "failed_logins": 11})
    )

    assert_succeeded(run)
    assert run.result_of("contain_bruteforce")["account"]["reason"] == "no such user in Okta"


# --- failures ------------------------------------------------------------------------------


async def test_okta_throttling_is_retried(
    enforcing: FakeSecrets, mock_http: MockHTTP, no_backoff: BackoffRecorder
) -> None:
    user = {"id": USER_ID, "status": "ACTIVE"}
    answers = iter([httpx.Response(429), httpx.Response(200, json=user)])
    mock_http.add("GET", f"{OKTA}/m.rossi@example.com", handler=lambda request: next(answers))
    okta_containment(mock_http)
    mock_http.add("POST", BLOCKLIST, status=201, json={})

    run = await run_playbook(bruteforce, alert())

    assert_succeeded(run)
    assert_attempts(run, "find_user", ["failed", "succeeded"])
    assert no_backoff.delays == [1.5]  # retry_backoff ** 1, not slept


async def test_a_firewall_outage_fails_the_run_but_the_account_is_contained(
    enforcing: FakeSecrets, mock_http: MockHTTP, no_backoff: BackoffRecorder
) -> None:
    okta_user(mock_http)
    okta_containment(mock_http)
    mock_http.add("POST", BLOCKLIST, status=503)

    run = await run_playbook(bruteforce, alert())

    assert run.status == "failed"
    assert "ContainmentIncomplete: ip: firewall answered 503" in str(run.error)
    assert_attempts(run, "block_ip", ["failed", "failed", "failed"])
    assert_attempts(run, "suspend_user", ["succeeded"])
    assert_attempts(run, "revoke_sessions", ["succeeded"])
    assert no_backoff.delays == [1.5, 2.25]  # block_ip's two retries


async def test_enforcing_without_a_firewall_url_fails_before_any_call(
    enforcing: FakeSecrets, mock_http: MockHTTP, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FIREWALL_API_URL")

    run = await run_playbook(bruteforce, alert())

    assert run.status == "failed"
    assert "FIREWALL_API_URL is not set" in str(run.error)
    assert mock_http.requests == []
