"""The bench's behaviour slice (`bench.py slice`, run by
tests/router/test_durable_bench_slice.py): send a bounded number of alerts through the
bench's processes, collect the run ids of the 202s, wait until no run is queued or
running, and compare with what the database holds. No timing is asserted on."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
import database
import loadgen
import router_main
import stack


async def send_and_collect(url: str, alerts: int, connections: int) -> dict[str, Any]:
    """Send `alerts` alerts; the run ids of the 202 answers and the other answers."""
    run_ids: list[str] = []
    others: dict[str, int] = {}
    queue = list(range(alerts))
    headers = {"Authorization": f"Bearer {router_main.TOKEN}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def worker() -> None:
            while queue:
                body = loadgen.alert_body(queue.pop())
                async with session.post(url, data=body, headers=headers) as response:
                    answer = await response.json(content_type=None)
                    if response.status == 202:
                        run_ids.extend(d["runId"] for d in answer["deliveries"])
                    else:
                        others[str(response.status)] = others.get(str(response.status), 0) + 1

        await asyncio.gather(*(worker() for _ in range(connections)))
    return {"run_ids": run_ids, "others": others}


async def final_statuses(url: str, run_ids: list[str]) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT id::text AS id, status, attempt FROM runs")
        alerts = await conn.fetchval("SELECT count(*) FROM alerts")
    finally:
        await conn.close()
    stored = {row["id"]: row["status"] for row in rows}
    by_status: dict[str, int] = {}
    for status in stored.values():
        by_status[status] = by_status.get(status, 0) + 1
    return {
        "alerts_stored": alerts,
        "runs_stored": len(stored),
        "by_status": by_status,
        "redelivered": sum(1 for row in rows if row["attempt"] > 1),
        "missing": sorted(i for i in run_ids if stored.get(i) not in database.FINAL),
        "unexpected": sorted(set(stored) - set(run_ids)),
    }


async def run(servers: stack.Stack, url: str, alerts: int) -> dict[str, Any]:
    """Every accepted alert must end with one final run; none missing, none extra."""
    sent = await send_and_collect(servers.ingest_url, alerts, 16)
    # Bounded: three attempts with the default 30 s lease fit well within it.
    drain = await database.wait_final(url, 240)
    stored = await final_statuses(url, sent["run_ids"])
    errors = servers.log_records("router", "error", "critical") + servers.log_records(
        "runtime", "error", "critical"
    )
    return {
        "sent": alerts,
        "accepted": len(sent["run_ids"]),
        "other_answers": sent["others"],
        "drain_s": drain,
        **stored,
        "error_log_records": [str(r.get("message"))[:300] for r in errors],
    }
