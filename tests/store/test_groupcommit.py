"""Group commit on a real PostgreSQL: concurrent submissions share commits, each gets its
own answer only after the commit, duplicates are caught across two "router replicas"
(two pools), and any database failure reaches every waiter of the batch."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid

import asyncpg
import pytest
from kubesoar_store import (
    Accepted,
    GroupCommitter,
    InvalidSubmission,
    NewAlert,
    NewRun,
    StoreOverloaded,
    StoreUnavailable,
)
from kubesoar_store.pool import create_pool


def key(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()[:16]


def submission(
    i: int, dedup: str | None = None, window: float = 3600.0
) -> tuple[NewAlert, list[NewRun]]:
    alert = NewAlert(
        namespace=f"ns{i % 3}",
        source="siem",
        alert={"title": f"alert {i}", "n": i},
        correlation_id=f"corr-{i}",
        dedup_key=key(dedup) if dedup is not None else None,
        dedup_window_seconds=window,
    )
    runs = [
        NewRun(playbook=f"pb{j}", idempotency_key=f"{alert.id}:pb{j}", entry_points=["a", "b"])
        for j in range(i % 3)
    ]
    return alert, runs


async def test_concurrent_submissions_all_committed_with_their_own_answers(
    pool: asyncpg.Pool,
) -> None:
    # 200 at once: 150 with a dedup key each, 20 repeating one of those keys, 30 without a key.
    subs = [submission(i, dedup=f"k{i}") for i in range(150)]
    subs += [submission(150 + i, dedup=f"k{i}") for i in range(20)]
    subs += [submission(170 + i) for i in range(30)]
    async with GroupCommitter(pool, max_batch=64) as committer:
        results = await asyncio.gather(*(committer.submit(a, r) for a, r in subs))

    accepted = {res.alert_id: res for res in results if not res.duplicate}
    duplicates = [res for res in results if res.duplicate]
    assert len(duplicates) == 20 and len(accepted) == 180
    # Each key was won by exactly one of the submissions that carried it.
    for i in range(20):
        first, repeat = results[i], results[150 + i]
        assert first.duplicate != repeat.duplicate
    stored = await pool.fetch("SELECT id, namespace, alert, correlation_id FROM alerts")
    assert {row["id"] for row in stored} == set(accepted)
    by_id = {a.id: (a, r) for a, r in subs}
    for row in stored:
        alert, runs = by_id[row["id"]]
        assert row["namespace"] == alert.namespace and row["correlation_id"] == alert.correlation_id
        assert accepted[row["id"]].run_ids == tuple(run.id for run in runs)
    run_rows = await pool.fetch("SELECT id, alert_id, status, attempt, entry_points FROM runs")
    expected_runs = {run.id for res in accepted.values() for run in by_id[res.alert_id][1]}
    assert {row["id"] for row in run_rows} == expected_runs
    assert all(row["status"] == "queued" and row["attempt"] == 1 for row in run_rows)
    assert all(row["entry_points"] == ["a", "b"] for row in run_rows)
    # Shared commits: rows of one transaction share xmin; 200 submissions, batches of 64.
    assert await pool.fetchval("SELECT count(DISTINCT xmin::text) FROM alerts") <= 4


async def test_duplicates_are_caught_across_two_router_replicas(
    pool: asyncpg.Pool, database_url: str
) -> None:
    other_pool = await create_pool(database_url, min_size=1, max_size=4)
    try:
        async with GroupCommitter(pool) as one, GroupCommitter(other_pool) as two:
            # Each key sent to both replicas at the same time, 100 keys.
            calls = []
            for i in range(100):
                for committer in (one, two):
                    alert, runs = submission(i, dedup=f"shared{i}")
                    calls.append(committer.submit(alert, runs))
            results = await asyncio.gather(*calls)
    finally:
        await other_pool.close()
    for i in range(100):
        pair = results[2 * i : 2 * i + 2]
        assert sorted(res.duplicate for res in pair) == [False, True]
    assert await pool.fetchval("SELECT count(*) FROM alerts") == 100


async def test_an_expired_dedup_key_is_free_again(committer: GroupCommitter) -> None:
    alert, _ = submission(1, dedup="short", window=0.0)
    assert not (await committer.submit(alert)).duplicate
    again, _ = submission(2, dedup="short", window=3600.0)
    assert not (await committer.submit(again)).duplicate
    third, _ = submission(3, dedup="short")
    assert (await committer.submit(third)).duplicate


async def test_an_existing_idempotency_key_creates_no_second_run(
    committer: GroupCommitter, pool: asyncpg.Pool
) -> None:
    first_alert, _ = submission(0)
    first = await committer.submit(first_alert, [NewRun("pb", "same-key")])
    second_alert, _ = submission(1)
    second = await committer.submit(second_alert, [NewRun("pb", "same-key")])
    assert len(first.run_ids) == 1 and second.run_ids == () and not second.duplicate
    assert await pool.fetchval("SELECT count(*) FROM runs") == 1


async def test_unreachable_database_fails_every_waiter() -> None:
    # Nothing listens on port 1; min_size=0 so the pool only connects when used.
    pool = await asyncpg.create_pool(
        "postgresql://kubesoar:pw@127.0.0.1:1/kubesoar", min_size=0, max_size=2, timeout=2
    )
    try:
        async with GroupCommitter(pool) as committer:
            results = await asyncio.gather(
                *(committer.submit(*submission(i)) for i in range(50)), return_exceptions=True
            )
    finally:
        await pool.close()
    assert all(isinstance(res, StoreUnavailable) for res in results), results


async def test_a_failing_statement_fails_every_waiter_and_writes_nothing(
    pool: asyncpg.Pool,
) -> None:
    await pool.execute("ALTER TABLE alerts ADD CONSTRAINT refuse CHECK (false) NOT VALID")
    async with GroupCommitter(pool, max_batch=16) as committer:
        results = await asyncio.gather(
            *(committer.submit(*submission(i, dedup=f"f{i}")) for i in range(40)),
            return_exceptions=True,
        )
    assert all(isinstance(res, StoreUnavailable) for res in results)
    assert "refuse" in str(results[0])
    assert await pool.fetchval("SELECT count(*) FROM alerts") == 0
    # The dedup keys were rolled back with their batch: a retry is not a duplicate.
    assert await pool.fetchval("SELECT count(*) FROM dedup_keys") == 0


async def test_a_full_queue_is_refused_at_once_and_the_rest_commit(
    pool: asyncpg.Pool, database_url: str
) -> None:
    blocker = await asyncpg.connect(database_url)
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE alerts IN EXCLUSIVE MODE")  # inserts wait
        async with GroupCommitter(pool, max_pending=10, max_batch=4) as committer:
            waiting = [asyncio.create_task(committer.submit(*submission(i))) for i in range(10)]
            await asyncio.sleep(0.05)
            assert committer.outstanding == 10
            # Nobody is answered before the commit, which the lock holds back.
            assert not any(task.done() for task in waiting)
            with pytest.raises(StoreOverloaded):
                await committer.submit(*submission(99))
            await tx.rollback()
            results = await asyncio.gather(*waiting)
    finally:
        await blocker.close()
    assert len({res.alert_id for res in results}) == 10
    assert await pool.fetchval("SELECT count(*) FROM alerts") == 10


async def test_submit_after_close_is_refused(pool: asyncpg.Pool) -> None:
    committer = GroupCommitter(pool)
    await committer.start()
    pending = asyncio.create_task(committer.submit(*submission(1)))
    await asyncio.sleep(0)
    await committer.close()
    assert isinstance((await pending).alert_id, uuid.UUID)  # submitted before close: committed
    with pytest.raises(StoreUnavailable, match="not running"):
        await committer.submit(*submission(2))


async def test_text_postgres_cannot_hold_is_replaced_not_refused(
    committer: GroupCommitter, pool: asyncpg.Pool
) -> None:
    odd = {"nul": "a\x00b", "escaped": "\\u0000", "lone": "\ud800x", "emoji": "\U0001f600"}
    accepted = await committer.submit(NewAlert("ns", "src", odd))
    stored = await pool.fetchval("SELECT alert FROM alerts WHERE id = $1", accepted.alert_id)
    assert json.loads(stored) == {
        "nul": "a\ufffdb",
        "escaped": "\\u0000",
        "lone": "\ufffdx",
        "emoji": "\U0001f600",
    }


async def test_a_poison_alert_fails_alone_and_its_batch_commits(
    pool: asyncpg.Pool,
) -> None:
    # A 10 KB incompressible correlation id is over the btree index row limit (SQLSTATE 54000).
    poison = NewAlert("ns", "src", {"x": 1}, correlation_id=os.urandom(5000).hex())
    async with GroupCommitter(pool, max_batch=64) as committer:
        calls = [committer.submit(*submission(i)) for i in range(30)]
        calls.insert(10, committer.submit(poison))
        results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[10], InvalidSubmission)
    assert "index row" in str(results[10])
    good = [r for i, r in enumerate(results) if i != 10]
    assert all(isinstance(r, Accepted) and not r.duplicate for r in good)
    assert await pool.fetchval("SELECT count(*) FROM alerts") == 30


async def test_what_is_not_json_or_has_nul_in_a_name_is_refused_at_once(
    committer: GroupCommitter,
) -> None:
    with pytest.raises(InvalidSubmission, match="not storable JSON"):
        await committer.submit(NewAlert("ns", "src", {"score": float("nan")}))
    with pytest.raises(InvalidSubmission, match="NUL"):
        await committer.submit(NewAlert("ns", "src\x00", {}))
    with pytest.raises(InvalidSubmission, match="max_attempts"):
        await committer.submit(NewAlert("ns", "src", {}), [NewRun("pb", "k", max_attempts=0)])
    assert committer.outstanding == 0
