"""The autoscaler's decision (autoscale.py), without a cluster: replicas follow queued and
running runs per pod within [minReplicas, maxReplicas], go up at once and down only
after idleSeconds without the need, hold one pod while a commit's entry points are
unknown, hold what they had while the queue cannot be read; `spec.scaling` is parsed and
validated; a reconcile renders the decision into the Deployment and `status.scale`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubesoar_operator import autoscale
from kubesoar_operator.autoscale import Autoscaler, Load, Memory, Policy, decide
from kubesoar_operator.reconcile import Reconciler
from kubesoar_operator.spec import InvalidSpec, parse_spec
from kubesoar_operator.status import Observation, RolloutState, SourceState, summarize
from op_fakes import FakeGit, FakeKube, playbook

POLICY = Policy(min_replicas=0, max_replicas=4, idle_seconds=60, runs_per_replica=8)


def run(policy: Policy, steps: list[tuple[float, Load | None]], *, learn: bool = False) -> list:
    """Decisions for (time, load) steps, each remembering the last."""
    memory, out = Memory(), []
    for now, load in steps:
        decision, memory = decide(policy, load, memory, now, learn=learn)
        out.append((decision.replicas, decision.reason))
    return out


def test_a_queued_run_at_zero_asks_for_one_pod_at_once() -> None:
    assert run(POLICY, [(0, Load()), (1, Load(queued=1))]) == [
        (0, autoscale.IDLE),
        (1, autoscale.BUSY),
    ]


def test_replicas_follow_queued_plus_running_per_pod_up_to_max() -> None:
    decisions = run(POLICY, [(0, Load(queued=9)), (1, Load(queued=10, running=14)),
                             (2, Load(queued=400))])  # fmt: skip
    assert decisions == [(2, autoscale.BUSY), (3, autoscale.BUSY), (4, autoscale.BUSY)]
    decision, _ = decide(POLICY, Load(queued=400), Memory(), 0)
    assert "(maxReplicas)" in decision.message and "400 queued" in decision.message


def test_scale_down_waits_idle_seconds_without_the_need_then_goes_to_min() -> None:
    steps = [
        (0, Load(queued=30)),  # 4 pods
        (30, Load(running=8)),  # 1 needed: 4 kept, cooling down
        (59, Load(running=8)),
        (61, Load(running=8)),  # 4 were last needed at 0: down to 1
        (100, Load()),  # idle, but 1 was needed at 61
        (120, Load()),
        (121, Load()),  # 60 s since the last run: zero
    ]
    assert run(POLICY, steps) == [
        (4, autoscale.BUSY),
        (4, autoscale.COOLING_DOWN),
        (4, autoscale.COOLING_DOWN),
        (1, autoscale.BUSY),
        (1, autoscale.COOLING_DOWN),
        (1, autoscale.COOLING_DOWN),
        (0, autoscale.IDLE),
    ]


def test_a_need_in_the_middle_of_the_window_holds_its_count_for_its_own_idle_time() -> None:
    steps = [(0, Load(queued=30)), (40, Load(queued=16)), (61, Load()), (101, Load())]
    # 4 until 60 s after 0; then 2 (needed at 40) until 60 s after 40; then 0.
    assert [r for r, _ in run(POLICY, steps)] == [4, 4, 2, 0]


def test_min_replicas_is_kept_while_idle_and_max_caps_a_burst() -> None:
    policy = Policy(min_replicas=2, max_replicas=3, idle_seconds=10, runs_per_replica=1)
    assert run(policy, [(0, Load()), (1, Load(queued=50)), (20, Load())]) == [
        (2, autoscale.IDLE),
        (3, autoscale.BUSY),
        (2, autoscale.IDLE),
    ]


def test_unknown_entry_points_hold_one_pod_which_idles_away_once_learned() -> None:
    decision, memory = decide(POLICY, Load(), Memory(), 0, learn=True)
    assert (decision.replicas, decision.reason) == (1, autoscale.LEARNING_ENTRY_POINTS)
    decision, memory = decide(POLICY, Load(), memory, 30)  # learned: kept for idleSeconds
    assert (decision.replicas, decision.reason) == (1, autoscale.COOLING_DOWN)
    decision, _ = decide(POLICY, Load(), memory, 61)
    assert (decision.replicas, decision.reason) == (0, autoscale.IDLE)


def test_an_unreadable_queue_keeps_the_count_and_never_scales_down_blind() -> None:
    _, memory = decide(POLICY, Load(queued=20), Memory(), 0)
    decision, kept = decide(POLICY, None, memory, 3600)
    assert (decision.replicas, decision.reason) == (3, autoscale.QUEUE_UNKNOWN)
    assert kept == memory


def test_last_active_time_is_the_last_moment_runs_were_queued_or_running() -> None:
    decision, memory = decide(POLICY, Load(running=1), Memory(), 1_700_000_000)
    decision, memory = decide(POLICY, Load(), memory, 1_700_000_050)
    assert decision.last_active == 1_700_000_000
    status = autoscale.as_status(POLICY, decision, "abc")
    assert status["lastActiveTime"] == "2023-11-14T22:13:20Z"
    assert status["entryPointsCommit"] == "abc" and status["reason"] == autoscale.COOLING_DOWN


def test_a_restart_resumes_cooling_down_from_status() -> None:
    previous = {"desired": 3, "lastActiveTime": autoscale.format_time(1000)}
    memory = autoscale.seed(POLICY, previous, now=1030)
    assert decide(POLICY, Load(), memory, 1030)[0].replicas == 3
    assert decide(POLICY, Load(), memory, 1061)[0].replicas == 0
    assert autoscale.seed(POLICY, {"desired": "x", "lastActiveTime": "soon"}, 0) == Memory()


def test_without_a_database_at_least_one_pod_serves() -> None:
    assert autoscale.without_signal(POLICY).replicas == 1
    assert autoscale.without_signal(POLICY).reason == autoscale.NO_QUEUE_SIGNAL
    assert Autoscaler(None).scale("ns", "pb", POLICY, learn=False).replicas == 1
    assert Autoscaler(None).due() == []


class Queue:
    """The one query's answer, settable by the test; counts how often it was asked."""

    def __init__(self) -> None:
        self.loads: dict[tuple[str, str], tuple[int, int]] | None = {}
        self.reads = 0

    def __call__(self, max_age: float) -> Mapping[tuple[str, str], tuple[int, int]] | None:
        self.reads += 1
        return self.loads


