"""`ctx.approval` in the runtime: park, replay the decision, deny, and the test harness.

The router's side (parking in the database, deciding, expiring, resuming on a pod) is
tested with real PostgreSQL and runtime processes in tests/router/test_approvals.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubesoar import Alert, Approval, ApprovalDenied, action, playbook
from kubesoar._engine import Engine
from kubesoar._journal import ActionJournal
from kubesoar._sdk import ENTRY_ATTRIBUTE
from kubesoar.contracts import http
from kubesoar.testing import make_alert, run_playbook

effects: list[str] = []


@pytest.fixture(autouse=True)
def _clear_effects() -> None:
    effects.clear()


@action()
async def isolate(host: str) -> dict[str, str]:
    effects.append(f"isolate {host}")
    return {"isolated": host}


@playbook(trigger="webhook", order=10)
async def contain(alert: Alert, ctx: Any) -> dict[str, Any]:
    before = await isolate("sandbox")
    try:
        decision = await ctx.approval("Isolate web-1?", {"host": "web-1"}, ttl_seconds=60)
    except Exception as exc:  # a denial is an Exception; the wait must not be
        effects.append(f"caught {type(exc).__name__}")
        raise
    after = await isolate("web-1")
    return {"before": before, "after": after, "by": decision.decided_by}


@playbook(trigger="webhook", order=20)
async def notify(alert: Alert, ctx: Any) -> str:
    effects.append("notify")
    return "sent"


def _engine() -> Engine:
    return Engine([getattr(contain, ENTRY_ATTRIBUTE), getattr(notify, ENTRY_ATTRIBUTE)])


async def _dispatched_run(engine: Engine, journal: list[http.JournalEntry]) -> Any:
    """A run as the router dispatches it: with a journal (reports go nowhere here)."""
    run = engine.create_run(make_alert(title="x"), engine.entry_points)

    async def keep(entry: http.JournalEntry) -> bool:
        journal.append(entry)
        return True

    run.journal = ActionJournal(journal, keep)
    return await engine.execute(run)


async def test_a_dispatched_run_parks_at_the_approval_and_runs_nothing_after_it() -> None:
    journal: list[http.JournalEntry] = []
    run = await _dispatched_run(_engine(), journal)
    assert run.status == "waiting"
    assert run.approval == http.ApprovalRequest(
        seq=1, title="Isolate web-1?", details={"host": "web-1"}, ttl_seconds=60
    )
    # The catch-all saw nothing; the later entry point waits for the decision too.
    assert effects == ["isolate sandbox"]
    assert [r["name"] for r in run.results] == ["contain"]
    result = run.to_result()
    assert (result.status, result.approval) == ("waiting", run.approval)
    record = http.RunRecord.model_validate(run.to_json())  # GET /v1/runs/{id} at the pod
    assert (record.status, record.approval) == ("waiting", run.approval)
    assert [entry.action for entry in journal] == ["isolate"]


async def test_a_resumed_run_replays_its_actions_and_reads_the_decision() -> None:
    decided = http.ApprovalDecision(
        approved=True, reason="Approved", decided_by="alice", decided_at="2026-12-01T10:00:00Z"
    )
    journal = [
        http.JournalEntry(seq=0, action="isolate", status="succeeded", result={"isolated": "x"}),
        http.JournalEntry(
            seq=1, action=http.APPROVAL_ACTION, status="succeeded", result=http.dump(decided)
        ),
    ]
    run = await _dispatched_run(_engine(), list(journal))
    assert run.status == "succeeded", run.error
    assert run.result_of("contain") == {
        "before": {"isolated": "x"},  # the journal's, not executed again
        "after": {"isolated": "web-1"},
        "by": "alice",
    }
    assert effects == ["isolate web-1", "notify"]


async def test_a_refused_decision_ends_the_run_denied_and_later_entry_points_still_run() -> None:
    refused = http.ApprovalDecision(approved=False, reason="Denied", decided_by="bob", comment="no")
    journal = [
        http.JournalEntry(
            seq=1, action=http.APPROVAL_ACTION, status="succeeded", result=http.dump(refused)
        )
    ]
    engine = _engine()
    run = await _dispatched_run(engine, journal)
    assert run.status == "denied"
    assert "ApprovalDenied: approval 'Isolate web-1?' denied by bob: no" in (run.error or "")
    assert effects == ["isolate sandbox", "caught ApprovalDenied", "notify"]
    assert run.to_result().status == "denied"
    assert (engine.totals.total, engine.totals.failed, engine.totals.succeeded) == (1, 0, 0)


async def test_the_test_harness_decides_as_told() -> None:
    approved = await run_playbook(contain, make_alert(title="x"), approvals=True)
    assert approved.status == "succeeded" and approved.result_of("contain")["by"] == "test"
    denied = await run_playbook(contain, make_alert(title="x"), approvals=False)
    assert denied.status == "denied"
    asked: list[Any] = []

    async def decide(request: Any) -> Approval:
        asked.append((request.title, request.details))
        return Approval(approved=True, reason="Approved", decided_by="carol")

    chosen = await run_playbook(contain, make_alert(title="x"), approvals=decide)
    assert chosen.result_of("contain")["by"] == "carol"
    assert asked == [("Isolate web-1?", {"host": "web-1"})]


async def test_without_a_decider_the_approval_fails_and_says_why() -> None:
    run = await run_playbook(contain, make_alert(title="x"))
    assert run.status == "failed"
    assert "ApprovalUnavailable" in (run.error or "") and "approvals=" in (run.error or "")


@pytest.mark.parametrize(
    ("title", "details", "ttl", "problem"),
    [
        ("", None, 60, "title"),
        ("ok", None, 0, "ttl_seconds"),
        ("ok", None, 8 * 24 * 3600, "ttl_seconds"),
        ("ok", "x" * 20000, 60, "details"),
    ],
)
async def test_bad_approval_requests_are_refused_with_the_reason(
    title: str, details: Any, ttl: float, problem: str
) -> None:
    @playbook(trigger="webhook")
    async def asks(alert: Alert, ctx: Any) -> None:
        await ctx.approval(title, details, ttl_seconds=ttl)

    run = await run_playbook(asks, make_alert(title="x"), approvals=True)
    assert run.status == "failed" and problem in (run.error or "")


def test_approval_denied_is_importable_from_kubesoar() -> None:
    assert ApprovalDenied.__module__ == "kubesoar"
