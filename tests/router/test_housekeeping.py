"""Retention rounds on the real PostgreSQL: old and surplus alerts go with their runs,
unfinished work stays, and one replica at a time does a round."""

from __future__ import annotations

import asyncpg
import pytest
from kubesoar_router.housekeeping import (
    LOCK_KEY,
    NamespaceRetention,
    Retention,
    one_round,
    parse_namespace_retention,
)
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


async def test_a_namespace_with_its_own_retention_keeps_its_own_terms(database_url):
    pool = await create_pool(database_url, min_size=1, max_size=4)
    try:
        for namespace in ("acme", "globex", "initech", "other"):
            await _seed(pool, namespace, 4, status="succeeded")
        await pool.execute("UPDATE alerts SET received_at = now() - interval '40 days'")
        policy = Retention(
            retention_days=30,
            max_alerts_per_namespace=3,
            namespaces={
                "acme": NamespaceRetention(days=90),  # a longer contract: kept at 40 days
                "globex": NamespaceRetention(days=0, max_alerts=1),  # count only
                "initech": NamespaceRetention(max_alerts=0),  # default days, no count limit
            },
        )
        done = await one_round(pool, policy)
        left = dict(await pool.fetch("SELECT namespace, count(*) FROM alerts GROUP BY namespace"))
    finally:
        await pool.close()
    # acme: 90 days keeps all 4, then the default count 3 applies; globex: never by age,
    # count 1; initech and other: 30 days takes all.
    assert left == {"acme": 3, "globex": 1}
    assert done["byAge"] == 8 and done["byCount"] == 1 + 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("acme=90", ("acme", NamespaceRetention(90.0, None))),
        ("acme=90,50000", ("acme", NamespaceRetention(90.0, 50000))),
        ("acme=,10", ("acme", NamespaceRetention(None, 10))),
        ("acme=0,0", ("acme", NamespaceRetention(0.0, 0))),
    ],
)
def test_namespace_retention_flags_parse(text: str, expected: object) -> None:
    assert parse_namespace_retention(text) == expected


@pytest.mark.parametrize("text", ["acme", "=30", "acme=", "acme=,", "acme=x", "acme=1,2.5", "a=-1"])
def test_bad_namespace_retention_flags_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"NAMESPACE=DAYS|a number|0 \(no limit\)"):
        parse_namespace_retention(text)
