"""The `opensoar` alias: the alert view OpenSOAR-style entry points receive
(and that their conditions match), OpenSOAR's severity folding and priority
words, the alias's submodules (config, integrations, ai, and db/models that
refuse clearly), the lifecycle helpers, settings from Secrets, and the
loader's refusals (the real OpenSOAR package; folders and files without
entry points)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubesoar import _compat
from kubesoar._alert import Alert, opensoar_severity
from kubesoar._loader import load_target
from kubesoar._local import main_match, main_run
from kubesoar._opensoar_alert import OpenSOARAlert
from kubesoar.testing import make_alert, run_playbook


@pytest.fixture(autouse=True)
def alias() -> None:
    _compat.install_opensoar_alias()


def _opensoar_alert(**fields: Any) -> OpenSOARAlert:
    return OpenSOARAlert(make_alert(**fields), correlation_id="corr-1")


def test_the_view_has_opensoar_alert_record_attributes() -> None:
    view = _opensoar_alert(
        id="a1",
        source="elastic",
        source_id="s1",
        title="t",
        description="d",
        severity="info",
        source_ip="10.0.0.1",
        dest_ip="10.0.0.2",
        hostname="h",
        rule_name="r",
        iocs={"ips": ["1.2.3.4"], "domains": []},
        tags=["x"],
        tenant="acme",
        raw={"event": {"category": "authentication"}},
    )
    assert hasattr(view, "normalized") and not isinstance(view, dict)
    assert (view.id, view.source, view.source_id, view.title, view.description) == (
        "a1",
        "elastic",
        "s1",
        "t",
        "d",
    )
    assert view.severity == "low"  # OpenSOAR has no `info`
    assert view.iocs == {"ips": ["1.2.3.4"]} and type(view.iocs) is dict
    assert view.raw_payload == {"event": {"category": "authentication"}}
    assert (view.partner, view.determination, view.status) == ("acme", "unknown", "new")
    assert (view.correlation_id, view.duplicate_count, view.tags) == ("corr-1", 1, ["x"])
    assert view.resolved_at is None and view.assigned_to is None
    assert type(view.normalized) is dict and view.normalized["severity"] == "low"
    assert set(view.normalized) == {
        "source",
        "source_id",
        "title",
        "description",
        "severity",
        "status",
        "source_ip",
        "dest_ip",
        "hostname",
        "rule_name",
        "iocs",
        "tags",
        "partner",
    }
    assert view.get("hostname") == "h" and view.get("nope", 7) == 7 and view["title"] == "t"
    assert view.get("iocs", {}).get("hashes", []) == []
    view.normalized["iocs"] = {}  # playbooks mutate it; the view's own iocs stay
    assert view.iocs == {"ips": ["1.2.3.4"]}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "medium"),
        ("urgent", "medium"),
        ("info", "low"),
        ("Informational", "low"),
        (0, "low"),
        ("1", "low"),
        (2, "medium"),
        ("warn", "medium"),
        ("3", "high"),
        ("error", "high"),
        (4, "critical"),
        (9, "critical"),
        ("CRIT", "critical"),
    ],
)
def test_severity_follows_opensoar(given: Any, expected: str) -> None:
    assert opensoar_severity(given) == expected


MIXED = """
from kubesoar import Alert, playbook as kubesoar_playbook
from opensoar import playbook

@playbook(trigger="webhook", conditions={"severity": "low", "partner": "acme"})
async def theirs(alert):
    return {"type": type(alert).__name__, "severity": alert.severity,
            "iocs": alert.iocs, "dict": isinstance(alert, dict)}

@kubesoar_playbook("webhook", conditions={"severity": "info"})
async def ours(alert: Alert):
    return {"type": type(alert).__name__, "severity": alert.severity}

@playbook(conditions={"severity": "low"}, priority="high")
async def manual_only(alert):
    return "ran"
