"""status.runs from the system of record: real PostgreSQL, the operator's reader."""

from __future__ import annotations

import asyncpg
from kubesoar_operator.runcounts import RunCounts
from kubesoar_store import GroupCommitter, NewAlert, NewRun
from kubesoar_store.pool import create_pool


async def _seed(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        async with GroupCommitter(pool) as committer:
            statuses = ["succeeded", "succeeded", "failed", "dead", "queued", "waiting", "denied"]
            for index, status in enumerate(statuses):
                run = NewRun(playbook="triage", idempotency_key=f"k-{index}")
                await committer.submit(NewAlert("acme", "siem", {"title": str(index)}), [run])
                if status != "queued":
                    await pool.execute(
                        "UPDATE runs SET status = $2, finished_at = now(),"
                        " error = CASE WHEN $2 = 'succeeded' THEN NULL ELSE $2 || ' boom' END,"
                        " approval_expires_at = CASE WHEN $2 = 'waiting'"
                        "   THEN now() + interval '1 hour' END"
                        " WHERE id = $1",
                        run.id,
                        status,
                    )
    finally:
        await pool.close()


async def test_status_runs_count_every_run_on_record(database_url) -> None:
    await _seed(database_url)
    counts = RunCounts(database_url, max_age=0)
    try:
        runs = counts.status_runs("acme", "triage")
        other = counts.status_runs("globex", "triage")
    finally:
        counts.close()
    assert runs is not None
    counted = ("total", "succeeded", "failed", "dead", "queued", "waiting", "denied")
    assert {k: runs[k] for k in counted} == {
        "total": 7, "succeeded": 2, "failed": 1, "dead": 1, "queued": 1, "waiting": 1, "denied": 1,
    }  # fmt: skip
    assert runs["lastError"] in {"failed boom", "dead boom"}
    assert runs["lastErrorTime"].endswith("Z") and runs["lastRunTime"].endswith("Z")
    assert other is not None and other["total"] == 0  # another tenant's runs are not counted


async def test_an_unreachable_database_gives_none_not_zeros(database_url) -> None:
    conn = await asyncpg.connect(database_url)
    port = conn._addr[1]
    await conn.close()
    counts = RunCounts(f"postgresql://nobody:x@127.0.0.1:{port + 1}/none", max_age=0)
    try:
        assert counts.status_runs("acme", "triage") is None
    finally:
        counts.close()
