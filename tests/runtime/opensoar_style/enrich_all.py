"""Enrich every IOC of a phishing alert (OpenSOAR style)."""

import asyncio

from opensoar import action, playbook


@action(name="enrich_ip", timeout=30, retries=2, retry_backoff=2.0)
async def enrich_ip(ip: str) -> dict:
    from opensoar.config import settings

    out = {"ip": ip, "sources": {}}
    if settings.vt_api_key:
        from opensoar.integrations.virustotal.connector import VirusTotalIntegration

        vt = VirusTotalIntegration({"api_key": settings.vt_api_key})
        await vt.connect()
        try:
            raw = await vt.lookup_ip(ip)
        finally:
            await vt.disconnect()
        attrs = raw.get("data", {}).get("attributes", {})
        out["sources"]["virustotal"] = {
            "malicious": attrs.get("last_analysis_stats", {}).get("malicious", 0),
            "country": attrs.get("country"),
        }
    if settings.abuseipdb_api_key:
        from opensoar.integrations.abuseipdb.connector import AbuseIPDBIntegration

        abuse = AbuseIPDBIntegration({"api_key": settings.abuseipdb_api_key})
        await abuse.connect()
        try:
            data = (await abuse.check_ip(ip)).get("data", {})
        finally:
            await abuse.disconnect()
        out["sources"]["abuseipdb"] = {
            "abuse_confidence_score": data.get("abuseConfidenceScore"),
            "total_reports": data.get("totalReports"),
        }
    return out


@action(name="enrich_domain", timeout=30, retries=2, retry_backoff=2.0)
async def enrich_domain(domain: str) -> dict:
    from opensoar.config import settings
    from opensoar.integrations.virustotal.connector import VirusTotalIntegration

    vt = VirusTotalIntegration({"api_key": settings.vt_api_key})
    await vt.connect()
    try:
        attrs = (await vt.lookup_domain(domain)).get("data", {}).get("attributes", {})
    finally:
        await vt.disconnect()
    return {
        "domain": domain,
        "malicious": attrs.get("last_analysis_stats", {}).get("malicious", 0),
        "registrar": attrs.get("registrar"),
    }


@action(name="enrich_hash", timeout=30, retries=2, retry_backoff=2.0)
async def enrich_hash(file_hash: str) -> dict:
    from opensoar.config import settings
    from opensoar.integrations.virustotal.connector import VirusTotalIntegration

    vt = VirusTotalIntegration({"api_key": settings.vt_api_key})
    await vt.connect()
    try:
        raw = await vt.lookup_hash(file_hash)
    finally:
        await vt.disconnect()
    attrs = raw.get("data", {}).get("attributes", {})
    return {
        "hash": file_hash,
        "malicious": attrs.get("last_analysis_stats", {}).get("malicious", 0),
        "name": attrs.get("meaningful_name"),
        "error": raw.get("error", {}).get("code"),
    }


@playbook(trigger="webhook", conditions={"tags": "phishing"}, order=10)
async def enrich_all(alert_data):
    if isinstance(alert_data, dict):
        iocs = alert_data.get("iocs", {})
    elif hasattr(alert_data, "iocs"):
        iocs = alert_data.iocs or {}
    else:
        iocs = {}
    tasks = [enrich_ip(ip) for ip in iocs.get("ips", [])]
    tasks += [enrich_domain(d) for d in iocs.get("domains", [])]
    tasks += [enrich_hash(h) for h in iocs.get("hashes", [])]
    results = await asyncio.gather(*tasks)
    return {"enriched": len(results), "results": list(results), "ioc_kinds": sorted(iocs)}
