"""Run counters per namespace and playbook, for Playbook status and metrics: one query.

The counts cover what retention kept, so they are "runs on record", not "runs ever".
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from kubesoar_store.errors import unavailable
from kubesoar_store.models import PlaybookCounters

COUNTERS = """
SELECT c.*, e.error AS last_error, e.finished_at AS last_error_at
FROM (
    SELECT namespace, playbook,
           count(*) AS total,
           count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE status = 'dead') AS dead,
           count(*) FILTER (WHERE status = 'queued') AS queued,
           count(*) FILTER (WHERE status = 'running') AS running,
           count(*) FILTER (WHERE status = 'waiting') AS waiting,
           count(*) FILTER (WHERE status = 'denied') AS denied,
           max(finished_at) AS last_run_at
    FROM runs
    WHERE $1::text[] IS NULL OR namespace = ANY($1::text[])
    GROUP BY namespace, playbook
) AS c
LEFT JOIN LATERAL (
    SELECT error, finished_at FROM runs r
    WHERE r.namespace = c.namespace AND r.playbook = c.playbook
      AND r.status IN ('failed', 'dead')
    ORDER BY finished_at DESC
    LIMIT 1
) AS e ON true
ORDER BY c.namespace, c.playbook
"""


async def playbook_counters(
    pool: asyncpg.Pool, namespaces: Sequence[str] | None = None
) -> list[PlaybookCounters]:
    """Counters of every (namespace, playbook) with runs on record, optionally some namespaces."""
    with unavailable("counting runs"):
        rows = await pool.fetch(COUNTERS, list(namespaces) if namespaces is not None else None)
    return [PlaybookCounters(**dict(row)) for row in rows]


async def queue_depth(pool: asyncpg.Pool, namespace: str, playbook: str) -> int:
    """Queued runs of one playbook (ingest compares it with the bound to answer 429)."""
    with unavailable("reading the queue depth"):
        depth: int = await pool.fetchval(
            "SELECT count(*) FROM runs WHERE status = 'queued' AND namespace = $1"
            " AND playbook = $2",
            namespace,
            playbook,
        )
    return depth
