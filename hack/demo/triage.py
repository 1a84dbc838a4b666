"""The demo's playbook: score a high-severity alert and decide what to do with it.

It calls no outside service, so the demo runs on a machine with no internet;
the examples in playbooks/ show real integrations (VirusTotal, Okta, Jira, ...).
"""

from __future__ import annotations

from kubesoar import Alert, action, playbook

SEVERITY_SCORE = {"critical": 60, "high": 40, "medium": 20, "low": 5, "info": 0}


@action(timeout=5, retries=1)
async def score(alert: Alert) -> int:
    ioc_count = sum(len(v) for v in (alert.iocs.ips, alert.iocs.domains, alert.iocs.hashes))
    return SEVERITY_SCORE.get(alert.severity or "info", 0) + 10 * min(ioc_count, 4)


@playbook(
    trigger="webhook",
    conditions={"severity": ["high", "critical"]},
    order=10,
    description="Score high and critical alerts; contain the host above 70.",
)
async def triage(alert: Alert) -> dict[str, object]:
    points = await score(alert)
    verdict = "contain-host" if points >= 70 else "open-ticket"
    return {"alert": alert.title, "host": alert.hostname, "score": points, "verdict": verdict}
