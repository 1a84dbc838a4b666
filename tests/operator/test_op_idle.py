"""An idle operator does nothing (issue 16): a settled Playbook without pods is not
refreshed again until its source falls due (or a handler, a sweep of the run counters on
record, or the idle resync asks); a Playbook with pods or work under way keeps its
status interval. The reconcile's answer with fake clients, and the refresher's schedule
with a counting refresh function."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import kopf
from kubesoar_operator import refresher
from kubesoar_operator.reconcile import IDLE_RESYNC_SECONDS, Reconciler
from kubesoar_operator.sharedsource import SharedSource
from op_fakes import FakeGit, FakeKube, playbook


def _rolled_out(kube: FakeKube, name: str, replicas: int) -> None:
    """What kube-controller-manager writes once it has seen the Deployment."""
    deployment = kube.objects[("Deployment", "tenant", f"{name}-runtime")]
    deployment["metadata"]["generation"] = 1
    deployment["status"] = {"observedGeneration": 1, "replicas": replicas}


def test_a_settled_playbook_without_pods_waits_for_its_source(
    parts: tuple[Reconciler, FakeKube, FakeGit],
) -> None:
    reconciler, kube, _ = parts
    body = playbook()  # replicas 0, interval 1m
    kube.add(body)
    reconciler.reconcile(body)
    deployment = kube.objects[("Deployment", "tenant", "pb-runtime")]
    deployment["metadata"]["generation"] = 1  # as the API server sets it, not seen yet
    assert reconciler.reconcile(body).next_refresh is None  # under way: keep looking
    _rolled_out(kube, "pb", 0)
    settled = reconciler.reconcile(body)
    assert settled.next_refresh is not None and 50 < settled.next_refresh <= 60
    before = len(kube.calls)
    reconciler.reconcile(body)  # a refresh anyway (a handler, the resync): one read, no write
    assert kube.calls[before:] == [("read_deployment", "pb-runtime")]


def test_the_idle_wait_is_capped_by_the_resync(
    parts: tuple[Reconciler, FakeKube, FakeGit],
) -> None:
    reconciler, kube, _ = parts
    body = playbook()
    body["spec"]["source"]["interval"] = "1h"
    kube.add(body)
    reconciler.reconcile(body)
    _rolled_out(kube, "pb", 0)
    assert reconciler.reconcile(body).next_refresh == IDLE_RESYNC_SECONDS


def test_a_playbook_with_pods_keeps_its_status_interval(
    parts: tuple[Reconciler, FakeKube, FakeGit],
) -> None:
    """Its pods' reports are read on every refresh: they can change at any time."""
    reconciler, kube, _ = parts
    body = playbook(replicas=1)
    kube.add(body)
    reconciler.reconcile(body)
    _rolled_out(kube, "pb", 1)
    assert reconciler.reconcile(body).next_refresh is None


def test_a_failing_source_keeps_its_backoff(parts: tuple[Reconciler, FakeKube, FakeGit]) -> None:
    reconciler, kube, fake_git = parts
    body = playbook()
    kube.add(body)
    from kubesoar_operator.gitsource import SourceError

    fake_git.failures = [SourceError("GitOperationFailed", "down")]
    outcome = reconciler.reconcile(body)
    assert outcome.retry_in is not None and outcome.next_refresh is None


def test_a_suspended_playbook_is_idle(parts: tuple[Reconciler, FakeKube, FakeGit]) -> None:
    reconciler, kube, _ = parts
    body = playbook(suspend=True)
    kube.add(body)
    assert reconciler.reconcile(body).next_refresh == IDLE_RESYNC_SECONDS


