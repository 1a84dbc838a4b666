"""Refreshes of Playbooks that were deleted meanwhile (issue 16): a queued refresh uses the
newest body the watch saw and is dropped once the object is gone; a reconcile re-reads
the Playbook before applying children and never re-creates children of a deleted (or
replaced) Playbook; a status PATCH that 404s forgets the Playbook. Also the reconcile's
source step end to end with fake clients: a persistent failure reaches `Stalled`."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import kopf
from kubesoar_operator import conditions as c
from kubesoar_operator import refresher
from kubesoar_operator.reconcile import Reconciler
from op_fakes import FakeGit, FakeKube, fail, playbook


def test_an_existing_playbook_gets_its_children_and_status(
    parts: tuple[Reconciler, FakeKube, FakeGit],
) -> None:
    reconciler, kube, _ = parts
    body = playbook()
    kube.add(body)
    outcome = reconciler.reconcile(body)
    assert not outcome.gone
    assert sorted(kube.applied()) == [
        "Deployment/pb-runtime",
        "NetworkPolicy/pb-runtime",
        "Service/pb",
        "ServiceAccount/pb-runtime",
    ]
    assert ("patch_status", "pb") in kube.calls


def test_a_deleted_playbook_gets_no_children_and_no_status(
    parts: tuple[Reconciler, FakeKube, FakeGit],
) -> None:
    """The stale body of a deleted Playbook, as a queued refresh held it: its children were
    garbage-collected, so applying would create them again (201) for an owner that is gone."""
    reconciler, kube, _ = parts
    outcome = reconciler.reconcile(playbook())
    assert outcome.gone
    assert kube.applied() == []
    assert [call for call, _ in kube.calls].count("patch_status") == 0
    assert ("read_playbook", "pb") in kube.calls
    # Forgotten: the next body of that name starts afresh.
    assert ("tenant", "pb") not in reconciler._states


def test_a_replaced_playbook_is_not_given_children_for_the_old_one(
    parts: tuple[Reconciler, FakeKube, FakeGit],
) -> None:
    reconciler, kube, _ = parts
    newer = playbook()
    newer["metadata"]["uid"] = "another-object-of-the-same-name"
    kube.add(newer)
    assert reconciler.reconcile(playbook()).gone
    assert kube.applied() == []


def test_a_playbook_being_deleted_gets_no_children(
    parts: tuple[Reconciler, FakeKube, FakeGit],
) -> None:
    reconciler, kube, _ = parts
    deleting = playbook()
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    kube.add(deleting)
    assert reconciler.reconcile(playbook()).gone and kube.applied() == []


def test_children_in_place_are_not_reread_or_reapplied(
    parts: tuple[Reconciler, FakeKube, FakeGit],
) -> None:
    """The owner check costs a read only when children are about to be applied."""
    reconciler, kube, _ = parts
    body = playbook()
    kube.add(body)
    reconciler.reconcile(body)
    kube.calls.clear()
    reconciler.reconcile(body)
    assert kube.applied() == [] and ("read_playbook", "pb") not in kube.calls


def test_a_status_patch_that_404s_forgets_the_playbook(
    parts: tuple[Reconciler, FakeKube, FakeGit],
) -> None:
    reconciler, kube, _ = parts
    body = playbook()
    kube.add(body)
    reconciler.reconcile(body)
    kube.delete("Playbook", "tenant", "pb")  # gone, its children still there
    reconciler._states[("tenant", "pb")].last_status = None  # force a status write
    outcome = reconciler.reconcile({**body, "status": {"observedGeneration": 0}})
    assert outcome.gone and ("tenant", "pb") not in reconciler._states


def test_a_persistent_source_failure_reaches_stalled_through_the_reconcile(
    parts: tuple[Reconciler, FakeKube, FakeGit],
) -> None:
    reconciler, kube, fake_git = parts
    body = playbook()
    kube.add(body)
    fake_git.failures = [*fail(c.REPOSITORY_NOT_FOUND, c.STALL_AFTER_FAILURES)]
    stalled_at = []
    for attempt in range(1, c.STALL_AFTER_FAILURES + 1):
        outcome = reconciler.reconcile(body)
        assert outcome.retry_in is not None  # kopf retries it with backoff
        status = kube.objects[("Playbook", "tenant", "pb")]["status"]
        if c.is_true(status["conditions"], c.STALLED):
            stalled_at.append(attempt)
        reconciler._states[("tenant", "pb")].source_memory.retry_at = 0.0  # backoff over
    assert stalled_at == [c.STALL_AFTER_FAILURES]
    stalled = c.find(status["conditions"], c.STALLED)
    assert stalled is not None and stalled["reason"] == c.REPOSITORY_NOT_FOUND
    assert c.find(status["conditions"], c.RECONCILING) is None
    assert fake_git.resolves == c.STALL_AFTER_FAILURES
    # Retries go on; once the repository is there it heals without anyone touching it.
    outcome = reconciler.reconcile(body)
    status = kube.objects[("Playbook", "tenant", "pb")]["status"]
    assert c.find(status["conditions"], c.STALLED) is None
    assert c.find(status["conditions"], c.SOURCE_READY)["status"] == "True"  # type: ignore[index]


# --- the refresher ---------------------------------------------------------------------------


def _event(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": body}


def _version(body: dict[str, Any], version: str) -> dict[str, Any]:
    return {**body, "metadata": {**body["metadata"], "resourceVersion": version}}


async def _run_until(refresher_: refresher.Refresher, done: threading.Event) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(refresher_.run(stop, tick=0.01))
    try:
        for _ in range(3000):  # bounded: at most ~30 s
            if done.is_set():
                break
            await asyncio.sleep(0.01)
        assert done.is_set(), "the refreshes did not run"
    finally:
        stop.set()
        await task


async def test_a_queued_refresh_of_a_deleted_object_does_not_run() -> None:
    """One slot: `a` holds it while `b` waits; `b` is deleted meanwhile, so when the slot
    frees `b` is dropped instead of refreshed with the body it was queued with."""
    refreshed: list[str] = []
    a_started, release_a, finished = threading.Event(), threading.Event(), threading.Event()

    def refresh(body: kopf.Body) -> None:
        refreshed.append(body["metadata"]["name"])
        if body["metadata"]["name"] == "a":
            a_started.set()
            assert release_a.wait(timeout=30)
            finished.set()

    queue = refresher.Refresher(max_parallel=1)
    queue.register("playbooks", refresh, interval=0.0)
    a, b = playbook("a"), playbook("b")
    queue.observe("playbooks", _event("ADDED", a))
    queue.observe("playbooks", _event("ADDED", b))

    async def delete_b_while_a_runs() -> None:
        for _ in range(3000):
            if a_started.is_set():
                break
            await asyncio.sleep(0.01)
        queue.observe("playbooks", _event("DELETED", b))
        release_a.set()

    deleting = asyncio.create_task(delete_b_while_a_runs())
    await _run_until(queue, finished)
    await deleting
    # `a` may be refreshed again (interval 0); `b` never is.
    assert "b" not in refreshed and refreshed[0] == "a"


async def test_a_queued_refresh_uses_the_newest_body() -> None:
    seen: list[str] = []
    a_started, release_a, done = threading.Event(), threading.Event(), threading.Event()

    def refresh(body: kopf.Body) -> None:
        name = body["metadata"]["name"]
        if name == "a" and not a_started.is_set():
            a_started.set()
            assert release_a.wait(timeout=30)
        if name == "b":
            seen.append(body["metadata"]["resourceVersion"])
            done.set()

    queue = refresher.Refresher(max_parallel=1)
    queue.register("playbooks", refresh, interval=0.0)
    queue.observe("playbooks", _event("ADDED", _version(playbook("a"), "1")))
    queue.observe("playbooks", _event("ADDED", _version(playbook("b"), "1")))

    async def modify_b_while_a_runs() -> None:
        for _ in range(3000):
            if a_started.is_set():
                break
            await asyncio.sleep(0.01)
        queue.observe("playbooks", _event("MODIFIED", _version(playbook("b"), "2")))
        release_a.set()

    modifying = asyncio.create_task(modify_b_while_a_runs())
    await _run_until(queue, done)
    await modifying
    assert seen[0] == "2"