"""


async def test_each_decorator_gets_its_own_alert_and_conditions(
    write_module: Callable[[str, str], Path],
) -> None:
    path = write_module("mixed_decorators", MIXED)
    alert = make_alert(severity="info", tenant="acme", iocs={"ips": ["1.2.3.4"]})
    run = await run_playbook(path, alert)
    assert [r["name"] for r in run.results] == ["theirs", "ours"]  # manual_only: no trigger
    assert run.result_of("theirs") == {
        "type": "OpenSOARAlert",
        "severity": "low",
        "iocs": {"ips": ["1.2.3.4"]},
        "dict": False,
    }
    assert run.result_of("ours") == {"type": "Alert", "severity": "info"}
    named = await run_playbook(path, alert, playbooks=["manual_only"])
    assert named.result_of("manual_only") == "ran"
    entry = next(e for e in load_target(str(path)).entry_points if e.name == "manual_only")
    assert entry.priority == 10 and entry.trigger is None


def test_priority_words_are_checked() -> None:
    from opensoar import playbook  # type: ignore[import-not-found]

    with pytest.raises(ValueError, match="Invalid playbook priority 'urgent'"):
        playbook(priority="urgent")


def test_alias_submodules() -> None:
    from kubesoar.integrations import LLMClient, VirusTotal

    connector = importlib.import_module("opensoar.integrations.virustotal.connector")
    assert issubclass(connector.VirusTotalIntegration, VirusTotal)
    for vendor, name in [
        ("abuseipdb", "AbuseIPDBIntegration"),
        ("greynoise", "GreyNoiseIntegration"),
        ("shodan", "ShodanIntegration"),
        ("slack", "SlackIntegration"),
        ("email", "EmailIntegration"),
        ("splunk", "SplunkIntegration"),
        ("elastic", "ElasticIntegration"),
        ("msdefender", "MSDefenderIntegration"),
    ]:
        module = importlib.import_module(f"opensoar.integrations.{vendor}.connector")
        assert isinstance(getattr(module, name), type)
    assert importlib.import_module("opensoar.ai.client").LLMClient is LLMClient
    decorators = importlib.import_module("opensoar.core.decorators")
    assert decorators.playbook is importlib.import_module("opensoar").playbook
    assert callable(importlib.import_module("opensoar.runtime").resolve_current_alert)
    base = importlib.import_module("opensoar.integrations.base")
    assert issubclass(connector.VirusTotalIntegration, base.IntegrationBase)
    assert hasattr(importlib.import_module("opensoar.config"), "settings")
    opensoar = importlib.import_module("opensoar")
    for name in (
        "playbook",
        "action",
        "resolve_current_alert",
        "update_current_alert",
        "assign_current_alert",
        "add_current_alert_comment",
        "get_current_alert_id",
    ):
        assert callable(getattr(opensoar, name))


@pytest.mark.parametrize("name", ["opensoar.db", "opensoar.models", "opensoar.models.alert"])
def test_database_modules_fail_naming_the_replacement(name: str) -> None:
    sys.modules.pop(name, None)
    with pytest.raises(ImportError, match="update_current_alert") as caught:
        importlib.import_module(name)
    assert "OpenSOAR's database" in str(caught.value)


def test_unknown_submodule_says_what_exists() -> None:
    with pytest.raises(ModuleNotFoundError, match=r"opensoar.integrations.virustotal.connector"):
        importlib.import_module("opensoar.worker.tasks")


LIFECYCLE = """
from opensoar import (action, add_current_alert_comment, assign_current_alert,
    get_current_alert_id, playbook, resolve_current_alert, update_current_alert)

@action(name="close")
async def close():
    return await resolve_current_alert(determination="benign", reason="known scanner",
        activity_action="auto_closed", activity_detail="closed by playbook")

@playbook(trigger="webhook")
async def lifecycle(alert):
    errors = []
    for call in (lambda: update_current_alert(),
                 lambda: update_current_alert(status="closed"),
                 lambda: update_current_alert(determination="bad"),
                 lambda: update_current_alert(status="resolved"),
                 lambda: resolve_current_alert(determination="unknown"),
                 lambda: assign_current_alert(analyst_id="1", username="x"),
                 lambda: add_current_alert_comment("  ")):
        try:
            await call()
        except ValueError as exc:
            errors.append(str(exc))
    assigned = await assign_current_alert(username="alice")
    status_after_assign = alert.status
    comment = await add_current_alert_comment("looked at it")
    resolved = await close()
    return {"id": get_current_alert_id(), "errors": errors, "assigned": assigned,
            "after_assign": status_after_assign, "comment": sorted(comment),
            "resolved": {k: v for k, v in resolved.items() if k != "resolved_at"},
            "resolved_at_set": resolved["resolved_at"] is not None,
            "view": [alert.status, alert.determination, alert.resolve_reason]}
