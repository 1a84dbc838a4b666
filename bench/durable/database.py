"""The durable bench's reads and writes of its PostgreSQL: migrate, empty the tables
between loads, wait until every run is final, and count what was stored."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import asyncpg

FINAL = ("succeeded", "failed", "dead")


async def prepare(url: str) -> None:
    from kubesoar_store import migrate

    conn = await asyncpg.connect(url)
    try:
        await migrate.migrate(conn)
    finally:
        await conn.close()


async def empty_tables(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE alerts CASCADE; TRUNCATE dedup_keys")
    finally:
        await conn.close()


async def wait_final(url: str, limit: float) -> float:
    """Poll until no run is queued or running; the time it took (or `limit`)."""
    started = time.monotonic()
    conn = await asyncpg.connect(url)
    try:
        while time.monotonic() - started < limit:
            # Each count reads one partial index (runs_queue, runs_leases), not the table.
            left = await conn.fetchval(
                "SELECT (SELECT count(*) FROM runs WHERE status = 'queued')"
                " + (SELECT count(*) FROM runs WHERE status = 'running')"
            )
            if left == 0:
                break
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    return time.monotonic() - started


async def tally(url: str, load_ended: datetime) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        statuses = dict(await conn.fetch("SELECT status, count(*) FROM runs GROUP BY status"))
        row = await conn.fetchrow(
            """
            SELECT count(*) FILTER (WHERE finished_at <= $1) AS during_load,
                   extract(epoch FROM max(finished_at) - min(created_at)) AS span,
                   extract(epoch FROM max(finished_at) - $1) AS after_load,
                   percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP
                       (ORDER BY extract(epoch FROM finished_at - created_at)) AS latency,
                   (SELECT count(*) FROM alerts) AS alerts,
                   (SELECT count(*) FROM alerts a WHERE NOT EXISTS
                       (SELECT 1 FROM runs r WHERE r.alert_id = a.id
                        AND r.status = ANY($2::text[]))) AS without_final_run
            FROM runs
            """,
            load_ended,
            list(FINAL),
        )
    finally:
        await conn.close()
    latency = row["latency"] or [0.0, 0.0]
    return {
        "run_statuses": statuses,
        "finished": sum(statuses.get(s, 0) for s in FINAL),
        "finished_during_load": row["during_load"],
        "span_s": float(row["span"] or 0.0),
        "last_finish_after_load_s": float(row["after_load"] or 0.0),
        "alert_to_finished_p50_ms": latency[0] * 1000,
        "alert_to_finished_p99_ms": latency[1] * 1000,
        "alerts_stored": row["alerts"],
        "alerts_without_final_run": row["without_final_run"],
    }
