"""spec.scaling against the real API server and the autoscaler's query against a real
PostgreSQL: the CRD defaults `scaling: {}` and refuses an inverted range with a message
saying what is wrong; `RunCounts.active_runs` counts queued and running runs per
Playbook (and nothing finished) in one query, None when the database is unreachable;
a second sweep of the same kind runs alongside the first (the autoscaler's poll)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import asyncpg
import kopf
import pytest
import yaml
from kubesoar_operator import refresher
from kubesoar_operator.runcounts import RunCounts
from kubesoar_store import GroupCommitter, NewAlert, NewRun
from kubesoar_store.pool import create_pool
from op_fakes import playbook
from support.cluster import ClusterHandle
from support.stack import apply_crds


def _playbook(name: str, scaling: dict[str, Any]) -> dict[str, Any]:
    body = playbook(name)
    del body["metadata"]["namespace"], body["metadata"]["uid"], body["metadata"]["generation"]
    del body["spec"]["replicas"]
    body["spec"]["scaling"] = scaling
    return body


@pytest.mark.cluster
def test_the_crd_defaults_scaling_and_refuses_an_inverted_range(
    local_cluster: ClusterHandle, namespace: str
) -> None:
    apply_crds(local_cluster.kubectl)
    kubectl = local_cluster.kubectl
    inverted = _playbook("bad", {"minReplicas": 3, "maxReplicas": 2})
    bad = kubectl("-n", namespace, "apply", "-f", "-", check=False, input=yaml.safe_dump(inverted))
    assert bad.returncode != 0
    assert "spec.scaling.minReplicas must not exceed spec.scaling.maxReplicas" in bad.stderr
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(_playbook("ok", {})))
    stored = kubectl("-n", namespace, "get", "playbook", "ok", "-o", "jsonpath={.spec}").stdout
    spec = yaml.safe_load(stored)
    assert spec["scaling"] == {"minReplicas": 0, "maxReplicas": 1, "idleSeconds": 300}
    assert spec["replicas"] == 1  # still defaulted; not used while scaling is set


async def _seed(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        async with GroupCommitter(pool) as committer:
            plan = [("acme", "triage", "queued")] * 3 + [
                ("acme", "triage", "running"),
                ("acme", "triage", "succeeded"),
                ("acme", "enrich", "failed"),
                ("globex", "triage", "running"),
            ]
            for index, (namespace, name, status) in enumerate(plan):
                run = NewRun(playbook=name, idempotency_key=f"k-{index}")
                await committer.submit(NewAlert(namespace, "siem", {"n": index}), [run])
                if status == "running":
                    await pool.execute(
                        "UPDATE runs SET status = 'running', lease_owner = 'test',"
                        " lease_expires_at = now() + interval '1 minute' WHERE id = $1",
                        run.id,
                    )
                elif status != "queued":
                    await pool.execute(
                        "UPDATE runs SET status = $2, finished_at = now() WHERE id = $1",
                        run.id,
                        status,
                    )
    finally:
        await pool.close()


async def test_active_runs_count_queued_and_running_per_playbook(database_url: str) -> None:
    await _seed(database_url)
    counts = RunCounts(database_url)
    try:
        active = await asyncio.to_thread(counts.active_runs, 0)
    finally:
        await asyncio.to_thread(counts.close)
    assert active == {("acme", "triage"): (3, 1), ("globex", "triage"): (0, 1)}


async def test_active_runs_of_an_unreachable_database_are_none(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    port = conn._addr[1]
    await conn.close()
    counts = RunCounts(f"postgresql://nobody:x@127.0.0.1:{port + 1}/none")
    try:
        assert await asyncio.to_thread(counts.active_runs, 0) is None
    finally:
        await asyncio.to_thread(counts.close)


async def test_two_sweeps_of_one_kind_both_run() -> None:
    named = {"counts": threading.Event(), "autoscale": threading.Event()}
    refreshed = threading.Event()

    def refresh(body: kopf.Body) -> float | None:
        refreshed.set()
        return 3600.0

    def sweep_of(name: str) -> refresher.SweepFn:
        def sweep() -> list[tuple[str, str]]:
            named[name].set()
            return []

        return sweep

    queue = refresher.Refresher(max_parallel=1)
    queue.register("playbooks", refresh, interval=3600.0)
    queue.register_sweep("playbooks", sweep_of("counts"), interval=0.0)
    queue.register_sweep("playbooks", sweep_of("autoscale"), interval=0.0, name="autoscale")
    stop = asyncio.Event()
    task = asyncio.create_task(queue.run(stop, tick=0.01))
    for _ in range(500):
        if all(e.is_set() for e in named.values()):
            break
        await asyncio.sleep(0.01)
    stop.set()
    await task
    assert all(e.is_set() for e in named.values())
