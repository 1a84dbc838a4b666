"""Retention rounds on the real PostgreSQL: old and surplus alerts go with their runs,
unfinished work stays, and one replica at a time does a round."""

from __future__ import annotations

import asyncpg
from kubesoar_router.housekeeping import LOCK_KEY, Retention, one_round
from kubesoar_store import GroupCommitter, NewAlert, NewRun
from kubesoar_store.pool import create_pool


async def _seed(pool: asyncpg.Pool, namespace: str, count: int, *, status: str) -> None:
    async with GroupCommitter(pool) as committer:
        for index in range(count):
            run = NewRun(playbook="triage", idempotency_key=f"{namespace}-{index}")
            await committer.submit(NewAlert(namespace, "siem", {"title": str(index)}), [run])
    await pool.execute("UPDATE runs SET status = $2 WHERE namespace = $1", namespace, status)


async def test_a_round_deletes_by_age_and_count_but_keeps_unfinished_work(database_url):
    pool = await create_pool(database_url, min_size=1, max_size=4)
    try:
        await _seed(pool, "old", 3, status="succeeded")
        await _seed(pool, "busy", 2, status="queued")
        await _seed(pool, "many", 5, status="failed")
        # "old" and "busy" were received 40 days ago.
        await pool.execute(
            "UPDATE alerts SET received_at = now() - interval '40 days'"
            " WHERE namespace IN ('old', 'busy')"
        )
        done = await one_round(pool, Retention(retention_days=30, max_alerts_per_namespace=2))
        left = dict(await pool.fetch("SELECT namespace, count(*) FROM alerts GROUP BY namespace"))
        runs_left = await pool.fetchval("SELECT count(*) FROM runs")
    finally:
        await pool.close()
    assert done["byAge"] == 3 and done["byCount"] == 3
    assert left == {"busy": 2, "many": 2}  # queued runs keep their alerts whatever their age
    assert runs_left == 4  # runs went with their alerts


async def test_a_round_is_skipped_while_another_replica_holds_the_lock(database_url):
    pool = await create_pool(database_url, min_size=1, max_size=4)
    other = await asyncpg.connect(database_url)
    try:
        await _seed(pool, "old", 1, status="succeeded")
        await pool.execute("UPDATE alerts SET received_at = now() - interval '40 days'")
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY)
        assert await one_round(pool, Retention(retention_days=30)) == {}
        assert await pool.fetchval("SELECT count(*) FROM alerts") == 1
        await other.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
        assert (await one_round(pool, Retention(retention_days=30)))["byAge"] == 1
    finally:
        await other.close()
        await pool.close()
