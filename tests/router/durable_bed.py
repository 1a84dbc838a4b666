"""The router with its system of record on loopback, for tests: one tenant (`tenant-a`,
source `siem`, Playbook `triage`) whose pods are the given runtime processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Any

import asyncpg
import httpx
from kubesoar_router.app import create_ingest_app
from kubesoar_router.dispatcher import DispatchPolicy
from kubesoar_router.durable import open_durable
from kubesoar_router.snapshot import build_namespace
from router_objects import (
    TINY_ENTRY_POINTS,
    alertsource,
    endpointslice,
    free_port,
    new_router,
    playbook,
    serve,
)

HIGH = {"title": "Brute force", "severity": "high", "source_id": "e-1"}
TOKEN = "tok-durable"


def tenant(runtimes: list[Any], *, entry_points: list[dict[str, Any]] | None = None) -> Any:
    return build_namespace(
        "tenant-a",
        alertsources=[alertsource("siem", dedup={"windowSeconds": 0})],
        secrets={"ingest": {"token": TOKEN.encode()}},
        playbooks=[playbook("triage", entry_points or TINY_ENTRY_POINTS[:1])],
        endpointslices=[endpointslice("triage", r.host, r.port) for r in runtimes],
    )


@contextlib.asynccontextmanager
async def durable_router(database_url: str, runtimes: list[Any], **policy: Any) -> Any:
    """A router with the system of record on `database_url`, served on loopback."""
    router = new_router()
    router.snapshot.put(tenant(runtimes))
    port = free_port("127.0.0.1")  # chosen first: the dispatcher announces this URL
    async with open_durable(
        database_url,
        router.snapshot,
        report_url=f"http://127.0.0.1:{port}",
        caller_key=None,
        policy=DispatchPolicy(idle_interval=0.05, **policy),
        metrics=router.metrics,
    ) as durable:
        router.durable = durable
        async with serve(create_ingest_app(router), port=port) as base_url:
            yield router, base_url


async def send(base_url: str, alert: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        return await client.post(
            "/v1/namespaces/tenant-a/sources/siem/alerts",
            content=json.dumps(alert),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )


async def stored_run(database_url: str, run_id: str, *, until: set[str], within: float = 60) -> Any:
    """The run's row once its status is in `until` (polled)."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + within
        while True:
            row = await conn.fetchrow("SELECT * FROM runs WHERE id = $1", uuid.UUID(run_id))
            if row is not None and row["status"] in until:
                return row
            if time.monotonic() > deadline:
                return row
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
