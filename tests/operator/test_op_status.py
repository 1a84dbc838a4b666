"""Conditions and the status summary: kstatus shape, lastTransitionTime kept while unchanged,
reasons for each failure, Events on transitions, load errors with file and line."""

from __future__ import annotations

from kubesoar.operator import conditions as c
from kubesoar.operator.report import PodReport, PodState, Summary, aggregate
from kubesoar.operator.status import Observation, RolloutState, SourceState, summarise

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
    status, events = summarise(obs, None)
    assert c.is_true(status["conditions"], c.READY)
    assert c.is_true(status["conditions"], c.SOURCE_READY)
    assert c.is_true(status["conditions"], c.RUNTIME_READY)
    assert c.find(status["conditions"], c.RECONCILING) is None
    assert status["source"]["revision"] == f"main@sha1:{SHA}"
    assert status["source"]["digest"] == "sha256:" + "d" * 64
    assert status["observedGeneration"] == 1 and status["playbooks"] == [{"name": "triage"}]
    assert [e.reason for e in events] == ["NewRevision", "Ready"]
    _, again = summarise(obs, status)
    assert again == []  # no repeated Events


def test_rolling_out_is_reconciling() -> None:
    obs = Observation(2, source=SOURCE, rollout=_rollout(ready=0), summary=Summary())
    status, _ = summarise(obs, None)
    ready = c.find(status["conditions"], c.READY)
    assert ready["status"] == "False" and ready["reason"] == c.ROLLING_OUT
    assert c.is_true(status["conditions"], c.RECONCILING)


def test_an_old_revision_running_is_not_ready() -> None:
    obs = Observation(2, source=SOURCE, rollout=_rollout(commit="b" * 40), summary=_ready_summary())
    status, _ = summarise(obs, None)
    assert c.find(status["conditions"], c.RUNTIME_READY)["reason"] == c.ROLLING_OUT


def test_source_failure_keeps_runtime_view_and_warns() -> None:
    obs = Observation(
        1, source_error=(c.AUTHENTICATION_FAILED, "http://g/a.git: denied"),
        rollout=_rollout(), summary=_ready_summary(),
    )  # fmt: skip
    status, events = summarise(obs, None)
    ready = c.find(status["conditions"], c.READY)
    assert (ready["status"], ready["reason"]) == ("False", c.AUTHENTICATION_FAILED)
    assert "source" not in status  # the last good source stays as it was
    assert [(e.warning, e.reason) for e in events] == [(True, "SourceFailed")]


def test_invalid_spec_stalls_and_keeps_other_conditions() -> None:
    good, _ = summarise(
        Observation(1, source=SOURCE, rollout=_rollout(), summary=_ready_summary()), None
    )
    status, events = summarise(Observation(2, spec_error="spec.module: bad"), good)
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
    summary = aggregate([PodReport(pod, report=report), PodReport(pod, error="down")], SHA)
    assert summary.runs == {
        "total": 2,
        "succeeded": 1,
        "failed": 1,
        "lastRunTime": "t",
        "lastError": "boom",
    }
    status, _ = summarise(
        Observation(1, source=SOURCE, rollout=_rollout(ready=0), summary=summary), None
    )
    runtime = c.find(status["conditions"], c.RUNTIME_READY)
    assert runtime["reason"] == c.LOAD_FAILED
    assert runtime["message"] == "SyntaxError: invalid syntax (triage.py:3)"
    assert status["loadError"]["line"] == 3


def test_reports_of_old_revisions_do_not_define_entry_points() -> None:
    pod = PodState("p-1", "127.0.0.9", True, "b" * 40)
    report = {"commit": "b" * 40, "entryPoints": [{"name": "old"}], "runs": {"total": 5}}
    summary = aggregate([PodReport(pod, report=report)], SHA)
    assert summary.entry_points == [] and summary.reports_at_commit == 0
    assert summary.runs["total"] == 5
