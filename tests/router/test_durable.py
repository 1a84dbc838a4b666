"""The router with its system of record: real PostgreSQL, real runtime processes, real HTTP.

An alert is answered 202 only after it and its runs are committed; the dispatcher
pushes the runs to runtime pods, which report heartbeats, journaled actions and the
final record back over HTTP with each run's own token. A pod that dies mid-run loses
nothing: the lease runs out, the run is redelivered with `attempt + 1`, and an action
the first attempt completed is not executed again.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from durable_bed import HIGH, durable_router, send, stored_run, tenant
from kubesoar_router.durable import open_durable
from kubesoar_router.snapshot import build_namespace
from router_objects import (
    TINY_ENTRY_POINTS,
    alertsource,
    playbook,
)

JOURNALED_PLAYBOOK = """
import asyncio, os
from kubesoar import playbook, action, Alert

@action()
async def isolate(host: str) -> dict:
    with open(os.environ["SIDE_EFFECTS"], "a") as effects:
        effects.write(host + "\\n")
    return {"isolated": host}

@playbook(trigger="webhook", conditions={"severity": ["high", "critical"]}, order=10)
async def triage(alert: Alert, ctx) -> dict:
    done = await isolate("web-1")
    if os.environ.get("HANG_AFTER_ACTION"):
        await asyncio.sleep(3600)  # a pod that dies here has isolated the host already
    return {**done, "attempt": ctx.attempt}
