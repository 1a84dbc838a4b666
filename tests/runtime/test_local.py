"""The author's loop: `kubesoar run` / `kubesoar match` on a sample module
(in-process and as a real command), and the testing helpers (`make_alert`,
`fake_secrets`, `mock_http`, `run_playbook`, attempt assertions)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubesoar._loader import load_target
from kubesoar._local import main_match, main_run
from kubesoar.testing import (
    FakeSecrets,
    MockHTTP,
    assert_attempts,
    assert_succeeded,
    attempts_of,
    load_alert,
    make_alert,
    run_playbook,
    run_playbook_sync,
)

SAMPLE = """\
import os
from kubesoar import Alert, RunContext, action, current_context, playbook

@action(name="vt.lookup", retries=1, retry_backoff=0.0)
async def lookup(ip: str) -> dict:
    ctx = current_context()
    key = ctx.secret("virustotal", "api_key")
    base = os.environ.get("VT_URL", "https://vt.example")
    answer = await ctx.http.get(f"{base}/api/ip/{ip}", headers={"x-apikey": key})
    answer.raise_for_status()
    return answer.json()

@playbook("webhook", conditions={"severity": {"$gte": "high"}, "iocs.ips": {"$exists": True}},
          order=1)
async def enrich(alert: Alert, ctx: RunContext) -> dict:
    results = await ctx.gather_limited([lookup(ip) for ip in alert.iocs.ips], limit=2)
    return {"malicious": sum(r["malicious"] for r in results)}

@playbook("webhook", conditions={"tags": "phishing"}, order=2)
def phishing(alert):
    return "quarantined"
