"""The action journal, the shared replay cache and rate limits, counters and retention,
on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
import pytest
from kubesoar_store import (
    GroupCommitter,
    NewAlert,
    NewRun,
    NotLeased,
    RunRecord,
    counters,
    dispatch,
    journal,
    keys,
    retention,
)
from kubesoar_store.pool import create_pool

# seed_runs(n, namespace=, playbook=, max_attempts=) -> queued NewRuns (conftest.py)
SeedRuns = Callable[..., Awaitable[list[NewRun]]]


async def test_journal_round_trip_and_a_succeeded_entry_is_final(
    pool: asyncpg.Pool, seed_runs: SeedRuns
) -> None:
    await seed_runs(1)
    (run,) = await dispatch.claim(pool, "pod", limit=1, lease_seconds=30)
    assert await journal.get(pool, run.id, run.token, 0) is None
    assert await journal.put(
        pool, run.id, run.token, 0, action="edr.isolate", status="succeeded", result={"ok": 1}
    )
    assert await journal.put(
        pool, run.id, run.token, 1, action="vt.lookup", status="failed", result="timeout"
    )
    # A succeeded entry is never overwritten; a failed one is.
    assert not await journal.put(
        pool, run.id, run.token, 0, action="edr.isolate", status="failed", result=None
    )
    assert await journal.put(
        pool, run.id, run.token, 1, action="vt.lookup", status="succeeded", result=[1, 2]
    )
    entry = await journal.get(pool, run.id, run.token, 0)
    assert entry is not None
    assert (entry.action, entry.status, entry.result, entry.attempt) == (
        "edr.isolate",
        "succeeded",
        {"ok": 1},
        1,
    )
    listed = await journal.entries(pool, run.id)
    assert [(e.seq, e.status, e.result) for e in listed] == [
        (0, "succeeded", {"ok": 1}),
        (1, "succeeded", [1, 2]),
    ]

    # Redelivered: the new attempt reads what the old one recorded, with its new token.
    await pool.execute(
        "UPDATE runs SET lease_expires_at = now() - interval '1 s' WHERE id = $1", run.id
    )
    await dispatch.expire_leases(pool)
    (again,) = await dispatch.claim(pool, "pod-2", limit=1, lease_seconds=30)
    assert again.attempt == 2
    redelivered = await journal.get(pool, run.id, again.token, 0)
    assert redelivered is not None and redelivered.result == {"ok": 1}
    with pytest.raises(NotLeased):  # the old token is no longer the run's
        await journal.get(pool, run.id, run.token, 0)
    with pytest.raises(NotLeased):
        await journal.put(pool, run.id, run.token, 2, action="a", status="succeeded")


async def test_journal_results_are_bounded(pool: asyncpg.Pool, seed_runs: SeedRuns) -> None:
    await seed_runs(1)
    (run,) = await dispatch.claim(pool, "pod", limit=1, lease_seconds=30)
    await journal.put(
        pool, run.id, run.token, 0, action="dump", status="succeeded", result="y" * 200_000
    )
    entry = await journal.get(pool, run.id, run.token, 0)
    assert entry is not None and entry.result["truncated"] is True
    assert entry.result["originalBytes"] == 200_002


async def test_replay_cache_is_shared_and_expires(pool: asyncpg.Pool, database_url: str) -> None:
    other = await create_pool(database_url, min_size=1, max_size=2)
    try:
        fresh = await asyncio.gather(
            *(keys.remember_replay(p, b"sig-1", 300) for p in (pool, other, pool, other))
        )
    finally:
        await other.close()
    assert sorted(fresh) == [False, False, False, True]
    assert await keys.remember_replay(pool, b"sig-0", 0.0)
    assert await keys.remember_replay(pool, b"sig-0", 300)  # the expired entry is reclaimed


async def test_rate_limit_is_one_bucket_for_all_replicas(pool: asyncpg.Pool) -> None:
    decisions = await asyncio.gather(
        *(keys.take_token(pool, "ns/src", rate=0.001, burst=3) for _ in range(5))
    )
    assert sorted(d.allowed for d in decisions) == [False, False, True, True, True]
    refused = [d for d in decisions if not d.allowed]
    assert all(d.retry_after_seconds > 0 for d in refused)
    assert (await keys.take_token(pool, "other", rate=1, burst=1)).allowed


async def test_purge_removes_only_expired_keys(pool: asyncpg.Pool) -> None:
    await keys.remember_replay(pool, b"old", 0.0)
    await keys.remember_replay(pool, b"live", 300)
    assert await keys.purge_expired(pool) == 1
    assert await pool.fetchval("SELECT count(*) FROM replay_keys") == 1


async def test_counters_per_playbook_in_one_query(pool: asyncpg.Pool, seed_runs: SeedRuns) -> None:
    await seed_runs(5, namespace="ns", playbook="triage", max_attempts=1)
    await seed_runs(1, namespace="other", playbook="triage")
    claimed = await dispatch.claim(pool, "pod", limit=4, lease_seconds=30, namespaces=["ns"])
    await dispatch.complete(pool, claimed[0].id, claimed[0].token, RunRecord("succeeded"))
    await dispatch.complete(pool, claimed[1].id, claimed[1].token, RunRecord("failed", error="e1"))
    await dispatch.complete(pool, claimed[2].id, claimed[2].token, RunRecord("failed", error="e2"))
    later = await pool.fetchval("SELECT now() + interval '1 hour'")
    (dead,) = [e for e in await dispatch.expire_leases(pool, now=later) if e.id == claimed[3].id]
    (ns,) = await counters.playbook_counters(pool, ["ns"])
    assert (ns.total, ns.succeeded, ns.failed, ns.dead, ns.queued, ns.running) == (5, 1, 2, 1, 1, 0)
    assert ns.last_error == dead.reason and ns.last_error_at == later
    everything = await counters.playbook_counters(pool)
    assert [(c.namespace, c.total) for c in everything] == [("ns", 5), ("other", 1)]
    assert await counters.queue_depth(pool, "ns", "triage") == 1


async def test_retention_by_age_and_count_keeps_unfinished_work(
    pool: asyncpg.Pool, committer: GroupCommitter, seed_runs: SeedRuns
) -> None:
    for i in range(6):
        await committer.submit(NewAlert("ns", "src", {"i": i}))
    await seed_runs(1, namespace="ns")  # an alert whose run is still queued
    await pool.execute("UPDATE alerts SET received_at = now() - interval '10 days'")
    for i in range(3):
        await committer.submit(NewAlert("ns", "src", {"new": i}))
    await committer.submit(NewAlert("keep", "src", {}))

    deleted = await retention.delete_older_than(pool, timedelta(days=7), batch=2)
    assert deleted == 6  # not the one with a queued run
    assert await pool.fetchval("SELECT count(*) FROM alerts WHERE namespace = 'ns'") == 4
    assert await pool.fetchval("SELECT count(*) FROM runs") == 1

    assert await retention.keep_newest(pool, 2, batch=1) == 1  # the queued one stays
    remaining = await pool.fetch("SELECT alert FROM alerts WHERE namespace = 'ns'")
    assert len(remaining) == 3
    assert await pool.fetchval("SELECT count(*) FROM alerts WHERE namespace = 'keep'") == 1


async def test_retention_deletes_runs_and_journal_with_the_alert(
    pool: asyncpg.Pool, seed_runs: SeedRuns
) -> None:
    await seed_runs(1)
    (run,) = await dispatch.claim(pool, "pod", limit=1, lease_seconds=30)
    await journal.put(pool, run.id, run.token, 0, action="a", status="succeeded")
    await dispatch.complete(pool, run.id, run.token, RunRecord("succeeded"))
    assert await retention.keep_newest(pool, 0) == 1
    assert await pool.fetchval("SELECT count(*) FROM action_journal") == 0
    assert await dispatch.get_run(pool, run.id) is None
    assert uuid.UUID(str(run.id))
