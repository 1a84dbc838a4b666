"""Retention: delete old alerts with their runs and journal, in bounded batches.

An alert is kept while any of its runs is unfinished (queued, running,
waiting), whatever its age, so retention never takes work from under a
dispatcher. Deleting an alert deletes its runs and their journal (ON DELETE
CASCADE). Each batch is its own short statement, so a large delete never holds
locks for long or bloats one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg

from kubesoar_store.errors import unavailable

DELETE_OLDER = """
DELETE FROM alerts WHERE id = ANY(ARRAY(
    SELECT a.id FROM alerts a
    WHERE a.received_at < $1 AND ($2::text IS NULL OR a.namespace = $2)
      AND NOT (a.namespace = ANY($4::text[]))
      AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.alert_id = a.id
                      AND r.status IN ('queued', 'running', 'waiting'))
    ORDER BY a.received_at
    LIMIT $3
))
"""

# The first alert of a namespace past the newest `keep` (ties in received_at, which
# one group commit gives its whole batch, are ordered by id).
FIRST_BEYOND = """
SELECT received_at, id FROM alerts WHERE namespace = $1
ORDER BY received_at DESC, id DESC OFFSET $2 LIMIT 1
"""

DELETE_FROM = """
DELETE FROM alerts WHERE id = ANY(ARRAY(
    SELECT a.id FROM alerts a
    WHERE a.namespace = $1 AND (a.received_at, a.id) <= ($2, $3)
      AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.alert_id = a.id
                      AND r.status IN ('queued', 'running', 'waiting'))
    ORDER BY a.received_at
    LIMIT $4
))
"""


async def delete_older_than(
    pool: asyncpg.Pool,
    age: timedelta,
    *,
    namespace: str | None = None,
    except_namespaces: Sequence[str] = (),
    now: datetime | None = None,
    batch: int = 1000,
    max_batches: int = 100,
) -> int:
    """Delete alerts received more than `age` ago (in one namespace, or in all but
    `except_namespaces`, which have retention of their own); returns the count."""
    with unavailable("deleting old alerts"):
        cutoff = (now or await pool.fetchval("SELECT now()")) - age
        return await _delete_before(
            pool, cutoff, namespace, list(except_namespaces), batch, max_batches
        )


async def keep_newest(
    pool: asyncpg.Pool,
    keep: int,
    *,
    namespace: str | None = None,
    except_namespaces: Sequence[str] = (),
    batch: int = 1000,
    max_batches: int = 100,
) -> int:
    """Keep the newest `keep` alerts per namespace (one, or each but `except_namespaces`);
    returns how many were deleted."""
    if keep < 0:
        raise ValueError("keep must be >= 0")
    deleted = 0
    with unavailable("deleting alerts beyond the count"):
        if namespace is not None:
            namespaces = [namespace]
        else:
            namespaces = [
                r["namespace"]
                for r in await pool.fetch("SELECT DISTINCT namespace FROM alerts")
                if r["namespace"] not in except_namespaces
            ]
        for name in namespaces:
            first = await pool.fetchrow(FIRST_BEYOND, name, keep)
            if first is None:
                continue
            for _ in range(max_batches):
                status = await pool.execute(
                    DELETE_FROM, name, first["received_at"], first["id"], batch
                )
                count = int(status.split()[-1])
                deleted += count
                if count < batch:
                    break
    return deleted


async def _delete_before(
    pool: asyncpg.Pool,
    cutoff: datetime,
    namespace: str | None,
    except_namespaces: list[str],
    batch: int,
    max_batches: int,
) -> int:
    deleted = 0
    for _ in range(max_batches):
        status = await pool.execute(DELETE_OLDER, cutoff, namespace, batch, except_namespaces)
        count = int(status.split()[-1])
        deleted += count
        if count < batch:
            break
    return deleted