def test_the_poll_names_playbooks_whose_replicas_should_change() -> None:
    queue, clock = Queue(), [1000.0]
    scaler = Autoscaler(queue, clock=lambda: clock[0])
    assert scaler.due() == [] and queue.reads == 0  # nothing autoscaled: not even a query
    assert scaler.scale("ns", "pb", POLICY, learn=False).replicas == 0
    assert scaler.due() == []
    queue.loads = {("ns", "pb"): (1, 0), ("other", "pb"): (50, 0)}
    assert scaler.due() == [("ns", "pb")]  # a run queued at zero; `other` is not ours
    assert scaler.scale("ns", "pb", POLICY, learn=False).replicas == 1
    assert scaler.due() == []  # applied
    queue.loads = {}
    clock[0] += 61
    assert scaler.due() == [("ns", "pb")]  # idle for idleSeconds: back to zero
    scaler.forget("ns", "pb")
    assert scaler.due() == []


def test_spec_scaling_defaults_and_an_inverted_range_says_what_is_wrong() -> None:
    base: dict[str, Any] = {
        "source": {"git": {"url": "https://git.example/x.git", "ref": {"branch": "main"}}},
        "module": "triage",
    }
    spec = parse_spec({**base, "scaling": {}})
    assert Policy.of(spec) == Policy(0, 1, 300.0, 8)  # runsPerReplica: runtime.concurrency
    assert Policy.of(parse_spec(base)) is None  # a fixed spec.replicas, as before
    with pytest.raises(InvalidSpec, match=r"minReplicas \(3\) must not exceed maxReplicas \(2\)"):
        parse_spec({**base, "scaling": {"minReplicas": 3, "maxReplicas": 2}})
    with pytest.raises(InvalidSpec, match=r"spec\.scaling\.maxReplicas"):
        parse_spec({**base, "scaling": {"maxReplicas": 0}})


def test_a_reconcile_renders_the_decision_and_reports_it_in_status(
    parts: tuple[Reconciler, FakeKube, FakeGit],
) -> None:
    reconciler, kube, _ = parts
    queue = Queue()
    reconciler.autoscaler = Autoscaler(queue)
    body = playbook(scaling={"minReplicas": 0, "maxReplicas": 3, "runsPerReplica": 2})
    del body["spec"]["replicas"]
    kube.add(body)

    reconciler.reconcile(body)  # a new commit: one pod learns its entry points
    deployment = kube.objects[("Deployment", "tenant", "pb-runtime")]
    assert deployment["spec"]["replicas"] == 1
    scale = kube.objects[("Playbook", "tenant", "pb")]["status"]["scale"]
    assert scale["reason"] == autoscale.LEARNING_ENTRY_POINTS and scale["desired"] == 1

    queue.loads = {("tenant", "pb"): (5, 0)}
    reconciler.reconcile(kube.objects[("Playbook", "tenant", "pb")])
    assert kube.objects[("Deployment", "tenant", "pb-runtime")]["spec"]["replicas"] == 3
    scale = kube.objects[("Playbook", "tenant", "pb")]["status"]["scale"]
    assert (scale["desired"], scale["reason"], scale["maxReplicas"]) == (3, autoscale.BUSY, 3)


