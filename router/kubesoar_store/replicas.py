"""Router replicas that take run reports: each announces its URL, the dispatcher reads
the live ones (those seen within a few announce periods) and gives them to pods."""

from __future__ import annotations

import asyncpg

from kubesoar_store.errors import unavailable

ANNOUNCE = """
INSERT INTO router_replicas (owner, report_url, seen_at) VALUES ($1, $2, now())
ON CONFLICT (owner) DO UPDATE SET report_url = EXCLUDED.report_url, seen_at = now()
"""
LIVE = """
SELECT report_url FROM router_replicas
WHERE seen_at > now() - make_interval(secs => $1) AND owner <> $2
ORDER BY seen_at DESC LIMIT $3
"""
# Replicas not seen for a day are gone for good (their pods were replaced).
FORGET_STALE = "DELETE FROM router_replicas WHERE seen_at < now() - interval '1 day'"


async def announce(pool: asyncpg.Pool, owner: str, report_url: str) -> None:
    with unavailable("announcing the router replica"):
        await pool.execute(ANNOUNCE, owner, report_url)


async def live_peers(
    pool: asyncpg.Pool, owner: str, *, within_seconds: float, limit: int = 16
) -> list[str]:
    """The report URLs of the other replicas seen within `within_seconds`, newest first."""
    with unavailable("reading the router replicas"):
        rows = await pool.fetch(LIVE, float(within_seconds), owner, limit)
    return [row["report_url"] for row in rows]


async def forget(pool: asyncpg.Pool, owner: str) -> None:
    """A replica that stops cleanly leaves at once; also drops long-gone ones."""
    with unavailable("forgetting the router replica"):
        await pool.execute("DELETE FROM router_replicas WHERE owner = $1", owner)
        await pool.execute(FORGET_STALE)
