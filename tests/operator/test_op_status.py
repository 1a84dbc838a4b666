"""Conditions and the status summary: kstatus shape, lastTransitionTime kept while unchanged,
reasons for each failure, Events on transitions, load errors with file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubesoar.contracts.http import Report
from kubesoar_operator import conditions as c
from kubesoar_operator.report import PodReport, PodState, Summary, aggregate
from kubesoar_operator.status import Observation, RolloutState, SourceState, summarize

SHA = "a" * 40
SOURCE = SourceState("https://g/a.git", f"main@sha1:{SHA}", SHA, "d" * 64, "2024-01-01T00:00:00Z")


def _rollout(ready: int = 1, desired: int = 1, commit: str = SHA) -> RolloutState:
    return RolloutState(
        exists=True, desired=desired, commit=commit, revision=f"main@sha1:{commit}",
        generation_observed=True, replicas=desired, updated=desired, ready=ready,
    )  # fmt: skip


def _ready_summary() -> Summary:
    return Summary(entry_points=[{"name": "triage"}], runs={"total": 0}, reports_at_commit=1)


def test_merge_keeps_transition_time_while_status_is_unchanged() -> None:
    first = c.merge([], [c.make(c.READY, False, c.PROGRESSING, "x", 1)], now="T1")
    second = c.merge(first, [c.make(c.READY, False, c.ROLLING_OUT, "y", 1)], now="T2")
    third = c.merge(second, [c.make(c.READY, True, c.SUCCEEDED, "z", 1)], now="T3")
    assert first[0]["lastTransitionTime"] == "T1"
    assert second[0]["lastTransitionTime"] == "T1" and second[0]["reason"] == c.ROLLING_OUT
    assert third[0]["lastTransitionTime"] == "T3"


def test_transient_conditions_only_present_while_true() -> None:
    merged = c.merge([], [c.make(c.STALLED, False, "x", "", 1), c.make(c.READY, True, "y", "", 1)])
    assert [m["type"] for m in merged] == [c.READY]


def test_ready_when_source_and_runtime_are() -> None:
    obs = Observation(1, source=SOURCE, rollout=_rollout(), summary=_ready_summary())
    status, events = summarize(obs, None)
    assert c.is_true(status["conditions"], c.READY)
    assert c.is_true(status["conditions"], c.SOURCE_READY)
    assert c.is_true(status["conditions"], c.RUNTIME_READY)
    assert c.find(status["conditions"], c.RECONCILING) is None
    assert status["source"]["revision"] == f"main@sha1:{SHA}"
    assert status["source"]["digest"] == "sha256:" + "d" * 64
    assert status["observedGeneration"] == 1 and status["playbooks"] == [{"name": "triage"}]
    assert [e.reason for e in events] == ["NewRevision", "Ready"]
    _, again = summarize(obs, status)
    assert again == []  # no repeated Events


def test_rolling_out_is_reconciling() -> None:
    obs = Observation(2, source=SOURCE, rollout=_rollout(ready=0), summary=Summary())
    status, _ = summarize(obs, None)
    ready = c.find(status["conditions"], c.READY)
    assert ready["status"] == "False" and ready["reason"] == c.ROLLING_OUT
    assert c.is_true(status["conditions"], c.RECONCILING)


def test_an_old_revision_running_is_not_ready() -> None:
    obs = Observation(2, source=SOURCE, rollout=_rollout(commit="b" * 40), summary=_ready_summary())
    status, _ = summarize(obs, None)
    assert c.find(status["conditions"], c.RUNTIME_READY)["reason"] == c.ROLLING_OUT


def test_source_failure_keeps_runtime_view_and_warns() -> None:
    obs = Observation(
        1, source_error=(c.AUTHENTICATION_FAILED, "http://g/a.git: denied"),
        rollout=_rollout(), summary=_ready_summary(),
    )  # fmt: skip
    status, events = summarize(obs, None)
    ready = c.find(status["conditions"], c.READY)
    assert (ready["status"], ready["reason"]) == ("False", c.AUTHENTICATION_FAILED)
    assert "source" not in status  # the last good source stays as it was
    assert [(e.warning, e.reason) for e in events] == [(True, "SourceFailed")]


def test_invalid_spec_stalls_and_keeps_other_conditions() -> None:
    good, _ = summarize(
        Observation(1, source=SOURCE, rollout=_rollout(), summary=_ready_summary()), None
    )
    status, events = summarize(Observation(2, spec_error="spec.module: bad"), good)
    assert c.is_true(status["conditions"], c.STALLED)
    assert c.find(status["conditions"], c.READY)["reason"] == c.INVALID_SPEC
    assert c.is_true(status["conditions"], c.SOURCE_READY)  # kept from before
    assert [e.reason for e in events] == ["InvalidSpec"]


def test_load_error_shows_type_file_and_line() -> None:
    pod = PodState("p-1", "127.0.0.9", False, SHA)
    report = {
        "commit": SHA,
        "entryPoints": [],
        "loadError": {
            "type": "SyntaxError",
            "message": "invalid syntax",
            "file": "triage.py",
            "line": 3,
        },
        "runs": {"total": 2, "succeeded": 1, "failed": 1, "lastRunTime": "t", "lastError": "boom"},
    }
    summary = aggregate(
        [PodReport(pod, report=Report.model_validate(report)), PodReport(pod, error="down")], SHA
    )
    assert summary.runs == {
        "total": 2,
        "succeeded": 1,
        "failed": 1,
        "lastRunTime": "t",
        "lastError": "boom",
    }
    status, _ = summarize(
        Observation(1, source=SOURCE, rollout=_rollout(ready=0), summary=summary), None
    )
    runtime = c.find(status["conditions"], c.RUNTIME_READY)
    assert runtime["reason"] == c.LOAD_FAILED
    assert runtime["message"] == "SyntaxError: invalid syntax (triage.py:3)"
    assert status["loadError"]["line"] == 3


def test_reports_of_old_revisions_do_not_define_entry_points() -> None:
    pod = PodState("p-1", "127.0.0.9", True, "b" * 40)
    report = {"commit": "b" * 40, "entryPoints": [{"name": "old"}], "runs": {"total": 5}}
    summary = aggregate([PodReport(pod, report=Report.model_validate(report))], SHA)
    assert summary.entry_points == [] and summary.reports_at_commit == 0
    assert summary.runs["total"] == 5


# --- kstatus: Reconciling while retrying, Stalled only when retrying cannot help ----------
def _kinds(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {x["type"]: (x["status"], x["reason"]) for x in status["conditions"]}


def test_a_failure_that_may_heal_is_reconciling_with_retry() -> None:
    obs = Observation(
        1, source_error=(c.GIT_OPERATION_FAILED, "http://g/a.git: connection refused"),
        rollout=_rollout(), summary=_ready_summary(),
    )  # fmt: skip
    status, _ = summarize(obs, None)
    kinds = _kinds(status)
    assert kinds[c.READY] == ("False", c.GIT_OPERATION_FAILED)
    assert kinds[c.RECONCILING] == ("True", c.PROGRESSING_WITH_RETRY)
    assert c.STALLED not in kinds
    ready, reconciling = (
        c.find(status["conditions"], c.READY),
        c.find(status["conditions"], c.RECONCILING),
    )
    assert ready["message"] == "http://g/a.git: connection refused"  # says what is wrong
    assert reconciling["message"] == (
        "retrying after GitOperationFailed: http://g/a.git: connection refused"
    )


def test_crash_looping_pods_are_reconciling_with_retry() -> None:
    pod = PodState("p-1", "127.0.0.9", False, SHA, problem="container runtime: CrashLoopBackOff")
    rollout = RolloutState(
        exists=True, desired=1, commit=SHA, revision=f"main@sha1:{SHA}",
        generation_observed=True, replicas=1, updated=1, ready=0, pods=(pod,),
    )  # fmt: skip
    status, events = summarize(Observation(1, source=SOURCE, rollout=rollout), None)
    kinds = _kinds(status)
    assert kinds[c.READY] == ("False", c.RUNTIME_UNAVAILABLE)
    assert kinds[c.RECONCILING] == ("True", c.PROGRESSING_WITH_RETRY)
    assert c.STALLED not in kinds
    assert "CrashLoopBackOff" in c.find(status["conditions"], c.READY)["message"]
    assert [e.reason for e in events] == ["NewRevision", "RuntimeFailed"]


def test_waiting_for_the_runtime_is_reconciling_progressing() -> None:
    obs = Observation(1, source=SOURCE, rollout=RolloutState(exists=False, desired=1))
    kinds = _kinds(summarize(obs, None)[0])
    assert kinds[c.RECONCILING] == ("True", c.PROGRESSING)
    assert kinds[c.READY] == ("False", c.PROGRESSING)


def _load_failed_summary() -> Summary:
    load_error = {"type": "SyntaxError", "message": "invalid syntax", "file": "t.py", "line": 3}
    return Summary(load_error=load_error, reports_at_commit=1)


def test_a_load_error_is_stalled_not_reconciling() -> None:
    obs = Observation(1, source=SOURCE, rollout=_rollout(ready=0), summary=_load_failed_summary())
    status, events = summarize(obs, None)
    kinds = _kinds(status)
    assert kinds[c.READY] == ("False", c.LOAD_FAILED)
    assert kinds[c.STALLED] == ("True", c.LOAD_FAILED)
    assert c.RECONCILING not in kinds
    stalled = c.find(status["conditions"], c.STALLED)
    assert stalled["message"] == "SyntaxError: invalid syntax (t.py:3)"
    # One Warning for it (RuntimeFailed), not an InvalidSpec one as well.
    assert [e.reason for e in events] == ["NewRevision", "RuntimeFailed"]


def test_a_load_error_while_git_is_retried_is_reconciling() -> None:
    obs = Observation(
        1, source_error=(c.GIT_OPERATION_FAILED, "down"), rollout=_rollout(ready=0),
        summary=_load_failed_summary(),
    )  # fmt: skip
    kinds = _kinds(summarize(obs, None)[0])
    assert kinds[c.RECONCILING] == ("True", c.PROGRESSING_WITH_RETRY)
    assert c.STALLED not in kinds


def test_a_new_revision_after_a_load_error_clears_stalled() -> None:
    broken, _ = summarize(
        Observation(1, source=SOURCE, rollout=_rollout(ready=0), summary=_load_failed_summary()),
        None,
    )
    rolling, _ = summarize(
        Observation(1, source=SOURCE, rollout=_rollout(ready=0), summary=Summary()), broken
    )
    kinds = _kinds(rolling)
    assert c.STALLED not in kinds and kinds[c.RECONCILING] == ("True", c.ROLLING_OUT)


def test_invalid_spec_is_stalled_without_reconciling() -> None:
    rolling, _ = summarize(Observation(1, source=SOURCE, rollout=_rollout(ready=0)), None)
    status, _ = summarize(Observation(2, spec_error="spec.module: bad"), rolling)
    kinds = _kinds(status)
    assert kinds[c.STALLED] == ("True", c.INVALID_SPEC)
    assert c.RECONCILING not in kinds


def test_every_failing_reason_has_a_kind() -> None:
    """Each reason is declared once with a meaning; the new one included."""
    assert c.PROGRESSING_WITH_RETRY in c.REASONS and c.SUSPENDED in c.REASONS
    assert c.IN_PROGRESS <= set(c.REASONS) and c.TERMINAL <= set(c.REASONS)
    assert not c.IN_PROGRESS & c.TERMINAL


# --- suspend --------------------------------------------------------------------------
def test_suspend_keeps_ready_status_and_says_suspended() -> None:
    good, _ = summarize(
        Observation(1, source=SOURCE, rollout=_rollout(), summary=_ready_summary()), None
    )
    ready_before = c.find(good["conditions"], c.READY)
    status, events = summarize(Observation(2, suspended=True), good)
    ready = c.find(status["conditions"], c.READY)
    assert (ready["status"], ready["reason"]) == ("True", c.SUSPENDED)
    assert ready["lastTransitionTime"] == ready_before["lastTransitionTime"]
    assert f"running main@sha1:{SHA}" in ready["message"] and "suspend" in ready["message"]
    assert c.is_true(status["conditions"], c.SOURCE_READY)  # the last view is kept
    assert status["observedGeneration"] == 2 and "source" not in status
    assert [(e.warning, e.reason) for e in events] == [(False, "Suspended")]
    again, repeated = summarize(Observation(2, suspended=True), {**good, **status})
    assert repeated == [] and c.find(again["conditions"], c.READY) == ready

    resumed, events = summarize(
        Observation(3, source=SOURCE, rollout=_rollout(), summary=_ready_summary()),
        {**good, **status},
    )
    assert _kinds(resumed)[c.READY] == ("True", c.SUCCEEDED)
    assert [e.reason for e in events] == ["Resumed"]


def test_suspend_drops_reconciling_and_stalled() -> None:
    failing, _ = summarize(
        Observation(1, source_error=(c.GIT_OPERATION_FAILED, "down"), rollout=_rollout()), None
    )
    assert c.is_true(failing["conditions"], c.RECONCILING)
    status, _ = summarize(Observation(1, suspended=True, requested_at="x"), failing)
    kinds = _kinds(status)
    assert kinds[c.READY] == ("False", c.SUSPENDED)
    assert c.RECONCILING not in kinds and c.STALLED not in kinds
    assert "GitOperationFailed: down" in c.find(status["conditions"], c.READY)["message"]
    assert "lastHandledReconcileAt" not in status  # acted on once resumed


def test_every_reason_is_documented_in_the_reference() -> None:
    reference = Path(__file__).resolve().parents[2] / "docs" / "reference" / "playbook.md"
    text = reference.read_text()
    assert [r for r in c.PLAYBOOK_REASONS if f"| `{r}` |" not in text] == []


def test_runs_that_ran_out_of_attempts_are_a_warning_event() -> None:
    from kubesoar_operator.status import _transitions

    before = {"runs": {"total": 3, "dead": 0}}
    after = {"runs": {"total": 5, "dead": 2, "lastError": "lease ran out on attempt 3"}}
    [event] = _transitions(before, after)
    assert event.warning and event.reason == "RunsDead"
    assert event.message == "2 runs ran out of attempts; last error: lease ran out on attempt 3"
    assert _transitions(after, after) == []  # once per change
    assert _transitions({"runs": {"total": 3}}, after) == []  # pods' counts know no dead runs