"""


async def test_lifecycle_helpers_validate_and_record_activity(
    write_module: Callable[[str, str], Path],
) -> None:
    path = write_module("lifecycle_pb", LIFECYCLE)
    run = await run_playbook(path, make_alert(id="a-9"))
    [outcome] = run.results
    assert outcome["status"] == "succeeded", outcome.get("error")
    result = outcome["result"]
    assert result["id"] == "a-9"
    assert result["errors"] == [
        "At least one alert field must be updated",
        "status must be one of: in_progress, new, resolved",
        "determination must be one of: benign, malicious, suspicious, unknown",
        "resolving an alert requires a determination other than 'unknown'",
        "determination must be one of: benign, suspicious, malicious",
        "Provide either analyst_id or username, not both",
        "comment text must not be empty",
    ]
    assert result["assigned"] == {
        "alert_id": "a-9",
        "assigned_to": None,
        "assigned_username": "alice",
    }
    assert result["after_assign"] == "in_progress"
    assert result["comment"] == ["action", "alert_id", "comment_id", "detail"]
    assert result["resolved"] == {
        "alert_id": "a-9",
        "status": "resolved",
        "determination": "benign",
        "partner": None,
    }
    assert result["resolved_at_set"] is True
    assert result["view"] == ["resolved", "benign", "known scanner"]
    activity = [(a["action"], a["detail"]) for a in outcome["alertActivity"]]
    assert activity == [
        ("assigned", "Assigned to alice by playbook"),
        ("comment", "looked at it"),
        ("status_change", "Status changed from in_progress to resolved — known scanner"),
        ("determination_set", "Determination set to benign"),
        ("auto_closed", "closed by playbook"),
    ]


async def test_lifecycle_helpers_outside_a_run() -> None:
    from opensoar import get_current_alert_id, update_current_alert  # type: ignore[import-not-found]

    assert get_current_alert_id() is None
    with pytest.raises(RuntimeError, match="No current alert is bound"):
        await update_current_alert(status="in_progress")


SETTINGS = """
from opensoar import playbook

@playbook(trigger="webhook")
async def show(alert):
    from opensoar.config import settings
    values = {name: getattr(settings, name) for name in (
        "vt_api_key", "abuseipdb_api_key", "openai_api_key", "llm_model", "ollama_url",
        "enrichment_cache_ttl_virustotal", "enrichment_cache_ttl_abuseipdb",
        "enrichment_cache_ttl_greynoise", "enrichment_cache_ttl_shodan", "debug")}
    try:
        settings.database_url
    except AttributeError as exc:
        values["database_url"] = str(exc)
    return values
"""


async def test_settings_come_from_the_playbooks_secrets(
    write_module: Callable[[str, str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secrets"
    for name, key, value in [
        ("virustotal", "api_key", "vt-k"),
        ("llm", "model", "gpt-4o-mini"),
        ("greynoise", "cache_ttl_seconds", "60"),
    ]:
        (secrets / name).mkdir(parents=True, exist_ok=True)
        (secrets / name / key).write_text(value + "\n")
    monkeypatch.setenv("ABUSEIPDB_API_KEY", "from-env-never-used")  # credentials: Secrets only
    monkeypatch.setenv("OLLAMA_URL", "http://ollama.local:11434")
    monkeypatch.setenv("ENRICHMENT_CACHE_TTL_SHODAN", "120")
    path = write_module("settings_pb", SETTINGS)
    run = await run_playbook(path, make_alert(), secrets_dir=secrets)
    values = run.result_of("show")
    assert values["vt_api_key"] == "vt-k"
    assert values["abuseipdb_api_key"] is None and values["openai_api_key"] is None
    assert values["llm_model"] == "gpt-4o-mini"
    assert values["ollama_url"] == "http://ollama.local:11434"
    assert values["enrichment_cache_ttl_virustotal"] == 86400
    assert values["enrichment_cache_ttl_abuseipdb"] == 43200
    assert values["enrichment_cache_ttl_greynoise"] == 60
    assert values["enrichment_cache_ttl_shodan"] == 120
    assert values["debug"] is False
    assert "no meaning under kubesoar" in values["database_url"]


@pytest.fixture
def real_opensoar(tmp_path: Path) -> Iterator[Path]:
    """A folder whose `opensoar` package stands in for the installed OpenSOAR
    (found before kubesoar's alias, as an installed package would be)."""
    saved = {n: m for n, m in sys.modules.items() if n == "opensoar" or n.startswith("opensoar.")}
    for name in saved:
        del sys.modules[name]
    package = tmp_path / "src" / "opensoar"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "_REGISTRY = {}\n"
        "def playbook(trigger=None, **kw):\n"
        "    def deco(f):\n        _REGISTRY[f.__name__] = f\n        return f\n"
        "    return deco\n"
    )
    yield tmp_path / "src"
    for name in [n for n in sys.modules if n == "opensoar" or n.startswith("opensoar.")]:
        del sys.modules[name]
    sys.modules.update(saved)
    sys.modules.pop("uses_real_opensoar", None)
    while str((tmp_path / "src").resolve()) in sys.path:
        sys.path.remove(str((tmp_path / "src").resolve()))


