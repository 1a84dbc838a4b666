"""Enrich every indicator of an alert with every integration that knows its
kind, within each integration's rate limit, retrying transient failures and
returning partial results when some lookups fail.

| integration | kinds | secret (key `apiKey`) | default limit (env) |
|---|---|---|---|
| VirusTotal v3 | ip, domain, hash, url | `virustotal` | 4/min (`VIRUSTOTAL_PER_MINUTE`) |
| AbuseIPDB v2 | ip | `abuseipdb` | 30/min (`ABUSEIPDB_PER_MINUTE`) |
| GreyNoise Community | ip | `greynoise` | 10/min (`GREYNOISE_PER_MINUTE`) |

Limits are per runtime pod (the buckets live in the module): with N replicas
the key sees up to N times the rate, so divide the key's quota by replicas.
Every attempt, retries included, takes a token. Only the integrations an
alert's IOCs need are used, so only their secrets must be mounted.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from kubesoar import Alert, RunContext, action, playbook

MAX_IOCS = 25
MAX_PARALLEL = 6

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]


class TokenBucket:
    """`per_minute` tokens a minute, at most `burst` banked.

    `acquire()` reserves a token synchronously and then sleeps until it is
    due, so callers in one event loop never overdraw without a lock (the
    balance may go negative: that is the queue of reservations). The clock
    and sleep are parameters so tests can use fake ones.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        burst: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.rate = per_minute / 60.0
        self.capacity = float(burst if burst is not None else max(1.0, per_minute))
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._updated = clock()

    def reserve(self) -> float:
        """Take a token; the seconds to wait before using it."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def acquire(self) -> float:
        delay = self.reserve()
        if delay > 0:
            await self._sleep(delay)
        return delay


DEFAULT_PER_MINUTE = {"virustotal": 4.0, "abuseipdb": 30.0, "greynoise": 10.0}

# One bucket per integration for the life of the pod, made on first use from
# the environment. Tests put their own (fake-clock) buckets here.
limiters: dict[str, TokenBucket] = {}


def limiter(integration: str) -> TokenBucket:
    if integration not in limiters:
        variable = f"{integration.upper()}_PER_MINUTE"
        per_minute = float(os.environ.get(variable, DEFAULT_PER_MINUTE[integration]))
        limiters[integration] = TokenBucket(per_minute)
    return limiters[integration]


class Transient(Exception):
    """A 429, a 5xx or a network error: another attempt may succeed."""


async def _get(ctx: RunContext, integration: str, url: str, **kwargs: Any) -> httpx.Response:
    await limiter(integration).acquire()
    try:
        response = await ctx.http.get(url, **kwargs)
    except httpx.TransportError as exc:
        raise Transient(f"{integration}: {type(exc).__name__}") from exc
    if response.status_code == 429 or response.status_code >= 500:
        raise Transient(f"{integration} answered {response.status_code}")
    return response


_VT_PATHS = {"ip": "ip_addresses", "domain": "domains", "hash": "files", "url": "urls"}


@action(timeout=None, retries=2, retry_backoff=1.5)
async def virustotal(ctx: RunContext, api_key: str, kind: str, value: str) -> dict[str, Any]:
    """VirusTotal's last analysis stats and reputation."""
    ident = value
    if kind == "url":
        ident = base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")
    response = await _get(
        ctx,
        "virustotal",
        f"https://www.virustotal.com/api/v3/{_VT_PATHS[kind]}/{ident}",
        headers={"x-apikey": api_key},
    )
    if response.status_code == 404:
        return {"found": False}
    response.raise_for_status()
    attributes = response.json()["data"]["attributes"]
    return {
        "found": True,
        "stats": attributes.get("last_analysis_stats", {}),
        "reputation": attributes.get("reputation"),
    }


@action(timeout=None, retries=2, retry_backoff=1.5)
async def abuseipdb(ctx: RunContext, api_key: str, kind: str, value: str) -> dict[str, Any]:
    """AbuseIPDB's confidence score and report count."""
    response = await _get(
        ctx,
        "abuseipdb",
        "https://api.abuseipdb.com/api/v2/check",
        params={"ipAddress": value, "maxAgeInDays": 90},
        headers={"Key": api_key, "Accept": "application/json"},
    )
    response.raise_for_status()
    data = response.json()["data"]
    return {
        "abuseConfidenceScore": data.get("abuseConfidenceScore"),
        "totalReports": data.get("totalReports"),
        "countryCode": data.get("countryCode"),
    }


