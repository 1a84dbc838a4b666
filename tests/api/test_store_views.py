"""The store queries behind runs.kubesoar.dev, on a real PostgreSQL: keyset paging that
neither skips nor repeats a run (group commit gives a whole batch one created_at),
filters, the watch query's paging inside one timestamp, and alert updates with their
activity log, validation and resourceVersion precondition."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from kubesoar_store import GroupCommitter, NewAlert, NewRun, alertviews, runviews
from kubesoar_store.paging import BadContinue, Position
from kubesoar_store.pool import create_pool


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=8)
    yield pool
    await pool.close()


async def _seed(pool: asyncpg.Pool, namespace: str, n: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """n alerts with one run each, submitted concurrently (so batches share a timestamp)."""
    async with GroupCommitter(pool) as committer:

        async def one(i: int) -> tuple[uuid.UUID, uuid.UUID]:
            playbook = "triage" if i % 3 else "enrich"
            run = NewRun(playbook=playbook, idempotency_key=f"{uuid.uuid4()}:{playbook}")
            alert = NewAlert(
                namespace=namespace, source="siem", alert={"title": f"a{i}"}, correlation_id=f"c{i}"
            )
            accepted = await committer.submit(alert, [run])
            return accepted.alert_id, run.id

        return await asyncio.gather(*(one(i) for i in range(n)))


async def test_paging_returns_every_run_once_newest_first(pool: asyncpg.Pool) -> None:
    seeded = await _seed(pool, "acme", 730)
    await _seed(pool, "other", 20)
    ties = await pool.fetchval(
        "SELECT max(c) FROM (SELECT count(*) AS c FROM runs GROUP BY created_at) AS t"
    )
    assert ties > 100  # pages end inside a group of equal timestamps
    seen: list[dict[str, object]] = []
    after = None
    for _ in range(20):
        page = await runviews.list_runs(
            pool, runviews.RunFilter(namespace="acme"), limit=100, after=after
        )
        seen += page.runs
        if page.next is None:
            break
        after = Position.parse(page.next.token())
    assert len(seen) == 730 == len({r["id"] for r in seen})
    assert {r["id"] for r in seen} == {run for _, run in seeded}
    keys = [(r["created_at"], r["id"]) for r in seen]
    assert keys == sorted(keys, reverse=True)


async def test_filters_select_by_playbook_status_alert_and_correlation(pool: asyncpg.Pool) -> None:
    seeded = await _seed(pool, "acme", 9)
    enrich = await runviews.list_runs(pool, runviews.RunFilter(namespace="acme", playbook="enrich"))
    assert len(enrich.runs) == 3 and {r["playbook"] for r in enrich.runs} == {"enrich"}
    queued = runviews.RunFilter(namespace="acme", status="queued")
    assert len((await runviews.list_runs(pool, queued)).runs) == 9
    failed = runviews.RunFilter(namespace="acme", status="failed")
    assert (await runviews.list_runs(pool, failed)).runs == []
    alert_id, run_id = seeded[4]
    by_alert = runviews.RunFilter(namespace="acme", alert_id=alert_id)
    assert [r["id"] for r in (await runviews.list_runs(pool, by_alert)).runs] == [run_id]
    by_correlation = runviews.RunFilter(namespace="acme", correlation_id="c4")
    assert [r["id"] for r in (await runviews.list_runs(pool, by_correlation)).runs] == [run_id]
    elsewhere = runviews.RunFilter(namespace="globex", alert_id=alert_id)
    assert (await runviews.list_runs(pool, elsewhere)).runs == []
    assert await runviews.get_run(pool, "globex", run_id) is None
    run = await runviews.get_run(pool, "acme", run_id)
    assert run is not None and run["journal"] == [] and run["correlation_id"] == "c4"


async def test_since_keeps_the_runs_created_then_or_later(pool: asyncpg.Pool) -> None:
    await _seed(pool, "acme", 3)
    await pool.execute("UPDATE runs SET created_at = created_at - interval '3 hours'")
    recent = await _seed(pool, "acme", 2)
    now = await runviews.database_now(pool)
    hour_ago = runviews.RunFilter(namespace="acme", since=now - timedelta(hours=1))
    listed = (await runviews.list_runs(pool, hour_ago)).runs
    assert {r["id"] for r in listed} == {run for _, run in recent}
    day_ago = runviews.RunFilter(namespace="acme", since=now - timedelta(days=1))
    assert len((await runviews.list_runs(pool, day_ago)).runs) == 5


async def test_the_watch_query_pages_inside_one_timestamp(pool: asyncpg.Pool) -> None:
    await _seed(pool, "acme", 300)
    since = await pool.fetchval("SELECT min(updated_at) FROM runs") - timedelta(seconds=1)
    seen: list[uuid.UUID] = []
    start, after_id = since, None
    for _ in range(20):
        rows = await runviews.changed_runs(
            pool, runviews.RunFilter(namespace="acme"), since=start, after_id=after_id, limit=50
        )
        seen += [r["id"] for r in rows]
        if len(rows) < 50:
            break
        start, after_id = rows[-1]["updated_at"], rows[-1]["id"]
    assert len(seen) == 300 == len(set(seen))


async def test_alert_updates_record_who_changed_what(pool: asyncpg.Pool) -> None:
    [(alert_id, _)] = await _seed(pool, "acme", 1)
    change = alertviews.AlertChange(
        status="resolved", determination="benign", assignee="alice", comment="scanner"
    )
    alert = await alertviews.update_alert(pool, "acme", alert_id, change, actor="user:alice")
    assert alert is not None
    assert (alert["status"], alert["determination"], alert["assignee"]) == (
        "resolved",
        "benign",
        "alice",
    )
    assert alert["resolved_at"] is not None
    kinds = [(a["kind"], a["old_value"], a["new_value"], a["actor"]) for a in alert["activity"]]
    assert kinds == [
        ("status", "new", "resolved", "user:alice"),
        ("determination", "unknown", "benign", "user:alice"),
        ("assignee", None, "alice", "user:alice"),
        ("comment", None, "scanner", "user:alice"),
    ]
    # The same values again change nothing and log nothing; reopening clears resolved_at.
    same = alertviews.AlertChange(status="resolved", assignee="alice")
    again = await alertviews.update_alert(pool, "acme", alert_id, same, actor="user:bob")
    assert again is not None and len(again["activity"]) == 4
    reopened = await alertviews.update_alert(
        pool,
        "acme",
        alert_id,
        alertviews.AlertChange(status="in_progress", assignee=""),
        actor="run:r1",
    )
    assert reopened is not None and reopened["resolved_at"] is None
    assert reopened["assignee"] is None and reopened["activity"][-1]["actor"] == "run:r1"
    # Another namespace's alert is not there to change.
    assert await alertviews.update_alert(pool, "globex", alert_id, same, actor="user:x") is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (alertviews.AlertChange(status="closed"), "status must be one of"),
        (alertviews.AlertChange(determination="evil"), "determination must be one of"),
        (alertviews.AlertChange(comment="  "), "must not be empty"),
        (alertviews.AlertChange(comment="x" * 20_000), "at most"),
        (alertviews.AlertChange(assignee="a" * 300), "longer than"),
    ],
)
async def test_bad_alert_changes_are_refused_with_a_reason(
    pool: asyncpg.Pool, change: alertviews.AlertChange, problem: str
) -> None:
    [(alert_id, _)] = await _seed(pool, "acme", 1)
    with pytest.raises(ValueError, match=problem):
        await alertviews.update_alert(pool, "acme", alert_id, change, actor="user:a")
    alert = await alertviews.get_alert(pool, "acme", alert_id)
    assert alert is not None and alert["activity"] == [] and alert["status"] == "new"


async def test_a_stale_resource_version_is_refused(pool: asyncpg.Pool) -> None:
    [(alert_id, _)] = await _seed(pool, "acme", 1)
    before = await alertviews.get_alert(pool, "acme", alert_id)
    assert before is not None
    first = alertviews.AlertChange(status="in_progress")
    await alertviews.update_alert(
        pool, "acme", alert_id, first, actor="user:a", expect_updated_at=before["updated_at"]
    )
    with pytest.raises(alertviews.StaleAlert):
        await alertviews.update_alert(
            pool,
            "acme",
            alert_id,
            alertviews.AlertChange(status="new"),
            actor="user:b",
            expect_updated_at=before["updated_at"],
        )


def test_a_continue_token_from_elsewhere_is_refused() -> None:
    for token in ("nope", "eyJ0IjogMX0", ""):
        with pytest.raises(BadContinue):
            Position.parse(token)


async def test_a_dead_run_is_redelivered_as_one_more_attempt(pool: asyncpg.Pool) -> None:
    [(_, run_id)] = await _seed(pool, "acme", 1)
    assert await runviews.redeliver(pool, "acme", run_id) == "queued"  # not redelivered
    await pool.execute(
        "UPDATE runs SET status = 'dead', attempt = 3, max_attempts = 3, finished_at = now(),"
        " error = 'lease expired' WHERE id = $1",
        run_id,
    )
    assert await runviews.redeliver(pool, "globex", run_id) is None  # another namespace's
    assert await runviews.redeliver(pool, "acme", run_id) == "dead"
    run = await runviews.get_run(pool, "acme", run_id)
    assert run is not None
    assert (run["status"], run["attempt"], run["max_attempts"]) == ("queued", 4, 4)
    assert run["finished_at"] is None