class _Counts:
    """RunCounts as the reconciler calls it: `status.runs` per Playbook."""

    def __init__(self) -> None:
        self.runs: dict[tuple[str, str], dict[str, Any]] = {}

    def status_runs(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.runs.get((namespace, name), {"total": 0})


def test_changed_run_counts_name_only_the_playbooks_whose_counts_moved(
    parts: tuple[Reconciler, FakeKube, FakeGit],
) -> None:
    reconciler, kube, _ = parts
    counts = _Counts()
    reconciler.run_counts = counts  # type: ignore[assignment]
    for name in ("a", "b"):
        body = playbook(name)
        kube.add(body)
        reconciler.reconcile(body)
    assert reconciler.changed_run_counts() == []
    counts.runs[("tenant", "b")] = {"total": 1}
    assert reconciler.changed_run_counts() == [("tenant", "b")]


# --- the refresher's schedule ------------------------------------------------------------


async def _tick_until(queue: refresher.Refresher, done: threading.Event) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(queue.run(stop, tick=0.01))
    try:
        for _ in range(3000):  # bounded: at most ~30 s
            if done.is_set():
                break
            await asyncio.sleep(0.01)
        assert done.is_set(), "the refreshes did not run"
    finally:
        stop.set()
        await task


async def test_an_idle_object_is_refreshed_when_asked_not_every_interval() -> None:
    """`a` is idle (its refresh says: not for an hour); `b` is busy (interval 0). While `b`
    is refreshed many times, `a` is refreshed once, and again only when asked for."""
    counts = {"a": 0, "b": 0}
    b_many, a_again = threading.Event(), threading.Event()

    def refresh(body: kopf.Body) -> float | None:
        name = body["metadata"]["name"]
        counts[name] += 1
        if name == "b" and counts["b"] >= 30:
            b_many.set()
        if name == "a" and counts["a"] == 2:
            a_again.set()
        return 3600.0 if name == "a" else None

    queue = refresher.Refresher(max_parallel=2)
    queue.register("playbooks", refresh, interval=0.0)
    for name in ("a", "b"):
        queue.observe("playbooks", {"type": "ADDED", "object": playbook(name)})
    await _tick_until(queue, b_many)
    assert counts["a"] == 1
    queue.refresh_soon("playbooks", "tenant", "a")
    await _tick_until(queue, a_again)
    assert counts["a"] == 2


async def test_a_sweep_names_objects_to_refresh() -> None:
    counts = {"a": 0}
    swept, refreshed_again = threading.Event(), threading.Event()

    def refresh(body: kopf.Body) -> float | None:
        counts["a"] += 1
        if counts["a"] == 2:
            refreshed_again.set()
        return 3600.0

    def sweep() -> list[tuple[str, str]]:
        if counts["a"] == 0:
            return []
        swept.set()
        return [("tenant", "a"), ("tenant", "unknown")]  # an unknown name is ignored

    queue = refresher.Refresher(max_parallel=1)
    queue.register("playbooks", refresh, interval=0.0)
    queue.register_sweep("playbooks", sweep, interval=0.0)
    queue.observe("playbooks", {"type": "ADDED", "object": playbook("a")})
    await _tick_until(queue, refreshed_again)
    assert swept.is_set()


def test_a_new_commit_applies_the_deployment_alone(
    parts: tuple[Reconciler, FakeKube, FakeGit],
) -> None:
    """The other children do not change with the commit: one apply, not four."""
    reconciler, kube, fake_git = parts
    body = playbook()
    body["metadata"]["annotations"] = {"kubesoar.dev/requestedAt": "first"}
    kube.add(body)
    reconciler.reconcile(body)
    assert len(kube.applied()) == 4
    fake_git.commit({"pb/triage.py": "def triage():\n    return 2\n"})
    body["metadata"]["annotations"] = {"kubesoar.dev/requestedAt": "second"}
    before = len(kube.applied())
    outcome = reconciler.reconcile(body)
    assert outcome.status["source"]["commit"] == fake_git.head()
    assert kube.applied()[before:] == ["Deployment/pb-runtime"]
    # A Deployment deleted by hand brings every child back.
    kube.delete("Deployment", "tenant", "pb-runtime")
    reconciler.reconcile(body)
    assert len(kube.applied()) == before + 1 + 4


def test_an_unchanged_source_does_not_rewrite_the_status_every_interval(
    parts: tuple[Reconciler, FakeKube, FakeGit],
) -> None:
    """Re-resolving the same commit keeps `lastResolvedTime` (for up to 10 minutes), so an
    idle Playbook's status is not written once per interval; a new commit writes it."""
    reconciler, kube, fake_git = parts
    body = playbook()
    kube.add(body)
    reconciler.reconcile(body)
    _rolled_out(kube, "pb", 0)
    reconciler.reconcile(body)
    first = kube.objects[("Playbook", "tenant", "pb")]["status"]["source"]["lastResolvedTime"]
    memory = reconciler._states[("tenant", "pb")].source_memory
    memory.resolved_monotonic -= 120  # the interval passed: two minutes later, Git is asked
    reconciler.sources = SharedSource(
        fake_git, reconciler.store, wallclock=lambda: time.time() + 120
    )
    before = fake_git.resolves
    kube.calls.clear()
    reconciler.reconcile(body)
    assert fake_git.resolves == before + 1  # Git was asked again...
    assert ("patch_status", "pb") not in kube.calls  # ...and nothing was written
    status = kube.objects[("Playbook", "tenant", "pb")]["status"]
    assert status["source"]["lastResolvedTime"] == first
    fake_git.commit({"pb/triage.py": "def triage():\n    return 3\n"})
    memory.resolved_monotonic -= 120
    reconciler.sources = SharedSource(fake_git, reconciler.store)
    reconciler.reconcile(body)
    assert ("patch_status", "pb") in kube.calls