def test_scaling_up_a_known_commit_keeps_ready_while_a_new_commit_rolls_out() -> None:
    source = SourceState("https://git.example/x.git", "main@sha1:abc", "abc", "d" * 64, "t")
    scaling_up = RolloutState(exists=True, desired=1, commit="abc", revision="main@sha1:abc",
                              generation_observed=True)  # fmt: skip
    known = Observation(generation=1, source=source, rollout=scaling_up, scaling_known=True)
    status, _ = summarize(known, None)
    runtime = next(x for x in status["conditions"] if x["type"] == "RuntimeReady")
    assert runtime["status"] == "True" and "scaling to 1" in runtime["message"]

    # Just resized: the controller has not observed the new count yet, nothing else changed.
    unobserved = RolloutState(exists=True, desired=0, commit="abc", revision="main@sha1:abc",
                              replicas=1, updated=1, ready=1)  # fmt: skip
    resized = Observation(generation=1, source=source, rollout=unobserved, scaling_known=True,
                          resized=True)  # fmt: skip
    status, _ = summarize(resized, None)
    runtime = next(x for x in status["conditions"] if x["type"] == "RuntimeReady")
    assert runtime["status"] == "True" and "scaling to 0" in runtime["message"]
    resized.resized = False  # another change not observed yet: a rollout until it is
    status, _ = summarize(resized, None)
    runtime = next(x for x in status["conditions"] if x["type"] == "RuntimeReady")
    assert runtime["reason"] == "RollingOut"

    unknown = Observation(generation=1, source=source, rollout=scaling_up)
    status, _ = summarize(unknown, None)
    runtime = next(x for x in status["conditions"] if x["type"] == "RuntimeReady")
    assert (runtime["status"], runtime["reason"]) == ("False", "RollingOut")


def test_a_changed_desired_count_posts_a_scaled_event() -> None:
    source = SourceState("https://git.example/x.git", "main@sha1:abc", "abc", "d" * 64, "t")
    rollout = RolloutState(exists=True, desired=0, commit="abc", generation_observed=True)
    before = {"scale": {"desired": 0, "reason": "Idle"}}
    obs = Observation(generation=1, source=source, rollout=rollout, scaling_known=True,
                      scale={"desired": 2, "reason": "Busy", "message": "12 queued"})  # fmt: skip
    _, events = summarize(obs, before)
    assert [(e.reason, e.message) for e in events if e.reason == "Scaled"] == [
        ("Scaled", "0 → 2 pods: 12 queued")
    ]


def test_every_scale_reason_is_described_in_the_crd_and_the_reference() -> None:
    root = Path(__file__).resolve().parents[2]
    crd = yaml.safe_load((root / "crds" / "playbook.yaml").read_text())
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    described = status["properties"]["scale"]["properties"]["reason"]["description"]
    reference = (root / "docs" / "reference" / "playbook.md").read_text()
    for reason in autoscale.REASONS:
        assert reason in described and f"`{reason}`" in reference, reason


def test_a_suspended_playbook_is_no_longer_polled_for(
    parts: tuple[Reconciler, FakeKube, FakeGit],
) -> None:
    """Suspended, nothing is applied: were it still polled, a changing queue would name it
    for a reconcile every second, each doing nothing."""
    reconciler, kube, _ = parts
    queue = Queue()
    reconciler.autoscaler = Autoscaler(queue)
    body = playbook(scaling={"minReplicas": 0, "maxReplicas": 3})
    kube.add(body)
    reconciler.reconcile(body)
    queue.loads = {("tenant", "pb"): (20, 0)}
    assert reconciler.autoscaler.due() == [("tenant", "pb")]
    body["spec"]["suspend"] = True
    reconciler.reconcile(body)
    assert reconciler.autoscaler.due() == []


def test_an_inverted_range_stalls_the_playbook_saying_what_is_wrong(
    parts: tuple[Reconciler, FakeKube, FakeGit],
) -> None:
    reconciler, kube, _ = parts
    body = playbook(scaling={"minReplicas": 4, "maxReplicas": 2})
    kube.add(body)
    outcome = reconciler.reconcile(body)
    stalled = next(x for x in outcome.status["conditions"] if x["type"] == "Stalled")
    assert stalled["reason"] == "InvalidSpec"
    assert (
        "spec.scaling: Value error, minReplicas (4) must not exceed maxReplicas (2)"
        in (stalled["message"])
    )
    assert kube.applied() == []  # nothing scaled on a spec that says two things
