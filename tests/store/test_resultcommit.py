"""Result commit on a real PostgreSQL: concurrent results share a statement, and each
report still gets `dispatch.complete`'s own answer (written, repeat, not yours)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from kubesoar_store import NewRun, NotLeased, RunRecord, dispatch
from kubesoar_store.resultcommit import ResultCommitter

SeedRuns = Callable[..., Awaitable[list[NewRun]]]


async def _count_run_updates(pool: asyncpg.Pool) -> None:
    """A statement-level trigger that counts the UPDATE statements on runs."""
    await pool.execute(
        """
        CREATE TABLE run_update_statements (n integer NOT NULL);
        INSERT INTO run_update_statements VALUES (0);
        CREATE FUNCTION count_run_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN UPDATE run_update_statements SET n = n + 1; RETURN NULL; END $$;
        CREATE TRIGGER count_run_updates AFTER UPDATE ON runs
            FOR EACH STATEMENT EXECUTE FUNCTION count_run_update();
        """
    )


async def test_concurrent_results_are_written_together(
    pool: asyncpg.Pool, seed_runs: SeedRuns
) -> None:
    await seed_runs(60)
    claimed = await dispatch.claim(pool, "router", limit=60, lease_seconds=60)
    committer = ResultCommitter(pool, max_wait_seconds=0.05)
    answers = await asyncio.gather(
        *(
            committer.complete(
                run.id,
                run.token,
                RunRecord(status="succeeded", result={"results": [{"n": i}]}),
            )
            for i, run in enumerate(claimed)
        )
    )
    assert answers == [True] * 60
    rows = await pool.fetch(
        "SELECT status, result, lease_expires_at, finished_at FROM runs WHERE id = ANY($1)",
        [run.id for run in claimed],
    )
    assert {r["status"] for r in rows} == {"succeeded"}
    assert all(r["lease_expires_at"] is None and r["finished_at"] for r in rows)
    assert sorted(json.loads(r["result"])["results"][0]["n"] for r in rows) == list(range(60))


async def test_each_report_of_a_batch_gets_its_own_answer(
    pool: asyncpg.Pool, seed_runs: SeedRuns
) -> None:
    await seed_runs(4)
    done, ours, waiting, foreign = await dispatch.claim(pool, "router", limit=4, lease_seconds=60)
    assert await dispatch.complete(pool, done.id, done.token, RunRecord(status="failed"))
    await dispatch.release(pool, waiting.id, waiting.token)  # queued again: not running
    committer = ResultCommitter(pool, max_wait_seconds=0.05)
    outcomes = await asyncio.gather(
        committer.complete(done.id, done.token, RunRecord(status="failed")),
        committer.complete(ours.id, ours.token, RunRecord(status="denied", error="no")),
        committer.complete(waiting.id, waiting.token, RunRecord(status="succeeded")),
        committer.complete(foreign.id, "a-guessed-token", RunRecord(status="succeeded")),
        committer.complete(uuid.uuid4(), "nobody", RunRecord(status="succeeded")),
        return_exceptions=True,
    )
    repeat, written, not_running, not_yours, unknown = outcomes
    assert repeat is False and written is True
    for refused in (not_running, not_yours, unknown):
        assert isinstance(refused, NotLeased)
    statuses = dict(
        await pool.fetch(
            "SELECT id, status FROM runs WHERE id = ANY($1)",
            [done.id, ours.id, waiting.id, foreign.id],
        )
    )
    assert statuses == {
        done.id: "failed",
        ours.id: "denied",
        waiting.id: "queued",
        foreign.id: "running",
    }


async def test_a_repeated_report_in_the_same_batch_is_answered_as_a_repeat(
    pool: asyncpg.Pool, seed_runs: SeedRuns
) -> None:
    await seed_runs(1)
    [run] = await dispatch.claim(pool, "router", limit=1, lease_seconds=60)
    committer = ResultCommitter(pool, max_wait_seconds=0.05)
    first, second = await asyncio.gather(
        committer.complete(run.id, run.token, RunRecord(status="succeeded")),
        committer.complete(run.id, run.token, RunRecord(status="succeeded")),
    )
    assert (first, second) == (True, False)


async def test_many_results_cost_one_statement(pool: asyncpg.Pool, seed_runs: SeedRuns) -> None:
    await seed_runs(100)
    claimed = await dispatch.claim(pool, "router", limit=100, lease_seconds=60)
    await _count_run_updates(pool)
    committer = ResultCommitter(pool, max_wait_seconds=0.05)
    await asyncio.gather(
        *(committer.complete(r.id, r.token, RunRecord(status="succeeded")) for r in claimed[:90])
    )
    assert await pool.fetchval("SELECT n FROM run_update_statements") == 1
    for run in claimed[90:]:  # one by one, as before: a statement each
        await dispatch.complete(pool, run.id, run.token, RunRecord(status="succeeded"))
    assert await pool.fetchval("SELECT n FROM run_update_statements") == 11


async def test_a_bad_status_is_refused_before_it_is_queued(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValueError, match="succeeded, failed or denied"):
        await ResultCommitter(pool).complete(uuid.uuid4(), "t", RunRecord(status="dead"))
