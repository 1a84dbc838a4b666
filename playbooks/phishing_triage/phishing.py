"""Triage a reported phishing email: pull the URLs and domains out of it,
check their reputation, detonate the URLs nobody has judged yet in a sandbox,
and quarantine the message at the mail gateway when anything is malicious.

Integrations (HTTPS through the run's httpx client, `ctx.http`):

- VirusTotal v3 for URL and domain reputation (secret `virustotal`, key `apiKey`);
- urlscan.io as the sandbox (secret `urlscan`, key `apiKey`);
- the mail gateway's REST API to quarantine (secret `mailgateway`, key `token`;
  env `MAIL_GATEWAY_URL`). The request shape is generic: adapt
  `quarantine_message` to your gateway (Microsoft Graph, Proofpoint TRAP, ...).

Env `SANDBOX_POLL_SECONDS` (default 10) and `SANDBOX_MAX_POLLS` (default 12)
bound how long a detonation is waited for.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from kubesoar import Alert, RunContext, action, playbook

VIRUSTOTAL_URL = "https://www.virustotal.com/api/v3"
URLSCAN_URL = "https://urlscan.io/api/v1"
MAX_URLS = 20
MAX_DETONATIONS = 5
MAX_PARALLEL = 4

VERDICT_RANK = {"unknown": 0, "benign": 1, "suspicious": 2, "malicious": 3}

_URL = re.compile(r"""\bhttps?://[^\s<>"'()\[\]{}]+""", re.IGNORECASE)
_TRAILING = ".,;:!?"


class SandboxError(Exception):
    """The sandbox refused the submission or never finished."""


class ServiceBusy(Exception):
    """A 429 or 5xx: worth another attempt."""


def refang(text: str) -> str:
    """Undo the usual defanging (`hxxp://evil[.]com`) so URLs can be found."""
    return (
        re.sub(r"\bhxxp", "http", text, flags=re.IGNORECASE)
        .replace("[.]", ".")
        .replace("(.)", ".")
        .replace("[:]", ":")
    )


def extract_urls(alert: Alert) -> list[str]:
    """URLs from the alert's IOCs and from the reported message's subject and
    body, refanged, deduplicated in order of appearance, at most MAX_URLS."""
    email = alert.raw.get("email") or {}
    texts = [email.get("subject") or "", email.get("body") or ""]
    candidates = list(alert.iocs.urls)
    for text in texts:
        candidates += _URL.findall(refang(str(text)))
    urls: dict[str, None] = {}
    for url in candidates:
        url = refang(url).rstrip(_TRAILING)
        if urlsplit(url).hostname:
            urls[url] = None
    return list(urls)[:MAX_URLS]


def extract_domains(alert: Alert, urls: list[str]) -> list[str]:
    """Domains of the URLs, the IOCs and the sender, lower-cased, deduplicated."""
    email = alert.raw.get("email") or {}
    sender = str(email.get("from") or "")
    found: dict[str, None] = {}
    hosts = [urlsplit(url).hostname or "" for url in urls]
    hosts += list(alert.iocs.domains)
    if "@" in sender:
        hosts.append(sender.rsplit("@", 1)[1].strip(" >"))
    for host in hosts:
        host = host.strip().lower().rstrip(".")
        if host and not _is_ip(host):
            found[host] = None
    return list(found)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check(response: httpx.Response, service: str) -> None:
    if response.status_code == 429 or response.status_code >= 500:
        raise ServiceBusy(f"{service} answered {response.status_code}")
    response.raise_for_status()


def _vt_verdict(stats: dict[str, int]) -> str:
    malicious, suspicious = stats.get("malicious", 0), stats.get("suspicious", 0)
    if malicious >= 2:
        return "malicious"
    if malicious or suspicious:
        return "suspicious"
    return "benign"


@dataclass(frozen=True, repr=False)
class Credentials:
    virustotal: str
    urlscan: str
    gateway_url: str
    gateway_token: str

    @classmethod
    def configured(cls, ctx: RunContext) -> Credentials:
        gateway_url = os.environ.get("MAIL_GATEWAY_URL", "").rstrip("/")
        if not gateway_url:
            raise RuntimeError("MAIL_GATEWAY_URL is not set (spec.runtime.env)")
        return cls(
            virustotal=ctx.secret("virustotal", "apiKey"),
            urlscan=ctx.secret("urlscan", "apiKey"),
            gateway_url=gateway_url,
            gateway_token=ctx.secret("mailgateway", "token"),
        )


@action(timeout=20, retries=2, retry_backoff=1.5)
async def reputation(ctx: RunContext, api_key: str, kind: str, value: str) -> dict[str, Any]:
    """VirusTotal's verdict on a URL or a domain."""
    if kind == "url":
        path = "urls/" + base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")
    else:
        path = f"domains/{value}"
    response = await ctx.http.get(f"{VIRUSTOTAL_URL}/{path}", headers={"x-apikey": api_key})
    if response.status_code == 404:
        return {"kind": kind, "value": value, "verdict": "unknown"}
    _check(response, "virustotal")
    stats = response.json()["data"]["attributes"].get("last_analysis_stats", {})
    return {"kind": kind, "value": value, "verdict": _vt_verdict(stats), "stats": stats}


