"""ioc_enrichment: which alerts it takes, the token bucket (on a fake clock),
every IOC enriched by every integration of its kind, the per-integration rate
limit honoured (retries included), retries recorded, and partial results when
integrations fail. HTTP is served by mock transports; no test waits on time."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import enrich_iocs
import httpx
import pytest
from enrich_iocs import TokenBucket
from kubesoar._local import main_match
from kubesoar.testing import (
    BackoffRecorder,
    FakeSecrets,
    MockHTTP,
    assert_attempts,
    assert_succeeded,
    attempts_of,
    load_alert,
    make_alert,
    run_playbook,
)

HERE = Path(__file__).parent
SAMPLE = HERE / "alert.json"
VT = re.compile(r"^https://www\.virustotal\.com/api/v3/")
ABUSE = re.compile(r"^https://api\.abuseipdb\.com/api/v2/check\?")
GREYNOISE = re.compile(r"^https://api\.greynoise\.io/v3/community/")


class FakeClock:
    """A clock that only moves when told; `sleep` records the wait it was
    asked for and returns at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        await asyncio.sleep(0)

    def bucket(self, per_minute: float, burst: float | None = None) -> TokenBucket:
        return TokenBucket(per_minute, burst=burst, clock=self.time, sleep=self.sleep)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    """Generous fake-clock buckets for every integration (tests narrow them)."""
    fake = FakeClock()
    monkeypatch.setattr(
        enrich_iocs, "limiters", {name: fake.bucket(6000) for name in enrich_iocs.LOOKUPS}
    )
    yield fake


@pytest.fixture
def configured(fake_secrets: FakeSecrets) -> FakeSecrets:
    for name in ("virustotal", "abuseipdb", "greynoise"):
        fake_secrets.set(name, "apiKey", f"{name}-key")
    return fake_secrets


def answer_everything(mock: MockHTTP) -> None:
    stats = {"malicious": 1, "harmless": 60}
    mock.add("GET", VT, json={"data": {"attributes": {"last_analysis_stats": stats}}})
    mock.add("GET", ABUSE, json={"data": {"abuseConfidenceScore": 88, "totalReports": 412}})
    mock.add("GET", GREYNOISE, json={"noise": True, "riot": False, "classification": "malicious"})


# --- the token bucket ---------------------------------------------------------------


async def test_a_bucket_lets_a_burst_through_then_spaces_the_rest() -> None:
    clock = FakeClock()
    bucket = clock.bucket(per_minute=60, burst=2)  # one a second
    waits = await asyncio.gather(*(bucket.acquire() for _ in range(5)))
    assert waits == [0.0, 0.0, 1.0, 2.0, 3.0]
    assert clock.sleeps == [1.0, 2.0, 3.0]


async def test_a_bucket_refills_with_time_but_never_above_its_burst() -> None:
    clock = FakeClock()
    bucket = clock.bucket(per_minute=30, burst=3)  # one every two seconds
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    clock.now += 4.0  # two tokens back
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 2.0]
    clock.now += 3600.0  # an idle hour banks only the burst
    assert [bucket.reserve() for _ in range(4)] == [0.0, 0.0, 0.0, 2.0]


def test_a_bucket_needs_a_positive_rate() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0)


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(enrich_iocs, "limiters", {})
    monkeypatch.setenv("GREYNOISE_PER_MINUTE", "120")
    assert enrich_iocs.limiter("greynoise").rate == 2.0
    assert enrich_iocs.limiter("virustotal").rate == pytest.approx(4 / 60)
    assert enrich_iocs.limiter("greynoise") is enrich_iocs.limiter("greynoise")


# --- which alerts it takes -------------------------------------------------------------


