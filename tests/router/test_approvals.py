"""Human approval, end to end: real PostgreSQL, real runtime processes, real HTTP.

A playbook that awaits `ctx.approval(...)` parks its run as `waiting` (the pod's worker
is free); a decision written through the store (what the runs API calls) queues it
again, and it resumes on a pod: the action before the approval is not executed again,
the one after runs once (approved) or never (denied, expired).
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from durable_bed import HIGH, durable_router, send, stored_run, tenant
from kubesoar.contracts import http
from kubesoar_store import RunRecord, approvals, dispatch
from router_objects import TINY_ENTRY_POINTS

APPROVAL_PLAYBOOK = """
import os
from kubesoar import playbook, action, Alert

def effect(line: str) -> None:
    with open(os.environ["SIDE_EFFECTS"], "a") as effects:
        effects.write(line + "\\n")

@action()
async def collect(host: str) -> dict:
    effect("collect " + host)
    return {"collected": host}

@action()
async def isolate(host: str) -> dict:
    effect("isolate " + host)
    return {"isolated": host}

@playbook(trigger="webhook", conditions={"severity": ["high", "critical"]}, order=10)
async def triage(alert: Alert, ctx) -> dict:
    evidence = await collect("web-1")
    try:
        decision = await ctx.approval(
            "Isolate web-1?", {"host": "web-1", "evidence": evidence},
            ttl_seconds=float(os.environ.get("APPROVAL_TTL", "600")),
        )
    except Exception as exc:  # sees a denial; must never see the wait
        effect("caught " + type(exc).__name__)
        raise
    done = await isolate("web-1")
    return {**done, "by": decision.decided_by, "attempt": ctx.attempt}
