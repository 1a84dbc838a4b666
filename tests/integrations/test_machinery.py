"""What every integration shares: cached lookups with per-integration TTLs,
a token bucket per integration per Playbook, retries on 429/5xx honouring
`Retry-After`, and the attempts they record. Time is a `FakeClock`: waits
are recorded, never slept, and nothing asserts on durations."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from fakevendors import KEYS, FakeVendors
from kubesoar._context import RunContext
from kubesoar.integrations import (
    AbuseIPDB,
    FakeClock,
    GreyNoise,
    IntegrationHTTPError,
    Shodan,
    VirusTotal,
)
from kubesoar.integrations._ratelimit import TokenBucket
from kubesoar.integrations._retry import parse_retry_after


async def attempts_of(secrets: Path, calls: Callable[[], Awaitable[Any]]) -> list[dict[str, Any]]:
    ctx = RunContext(run_id="r", correlation_id="c", secrets_dir=secrets)
    token = ctx.activate()
    try:
        await calls()
    finally:
        ctx.deactivate(token)
        await ctx.aclose()
    return ctx.attempts


HOUR = 3600.0


@pytest.mark.parametrize(
    ("make", "prefix", "ttl"),
    [
        (lambda: VirusTotal().lookup_ip("203.0.113.7"), "vt", 24 * HOUR),
        (lambda: AbuseIPDB().check_ip("203.0.113.7"), "abuseipdb", 12 * HOUR),
        (lambda: GreyNoise().quick_lookup("203.0.113.7"), "greynoise", 6 * HOUR),
        (lambda: Shodan().host_info("203.0.113.7"), "shodan", 24 * HOUR),
    ],
)
async def test_lookups_are_cached_for_the_integration_ttl(
    vendors: FakeVendors,
    secrets_dir: Path,
    clock: FakeClock,
    make: Callable[[], Awaitable[Any]],
    prefix: str,
    ttl: float,
) -> None:
    async def twice() -> None:
        first = await make()
        first["mutated"] = True  # a playbook changing an answer does not change the cache
        assert "mutated" not in await make()

    attempts = await attempts_of(secrets_dir, twice)
    assert len(vendors.under(prefix)) == 1
    assert [a["status"] for a in attempts] == ["succeeded", "cached"]
    clock.advance(ttl - 1)
    await attempts_of(secrets_dir, make)
    assert len(vendors.under(prefix)) == 1  # still fresh one second before the TTL
    clock.advance(1)
    await attempts_of(secrets_dir, make)
    assert len(vendors.under(prefix)) == 2  # expired: asked again


async def test_the_cache_never_crosses_credentials(vendors: FakeVendors, tmp_path: Path) -> None:
    base = vendors.url("vt/api/v3")
    good = VirusTotal({"api_key": KEYS["virustotal"], "base_url": base})
    await attempts_of(tmp_path, lambda: good.lookup_ip("203.0.113.7"))
    other = VirusTotal({"api_key": "someone-elses-key-0000", "base_url": base})
    with pytest.raises(IntegrationHTTPError):  # not the cached answer of the first key
        await attempts_of(tmp_path, lambda: other.lookup_ip("203.0.113.7"))
    assert len(vendors.under("vt")) == 2


async def test_errors_are_not_cached_and_ttl_is_configurable(
    vendors: FakeVendors, tmp_path: Path
) -> None:
    vt = VirusTotal({"api_key": KEYS["virustotal"], "base_url": vendors.url("vt/api/v3")})
    for _ in range(2):
        with pytest.raises(IntegrationHTTPError):
            await attempts_of(tmp_path, lambda: vt.lookup_hash("0" * 32))
    assert len(vendors.under("vt")) == 2
    uncached = VirusTotal(
        {
            "api_key": KEYS["virustotal"],
            "base_url": vendors.url("vt/api/v3"),
            "cache_ttl_seconds": "0",
        }
    )
    for _ in range(2):
        await attempts_of(tmp_path, lambda: uncached.lookup_ip("198.51.100.2"))
    assert len(vendors.under("vt")) == 4


async def test_virustotal_public_quota_waits_for_a_token_instead_of_429s(
    vendors: FakeVendors, tmp_path: Path, clock: FakeClock
) -> None:
    vt = VirusTotal(
        {
            "api_key": KEYS["virustotal"],
            "base_url": vendors.url("vt/api/v3"),
            "cache_ttl_seconds": "0",
        }
    )

    async def six() -> None:
        for _ in range(6):
            await vt.lookup_ip("203.0.113.7")

    attempts = await attempts_of(tmp_path, six)
    # 4 a minute: four at once, then one every 15 s.
    assert clock.sleeps == [15.0, 15.0]
    assert [a.get("rateLimitWaitSeconds", 0) for a in attempts] == [0, 0, 0, 0, 15.0, 15.0]
    assert len(vendors.under("vt")) == 6 and all(a["status"] == "succeeded" for a in attempts)


def test_token_bucket_refills_at_its_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(per_minute=4)
    for _ in range(4):
        assert bucket.wait_needed() == 0
        bucket.tokens -= 1
    assert bucket.wait_needed() == pytest.approx(15.0)
    clock.advance(30)
    assert bucket.wait_needed() == 0 and bucket.tokens == pytest.approx(2.0)
    clock.advance(3600)
    assert bucket.tokens <= bucket.capacity and bucket.wait_needed() == 0
    bucket.hold(7)
    assert bucket.wait_needed() == pytest.approx(7.0)
    with pytest.raises(ValueError):
        TokenBucket(per_minute=0)


async def test_429_with_retry_after_is_retried_after_that_wait(
    vendors: FakeVendors, secrets_dir: Path, clock: FakeClock
) -> None:
    vendors.fail_next("vt", 2, status=429, retry_after="7")
    attempts = await attempts_of(secrets_dir, lambda: VirusTotal().lookup_ip("203.0.113.7"))
    assert [a["status"] for a in attempts] == ["failed", "failed", "succeeded"]
    assert "HTTP 429" in attempts[0]["error"] and "retry after 7s" in attempts[0]["error"]
    assert clock.sleeps == [7.0, 7.0]
    assert len(vendors.under("vt")) == 3


async def test_5xx_backs_off_exponentially_then_gives_up(
    vendors: FakeVendors, secrets_dir: Path, clock: FakeClock
) -> None:
    vendors.fail_next("abuseipdb", 4, status=503)
    with pytest.raises(IntegrationHTTPError) as caught:
        await attempts_of(secrets_dir, lambda: AbuseIPDB().check_ip("203.0.113.7"))
    assert caught.value.status == 503
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert len(vendors.under("abuseipdb")) == 4


async def test_a_retry_after_beyond_two_minutes_fails_at_once(
    vendors: FakeVendors, secrets_dir: Path, clock: FakeClock
) -> None:
    vendors.fail_next("greynoise", 1, status=429, retry_after="3600")
    ctx_attempts: list[dict[str, Any]] = []
    with pytest.raises(IntegrationHTTPError):
        ctx_attempts = await attempts_of(secrets_dir, lambda: GreyNoise().riot("203.0.113.7"))
    assert ctx_attempts == [] and clock.sleeps == [] and len(vendors.under("greynoise")) == 1


async def test_not_retried_on_4xx_and_key_redacted_in_attempts(
    vendors: FakeVendors, tmp_path: Path
) -> None:
    wrong = "not-the-key-9876543210"
    abuse = AbuseIPDB({"api_key": wrong, "base_url": vendors.url("abuseipdb/api/v2")})
    ctx = RunContext(run_id="r", correlation_id="c", secrets_dir=tmp_path)
    token = ctx.activate()
    try:
        with pytest.raises(IntegrationHTTPError):
            await abuse.check_ip("203.0.113.7")
    finally:
        ctx.deactivate(token)
        await ctx.aclose()
    assert len(vendors.under("abuseipdb")) == 1
    assert ctx.attempts[0]["status"] == "failed" and "HTTP 401" in ctx.attempts[0]["error"]
    assert wrong not in str(ctx.attempts)


def test_retry_after_parsing() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_the_pytest_plugin_starts_every_test_with_fresh_integrations() -> None:
    """`kubesoar.testing` empties the answer cache and refills the buckets before each test
    of a playbook author's suite (an autouse fixture of the registered plugin)."""
    from kubesoar import testing
    from kubesoar.integrations import _ratelimit, answer_cache

    answer_cache.put("virustotal:ip:10.0.0.1", {"malicious": 3}, ttl_seconds=3600)
    _ratelimit.bucket_for("virustotal", "k", per_minute=4)
    assert answer_cache.get("virustotal:ip:10.0.0.1") == (True, {"malicious": 3})
    testing.reset_integrations()
    assert answer_cache.get("virustotal:ip:10.0.0.1") == (False, None)
    assert not _ratelimit._buckets
    marker = testing._integrations_start_fresh._fixture_function_marker  # type: ignore[attr-defined]
    assert marker.autouse is True