def test_the_sample_alert_matches(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_match([str(HERE / "enrich_iocs.py"), "--alert", str(SAMPLE), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["name"] == "enrich_iocs" and row["matches"] is True


@pytest.mark.parametrize(
    ("fields", "matches"),
    [
        ({"iocs": {"hashes": ["e3b0c442"]}}, True),
        ({"iocs": {"urls": ["https://x.test/"]}}, True),
        ({"iocs": {"ips": [], "domains": []}}, False),
        ({"source_ip": "8.8.8.8"}, False),
    ],
)
def test_conditions(fields: dict[str, object], matches: bool) -> None:
    entry = enrich_iocs.enrich_iocs.__kubesoar_playbook__
    assert entry.condition.matches(make_alert(**fields).as_match_dict()) is matches


# --- enrichment -----------------------------------------------------------------------------


async def test_every_ioc_is_enriched_by_every_integration_of_its_kind(
    configured: FakeSecrets, clock: FakeClock, mock_http: MockHTTP
) -> None:
    answer_everything(mock_http)

    run = await run_playbook(enrich_iocs, load_alert(SAMPLE))

    assert_succeeded(run)
    result = run.result_of("enrich_iocs")
    assert result["complete"] is True
    assert result["lookups"] == 6  # the IP thrice, the domain, hash and URL once each
    by_value = {ioc["value"]: ioc for ioc in result["iocs"]}
    assert set(by_value) == {
        "185.220.100.252",
        "files-share-cdn.com",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "https://files-share-cdn.com/dl/setup.exe",
    }
    ip = by_value["185.220.100.252"]
    assert set(ip["results"]) == {"virustotal", "abuseipdb", "greynoise"}
    assert ip["results"]["abuseipdb"]["abuseConfidenceScore"] == 88
    assert ip["results"]["greynoise"]["classification"] == "malicious"
    assert ip["errors"] == {}
    # The private source address is not enriched.
    assert not any("10.20.31.7" in str(r.url) for r in mock_http.requests)
    headers = {r.url.host: r.headers for r in mock_http.requests}
    assert headers["www.virustotal.com"]["x-apikey"] == "virustotal-key"
    assert headers["api.abuseipdb.com"]["Key"] == "abuseipdb-key"
    assert headers["api.greynoise.io"]["key"] == "greynoise-key"


async def test_the_rate_limit_of_each_integration_is_honoured(
    configured: FakeSecrets, clock: FakeClock, mock_http: MockHTTP
) -> None:
    clock_vt = clock.bucket(per_minute=4, burst=2)  # VirusTotal's public tier, small burst
    enrich_iocs.limiters["virustotal"] = clock_vt
    answer_everything(mock_http)
    hashes = [f"{i:032x}" for i in range(6)]

    run = await run_playbook(enrich_iocs.enrich_iocs, make_alert(iocs={"hashes": hashes}))

    assert_succeeded(run)
    assert len(mock_http.requests) == 6
    # Two go at once, then one every 15 s: each later request waited its turn.
    assert sorted(clock.sleeps) == [15.0, 30.0, 45.0, 60.0]


async def test_retries_are_recorded_and_each_attempt_takes_a_token(
    configured: FakeSecrets, clock: FakeClock, mock_http: MockHTTP, no_backoff: BackoffRecorder
) -> None:
    enrich_iocs.limiters["greynoise"] = clock.bucket(per_minute=60, burst=1)
    answers = iter(
        [
            httpx.Response(503),
            httpx.Response(200, json={"noise": False, "classification": "benign"}),
        ]
    )
    mock_http.add("GET", GREYNOISE, handler=lambda request: next(answers))
    answer_everything(mock_http)

    run = await run_playbook(enrich_iocs.enrich_iocs, make_alert(iocs={"ips": ["9.9.9.9"]}))

    assert_succeeded(run)
    assert_attempts(run, "greynoise", ["failed", "succeeded"])
    assert "greynoise answered 503" in str(attempts_of(run, "greynoise")[0]["error"])
    assert clock.sleeps == [1.0]  # the retry waited for the second greynoise token
    assert no_backoff.delays == [1.5]  # the action's own backoff, not slept
    assert run.result_of("enrich_iocs")["complete"] is True


async def test_a_failing_integration_leaves_partial_results(
    configured: FakeSecrets, clock: FakeClock, mock_http: MockHTTP, no_backoff: BackoffRecorder
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    mock_http.add("GET", ABUSE, handler=refuse)
    answer_everything(mock_http)

    run = await run_playbook(enrich_iocs.enrich_iocs, make_alert(iocs={"ips": ["9.9.9.9"]}))

    assert_succeeded(run)
    assert_attempts(run, "abuseipdb", ["failed", "failed", "failed"])
    assert no_backoff.delays == [1.5, 2.25]
    result = run.result_of("enrich_iocs")
    assert result["complete"] is False
    assert result["failedLookups"] == 1
    [ioc] = result["iocs"]
    assert ioc["errors"] == {"abuseipdb": "abuseipdb: ConnectError"}
    assert set(ioc["results"]) == {"virustotal", "greynoise"}


async def test_when_every_lookup_fails_the_run_fails(
    configured: FakeSecrets, clock: FakeClock, mock_http: MockHTTP, no_backoff: BackoffRecorder
) -> None:
    mock_http.add("GET", VT, status=401, json={"error": {"code": "WrongCredentialsError"}})

    run = await run_playbook(enrich_iocs.enrich_iocs, make_alert(iocs={"domains": ["a.test"]}))

    assert run.status == "failed"
    assert "every one of 1 lookups failed" in str(run.error)
    # A 401 is not transient, but the SDK retries any failure of an action.
    assert len(mock_http.requests) == 3
    assert no_backoff.delays == [1.5, 2.25]


async def test_not_found_is_an_answer_not_a_failure(
    configured: FakeSecrets, clock: FakeClock, mock_http: MockHTTP
) -> None:
    mock_http.add("GET", VT, status=404, json={})
    mock_http.add("GET", GREYNOISE, status=404, json={"message": "IP not observed"})
    mock_http.add("GET", ABUSE, json={"data": {"abuseConfidenceScore": 0}})

    run = await run_playbook(enrich_iocs.enrich_iocs, make_alert(iocs={"ips": ["1.1.1.1"]}))

    assert_succeeded(run)
    [ioc] = run.result_of("enrich_iocs")["iocs"]
    assert ioc["results"]["virustotal"] == {"found": False}
    assert ioc["results"]["greynoise"]["classification"] == "unseen"


async def test_iocs_are_capped_and_deduplicated(
    configured: FakeSecrets, clock: FakeClock, mock_http: MockHTTP
) -> None:
    answer_everything(mock_http)
    domains = [f"d{i}.test" for i in range(40)] + ["D0.TEST"]

    run = await run_playbook(enrich_iocs.enrich_iocs, make_alert(iocs={"domains": domains}))

    assert_succeeded(run)
    assert run.result_of("enrich_iocs")["lookups"] == enrich_iocs.MAX_IOCS
    assert len(mock_http.requests) == enrich_iocs.MAX_IOCS


async def test_a_missing_key_fails_fast(
    fake_secrets: FakeSecrets, clock: FakeClock, mock_http: MockHTTP
) -> None:
    fake_secrets.set("virustotal", "apiKey", "k")

    run = await run_playbook(enrich_iocs.enrich_iocs, make_alert(iocs={"ips": ["1.1.1.1"]}))

    assert run.status == "failed"
    assert "'abuseipdb'" in str(run.error)
    assert mock_http.requests == []
