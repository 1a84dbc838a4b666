"""Waiting runs in the store, on a real PostgreSQL: who may be decided, once, in which
namespace, and how the counters see waiting and denied runs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from kubesoar_store import NewRun, RunRecord, approvals, counters, dispatch

SeedRuns = Callable[..., Awaitable[list[NewRun]]]
ASK = approvals.Waiting(
    seq=2, title="Disable the account?", details={"user": "bob"}, ttl_seconds=60
)


async def _waiting(pool: asyncpg.Pool, seed_runs: SeedRuns, n: int = 1) -> list[uuid.UUID]:
    await seed_runs(n, namespace="acme", playbook="contain")
    parked = []
    for run in await dispatch.claim(pool, "router", limit=n, lease_seconds=60):
        partial = RunRecord(status="waiting", result={"actions": [{"action": "collect"}]})
        assert await approvals.suspend(pool, run.id, run.token, ASK, partial)
        parked.append(run.id)
    return parked


async def test_a_parked_run_holds_no_lease_and_keeps_what_it_did(
    pool: asyncpg.Pool, seed_runs: SeedRuns
) -> None:
    [run_id] = await _waiting(pool, seed_runs)
    row = await pool.fetchrow("SELECT * FROM runs WHERE id = $1", run_id)
    assert row["status"] == "waiting" and row["lease_owner"] is None
    assert row["lease_expires_at"] is None and row["approval_expires_at"] is not None
    assert json.loads(row["result"]) == {"actions": [{"action": "collect"}]}
    asked = json.loads(row["approval"])
    assert (asked["seq"], asked["title"], asked["details"]) == (2, ASK.title, ASK.details)
    # Nothing claims it while it waits.
    assert await dispatch.claim(pool, "router", limit=10, lease_seconds=60) == []


async def test_a_decision_applies_once_and_only_in_the_runs_namespace(
    pool: asyncpg.Pool, seed_runs: SeedRuns
) -> None:
    [run_id] = await _waiting(pool, seed_runs)
    assert await approvals.decide(pool, "globex", run_id, approved=True, by="eve") is None
    assert await approvals.decide(pool, "acme", uuid.uuid4(), approved=True, by="eve") is None
    with pytest.raises(ValueError, match="at most 1000"):
        await approvals.decide(pool, "acme", run_id, approved=True, by="al", comment="x" * 1001)
    assert await approvals.decide(pool, "acme", run_id, approved=True, by="alice") == "waiting"
    assert await approvals.decide(pool, "acme", run_id, approved=False, by="bob") == "queued"
    entry = await pool.fetchrow("SELECT * FROM action_journal WHERE run_id = $1", run_id)
    assert (entry["seq"], entry["action"], entry["status"]) == (2, "kubesoar.approval", "succeeded")
    assert json.loads(entry["result"])["decidedBy"] == "alice"
    [resumed] = await dispatch.claim(pool, "router", limit=10, lease_seconds=60)
    assert resumed.id == run_id and resumed.resumes == 1 and resumed.attempt == 1


async def test_counters_count_waiting_and_denied_runs(
    pool: asyncpg.Pool, seed_runs: SeedRuns
) -> None:
    _, second = await _waiting(pool, seed_runs, n=2)
    await approvals.decide(pool, "acme", second, approved=False, by="bob")
    [resumed] = await dispatch.claim(pool, "router", limit=10, lease_seconds=60)
    await dispatch.complete(pool, resumed.id, resumed.token, RunRecord(status="denied"))
    [counted] = await counters.playbook_counters(pool, ["acme"])
    assert (counted.total, counted.waiting, counted.denied, counted.failed) == (2, 1, 1, 0)


async def test_oversized_details_are_cut_and_the_run_stays_decidable(
    pool: asyncpg.Pool, seed_runs: SeedRuns
) -> None:
    await seed_runs(1, namespace="acme")
    [run] = await dispatch.claim(pool, "router", limit=1, lease_seconds=60)
    huge = approvals.Waiting(seq=4, title="Wipe?", details={"blob": "x" * 200_000}, ttl_seconds=60)
    assert await approvals.suspend(pool, run.id, run.token, huge, RunRecord(status="waiting"))
    asked = json.loads(await pool.fetchval("SELECT approval FROM runs WHERE id = $1", run.id))
    assert asked["seq"] == 4 and asked["details"]["truncated"] is True
    assert asked["details"]["originalBytes"] > 200_000
    assert await approvals.decide(pool, "acme", run.id, approved=False, by="al") == "waiting"