"""


@pytest.fixture
def sample(write_module: Any) -> Path:
    return write_module("sample_triage", SAMPLE)


def _vt(mock: MockHTTP, ip: str, malicious: int) -> None:
    mock.add("GET", f"https://vt.example/api/ip/{ip}", json={"malicious": malicious})


async def test_run_playbook_with_fakes(
    sample: Path, fake_secrets: FakeSecrets, mock_http: MockHTTP
) -> None:
    fake_secrets.set("virustotal", "api_key", "vt-key")
    _vt(mock_http, "10.0.0.1", 2)
    flaky = {"calls": 0}

    def flaky_handler(request: httpx.Request) -> httpx.Response:
        flaky["calls"] += 1
        return httpx.Response(503 if flaky["calls"] == 1 else 200, json={"malicious": 1})

    mock_http.add("GET", re.compile(r"/ip/10\.0\.0\.2$"), handler=flaky_handler)
    alert = make_alert(severity="critical", iocs={"ips": ["10.0.0.1", "10.0.0.2"]})
    run = await run_playbook(str(sample), alert)
    assert_succeeded(run)
    assert run.result_of("enrich") == {"malicious": 3}
    assert [r["name"] for r in run.results] == ["enrich"]  # phishing not matched
    assert sorted(a["status"] for a in attempts_of(run, "vt.lookup")) == [
        "failed",
        "succeeded",
        "succeeded",
    ]
    (failed,) = [a for a in attempts_of(run, "vt.lookup") if a["status"] == "failed"]
    assert "503 Service Unavailable" in failed["error"]
    assert {r.headers["x-apikey"] for r in mock_http.requests} == {"vt-key"}


async def test_unrouted_http_and_missing_secret_fail_loudly(
    sample: Path, fake_secrets: FakeSecrets, mock_http: MockHTTP
) -> None:
    alert = make_alert(severity="high", iocs={"ips": ["10.0.0.9"]})
    run = await run_playbook(str(sample), alert)
    assert run.status == "failed"
    # vt.lookup has retries=1, but a missing secret is not retried.
    assert_attempts(run, "vt.lookup", ["failed"])
    assert "secret 'virustotal' has no key 'api_key'" in run.attempts[0]["error"]
    fake_secrets.set("virustotal", "api_key", "k")
    run = await run_playbook(str(sample), alert)
    assert (
        "mock_http: no route for GET https://vt.example/api/ip/10.0.0.9" in run.results[0]["error"]
    )
    with pytest.raises(AssertionError, match=r"attempts of vt.lookup: \['failed', 'failed'\]"):
        assert_attempts(run, "vt.lookup", ["succeeded"])
    with pytest.raises(AssertionError, match="run failed: enrich: failed"):
        assert_succeeded(run)


def test_run_a_function_directly_and_fixture_files(sample: Path, tmp_path: Path) -> None:
    sample_triage = load_target(str(sample)).module

    recorded = tmp_path / "recorded.json"
    recorded.write_text(json.dumps({"idempotencyKey": "k", "alert": {"tags": ["phishing"]}}))
    alert = load_alert(recorded, severity="low")
    assert alert.tags == ["phishing"] and alert.severity == "low"
    run = run_playbook_sync(sample_triage.phishing, alert)
    assert run.result_of("phishing") == "quarantined"
    # A module selects by conditions: this alert matches only `phishing`.
    run = run_playbook_sync(sample_triage, alert)
    assert [r["name"] for r in run.results] == ["phishing"]


def _alert_file(tmp_path: Path, **fields: Any) -> str:
    path = tmp_path / "alert.json"
    path.write_text(json.dumps(fields))
    return str(path)


def test_match_cli_explains(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alert = _alert_file(tmp_path, severity="medium", tags=["phishing"])
    assert main_match([str(sample), "--alert", alert]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith('NO MATCH  enrich: severity: is "medium", wanted >= "high"')
    assert out[1] == "MATCH     phishing (order 2)"
    assert main_match([str(sample), "--alert", alert, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["matches"]) for r in rows] == [("enrich", False), ("phishing", True)]


def test_run_cli(sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alert = _alert_file(tmp_path, severity="low", tags=["phishing"])
    assert main_run([str(sample), "--alert", alert, "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["status"] == "succeeded"
    assert run["results"][0]["result"] == "quarantined"
    assert main_run([str(sample), "--alert", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_run_cli_decides_approvals_when_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    book = tmp_path / "asks.py"
    book.write_text(
        "from kubesoar import playbook\n"
        "@playbook(trigger='webhook')\n"
        "async def asks(alert, ctx):\n"
        "    return (await ctx.approval('Block it?')).decided_by\n"
    )
    alert = _alert_file(tmp_path, severity="high")
    assert main_run([str(book), "--alert", alert, "--json", "--approvals", "approve"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["result"] == (
        "kubesoar run --approvals"
    )
    assert main_run([str(book), "--alert", alert, "--json", "--approvals", "deny"]) == 1
    assert json.loads(capsys.readouterr().out)["status"] == "denied"
    assert main_run([str(book), "--alert", alert, "--json"]) == 1
    undecided = json.loads(capsys.readouterr().out)
    assert "kubesoar run --approvals" in undecided["error"]


def test_cli_as_a_real_command(sample: Path, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets" / "virustotal"
    secrets.mkdir(parents=True)
    (secrets / "api_key").write_text("k")
    alert = _alert_file(tmp_path, severity="high", iocs={"ips": ["192.0.2.1"]}, tags=["phishing"])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubesoar",
            "run",
            str(sample),
            "--alert",
            alert,
            "--secrets-dir",
            str(tmp_path / "secrets"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "VT_URL": "http://127.0.0.1:1"},
    )
    # Nothing listens on loopback port 1: the lookup fails, both attempts are
    # recorded, the other entry point still runs, and the command exits 1.
    run = json.loads(done.stdout)
    assert done.returncode == 1
    assert [r["name"] for r in run["results"]] == ["enrich", "phishing"]
    assert run["results"][1]["status"] == "succeeded"
    assert [a["attempt"] for a in run["actions"]] == [1, 2]
    matched = subprocess.run(
        [sys.executable, "-m", "kubesoar", "match", str(sample), "--alert", alert],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert matched.returncode == 0
    assert matched.stdout.splitlines() == [
        "MATCH     enrich (order 1)",
        "MATCH     phishing (order 2)",
    ]


def test_operator_without_its_extra_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pip install kubesoar` has no kopf: `kubesoar operator` says which extra to add."""
    import builtins

    from kubesoar._cli import main

    real_import = builtins.__import__

    def no_kopf(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "kopf" or name.startswith("kopf."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "kubesoar_operator.cli", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_kopf)
    assert main(["operator", "--help"]) == 3
    assert "pip install 'kubesoar[operator]'" in capsys.readouterr().err