@action(timeout=None, retries=2, retry_backoff=1.5)
async def greynoise(ctx: RunContext, api_key: str, kind: str, value: str) -> dict[str, Any]:
    """GreyNoise's classification: internet background noise or not."""
    response = await _get(
        ctx,
        "greynoise",
        f"https://api.greynoise.io/v3/community/{value}",
        headers={"key": api_key},
    )
    if response.status_code == 404:  # not observed scanning the internet
        return {"noise": False, "riot": False, "classification": "unseen"}
    response.raise_for_status()
    data = response.json()
    return {k: data.get(k) for k in ("noise", "riot", "classification", "name")}


INTEGRATIONS: dict[str, tuple[str, ...]] = {
    "ip": ("virustotal", "abuseipdb", "greynoise"),
    "domain": ("virustotal",),
    "hash": ("virustotal",),
    "url": ("virustotal",),
}
LOOKUPS = {"virustotal": virustotal, "abuseipdb": abuseipdb, "greynoise": greynoise}


def iocs_of(alert: Alert) -> list[tuple[str, str]]:
    """(kind, value) of every IOC, plus the alert's public addresses; at most MAX_IOCS."""
    found: dict[tuple[str, str], None] = {}
    for ip in [*alert.iocs.ips, alert.source_ip, alert.dest_ip]:
        if ip and _public(ip):
            found[("ip", ip)] = None
    for kind, values in (
        ("domain", alert.iocs.domains),
        ("hash", alert.iocs.hashes),
        ("url", alert.iocs.urls),
    ):
        for value in values:
            value = value.strip()
            found[(kind, value if kind == "url" else value.lower())] = None
    return list(found)[:MAX_IOCS]


def _public(value: str) -> bool:
    try:
        return ipaddress.ip_address(value).is_global
    except ValueError:
        return False


@playbook(
    trigger="webhook",
    conditions={
        "$any": [
            {"iocs.ips": {"$regex": "."}},
            {"iocs.domains": {"$regex": "."}},
            {"iocs.hashes": {"$regex": "."}},
            {"iocs.urls": {"$regex": "."}},
        ]
    },
    order=5,
    timeout=900,
    description="Enrich every IOC with VirusTotal, AbuseIPDB and GreyNoise (rate-limited)",
)
async def enrich_iocs(alert: Alert, ctx: RunContext) -> dict[str, Any]:
    iocs = iocs_of(alert)
    plan = [(kind, value, name) for kind, value in iocs for name in INTEGRATIONS[kind]]
    # Credentials first: a missing one fails the run at once, naming it.
    keys = {name: ctx.secret(name, "apiKey") for name in sorted({n for _, _, n in plan})}
    answers = await ctx.gather_limited(
        [lambda k=k, v=v, n=n: LOOKUPS[n](ctx, keys[n], k, v) for k, v, n in plan],
        limit=MAX_PARALLEL,
        return_exceptions=True,
    )
    enriched: dict[tuple[str, str], dict[str, Any]] = {
        (kind, value): {"kind": kind, "value": value, "results": {}, "errors": {}}
        for kind, value in iocs
    }
    for (kind, value, name), answer in zip(plan, answers, strict=True):
        entry = enriched[(kind, value)]
        if isinstance(answer, BaseException):
            entry["errors"][name] = str(answer) or type(answer).__name__
        else:
            entry["results"][name] = answer
    failed = sum(1 for answer in answers if isinstance(answer, BaseException))
    if plan and failed == len(plan):
        raise RuntimeError(f"every one of {failed} lookups failed; first: {answers[0]}")
    if failed:
        ctx.logger.warning("%d of %d lookups failed; results are partial", failed, len(plan))
    return {
        "complete": failed == 0,
        "lookups": len(plan),
        "failedLookups": failed,
        "iocs": list(enriched.values()),
    }
