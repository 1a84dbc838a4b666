"""OpenSOAR's own six example playbooks (its `playbooks/examples/`), read from
a checkout of OpenSOAR's repository into a temporary folder (never copied
into this repository), run unchanged with `kubesoar run FOLDER`: what each
returns, as the table in docs/migrating-from-opensoar.md says.

Skipped when no OpenSOAR checkout is at $OPENSOAR_REPO (a git directory;
default: this machine's mirror)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integrations"))
from fakevendors import FakeVendors, start, write_secrets

REPO = Path(os.environ.get("OPENSOAR_REPO", "/work/.mirror/opensoar-hq+opensoar/repo"))
KUBESOAR = Path(sys.executable).with_name("kubesoar")
EXAMPLES = (
    "triage_high_severity",
    "auto_enrich_iocs",
    "ai_threat_hunt",
    "ai_endpoint_containment",
    "ai_phishing_triage",
    "escalation_workflow",
)
ALERT = {
    "id": "a-1",
    "source": "webhook",
    "title": "Emotet dropper on ws-042",
    "description": "EDR blocked invoice.exe calling out to a C2",
    "severity": "critical",
    "source_ip": "203.0.113.7",
    "dest_ip": "198.51.100.2",
    "hostname": "ws-042",
    "rule_name": "Malware beacon",
    "tags": ["phishing", "endpoint"],
    "iocs": {
        "ips": ["203.0.113.7"],
        "domains": ["evil.example"],
        "hashes": ["44d88612fea8a8f36de82e1278abb02f"],
    },
}
VERDICT = {
    "verdict": "malicious",
    "confidence": 0.92,
    "reasoning": "known C2 and dropper",
    "severity": "critical",
    "should_isolate": True,
    "threat_type": "trojan",
    "threat_level": "high",
    "executive_summary": "Emotet on ws-042",
    "report": "...",
    "recommended_actions": ["isolate ws-042"],
}


def _examples(into: Path) -> None:
    if not (REPO / "HEAD").exists() and not (REPO / ".git").exists():
        pytest.skip(f"no OpenSOAR checkout at {REPO}")
    into.mkdir()
    for name in ("__init__", *EXAMPLES):
        text = subprocess.run(
            ["git", "-C", str(REPO), "show", f"HEAD:playbooks/examples/{name}.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (into / f"{name}.py").write_text(text)


async def _run(tmp_path: Path, configured: bool) -> dict[str, Any]:
    """The run's results by entry point name, and under "" the attempted actions."""
    vendors = FakeVendors(llm_text=json.dumps(VERDICT))
    runner = await start(vendors)
    try:
        _examples(tmp_path / "examples")
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        if configured:
            write_secrets(secrets, vendors)
        (tmp_path / "alert.json").write_text(json.dumps(ALERT))
        process = await asyncio.create_subprocess_exec(
            str(KUBESOAR),
            "run",
            "examples",
            "--alert",
            "alert.json",
            "--secrets-dir",
            "secrets",
            "--json",
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    finally:
        await runner.cleanup()
    assert out, err.decode()
    run = json.loads(out)
    results: dict[str, Any] = {r["name"]: r for r in run["results"]}
    results[""] = {(a["action"], a["status"]) for a in run["actions"]}
    return results


TRIAGE = {
    "enrichment": {
        "virustotal": {
            "source": "virustotal",
            "results": {"203.0.113.7": {"reputation": "unknown", "source": "virustotal"}},
        },
        "abuseipdb": {"source": "abuseipdb", "ip": "203.0.113.7", "abuse_score": 0},
    },
    "risk": {"risk_score": 0.5, "details": "Auto-calculated"},
    "auto_triaged": True,
}


def _failed_in(result: dict[str, Any], function: str) -> str:
    assert result["status"] == "failed", result
    assert result["where"].endswith(f"in {function}"), result["where"]
    return str(result["error"])


async def test_examples_without_secrets(tmp_path: Path) -> None:
    results = await _run(tmp_path, configured=False)
    assert sorted(results) == sorted(["", *EXAMPLES])
    assert not any(action.startswith(("virustotal.", "llm.")) for action, _ in results[""])
    assert results["triage_high_severity"]["result"] == TRIAGE
    assert results["auto_enrich_iocs"]["result"] == {
        "enriched": 3,
        "results": [
            {"ip": "203.0.113.7", "sources": {}, "note": "No integration API keys configured"},
            {"domain": "evil.example", "note": "VT_API_KEY not configured"},
            {"hash": "44d88612fea8a8f36de82e1278abb02f", "note": "VT_API_KEY not configured"},
        ],
    }
    for name, function in [
        ("ai_threat_hunt", "save_hunt_report"),
        ("ai_endpoint_containment", "log_endpoint_assessment"),
        ("ai_phishing_triage", "escalate_phishing"),
        ("escalation_workflow", "find_duty_analyst"),
    ]:
        error = _failed_in(results[name], function)
        assert "OpenSOAR's database" in error and "update_current_alert" in error


async def test_examples_with_every_integration_faked(tmp_path: Path) -> None:
    results = await _run(tmp_path, configured=True)
    assert {
        ("virustotal.lookup_ip", "succeeded"),
        ("virustotal.lookup_domain", "succeeded"),
        ("virustotal.lookup_hash", "succeeded"),
        ("abuseipdb.check_ip", "succeeded"),
        ("llm.anthropic", "succeeded"),
        ("ai_correlate_and_report", "succeeded"),
        ("ai_assess_endpoint_threat", "succeeded"),
    } <= results[""]
    assert results["triage_high_severity"]["result"] == TRIAGE
    assert results["auto_enrich_iocs"]["result"] == {
        "enriched": 3,
        "results": [
            {
                "ip": "203.0.113.7",
                "sources": {
                    "virustotal": {
                        "malicious": 7,
                        "suspicious": 1,
                        "country": "NL",
                        "as_owner": "Bad Hosting BV",
                    },
                    "abuseipdb": {
                        "abuse_confidence_score": 97,
                        "total_reports": 412,
                        "country_code": "NL",
                        "isp": "Bad Hosting BV",
                    },
                },
            },
            {
                "domain": "evil.example",
                "malicious": 12,
                "suspicious": 2,
                "registrar": "NameCheap",
                "creation_date": "1700000000",
            },
            {
                "hash": "44d88612fea8a8f36de82e1278abb02f",
                "malicious": 60,
                "suspicious": 0,
                "type_description": "Win32 EXE",
                "meaningful_name": "invoice.exe",
            },
        ],
    }
    assert "OpenSOAR's database" in _failed_in(results["ai_threat_hunt"], "save_hunt_report")
    assert "OpenSOAR's database" in _failed_in(
        results["ai_endpoint_containment"], "isolate_endpoint"
    )
    assert "unhashable type: 'dict'" in _failed_in(
        results["ai_phishing_triage"], "ai_analyze_phishing"
    )
    assert "OpenSOAR's database" in _failed_in(results["escalation_workflow"], "find_duty_analyst")
