"""Expiring keys shared by every router replica: the HMAC replay cache and rate limits.

(Global dedup is claimed inside the group commit, with the alert; see groupcommit.py.)
Each check is one statement: INSERT ... ON CONFLICT on a unique key, where an
expired row counts as absent and is reclaimed in place, so the tables stay
correct without a sweeper; `purge_expired` only keeps them small.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from kubesoar_store.errors import unavailable

REMEMBER_REPLAY = """
INSERT INTO replay_keys AS r (key, expires_at)
VALUES ($1, now() + make_interval(secs => $2))
ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at
    WHERE r.expires_at <= now()
RETURNING true
"""

# A token bucket: refill by elapsed time * rate up to burst, then take one if there is one.
# $2 rate per second, $3 burst; `granted` tells the caller whether it got one.
TAKE_FROM_BUCKET = """
INSERT INTO rate_limits AS b (key, tokens, granted, updated_at, expires_at)
VALUES ($1, $3::float8 - 1, true, now(), now() + make_interval(secs => $3::float8 / $2::float8))
ON CONFLICT (key) DO UPDATE SET
    granted = (SELECT refill >= 1 FROM (SELECT least($3::float8,
                  b.tokens + extract(epoch FROM now() - b.updated_at)::float8 * $2::float8)
              AS refill) AS f),
    tokens = (SELECT CASE WHEN refill >= 1 THEN refill - 1 ELSE refill END
              FROM (SELECT least($3::float8,
                  b.tokens + extract(epoch FROM now() - b.updated_at)::float8 * $2::float8)
              AS refill) AS f),
    updated_at = now(),
    expires_at = now() + make_interval(secs => $3::float8 / $2::float8)
RETURNING granted, tokens
"""


async def remember_replay(pool: asyncpg.Pool, key: bytes, window_seconds: float) -> bool:
    """True when `key` is new (remembered for the window); False when it is a replay."""
    with unavailable("checking the replay cache"):
        fresh = await pool.fetchval(REMEMBER_REPLAY, key, float(window_seconds))
    return bool(fresh)


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_seconds: float


async def take_token(pool: asyncpg.Pool, key: str, *, rate: float, burst: int) -> RateDecision:
    """Take one token from the bucket `key` (rate per second, up to burst) for all replicas."""
    if rate <= 0 or burst < 1:
        raise ValueError("rate must be > 0 and burst >= 1")
    with unavailable("checking the rate limit"):
        row = await pool.fetchrow(TAKE_FROM_BUCKET, key, float(rate), float(burst))
    assert row is not None
    if row["granted"]:
        return RateDecision(True, 0.0)
    return RateDecision(False, (1.0 - float(row["tokens"])) / rate)


# One statement per table, spelled out: no SQL is built from strings.
PURGE = {
    table: f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("  # noqa: S608
    f"SELECT ctid FROM {table} WHERE expires_at <= now() LIMIT $1))"
    for table in ("dedup_keys", "replay_keys", "rate_limits")
}


async def purge_expired(pool: asyncpg.Pool, *, batch: int = 5000, max_batches: int = 20) -> int:
    """Delete expired dedup, replay and rate-limit rows in bounded batches; returns the count."""
    deleted = 0
    with unavailable("purging expired keys"):
        for statement in PURGE.values():
            for _ in range(max_batches):
                status = await pool.execute(statement, batch)
                count = int(status.split()[-1])
                deleted += count
                if count < batch:
                    break
    return deleted
