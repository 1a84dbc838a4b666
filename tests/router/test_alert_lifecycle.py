"""A playbook's OpenSOAR lifecycle calls change its alert in the system of record.

`resolve_current_alert`, `assign_current_alert` and `add_current_alert_comment` record
their changes in the run's result (`alertActivity`); when the runtime reports the
result with the run's own token, the router applies them to that run's alert — never
another, whatever the records claim — in the transaction that records the result, as
actor `run:<id>`. Real PostgreSQL, a real runtime process, the real router.
"""

from __future__ import annotations

from kubesoar_store import alertviews
from kubesoar_store.pool import create_pool
from test_durable import HIGH, durable_router, send, stored_run

RESOLVING_PLAYBOOK = """
from opensoar import (
    add_current_alert_comment, assign_current_alert, playbook, resolve_current_alert,
)

@playbook(trigger="webhook", conditions={"severity": ["high", "critical"]}, order=10)
async def triage(alert) -> dict:
    await assign_current_alert(username="soc-bot")
    await add_current_alert_comment("known scanner, closing")
    return await resolve_current_alert(determination="benign", reason="scanner")
"""


async def test_a_playbook_resolves_its_own_alert(database_url, runtime_factory) -> None:
    runtime = runtime_factory(RESOLVING_PLAYBOOK)
    async with durable_router(database_url, [runtime]) as (_, base_url):
        other = (await send(base_url, {**HIGH, "source_id": "other", "title": "other"})).json()
        other_row = await stored_run(
            database_url, other["deliveries"][0]["runId"], until={"succeeded", "failed"}
        )
        answer = (await send(base_url, HIGH)).json()
        assert answer["deliveries"][0]["runId"], answer
        run_id = answer["deliveries"][0]["runId"]
        row = await stored_run(database_url, run_id, until={"succeeded", "failed"})
    assert row["status"] == "succeeded", row["error"]
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        alert = await alertviews.get_alert(pool, "tenant-a", row["alert_id"])
        other_alert = await alertviews.get_alert(pool, "tenant-a", other_row["alert_id"])
    finally:
        await pool.close()
    assert alert is not None
    assert (alert["status"], alert["determination"], alert["assignee"]) == (
        "resolved",
        "benign",
        "soc-bot",
    )
    assert alert["resolved_at"] is not None
    changes = [(a["kind"], a["new_value"]) for a in alert["activity"]]
    assert changes == [
        ("status", "in_progress"),
        ("assignee", "soc-bot"),
        ("comment", "known scanner, closing"),
        ("status", "resolved"),
        ("determination", "benign"),
    ]
    assert {a["actor"] for a in alert["activity"]} == {f"run:{run_id}"}
    # The other alert's own run resolved it, not this one's.
    assert other_alert is not None and other_alert["status"] == "resolved"
    assert {a["actor"] for a in other_alert["activity"]} == {
        f"run:{other['deliveries'][0]['runId']}"
    }


async def test_activity_records_cannot_reach_another_alert(database_url) -> None:
    """The records name an alert id, but only the run's own alert is changed; values that
    do not validate are skipped."""
    from kubesoar_store import GroupCommitter, NewAlert, NewRun

    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        async with GroupCommitter(pool) as committer:
            mine = NewRun(playbook="pb", idempotency_key="k-mine")
            theirs = NewRun(playbook="pb", idempotency_key="k-theirs")
            own = await committer.submit(NewAlert(namespace="a", source="s", alert={}), [mine])
            other = await committer.submit(NewAlert(namespace="b", source="s", alert={}), [theirs])
        activity = [
            {
                "alert_id": str(other.alert_id),
                "action": "status_change",
                "metadata": {"new": "resolved"},
            },
            {"action": "determination_set", "metadata": {"new": "evil"}},
            {"action": "status_change", "metadata": {"new": ["resolved"]}},
            "not a record",
        ]
        async with pool.acquire() as conn, conn.transaction():
            applied = await alertviews.apply_run_activity(conn, mine.id, activity)
        assert applied == 1
        mine_now = await alertviews.get_alert(pool, "a", own.alert_id)
        theirs_now = await alertviews.get_alert(pool, "b", other.alert_id)
        assert mine_now is not None and theirs_now is not None
        assert (mine_now["status"], mine_now["determination"]) == ("resolved", "unknown")
        assert theirs_now["status"] == "new" and theirs_now["activity"] == []
    finally:
        await pool.close()