# No retries: a retry would submit (and bill) a second scan of the same URL.
@action(timeout=300)
async def detonate(ctx: RunContext, api_key: str, url: str) -> dict[str, Any]:
    """Submit a URL to urlscan.io privately and wait for its verdict."""
    headers = {"API-Key": api_key}
    submitted = await ctx.http.post(
        f"{URLSCAN_URL}/scan/",
        headers=headers,
        json={"url": url, "visibility": "private", "tags": ["kubesoar", "phishing-report"]},
    )
    _check(submitted, "urlscan")
    scan_id = submitted.json()["uuid"]
    interval = float(os.environ.get("SANDBOX_POLL_SECONDS", "10"))
    for _ in range(int(os.environ.get("SANDBOX_MAX_POLLS", "12"))):
        await asyncio.sleep(interval)
        result = await ctx.http.get(f"{URLSCAN_URL}/result/{scan_id}/", headers=headers)
        if result.status_code == 404:  # still running
            continue
        _check(result, "urlscan")
        overall = result.json().get("verdicts", {}).get("overall", {})
        verdict = "malicious" if overall.get("malicious") else "benign"
        return {"url": url, "scan": scan_id, "verdict": verdict, "score": overall.get("score")}
    raise SandboxError(f"urlscan scan {scan_id} did not finish in time")


# Quarantining twice is harmless (the gateway answers 409), so retrying is safe.
@action(timeout=30, retries=2, retry_backoff=1.5)
async def quarantine_message(
    ctx: RunContext, creds: Credentials, alert: Alert, reason: str
) -> dict[str, Any]:
    """Ask the mail gateway to pull the message from every mailbox it reached."""
    email = alert.raw["email"]
    response = await ctx.http.post(
        f"{creds.gateway_url}/api/v1/messages/quarantine",
        headers={"Authorization": f"Bearer {creds.gateway_token}"},
        json={
            "messageId": email["message_id"],
            "recipients": email.get("to") or [],
            "reason": reason,
            "correlationId": ctx.correlation_id,
        },
    )
    if response.status_code == 409:  # already quarantined: the goal is met
        return {"status": "already-quarantined"}
    _check(response, "mail gateway")
    return {"status": "quarantined", **response.json()}


def _worst(verdicts: list[str]) -> str:
    return max(verdicts, key=VERDICT_RANK.__getitem__, default="unknown")


@playbook(
    trigger="webhook",
    conditions={
        "$any": [{"tags": "phishing-report"}, {"rule_name": {"$regex": "(?i)phish"}}],
        "raw.email.message_id": {"$exists": True},
    },
    order=20,
    description="Reported phishing: URL/domain reputation, sandbox detonation, quarantine",
)
async def triage_phishing_report(alert: Alert, ctx: RunContext) -> dict[str, Any]:
    creds = Credentials.configured(ctx)  # fail fast, naming what is missing
    urls = extract_urls(alert)
    domains = extract_domains(alert, urls)
    ctx.logger.info("reported message has %d urls, %d domains", len(urls), len(domains))

    checks = [("url", url) for url in urls] + [("domain", domain) for domain in domains]
    answers = await ctx.gather_limited(
        [lambda k=k, v=v: reputation(ctx, creds.virustotal, k, v) for k, v in checks],
        limit=MAX_PARALLEL,
        return_exceptions=True,
    )
    reputations: list[dict[str, Any]] = []
    for (kind, value), answer in zip(checks, answers, strict=True):
        if isinstance(answer, BaseException):
            reputations.append({"kind": kind, "value": value, "error": str(answer)})
        else:
            reputations.append(answer)

    # A URL VirusTotal already calls malicious needs no detonation.
    known_bad = {r["value"] for r in reputations if r.get("verdict") == "malicious"}
    to_detonate = [url for url in urls if url not in known_bad][:MAX_DETONATIONS]
    results = await ctx.gather_limited(
        [lambda u=u: detonate(ctx, creds.urlscan, u) for u in to_detonate],
        limit=MAX_PARALLEL,
        return_exceptions=True,
    )
    detonations: list[dict[str, Any]] = []
    for url, result in zip(to_detonate, results, strict=True):
        if isinstance(result, BaseException):
            detonations.append({"url": url, "error": str(result) or type(result).__name__})
        else:
            detonations.append(result)

    verdict = _worst([r["verdict"] for r in reputations + detonations if "verdict" in r])
    quarantine: dict[str, Any] | None = None
    if verdict == "malicious":
        bad = sorted(known_bad | {d["url"] for d in detonations if d.get("verdict") == "malicious"})
        quarantine = await quarantine_message(
            ctx, creds, alert, f"kubesoar phishing triage: malicious {', '.join(bad) or 'content'}"
        )
        ctx.logger.warning("quarantined message %s", alert.raw["email"]["message_id"])
    return {
        "verdict": verdict,
        "urls": urls,
        "domains": domains,
        "reputation": reputations,
        "detonations": detonations,
        "quarantine": quarantine,
    }
