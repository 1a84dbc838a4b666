"""OpenSOAR-style playbooks (tests/runtime/opensoar_style/) run as a user runs
them: copied into a fresh temporary folder and run with the `kubesoar run
FOLDER` command, their integrations pointed at local fakes of each vendor
(tests/integrations/fakevendors.py) and a real SMTP server by the Secrets
folder alone.

Each expected result is what OpenSOAR's engine returns for the same alert
and the same vendor answers, derived from OpenSOAR's semantics: the alert is
an object (not a dict) whose `iocs` lists only non-empty kinds, whose
severity uses OpenSOAR's four levels, whose `normalized` dict is what
conditions match; integration clients return the vendor's JSON, error
answers included; the lifecycle helpers return OpenSOAR's shapes.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integrations"))
from aiosmtpd.controller import Controller
from fakevendors import FakeVendors, start, write_secrets

PLAYBOOKS = Path(__file__).parent / "opensoar_style"
KUBESOAR = Path(sys.executable).with_name("kubesoar")
UNKNOWN_HASH = "f" * 32

PHISHING = {
    "id": "a-100",
    "source": "webhook",
    "title": "Phishing link clicked",
    "description": "A user clicked a link in a reported mail",
    "severity": "high",
    "source_ip": "203.0.113.7",
    "dest_ip": "198.51.100.2",
    "hostname": "ws-042",
    "rule_name": "Phishing click",
    "iocs": {
        "ips": ["203.0.113.7"],
        "domains": ["evil.example"],
        "hashes": ["44d88612fea8a8f36de82e1278abb02f", UNKNOWN_HASH],
        "urls": [],
    },
    "tags": ["phishing", "endpoint"],
}
CRITICAL = {"id": "a-200", "title": "Ransomware on DC", "severity": 4, "tags": ["vip"]}


def expected_phishing_results(alert_id: str) -> dict[str, Any]:
    """What OpenSOAR returns for PHISHING (whose id the sender may not control:
    the router derives its own) and the fakes' answers, per entry point."""
    return {
        "contain": {
            "intel": {"noise": True, "ports": [22, 443]},
            "siem": {"splunk_rows": 1, "elastic_hits": 1},
            "isolation": {
                "machine": "m1",
                "type": "Isolate",
                "status": "Pending",
                "comment": f"alert {alert_id}",
            },
        },
        "enrich_all": {
            "enriched": 4,
            "results": [
                {
                    "ip": "203.0.113.7",
                    "sources": {
                        "virustotal": {"malicious": 7, "country": "NL"},
                        "abuseipdb": {"abuse_confidence_score": 97, "total_reports": 412},
                    },
                },
                {"domain": "evil.example", "malicious": 12, "registrar": "NameCheap"},
                {
                    "hash": "44d88612fea8a8f36de82e1278abb02f",
                    "malicious": 60,
                    "name": "invoice.exe",
                    "error": None,
                },
                # OpenSOAR's client hands VirusTotal's 404 answer back as data
                {"hash": UNKNOWN_HASH, "malicious": 0, "name": None, "error": "NotFoundError"},
            ],
            "ioc_kinds": ["domains", "hashes", "ips"],  # no empty `urls`, as OpenSOAR's
        },
        "phishing_ai": {
            "alert_id": alert_id,
            "bound_id": alert_id,
            "severity": "high",
            "verdict": {
                "verdict": "benign",
                "confidence": 0.9,
                "reasoning": "internal test",
                "model": "gpt-4o-2024",
            },
            "outcome": {"action": "resolved", "status": "resolved", "determination": "benign"},
        },
    }


class Inbox:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 OK"


@pytest.fixture
def smtp_port() -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(Inbox(), hostname="127.0.0.1", port=port)
    controller.start()
    yield port
    controller.stop()