"""


async def test_an_accepted_alert_is_committed_run_and_recorded(database_url, runtime_factory):
    runtime = runtime_factory()
    async with durable_router(database_url, [runtime]) as (_, base_url):
        response = await send(base_url, HIGH)
        assert response.status_code == 202, response.text
        answer = response.json()
        [delivery] = answer["deliveries"]
        assert delivery["playbook"] == "triage" and answer["duplicate"] is False
        row = await stored_run(database_url, delivery["runId"], until={"succeeded", "failed"})
    assert row["status"] == "succeeded", row["error"]
    assert row["attempt"] == 1
    result = json.loads(row["result"])
    [entry] = result["results"]
    assert entry["name"] == "triage" and entry["result"] == {
        "title": "Brute force",
        "tenant": "tenant-a",
    }
    # The pod ran the stored run under the stored run's id.
    assert runtime.run(delivery["runId"])["status"] == "succeeded"


async def test_the_same_body_again_is_not_a_second_run(database_url, runtime_factory):
    runtime = runtime_factory()
    async with durable_router(database_url, [runtime]) as (_, base_url):
        first = await send(base_url, HIGH)
        again = await send(base_url, HIGH)
    assert first.status_code == again.status_code == 202
    assert again.json()["deliveries"] == [] and again.json()["duplicate"] is True
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM runs") == 1
    finally:
        await conn.close()


async def test_without_a_ready_pod_the_run_waits_in_the_database(database_url, runtime_factory):
    async with durable_router(database_url, []) as (router, base_url):
        response = await send(base_url, HIGH)
        assert response.status_code == 202, response.text  # not 503: the run waits
        run_id = response.json()["deliveries"][0]["runId"]
        row = await stored_run(database_url, run_id, until={"succeeded"}, within=0.5)
        assert row["status"] == "queued"
        runtime = runtime_factory()
        router.snapshot.put(tenant([runtime]))  # a pod turns ready
        row = await stored_run(database_url, run_id, until={"succeeded", "failed"})
    assert row["status"] == "succeeded"


async def test_the_database_down_is_503_never_202(database_url, runtime_factory):
    runtime = runtime_factory()
    async with durable_router(database_url, [runtime]) as (router, base_url):
        await router.durable.pool.close()
        response = await send(base_url, HIGH)
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "unavailable"
    assert int(response.headers["Retry-After"]) >= 1


async def test_a_pod_cannot_write_a_run_it_was_not_given(database_url, runtime_factory):
    async with durable_router(database_url, []) as (_, base_url):
        run_id = (await send(base_url, HIGH)).json()["deliveries"][0]["runId"]
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            forged = await client.post(
                f"/v1/runs/{run_id}/result",
                json={"status": "succeeded", "results": []},
                headers={"Authorization": "Bearer " + "x" * 43},
            )
            unknown = await client.post(
                f"/v1/runs/{uuid.uuid4()}/actions",
                json={"seq": 0, "action": "isolate", "status": "succeeded"},
                headers={"Authorization": "Bearer " + "x" * 43},
            )
        row = await stored_run(database_url, run_id, until=set(), within=0)
    assert forged.status_code == unknown.status_code == 403
    assert forged.json()["error"] == "forbidden"
    assert row["status"] == "queued" and row["result"] is None


async def test_a_pod_killed_mid_run_loses_nothing_and_repeats_no_action(
    database_url, runtime_factory, tmp_path: Path
):
    effects = tmp_path / "side-effects.txt"
    effects.touch()
    journaled = [{**TINY_ENTRY_POINTS[0], "order": 10}]
    hanging = runtime_factory(
        JOURNALED_PLAYBOOK, env={"SIDE_EFFECTS": str(effects), "HANG_AFTER_ACTION": "1"}
    )
    healthy = runtime_factory(JOURNALED_PLAYBOOK, env={"SIDE_EFFECTS": str(effects)})
    async with durable_router(database_url, [hanging], lease_seconds=1.5) as (router, base_url):
        router.snapshot.put(tenant([hanging], entry_points=journaled))
        run_id = (await send(base_url, HIGH)).json()["deliveries"][0]["runId"]
        conn = await asyncpg.connect(database_url)
        try:
            deadline = time.monotonic() + 60  # a loaded machine: bounded, not timed
            while not await conn.fetchval(
                "SELECT count(*) FROM action_journal WHERE run_id = $1", uuid.UUID(run_id)
            ):
                assert time.monotonic() < deadline, "the action was never journaled"
                await asyncio.sleep(0.05)
        finally:
            await conn.close()
        hanging.stop()  # SIGKILL after the side effect, before the run ends
        router.snapshot.put(tenant([healthy], entry_points=journaled))
        row = await stored_run(database_url, run_id, until={"succeeded", "failed", "dead"})
        exposition = router.metrics.exposition().decode()
    assert row["status"] == "succeeded", row["error"]
    assert row["attempt"] == 2
    labels = '{playbook="triage",tenant_namespace="tenant-a"}'
    assert f"kubesoar_router_runs_redelivered_total{labels} 1.0" in exposition
    assert f"kubesoar_router_runs_dispatched_total{labels} 2.0" in exposition
    [entry] = json.loads(row["result"])["results"]
    assert entry["result"] == {"isolated": "web-1", "attempt": 2}
    assert effects.read_text().splitlines() == ["web-1"]  # isolated once, not twice
    [action] = json.loads(row["result"])["actions"]
    assert action["status"] == "replayed"


async def test_a_runtime_that_refuses_the_request_for_good_fails_the_run(
    database_url, runtime_factory
):
    runtime = runtime_factory()
    # Entry point names the pod does not have: it answers 400 unknown_playbooks.
    ghost = [{**TINY_ENTRY_POINTS[0], "name": "ghost"}]
    async with durable_router(database_url, [runtime]) as (router, base_url):
        router.snapshot.put(tenant([runtime], entry_points=ghost))
        run_id = (await send(base_url, HIGH)).json()["deliveries"][0]["runId"]
        row = await stored_run(database_url, run_id, until={"failed", "dead"})
    assert row["status"] == "failed"
    assert "unknown_playbooks" in row["error"]


async def test_a_router_started_before_the_migration_waits_for_it(empty_database_url):
    from kubesoar_router.snapshot import Snapshot
    from kubesoar_store import SchemaTooOld
    from kubesoar_store.migrate import migrate

    with pytest.raises(SchemaTooOld, match="kubesoar db migrate"):
        async with open_durable(
            empty_database_url, Snapshot(), report_url="http://x.invalid", caller_key=None
        ):
            pass

    async def migrate_soon() -> None:
        await asyncio.sleep(1.5)
        conn = await asyncpg.connect(empty_database_url)
        try:
            await migrate(conn)
        finally:
            await conn.close()

    migration = asyncio.create_task(migrate_soon())
    async with open_durable(
        empty_database_url,
        Snapshot(),
        report_url="http://x.invalid",
        caller_key=None,
        wait_seconds=30,
    ) as durable:
        assert migration.done()  # it returned only once the schema was there
        assert await durable.pool.fetchval("SELECT count(*) FROM runs") == 0


SLOW_PLAYBOOK = """
import asyncio
from kubesoar import playbook, Alert

@playbook(trigger="webhook", conditions={"severity": ["high", "critical"]}, order=10)
async def triage(alert: Alert) -> dict:
    await asyncio.sleep(3)  # long enough for its router replica to go away meanwhile
    return {"title": alert.title}