def test_a_playbook_on_the_real_opensoar_is_refused(real_opensoar: Path) -> None:
    path = real_opensoar / "uses_real_opensoar.py"
    path.write_text(
        "from opensoar import playbook\n\n@playbook('webhook')\nasync def x(a):\n    return 1\n"
    )
    loaded = load_target(str(path))
    assert loaded.error is not None and not loaded.entry_points
    assert "imports the real OpenSOAR package" in loaded.error.message
    assert "uninstall opensoar" in loaded.error.message


def test_a_folder_loads_every_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "os_folder_pbs"
    (folder / "nested").mkdir(parents=True)
    (folder / "first_pb.py").write_text(
        "from opensoar import playbook\n@playbook(trigger='webhook')\nasync def one(a):\n"
        "    return 1\n"
    )
    (folder / "nested" / "second_pb.py").write_text(
        "from kubesoar import playbook\n@playbook('webhook')\nasync def two(a):\n    return 2\n"
    )
    (folder / "_helpers.py").write_text("raise RuntimeError('private modules are not loaded')\n")
    (folder / "test_first.py").write_text("raise RuntimeError('tests are not loaded')\n")
    alert = tmp_path / "alert.json"
    alert.write_text(json.dumps({"severity": "urgent", "title": "t"}))
    try:
        assert main_match([str(folder), "--alert", str(alert), "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert sorted(r["name"] for r in rows) == ["one", "two"]
        assert all(r["matches"] for r in rows)
    finally:
        for name in ["first_pb", "nested", "nested.second_pb"]:
            sys.modules.pop(name, None)
        while str(folder.resolve()) in sys.path:
            sys.path.remove(str(folder.resolve()))


def test_no_entry_points_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    plain = tmp_path / "no_entries_here.py"
    plain.write_text("x = 1\n")
    alert = tmp_path / "alert.json"
    alert.write_text("{}")
    try:
        assert main_run([str(empty), "--alert", str(alert)]) == 2
        assert "no Python modules in the folder" in capsys.readouterr().err
        assert main_match([str(plain), "--alert", str(alert)]) == 2
        assert "defines no entry points" in capsys.readouterr().err
    finally:
        sys.modules.pop("no_entries_here", None)


def test_severity_leniency_only_for_opensoar_modules(
    write_module: Callable[[str, str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    theirs = write_module(
        "lenient_pb",
        "from opensoar import playbook\n"
        "@playbook(trigger='webhook')\nasync def sev(a):\n    return a.severity\n",
    )
    ours = write_module(
        "strict_pb",
        "from kubesoar import playbook\n"
        "@playbook('webhook')\nasync def sev2(a):\n    return a.severity\n",
    )
    alert = tmp_path / "alert.json"
    alert.write_text(json.dumps({"severity": "urgent"}))
    assert main_run([str(theirs), "--alert", str(alert), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["result"] == "medium"
    assert main_run([str(ours), "--alert", str(alert)]) == 2
    assert "unknown severity 'urgent'" in capsys.readouterr().err
    assert Alert(severity="info").severity == "info"  # kubesoar's own model is unchanged


SYNC_AND_DATABASE = """
from opensoar import playbook

@playbook(trigger="webhook", conditions={"tags": "sync"})
def plain(alert):
    return alert.severity

@playbook(trigger="webhook", conditions={"tags": "db"})
async def uses_database(alert):
    from sqlalchemy import select
    return select
"""


async def test_sync_entry_points_and_the_database_note(
    write_module: Callable[[str, str], Path],
) -> None:
    path = write_module("sync_and_db", SYNC_AND_DATABASE)
    run = await run_playbook(path, make_alert(tags=["sync"], severity="info"))
    assert run.result_of("plain") == "low"
    if importlib.util.find_spec("sqlalchemy") is not None:
        pytest.skip("SQLAlchemy is installed here; opensoar.db's own error applies then")
    run = await run_playbook(path, make_alert(tags=["db"]))
    [outcome] = run.results
    assert "No module named 'sqlalchemy'" in outcome["error"]
    assert "update_current_alert" in outcome["error"]
