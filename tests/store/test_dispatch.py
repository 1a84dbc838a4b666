"""Dispatch on a real PostgreSQL: claims never overlap across pools, leases expire into
redelivery (attempt + 1) and then `dead` with the reason, only the run's token may
write (a wrong one writes nothing), outputs are truncated with a marker."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
import pytest
from kubesoar_store import NewRun, NotLeased, RunRecord, dispatch
from kubesoar_store.bounds import MAX_RESULT_BYTES
from kubesoar_store.pool import create_pool

# seed_runs(n, namespace=, playbook=, max_attempts=) -> queued NewRuns (conftest.py)
SeedRuns = Callable[..., Awaitable[list[NewRun]]]


async def row(pool: asyncpg.Pool, run_id: uuid.UUID) -> asyncpg.Record:
    record = await pool.fetchrow("SELECT * FROM runs WHERE id = $1", run_id)
    assert record is not None
    return record


async def test_two_dispatchers_never_get_the_same_run(
    pool: asyncpg.Pool, database_url: str, seed_runs: SeedRuns
) -> None:
    seeded = await seed_runs(150)
    other = await create_pool(database_url, min_size=1, max_size=4)

    async def drain(p: asyncpg.Pool, owner: str) -> list[uuid.UUID]:
        got: list[uuid.UUID] = []
        for _ in range(200):  # bounded: far more rounds than needed
            claimed = await dispatch.claim(p, owner, limit=7, lease_seconds=60)
            if not claimed:
                return got
            got += [run.id for run in claimed]
        raise AssertionError("queue never drained")

    try:
        results = await asyncio.gather(
            *(drain(p, f"{name}-{i}") for p, name in ((pool, "a"), (other, "b")) for i in range(3))
        )
    finally:
        await other.close()
    everything = [run_id for result in results for run_id in result]
    assert len(everything) == len(set(everything)) == 150
    assert set(everything) == {run.id for run in seeded}
    assert await pool.fetchval("SELECT count(*) FROM runs WHERE status = 'running'") == 150


async def test_claim_hands_out_the_alert_oldest_first_with_filters(
    pool: asyncpg.Pool, seed_runs: SeedRuns
) -> None:
    first = await seed_runs(3, namespace="a", playbook="p1")
    await seed_runs(2, namespace="b", playbook="p1")
    await seed_runs(2, namespace="a", playbook="p2")
    claimed = await dispatch.claim(
        pool, "me", limit=2, lease_seconds=30, namespaces=["a"], playbook="p1"
    )
    assert [run.id for run in claimed] == [run.id for run in first[:2]]
    run = claimed[0]
    assert run.namespace == "a" and run.playbook == "p1" and run.attempt == 1
    assert run.alert == {"title": "alert 0"} and run.entry_points == ("triage",)
    assert run.idempotency_key == first[0].idempotency_key
    assert len(run.token) >= 40 and run.token != claimed[1].token
    stored = await row(pool, run.id)
    assert stored["status"] == "running" and stored["lease_owner"] == "me"
    assert run.token.encode() not in bytes(stored["token_hash"])  # only a hash is kept
    assert len(await dispatch.claim(pool, "me", limit=10, lease_seconds=30, namespaces=["b"])) == 2


async def test_expired_lease_redelivers_then_ends_dead_with_the_reason(
    pool: asyncpg.Pool, seed_runs: SeedRuns
) -> None:
    (run,) = await seed_runs(1, max_attempts=3)
    now = await pool.fetchval("SELECT now()")
    tokens = []
    for attempt in (1, 2, 3):
        (claimed,) = await dispatch.claim(
            pool, f"pod-{attempt}", limit=1, lease_seconds=30, now=now
        )
        assert claimed.id == run.id and claimed.attempt == attempt
        assert claimed.idempotency_key == run.idempotency_key
        tokens.append(claimed.token)
        # Before the lease ends nothing happens.
        assert await dispatch.expire_leases(pool, now=now + timedelta(seconds=29)) == []
        now += timedelta(seconds=31)
        (expired,) = await dispatch.expire_leases(pool, now=now)
        assert expired.id == run.id
        if attempt < 3:
            assert (expired.status, expired.attempt, expired.reason) == (
                "queued",
                attempt + 1,
                None,
            )
    assert expired.status == "dead"
    assert expired.reason is not None
    assert "attempt 3 of 3" in expired.reason and "pod-3" in expired.reason
    stored = await row(pool, run.id)
    assert stored["status"] == "dead" and stored["finished_at"] is not None
    assert stored["token_hash"] is None and stored["lease_expires_at"] is None
    # A pod that comes back late with any of its tokens writes nothing.
    for token in tokens:
        with pytest.raises(NotLeased):
            await dispatch.complete(pool, run.id, token, RunRecord("succeeded"))
    assert (await row(pool, run.id))["status"] == "dead"


async def test_heartbeat_extends_the_lease(pool: asyncpg.Pool, seed_runs: SeedRuns) -> None:
    await seed_runs(1)
    now = await pool.fetchval("SELECT now()")
    (run,) = await dispatch.claim(pool, "pod", limit=1, lease_seconds=30, now=now)
    extended = await dispatch.heartbeat(
        pool, run.id, run.token, lease_seconds=30, now=now + timedelta(seconds=20)
    )
    assert extended == now + timedelta(seconds=50)
    assert await dispatch.expire_leases(pool, now=now + timedelta(seconds=40)) == []
    assert len(await dispatch.expire_leases(pool, now=now + timedelta(seconds=51))) == 1


async def test_a_wrong_token_is_refused_and_nothing_is_written(
    pool: asyncpg.Pool, seed_runs: SeedRuns
) -> None:
    await seed_runs(2)
    mine, theirs = await dispatch.claim(pool, "pod", limit=2, lease_seconds=30)
    before = dict(await row(pool, mine.id))
    for token in ("", "guess", theirs.token, mine.token + "x"):
        with pytest.raises(NotLeased):
            await dispatch.complete(pool, mine.id, token, RunRecord("succeeded", {"x": 1}))
        with pytest.raises(NotLeased):
            await dispatch.heartbeat(pool, mine.id, token, lease_seconds=600)
        with pytest.raises(NotLeased):
            await dispatch.release(pool, mine.id, token)
    with pytest.raises(NotLeased):  # a run that does not exist: the same answer
        await dispatch.complete(pool, uuid.uuid4(), mine.token, RunRecord("succeeded"))
    assert dict(await row(pool, mine.id)) == before


async def test_complete_records_once_and_a_repeat_writes_nothing(
    pool: asyncpg.Pool, seed_runs: SeedRuns
) -> None:
    await seed_runs(1)
    (run,) = await dispatch.claim(pool, "pod", limit=1, lease_seconds=30)
    record = RunRecord("failed", {"entry": {"triage": "boom"}}, "ValueError: boom", "tb.py:3")
    assert await dispatch.complete(pool, run.id, run.token, record) is True
    assert await dispatch.complete(pool, run.id, run.token, RunRecord("succeeded")) is False
    stored = await dispatch.get_run(pool, run.id)
    assert stored is not None and "token_hash" not in stored
    assert stored["status"] == "failed" and stored["error"] == "ValueError: boom"
    assert stored["result"] == {"entry": {"triage": "boom"}} and stored["traceback"] == "tb.py:3"
    assert stored["finished_at"] is not None and stored["lease_expires_at"] is None
    with pytest.raises(NotLeased):
        await dispatch.heartbeat(pool, run.id, run.token, lease_seconds=30)
    with pytest.raises(ValueError, match="succeeded, failed or denied"):
        await dispatch.complete(pool, run.id, run.token, RunRecord("dead"))


async def test_oversized_outputs_are_truncated_with_a_marker(
    pool: asyncpg.Pool, seed_runs: SeedRuns
) -> None:
    await seed_runs(1)
    (run,) = await dispatch.claim(pool, "pod", limit=1, lease_seconds=30)
    huge = {"blob": "x" * (MAX_RESULT_BYTES + 10)}
    record = RunRecord("succeeded", huge, error="e" * 100_000, traceback="t" * 100_000)
    assert await dispatch.complete(pool, run.id, run.token, record)
    stored = await row(pool, run.id)
    result = json.loads(stored["result"])
    assert result["truncated"] is True
    assert result["originalBytes"] == len(json.dumps(huge, separators=(",", ":")))
    assert result["preview"].startswith('{"blob":"xxx')
    assert stored["error"].endswith("[truncated, 100000 bytes in all]")
    assert len(stored["error"].encode()) <= 64 * 1024
    assert stored["traceback"].startswith("ttt")


async def test_release_hands_an_unstarted_run_back(pool: asyncpg.Pool, seed_runs: SeedRuns) -> None:
    await seed_runs(1)
    (run,) = await dispatch.claim(pool, "draining-pod", limit=1, lease_seconds=30)
    await dispatch.release(pool, run.id, run.token)
    stored = await row(pool, run.id)
    assert stored["status"] == "queued" and stored["attempt"] == 1 and stored["token_hash"] is None
    with pytest.raises(NotLeased):
        await dispatch.complete(pool, run.id, run.token, RunRecord("succeeded"))
    (again,) = await dispatch.claim(pool, "other-pod", limit=1, lease_seconds=30)
    assert again.id == run.id and again.attempt == 1 and again.token != run.token