"""


async def test_a_run_is_reported_to_another_replica_when_its_own_is_gone(
    database_url, runtime_factory
):
    runtime = runtime_factory(SLOW_PLAYBOOK)
    async with durable_router(database_url, [], announce_every=0.2) as (_, peer_url):
        async with durable_router(database_url, [runtime], announce_every=0.2) as (
            router,
            base_url,
        ):
            # The dispatching replica knows its peer (announced in the database) before
            # it dispatches anything.
            deadline = time.monotonic() + 20
            while peer_url not in router.durable.dispatcher._peers:
                assert time.monotonic() < deadline, "the peer never announced itself"
                await asyncio.sleep(0.05)
            run_id = (await send(base_url, HIGH)).json()["deliveries"][0]["runId"]
            await stored_run(database_url, run_id, until={"running"})
        # The dispatching replica is gone (a rolling upgrade): the pod reports elsewhere.
        row = await stored_run(database_url, run_id, until={"succeeded", "failed", "dead"})
    assert row["status"] == "succeeded" and row["attempt"] == 1
    assert peer_url != base_url


async def test_a_draining_pod_hands_back_the_runs_it_did_not_start(database_url, runtime_factory):
    one_at_a_time = {"KUBESOAR_CONCURRENCY": "1", "KUBESOAR_DRAIN_SECONDS": "5"}
    draining = runtime_factory(SLOW_PLAYBOOK, env=one_at_a_time)
    other = runtime_factory(SLOW_PLAYBOOK)
    async with durable_router(database_url, [draining], lease_seconds=30) as (router, base_url):
        run_ids = []
        for index in range(3):
            answer = await send(base_url, {**HIGH, "source_id": f"drain-{index}"})
            run_ids.append(answer.json()["deliveries"][0]["runId"])
        for run_id in run_ids:  # all three went to the one pod: one runs, two wait there
            await stored_run(database_url, run_id, until={"running"})
        router.snapshot.put(tenant([other]))
        draining.process.terminate()  # SIGTERM: the pod drains
        rows = [
            await stored_run(database_url, run_id, until={"succeeded", "failed", "dead"}, within=40)
            for run_id in run_ids
        ]
    assert [row["status"] for row in rows] == ["succeeded"] * 3
    # Handed back, not timed out: every run finished on its first attempt, well before
    # a 30 s lease could have run out.
    assert [row["attempt"] for row in rows] == [1, 1, 1]


def shared_tenant() -> Any:
    """An HMAC source with dedup and a rate limit, and a Playbook without pods (runs wait)."""
    return build_namespace(
        "tenant-a",
        alertsources=[
            alertsource(
                "signed",
                spec={
                    "auth": {"hmac": {"secretRef": {"name": "ingest", "key": "hmac"}}},
                    "dedup": {"key": "source_id", "windowSeconds": 300},
                    "rateLimit": {"requestsPerSecond": 0.01, "burst": 2},
                },
            )
        ],
        secrets={"ingest": {"hmac": b"shared-hmac-key"}},
        playbooks=[playbook("triage", TINY_ENTRY_POINTS[:1])],
    )


async def test_dedup_replay_and_rate_limits_hold_across_router_replicas(database_url):
    """Two replicas on one database: what one accepted, the other knows."""
    from kubesoar.contracts.http import ingest_path
    from kubesoar_router.auth import sign

    def signed(body: bytes) -> dict[str, str]:
        stamp = str(int(time.time()))
        path = ingest_path("tenant-a", "signed")
        return {
            "X-Kubesoar-Timestamp": stamp,
            "X-Kubesoar-Signature": sign(b"shared-hmac-key", stamp, body, path=path),
        }

    async def post(base_url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            path = "/v1/namespaces/tenant-a/sources/signed/alerts"
            return await client.post(path, content=body, headers=headers)

    async with durable_router(database_url, []) as (a, a_url):
        async with durable_router(database_url, []) as (b, b_url):
            for router in (a, b):
                router.snapshot.put(shared_tenant())
            first = json.dumps({**HIGH, "source_id": "e-1"}).encode()
            headers = signed(first)
            accepted = await post(a_url, first, headers)
            replayed = await post(b_url, first, headers)  # the same signed request
            # The same alert again (another body, the same dedup key), freshly signed.
            again = json.dumps({**HIGH, "source_id": "e-1", "title": "again"}).encode()
            duplicate = await post(b_url, again, signed(again))
            # Burst 2 for the source across both replicas: the third alert is refused.
            third = json.dumps({**HIGH, "source_id": "e-3"}).encode()
            limited = await post(b_url, third, signed(third))
    assert accepted.status_code == 202 and accepted.json()["duplicate"] is False
    assert replayed.status_code == 401 and replayed.json()["error"] == "unauthorized"
    assert duplicate.status_code == 202 and duplicate.json()["duplicate"] is True
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    rejected = [
        line
        for line in b.metrics.exposition().decode().splitlines()
        if line.startswith("kubesoar_router_alerts_rejected_total{") and 'reason="replayed"' in line
    ]
    assert rejected == [
        'kubesoar_router_alerts_rejected_total{reason="replayed",source="signed",'
        'tenant_namespace="tenant-a"} 1.0'
    ]