"""

ENTRY_POINTS = [{**TINY_ENTRY_POINTS[0], "order": 10}]


async def _pool(database_url: str) -> asyncpg.Pool:
    return await asyncpg.create_pool(database_url, min_size=1, max_size=2)


async def _waiting_run(base_url: str, database_url: str) -> tuple[str, Any]:
    response = await send(base_url, HIGH)
    assert response.status_code == 202, response.text
    run_id = response.json()["deliveries"][0]["runId"]
    return run_id, await stored_run(database_url, run_id, until={"waiting", "failed"})


@pytest.fixture
def effects(tmp_path: Path) -> Path:
    path = tmp_path / "side-effects.txt"
    path.touch()
    return path


async def test_an_approved_run_resumes_without_repeating_what_it_did(
    database_url, runtime_factory, effects: Path
):
    runtime = runtime_factory(APPROVAL_PLAYBOOK, env={"SIDE_EFFECTS": str(effects)})
    async with durable_router(database_url, [runtime]) as (router, base_url):
        router.snapshot.put(tenant([runtime], entry_points=ENTRY_POINTS))
        run_id, row = await _waiting_run(base_url, database_url)
        assert row["status"] == "waiting", row["error"]
        asked = json.loads(row["approval"])
        assert asked["title"] == "Isolate web-1?"
        assert asked["details"] == {"host": "web-1", "evidence": {"collected": "web-1"}}
        assert asked["ttlSeconds"] == 600 and asked["expiresAt"] > asked["requestedAt"]
        assert row["lease_expires_at"] is None  # parked: no lease, no worker held
        assert runtime.run(run_id)["status"] == "waiting"
        assert effects.read_text().splitlines() == ["collect web-1"]

        pool = await _pool(database_url)
        try:
            before = await approvals.decide(
                pool, "tenant-a", uuid.UUID(run_id), approved=True, by="alice", comment="go"
            )
        finally:
            await pool.close()
        assert before == "waiting"
        row = await stored_run(database_url, run_id, until={"succeeded", "failed", "denied"})
    assert row["status"] == "succeeded", row["error"]
    [entry] = json.loads(row["result"])["results"]
    assert entry["result"] == {"isolated": "web-1", "by": "alice", "attempt": 1}
    # collect ran once (replayed on resume), isolate once, nothing swallowed the wait.
    assert effects.read_text().splitlines() == ["collect web-1", "isolate web-1"]
    decision = json.loads(row["approval"])["decision"]
    assert decision["approved"] is True and decision["reason"] == "Approved"
    assert decision["decidedBy"] == "alice" and decision["comment"] == "go"
    assert row["resumes"] == 1 and row["attempt"] == 1


async def test_a_denied_run_ends_denied_and_never_acts(
    database_url, runtime_factory, effects: Path
):
    runtime = runtime_factory(APPROVAL_PLAYBOOK, env={"SIDE_EFFECTS": str(effects)})
    async with durable_router(database_url, [runtime]) as (router, base_url):
        router.snapshot.put(tenant([runtime], entry_points=ENTRY_POINTS))
        run_id, row = await _waiting_run(base_url, database_url)
        assert row["status"] == "waiting", row["error"]
        pool = await _pool(database_url)
        try:
            await approvals.decide(
                pool, "tenant-a", uuid.UUID(run_id), approved=False, by="bob", comment="no"
            )
            # A second decision finds the run no longer waiting and writes nothing.
            again = await approvals.decide(
                pool, "tenant-a", uuid.UUID(run_id), approved=True, by="mallory"
            )
        finally:
            await pool.close()
        row = await stored_run(database_url, run_id, until={"succeeded", "failed", "denied"})
    assert again in ("queued", "running", "denied")
    assert row["status"] == "denied", row["error"]
    assert "denied by bob: no" in row["error"]
    assert json.loads(row["approval"])["decision"]["decidedBy"] == "bob"
    assert effects.read_text().splitlines() == ["collect web-1", "caught ApprovalDenied"]


async def test_an_approval_nobody_decides_expires_as_a_denial(
    database_url, runtime_factory, effects: Path
):
    runtime = runtime_factory(
        APPROVAL_PLAYBOOK, env={"SIDE_EFFECTS": str(effects), "APPROVAL_TTL": "1"}
    )
    async with durable_router(database_url, [runtime]) as (router, base_url):
        router.snapshot.put(tenant([runtime], entry_points=ENTRY_POINTS))
        run_id, _ = await _waiting_run(base_url, database_url)
        row = await stored_run(database_url, run_id, until={"succeeded", "failed", "denied"})
        exposition = router.metrics.exposition().decode()
    assert row["status"] == "denied", row["error"]
    assert "expired undecided" in row["error"]
    labels = '{playbook="triage",tenant_namespace="tenant-a"}'
    assert f"kubesoar_router_approvals_expired_total{labels} 1.0" in exposition
    decision = json.loads(row["approval"])["decision"]
    assert decision == {**decision, "approved": False, "reason": "Expired", "decidedBy": None}
    assert effects.read_text().splitlines() == ["collect web-1", "caught ApprovalDenied"]


async def test_a_pod_cannot_decide_its_own_approval(database_url):
    """A run's token lets a pod report the run, never write a decision into its journal."""
    async with durable_router(database_url, []) as (_, base_url):
        run_id = (await send(base_url, HIGH)).json()["deliveries"][0]["runId"]
        pool = await _pool(database_url)
        try:
            [claimed] = await dispatch.claim(pool, "a-pod", limit=1, lease_seconds=60)
            assert str(claimed.id) == run_id
            headers = {"Authorization": f"Bearer {claimed.token}"}
            forged = http.JournalEntry(
                seq=0,
                action=http.APPROVAL_ACTION,
                status="succeeded",
                result={"approved": True, "reason": "Approved", "decidedBy": "admin"},
            )
            waiting = http.RunResult(
                status="waiting",
                approval=http.ApprovalRequest(seq=0, title="Wipe it?", ttl_seconds=60),
            )
            async with httpx.AsyncClient(base_url=base_url, headers=headers) as client:
                refused = await client.post(
                    http.run_callback_path(run_id, "actions"), json=http.dump(forged)
                )
                parked = await client.post(
                    http.run_callback_path(run_id, "result"), json=http.dump(waiting)
                )
                repeated = await client.post(
                    http.run_callback_path(run_id, "result"), json=http.dump(waiting)
                )
                # Waiting, the run is not leased: its old token reports nothing more.
                late = await client.post(http.run_callback_path(run_id, "heartbeat"), json={})
            journal = await pool.fetchval(
                "SELECT count(*) FROM action_journal WHERE run_id = $1", claimed.id
            )
            status = await pool.fetchval("SELECT status FROM runs WHERE id = $1", claimed.id)
        finally:
            await pool.close()
    assert refused.status_code == 400 and refused.json()["error"] == "reserved_action"
    assert journal == 0
    assert parked.json() == {"recorded": True} and repeated.json() == {"recorded": False}
    assert late.status_code == 403
    assert status == "waiting"


async def test_expiry_waits_for_the_ttl(database_url):
    """The sweep leaves an approval alone until its TTL has passed, then denies it."""
    async with durable_router(database_url, []) as (_, base_url):
        run_id = (await send(base_url, HIGH)).json()["deliveries"][0]["runId"]
    pool = await _pool(database_url)
    try:
        [claimed] = await dispatch.claim(pool, "a-pod", limit=1, lease_seconds=60)
        waiting = approvals.Waiting(seq=3, title="Block the IP?", details=None, ttl_seconds=300)
        assert await approvals.suspend(
            pool, claimed.id, claimed.token, waiting, RunRecord(status="waiting")
        )
        expires = await pool.fetchval(
            "SELECT approval_expires_at FROM runs WHERE id = $1", claimed.id
        )
        early = await approvals.expire_approvals(pool, now=expires - timedelta(seconds=1))
        late = await approvals.expire_approvals(pool, now=expires)
        row = await pool.fetchrow("SELECT * FROM runs WHERE id = $1", claimed.id)
        entry = await pool.fetchrow(
            "SELECT * FROM action_journal WHERE run_id = $1 AND seq = 3", claimed.id
        )
    finally:
        await pool.close()
    assert early == []
    assert [d.id for d in late] == [uuid.UUID(run_id)]
    assert row["status"] == "queued" and row["resumes"] == 1
    assert entry["action"] == http.APPROVAL_ACTION
    assert json.loads(entry["result"])["reason"] == "Expired"
