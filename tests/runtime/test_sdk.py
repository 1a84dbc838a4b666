"""The SDK as authors see it: decorator metadata and OpenSOAR defaults, the
Alert model, entry-point selection and ordering, actions with retries,
backoff and timeouts (every attempt recorded), run contexts, secrets, the
loader's error reports and the OpenSOAR import alias."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import kubesoar
import pytest
from kubesoar import Alert, RunContext, SecretNotFound, action, current_context, playbook
from kubesoar._engine import Engine, UnknownEntryPoints
from kubesoar._loader import load_module, load_target
from kubesoar._sdk import entry_points_of, forget_module


def test_public_surface() -> None:
    assert sorted(kubesoar.__all__) == sorted(
        [
            "IOCs",
            "Alert",
            "Approval",
            "ApprovalDenied",
            "ApprovalUnavailable",
            "Condition",
            "ConditionError",
            "RunContext",
            "SecretNotFound",
            "Secrets",
            "Severity",
            "action",
            "compile_conditions",
            "current_context",
            "normalize_severity",
            "playbook",
        ]
    )
    for name in kubesoar.__all__:
        assert getattr(kubesoar, name) is not None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("HIGH", "high"),
        (" Critical ", "critical"),
        ("informational", "info"),
        ("warning", "medium"),
        (0, "info"),
        (3, "high"),
        (9, "critical"),
        ("2", "medium"),
    ],
)
def test_alert_severity_is_normalised(given: Any, expected: str) -> None:
    assert Alert(severity=given).severity == expected


def test_alert_rejects_unknown_severity() -> None:
    with pytest.raises(ValueError, match="unknown severity 'urgent'"):
        Alert(severity="urgent")


def test_alert_accepts_camel_case_and_keeps_extra_fields() -> None:
    alert = Alert.model_validate(
        {"sourceIp": "10.0.0.1", "ruleName": "r", "category": "x", "iocs": {"ips": ["1.1.1.1"]}}
    )
    assert alert.source_ip == "10.0.0.1" and alert.rule_name == "r"
    match = alert.as_match_dict()
    assert match["category"] == "x"
    assert match["iocs"]["ips"] == ["1.1.1.1"]
    assert isinstance(match["received_at"], str)


def _module_name(tag: str) -> str:
    return f"sdk_test_{tag}"


def test_playbook_defaults_follow_opensoar() -> None:
    forget_module(__name__)

    @playbook("webhook")
    async def triage(alert: Alert) -> None:
        """Triage everything."""

    (entry,) = [e for e in entry_points_of(__name__) if e.name == "triage"]
    assert entry.describe() == {
        "name": "triage",
        "trigger": "webhook",
        "conditions": {},
        "order": 1000,
        "priority": 0,
        "description": "Triage everything.",
        "fields": "kubesoar",
    }
    assert entry.wants_context is False
    forget_module(__name__)


def test_malformed_conditions_fail_at_decoration() -> None:
    with pytest.raises(kubesoar.ConditionError, match=r"conditions.severity.\$gtt"):
        playbook(conditions={"severity": {"$gtt": "high"}})


def test_duplicate_entry_point_names_are_an_error() -> None:
    forget_module(__name__)

    @playbook(name="same")
    async def one(alert: Alert) -> None: ...

    @playbook(name="same")
    async def two(alert: Alert) -> None: ...

    with pytest.raises(ValueError, match="two entry points are named 'same'"):
        entry_points_of(__name__)
    forget_module(__name__)


def _engine(*entries: Any, **kwargs: Any) -> Engine:
    return Engine([getattr(f, "__kubesoar_playbook__") for f in entries], **kwargs)


async def test_selection_by_conditions_trigger_and_order() -> None:
    calls: list[str] = []

    @playbook("webhook", conditions={"severity": ["high", "critical"]}, order=20)
    async def second(alert: Alert) -> str:
        calls.append("second")
        return "2"

    @playbook("webhook", order=10)
    def first(alert: Alert) -> str:  # sync entry points run in a thread
        calls.append("first")
        return "1"

    @playbook("splunk", order=5)
    async def splunk_only(alert: Alert) -> None:
        calls.append("splunk")

    @playbook("webhook", conditions={"tags": "never"})
    async def unmatched(alert: Alert) -> None:
        calls.append("unmatched")

    engine = _engine(second, first, splunk_only, unmatched)
    engine.entry_points.sort(key=lambda e: (e.order, e.sequence))
    alert = Alert(severity="critical", source="elastic")
    selected = engine.select(alert, None)
    assert [e.name for e in selected] == ["first", "second"]
    assert [e.name for e in engine.select(Alert(source="splunk"), None)] == [
        "splunk_only",
        "first",
    ]
    run = await engine.execute(engine.create_run(alert, selected))
    assert calls == ["first", "second"]
    assert run.status == "succeeded"
    assert [r["result"] for r in run.results] == ["1", "2"]
    # Named selection ignores conditions; unknown names are refused.
    assert [e.name for e in engine.select(Alert(), ["unmatched"])] == ["unmatched"]
    with pytest.raises(UnknownEntryPoints, match="nope"):
        engine.select(alert, ["nope", "first"])


async def test_action_retries_with_backoff_and_records_every_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay: float) -> None:
        sleeps.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", recording_sleep)
    failures = {"left": 2}

    @action(name="flaky.lookup", retries=3, retry_backoff=2.0)
    async def lookup(ip: str) -> dict[str, str]:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError(f"refused for {ip}")
        return {"ip": ip, "verdict": "clean"}

    @playbook()
    async def enrich(alert: Alert, ctx: RunContext) -> dict[str, str]:
        assert current_context() is ctx
        return await lookup("10.0.0.1")

    engine = _engine(enrich)
    run = await engine.execute(engine.create_run(Alert(), engine.entry_points))
    assert run.status == "succeeded"
    assert run.result_of("enrich") == {"ip": "10.0.0.1", "verdict": "clean"}
    assert [(a["action"], a["attempt"], a["status"]) for a in run.attempts] == [
        ("flaky.lookup", 1, "failed"),
        ("flaky.lookup", 2, "failed"),
        ("flaky.lookup", 3, "succeeded"),
    ]
    assert "ConnectionError: refused for 10.0.0.1" in run.attempts[0]["error"]
    assert run.attempts[2]["error"] is None
    assert all(a["playbook"] == "enrich" for a in run.attempts)
    assert sleeps == [2.0, 4.0]  # retry_backoff ** attempt


async def test_action_timeout_and_exhausted_retries_fail_the_run() -> None:
    @action(timeout=0.01, retries=1, retry_backoff=0.0)
    async def hang() -> None:
        await asyncio.Event().wait()

    @playbook(order=1)
    async def stuck(alert: Alert) -> None:
        await hang()

    @playbook(order=2)
    async def after(alert: Alert) -> str:
        return "still runs"

    engine = _engine(stuck, after)
    run = await engine.execute(engine.create_run(Alert(), engine.entry_points))
    assert run.status == "failed"
    assert [(a["attempt"], a["status"]) for a in run.attempts] == [(1, "timeout"), (2, "timeout")]
    assert run.attempts[0]["error"] == "timed out after 0.01s"
    assert (
        run.results[0]["status"] == "failed"
        and run.results[0]["error"] == "TimeoutError: action hang timed out after 0.01s"
    )
    assert run.results[1] == {**run.results[1], "status": "succeeded", "result": "still runs"}
    assert engine.totals.failed == 1 and engine.totals.last_error.startswith("stuck:")


async def test_entry_point_timeout() -> None:
    @playbook(timeout=0.01)
    async def slow(alert: Alert) -> None:
        await asyncio.Event().wait()

    engine = _engine(slow, default_timeout=60)
    run = await engine.execute(engine.create_run(Alert(), engine.entry_points))
    assert run.results[0]["status"] == "timeout"
    assert run.results[0]["error"] == "timed out after 0.01s"
    assert run.status == "failed"


async def test_results_are_json_safe_and_history_is_bounded() -> None:
    @playbook()
    async def odd(alert: Alert) -> Any:
        return {"alert": alert, "set": {2, 1}, "obj": object(), "big": "x" * 100_000}

    engine = _engine(odd, history=3)
    runs = [await engine.execute(engine.create_run(Alert(), engine.entry_points)) for _ in range(5)]
    result = runs[-1].result_of("odd")
    assert result["truncated"] is True and result["bytes"] > 100_000
    assert engine.get(runs[0].id) is None and engine.get(runs[-1].id) is runs[-1]
    assert engine.totals.total == 5 and engine.totals.succeeded == 5


async def test_correlation_id_in_every_log_line(caplog: pytest.LogCaptureFixture) -> None:
    @action()
    async def noisy() -> None:
        logging.getLogger("integration.lib").warning("from a library")

    @playbook()
    async def talk(alert: Alert, ctx: RunContext) -> None:
        ctx.logger.warning("from the playbook")
        await noisy()

    handler_filter = kubesoar._context.CorrelationFilter()
    caplog.handler.addFilter(handler_filter)
    engine = _engine(talk)
    run = engine.create_run(Alert(), engine.entry_points, correlation_id="corr-42")
    with caplog.at_level(logging.WARNING):
        await engine.execute(run)
    lines = [r for r in caplog.records if r.getMessage().startswith("from")]
    assert len(lines) == 2
    assert {getattr(r, "correlation_id") for r in lines} == {"corr-42"}
    assert {getattr(r, "run_id") for r in lines} == {run.id}


async def test_gather_limited_bounds_concurrency_and_keeps_order() -> None:
    ctx = RunContext(run_id="r", correlation_id="c")
    in_flight = 0
    peak = 0

    async def work(i: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        in_flight -= 1
        return i * i

    results = await ctx.gather_limited([work(i) for i in range(10)], limit=3)
    assert results == [i * i for i in range(10)]
    assert peak == 3
    await ctx.aclose()


def test_secrets_read_from_files(tmp_path: Path) -> None:
    (tmp_path / "virustotal").mkdir()
    (tmp_path / "virustotal" / "api_key").write_text("s3cret\n")
    ctx = RunContext(run_id="r", correlation_id="c", secrets_dir=tmp_path)
    assert ctx.secret("virustotal", "api_key") == "s3cret"
    assert ctx.secrets.names() == ["virustotal"]
    assert ctx.secrets.keys("virustotal") == ["api_key"]
    with pytest.raises(SecretNotFound, match="secret 'virustotal' has no key 'token'"):
        ctx.secret("virustotal", "token")
    with pytest.raises(ValueError, match="invalid secret name"):
        ctx.secret("..", "api_key")
    with pytest.raises(ValueError, match="invalid key"):
        ctx.secret("virustotal", "../../etc/passwd")


def test_loader_reports_syntax_error_with_file_and_line(write_module: Any) -> None:
    path = write_module("broken_syntax", "from kubesoar import playbook\n\ndef f(:\n    pass\n")
    loaded = load_module("broken_syntax", path.parent)
    assert not loaded.ok
    assert loaded.error is not None
    assert loaded.error.to_json() == {
        "type": "SyntaxError",
        "message": "invalid syntax",
        "file": "broken_syntax.py",
        "line": 3,
    }


def test_loader_reports_import_exception_at_the_authors_line(write_module: Any) -> None:
    write_module("helper_mod", "def explode():\n    raise RuntimeError('no config')\n")
    path = write_module(
        "boom_at_import",
        """\
        from kubesoar import playbook
        import helper_mod

        @playbook()
        async def fine(alert):
            return 1

        helper_mod.explode()
        """,
    )
    loaded = load_module("boom_at_import", path.parent)
    assert loaded.error is not None
    assert loaded.error.type == "RuntimeError"
    assert loaded.error.message == "no config"
    # The innermost frame in the author's files: the helper's raise.
    assert (loaded.error.file, loaded.error.line) == ("helper_mod.py", 2)


def test_loader_reports_bad_conditions_at_the_decorator(write_module: Any) -> None:
    path = write_module(
        "bad_conditions",
        """\
        from kubesoar import playbook

        @playbook(conditions={"severity": {"$bogus": 1}})
        async def p(alert):
            pass
        """,
    )
    loaded = load_module("bad_conditions", path.parent)
    assert loaded.error is not None
    assert loaded.error.type == "ConditionError"
    assert "conditions.severity.$bogus" in loaded.error.message
    assert (loaded.error.file, loaded.error.line) == ("bad_conditions.py", 3)


def test_loader_missing_module(tmp_path: Path) -> None:
    loaded = load_module("does_not_exist_anywhere", tmp_path)
    assert loaded.error is not None and loaded.error.type == "ModuleNotFoundError"


def test_opensoar_playbooks_load_unchanged(write_module: Any) -> None:
    path = write_module(
        "legacy_opensoar",
        """\
        from opensoar import action, playbook, Alert

        @action(name="enrich_ip", timeout=30, retries=2, retry_backoff=2.0)
        async def enrich_ip(ip: str) -> dict:
            return {"ip": ip}

        @playbook(trigger="webhook", conditions={"severity": ["high", "critical"]})
        async def triage_high_severity(alert: Alert):
            return [await enrich_ip(ip) for ip in alert.iocs.ips]
        """,
    )
    loaded = load_target(str(path))
    assert loaded.ok, loaded.error
    assert [e.name for e in loaded.entry_points] == ["triage_high_severity"]
    assert loaded.entry_points[0].order == 1000
