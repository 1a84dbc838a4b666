"""Triage high and critical alerts: enrich every indicator with two threat-intel
services in parallel (bounded), reach a verdict, and open a ticket.

Integrations (all over HTTPS through the run's httpx client, `ctx.http`):

- VirusTotal v3 for IPs, domains and file hashes (secret `virustotal`, key `apiKey`);
- AbuseIPDB v2 for IPs (secret `abuseipdb`, key `apiKey`);
- Jira for the ticket (secret `jira`, keys `email` and `apiToken`; env `JIRA_URL`,
  `JIRA_PROJECT`).

A lookup that fails after its retries is reported, not fatal: the verdict is
made from what answered. Failing to open the ticket fails the run, so it shows
in the Playbook's `status.runs.lastError`.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Any

import httpx
from kubesoar import Alert, RunContext, action, playbook

VIRUSTOTAL_URL = "https://www.virustotal.com/api/v3"
ABUSEIPDB_URL = "https://api.abuseipdb.com/api/v2"
# Lookups in flight at once, across both services: keeps a burst of IOCs
# from exhausting an API quota or the pod's sockets.
MAX_PARALLEL_LOOKUPS = 4
MAX_INDICATORS = 50

VERDICT_RANK = {"unknown": 0, "benign": 1, "suspicious": 2, "malicious": 3}
JIRA_PRIORITY = {
    "malicious": "Highest",
    "suspicious": "High",
    "benign": "Medium",
    "unknown": "High",
}


@dataclass(frozen=True)
class Lookup:
    provider: str
    kind: str  # ip | domain | hash
    value: str


@dataclass(frozen=True, repr=False)
class Jira:
    url: str
    project: str
    email: str
    api_token: str

    @classmethod
    def configured(cls, ctx: RunContext) -> Jira:
        url = os.environ.get("JIRA_URL", "").rstrip("/")
        if not url:
            raise RuntimeError("JIRA_URL is not set (spec.runtime.env)")
        return cls(
            url=url,
            project=os.environ.get("JIRA_PROJECT", "SOC"),
            email=ctx.secret("jira", "email"),
            api_token=ctx.secret("jira", "apiToken"),
        )


class LookupFailed(Exception):
    """A threat-intel service answered with an error we may retry."""


def indicators_of(alert: Alert) -> list[tuple[str, str]]:
    """(kind, value) pairs to enrich: IOCs plus the alert's public addresses."""
    found: dict[tuple[str, str], None] = {}
    for ip in [*alert.iocs.ips, alert.source_ip, alert.dest_ip]:
        if ip and _is_public_ip(ip):
            found[("ip", ip)] = None
    for domain in alert.iocs.domains:
        found[("domain", domain.strip().lower().rstrip("."))] = None
    for digest in alert.iocs.hashes:
        found[("hash", digest.strip().lower())] = None
    return list(found)[:MAX_INDICATORS]


def _is_public_ip(value: str) -> bool:
    try:
        return ipaddress.ip_address(value).is_global
    except ValueError:
        return False


def lookups_for(indicators: list[tuple[str, str]]) -> list[Lookup]:
    """VirusTotal knows every kind; AbuseIPDB only IPs."""
    plan = [Lookup("virustotal", kind, value) for kind, value in indicators]
    plan += [Lookup("abuseipdb", kind, value) for kind, value in indicators if kind == "ip"]
    return plan


def _raise_for(response: httpx.Response, provider: str) -> None:
    if response.status_code == 429 or response.status_code >= 500:
        raise LookupFailed(f"{provider} answered {response.status_code}")
    response.raise_for_status()


_VT_PATHS = {"ip": "ip_addresses", "domain": "domains", "hash": "files"}


@action(timeout=20, retries=2, retry_backoff=1.5)
async def virustotal_lookup(ctx: RunContext, api_key: str, kind: str, value: str) -> dict[str, Any]:
    """Look an indicator up in VirusTotal."""
    response = await ctx.http.get(
        f"{VIRUSTOTAL_URL}/{_VT_PATHS[kind]}/{value}", headers={"x-apikey": api_key}
    )
    if response.status_code == 404:
        return {"verdict": "unknown", "detail": "not in VirusTotal"}
    _raise_for(response, "virustotal")
    stats = response.json()["data"]["attributes"].get("last_analysis_stats", {})
    malicious, suspicious = stats.get("malicious", 0), stats.get("suspicious", 0)
    if malicious >= 3:
        verdict = "malicious"
    elif malicious or suspicious >= 2:
        verdict = "suspicious"
    else:
        verdict = "benign"
    return {"verdict": verdict, "malicious": malicious, "suspicious": suspicious}