@pytest.fixture
async def world(tmp_path_factory: pytest.TempPathFactory, smtp_port: int) -> AsyncIterator[Any]:
    """A fresh folder outside the repository with the playbooks, a Secrets
    folder pointing at the fakes, and the running fakes."""
    vendors = FakeVendors(
        llm_text='{"verdict": "benign", "confidence": 0.9, "reasoning": "internal test"}'
    )
    runner = await start(vendors)
    home = tmp_path_factory.mktemp("opensoar-user")
    shutil.copytree(PLAYBOOKS, home / "playbooks", ignore=shutil.ignore_patterns("*.md"))
    secrets = home / "secrets"
    write_secrets(secrets, vendors)
    shutil.rmtree(secrets / "anthropic")  # this SOC runs OpenAI: the provider chain picks it
    (secrets / "email").mkdir()
    for key, value in {
        "smtp_host": "127.0.0.1",
        "smtp_port": str(smtp_port),
        "use_tls": "false",
        "from_address": "soar@example.org",
    }.items():
        (secrets / "email" / key).write_text(value)
    yield home, vendors
    await runner.cleanup()


async def kubesoar_run(home: Path, alert: dict[str, Any]) -> dict[str, Any]:
    (home / "alert.json").write_text(json.dumps(alert))
    process = await asyncio.create_subprocess_exec(
        str(KUBESOAR),
        "run",
        "playbooks",
        "--alert",
        "alert.json",
        "--secrets-dir",
        "secrets",
        "--json",
        cwd=home,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert out, err.decode()
    run: dict[str, Any] = json.loads(out)
    return run


def by_name(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {result["name"]: result for result in run["results"]}


async def test_a_phishing_alert(world: Any) -> None:
    home, vendors = world
    run = await kubesoar_run(home, PHISHING)
    results = by_name(run)
    assert list(results) == ["contain", "enrich_all", "phishing_ai"], run
    assert all(r["status"] == "succeeded" for r in results.values()), run
    assert run["status"] == "succeeded"

    expected = expected_phishing_results("a-100")
    for name in ("contain", "enrich_all", "phishing_ai"):
        assert results[name]["result"] == expected[name], name
    phishing = results["phishing_ai"]
    assert [(a["action"], a["detail"]) for a in phishing["alertActivity"]] == [
        ("status_change", "Status changed from new to resolved — internal test"),
        ("determination_set", "Determination set to benign"),
    ]
    # Every integration call is an action attempt of the run.
    actions = {a["action"] for a in run["actions"]}
    assert {
        "virustotal.lookup_ip",
        "virustotal.lookup_hash",
        "abuseipdb.check_ip",
        "greynoise.quick_lookup",
        "shodan.host_info",
        "splunk.run_search",
        "elastic.get_alerts",
        "msdefender.isolate_machine",
        "llm.openai",
    } <= actions
    failed = [a for a in run["actions"] if a["status"] == "failed"]
    assert [a["action"] for a in failed] == ["virustotal.lookup_hash"]  # the 404
    assert "NotFoundError" in failed[0]["error"]
    prompt = json.loads(vendors.under("openai")[0].body)["messages"][1]["content"]
    assert '"urls"' not in prompt and '"ips": ["203.0.113.7"]' in prompt


async def test_a_critical_alert_with_a_numeric_severity(world: Any) -> None:
    home, vendors = world
    run = await kubesoar_run(home, CRITICAL)
    results = by_name(run)
    assert list(results) == ["escalate"], run
    assert results["escalate"]["result"] == {
        "escalated": True,
        "assigned": "oncall",
        "status": "in_progress",
        "notified": {
            "slack": {"status": 200, "ok": True},
            "email": {"sent_to": "soc@example.org", "subject": "[critical] Ransomware on DC"},
        },
    }
    assert vendors.sent_messages == [{"text": "[critical] Ransomware on DC -> oncall"}]
    assert [a["action"] for a in results["escalate"]["alertActivity"]] == ["assigned"]


async def test_an_info_alert_is_low_for_opensoar_conditions(world: Any) -> None:
    home, _ = world
    run = await kubesoar_run(home, {**PHISHING, "severity": "informational", "tags": ["phishing"]})
    # phishing_ai wants high/critical; OpenSOAR folds `informational` to `low`
    assert list(by_name(run)) == ["enrich_all"], run