@action(timeout=20, retries=2, retry_backoff=1.5)
async def abuseipdb_lookup(ctx: RunContext, api_key: str, kind: str, value: str) -> dict[str, Any]:
    """Check an IP's abuse confidence score in AbuseIPDB."""
    response = await ctx.http.get(
        f"{ABUSEIPDB_URL}/check",
        params={"ipAddress": value, "maxAgeInDays": 90},
        headers={"Key": api_key, "Accept": "application/json"},
    )
    _raise_for(response, "abuseipdb")
    score = int(response.json()["data"]["abuseConfidenceScore"])
    verdict = "malicious" if score >= 75 else "suspicious" if score >= 25 else "benign"
    return {"verdict": verdict, "abuseConfidenceScore": score}


LOOKUPS = {"virustotal": virustotal_lookup, "abuseipdb": abuseipdb_lookup}


def overall_verdict(findings: list[dict[str, Any]]) -> str:
    """The worst verdict any service gave; `unknown` when nothing answered."""
    verdicts = [f["verdict"] for f in findings if "verdict" in f]
    return max(verdicts, key=VERDICT_RANK.__getitem__, default="unknown")


# No retries: creating an issue is not idempotent, and a 5xx may still have
# created it. A failure fails the run, which the Playbook's status shows.
@action(timeout=30)
async def open_ticket(
    ctx: RunContext, jira: Jira, alert: Alert, verdict: str, findings: list[dict[str, Any]]
) -> str:
    """Open a Jira issue for the analyst; returns its key."""
    lines = [
        f"Alert {alert.id} from {alert.source} ({alert.severity}): {alert.title}",
        f"Rule: {alert.rule_name or '-'}  Host: {alert.hostname or '-'}",
        f"Verdict: {verdict}",
        f"Correlation id: {ctx.correlation_id}",
        "",
        "Indicators:",
    ]
    for finding in findings:
        outcome = finding.get("verdict") or f"lookup failed: {finding.get('error')}"
        lines.append(f"- {finding['kind']} {finding['value']} [{finding['provider']}]: {outcome}")
    response = await ctx.http.post(
        f"{jira.url}/rest/api/2/issue",
        auth=(jira.email, jira.api_token),
        json={
            "fields": {
                "project": {"key": jira.project},
                "issuetype": {"name": "Task"},
                "summary": f"[{verdict.upper()}] {alert.title or alert.rule_name or alert.id}"[
                    :250
                ],
                "description": "\n".join(lines),
                "priority": {"name": JIRA_PRIORITY[verdict]},
                "labels": ["kubesoar", f"verdict-{verdict}", f"severity-{alert.severity}"],
            }
        },
    )
    response.raise_for_status()
    key: str = response.json()["key"]
    return key


@playbook(
    trigger="webhook",
    conditions={"severity": {"$gte": "high"}, "$not": {"tags": "suppressed"}},
    order=10,
    description="Enrich high/critical alerts with VirusTotal and AbuseIPDB; verdict and ticket",
)
async def triage_high_severity(alert: Alert, ctx: RunContext) -> dict[str, Any]:
    # Read configuration and credentials first: a missing one fails the run
    # at once, naming it, instead of failing every lookup after its retries.
    jira = Jira.configured(ctx)
    api_keys = {name: ctx.secret(name, "apiKey") for name in LOOKUPS}
    indicators = indicators_of(alert)
    plan = lookups_for(indicators)
    ctx.logger.info("enriching %d indicators with %d lookups", len(indicators), len(plan))
    outcomes = await ctx.gather_limited(
        [lambda p=p: LOOKUPS[p.provider](ctx, api_keys[p.provider], p.kind, p.value) for p in plan],
        limit=MAX_PARALLEL_LOOKUPS,
        return_exceptions=True,
    )
    findings: list[dict[str, Any]] = []
    for lookup, outcome in zip(plan, outcomes, strict=True):
        finding: dict[str, Any] = {
            "provider": lookup.provider,
            "kind": lookup.kind,
            "value": lookup.value,
        }
        if isinstance(outcome, BaseException):
            finding["error"] = str(outcome) or type(outcome).__name__
        else:
            finding.update(outcome)
        findings.append(finding)
    verdict = overall_verdict(findings)
    ticket = await open_ticket(ctx, jira, alert, verdict, findings)
    ctx.logger.info("verdict %s, ticket %s", verdict, ticket)
    return {
        "verdict": verdict,
        "ticket": ticket,
        "findings": findings,
        "failedLookups": sum(1 for f in findings if "error" in f),
    }
