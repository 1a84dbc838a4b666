"""Dispatch primitives on the runs table: claim, heartbeat, complete, release, expire.

Every router replica runs a dispatcher; they coordinate only here. `claim` takes
queued runs with FOR UPDATE SKIP LOCKED, so two dispatchers never get the same
run, and leases them: status "running", a lease owner and end, and a fresh
per-run token (only its sha256 is stored). The runtime pod proves with that
token that it was given the run (`heartbeat`, `complete`, `release`, the
journal); any other token, or a run no longer leased to it, raises NotLeased
and nothing is written. A lease that runs out (pod killed, node lost, hung) is
found by `expire_leases`: the run is queued again with attempt + 1, or ends
"dead" with the reason once max_attempts were used.

`now` arguments default to the database clock, so replicas with skewed clocks
agree on lease ends; tests pass a time to move the clock forward.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from kubesoar_store import tokens
from kubesoar_store.bounds import MAX_RESULT_BYTES, bounded_json, bounded_text
from kubesoar_store.errors import NotLeased, unavailable
from kubesoar_store.models import REPORTED_FINAL_STATUSES, ClaimedRun, ExpiredLease, RunRecord

CLAIM = """
WITH picked AS (
    SELECT id, row_number() OVER () AS n
    FROM (
        SELECT id FROM runs
        WHERE status = 'queued'
          AND available_at <= coalesce($4::timestamptz, now())
          AND ($5::text[] IS NULL OR namespace = ANY($5::text[]))
          AND ($6::text IS NULL OR playbook = $6::text)
        ORDER BY available_at, id
        LIMIT $1
        FOR UPDATE SKIP LOCKED
    ) AS queued
)
UPDATE runs r
SET status = 'running',
    lease_owner = $2,
    lease_expires_at = coalesce($4::timestamptz, now()) + make_interval(secs => $3),
    token_hash = ($7::bytea[])[picked.n],
    started_at = coalesce(r.started_at, coalesce($4::timestamptz, now())),
    updated_at = now()
FROM picked, alerts a
WHERE r.id = picked.id AND a.id = r.alert_id
RETURNING picked.n, r.id, r.alert_id, r.namespace, r.playbook, r.entry_points, r.attempt,
          r.max_attempts, r.idempotency_key, r.lease_expires_at, r.resumes, a.alert,
          a.correlation_id
"""

EXPIRE = """
WITH expired AS (
    SELECT id FROM runs
    WHERE status = 'running' AND lease_expires_at <= coalesce($1::timestamptz, now())
    ORDER BY lease_expires_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE runs r
SET status = CASE WHEN r.attempt < r.max_attempts THEN 'queued' ELSE 'dead' END,
    attempt = CASE WHEN r.attempt < r.max_attempts THEN r.attempt + 1 ELSE r.attempt END,
    error = CASE WHEN r.attempt < r.max_attempts THEN r.error
                 ELSE format('lease expired on attempt %s of %s (last leased to %s); '
                             'no attempt left', r.attempt, r.max_attempts, r.lease_owner) END,
    finished_at = CASE WHEN r.attempt < r.max_attempts THEN NULL
                       ELSE coalesce($1::timestamptz, now()) END,
    available_at = coalesce($1::timestamptz, now()),
    lease_owner = NULL, lease_expires_at = NULL, token_hash = NULL, updated_at = now()
FROM expired
WHERE r.id = expired.id
RETURNING r.id, r.namespace, r.playbook, r.status, r.attempt, r.error
"""

# The row of a run, locked, for checking a token before writing.
_LOCK_RUN = "SELECT status, token_hash FROM runs WHERE id = $1 FOR UPDATE"


async def claim(
    pool: asyncpg.Pool,
    owner: str,
    *,
    limit: int,
    lease_seconds: float,
    namespaces: Sequence[str] | None = None,
    playbook: str | None = None,
    now: datetime | None = None,
) -> list[ClaimedRun]:
    """Lease up to `limit` queued runs (oldest first) to `owner`, each with a new token."""
    if limit < 1:
        return []
    minted = [tokens.mint() for _ in range(limit)]
    with unavailable("claiming runs"):
        rows = await pool.fetch(
            CLAIM,
            limit,
            owner,
            float(lease_seconds),
            now,
            list(namespaces) if namespaces is not None else None,
            playbook,
            [hash_ for _, hash_ in minted],
        )
    claimed = [
        ClaimedRun(
            id=row["id"],
            alert_id=row["alert_id"],
            namespace=row["namespace"],
            playbook=row["playbook"],
            entry_points=tuple(row["entry_points"]),
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            idempotency_key=row["idempotency_key"],
            lease_expires_at=row["lease_expires_at"],
            token=minted[row["n"] - 1][0],
            alert=json.loads(row["alert"]),
            correlation_id=row["correlation_id"],
            resumes=row["resumes"],
        )
        for row in rows
    ]
    claimed.sort(key=lambda run: run.id)
    return claimed


async def check_lease(conn: asyncpg.Connection, run_id: uuid.UUID, token: str) -> str:
    """Lock the run and check the token; returns its status. NotLeased when it does not fit."""
    row = await conn.fetchrow(_LOCK_RUN, run_id)
    # One answer for "no such run" and "not yours", so a pod learns nothing about others' runs.
    if row is None or not tokens.matches(token, row["token_hash"]):
        raise NotLeased(f"run {run_id} is not leased to this token")
    status: str = row["status"]
    return status


async def heartbeat(
    pool: asyncpg.Pool,
    run_id: uuid.UUID,
    token: str,
    *,
    lease_seconds: float,
    now: datetime | None = None,
) -> datetime:
    """Extend the lease of a running run; returns the new lease end."""
    with unavailable("extending a lease"):
        async with pool.acquire() as conn, conn.transaction():
            if await check_lease(conn, run_id, token) != "running":
                raise NotLeased(f"run {run_id} is not running")
            expires: datetime = await conn.fetchval(
                "UPDATE runs SET lease_expires_at = coalesce($2::timestamptz, now())"
                " + make_interval(secs => $3), updated_at = now() WHERE id = $1"
                " RETURNING lease_expires_at",
                run_id,
                now,
                float(lease_seconds),
            )
    return expires


async def complete(
    pool: asyncpg.Pool,
    run_id: uuid.UUID,
    token: str,
    record: RunRecord,
    *,
    max_result_bytes: int = MAX_RESULT_BYTES,
    also: Callable[[asyncpg.Connection], Awaitable[object]] | None = None,
) -> bool:
    """Record how the run ended. True when written; False when this token already did.

    `also` runs in the same transaction once the record is written (the changes the
    run's playbook made to its alert), so both are kept or neither.

    Outputs over the bounds are kept truncated with a marker, never refused. A
    repeat of an accepted report (the pod retrying after a lost answer) is
    answered False without writing, so the pod need not tell the two apart.
    """
    if record.status not in REPORTED_FINAL_STATUSES:
        raise ValueError(f"a run ends succeeded, failed or denied, not {record.status!r}")
    result = bounded_json(record.result, max_result_bytes) if record.result is not None else None
    with unavailable("recording a run"):
        async with pool.acquire() as conn, conn.transaction():
            status = await check_lease(conn, run_id, token)
            if status in REPORTED_FINAL_STATUSES:
                return False
            if status != "running":
                raise NotLeased(f"run {run_id} is {status}, not running")
            await conn.execute(
                "UPDATE runs SET status = $2, result = $3::jsonb, error = $4, traceback = $5,"
                " finished_at = now(), lease_owner = NULL, lease_expires_at = NULL,"
                " updated_at = now() WHERE id = $1",
                run_id,
                record.status,
                result,
                bounded_text(record.error),
                bounded_text(record.traceback),
            )
            if also is not None:
                await also(conn)
    return True


async def release(
    pool: asyncpg.Pool, run_id: uuid.UUID, token: str, *, delay_seconds: float = 0.0
) -> None:
    """A draining pod hands back a run it has not started: queued again, same attempt."""
    with unavailable("releasing a run"):
        async with pool.acquire() as conn, conn.transaction():
            if await check_lease(conn, run_id, token) != "running":
                raise NotLeased(f"run {run_id} is not running")
            await conn.execute(
                "UPDATE runs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL,"
                " token_hash = NULL, available_at = now() + make_interval(secs => $2),"
                " updated_at = now() WHERE id = $1",
                run_id,
                float(delay_seconds),
            )


async def expire_leases(
    pool: asyncpg.Pool, *, now: datetime | None = None, limit: int = 1000
) -> list[ExpiredLease]:
    """Requeue (attempt + 1) or kill ("dead", with the reason) runs whose lease ran out."""
    with unavailable("expiring leases"):
        rows = await pool.fetch(EXPIRE, now, limit)
    return [
        ExpiredLease(
            id=row["id"],
            namespace=row["namespace"],
            playbook=row["playbook"],
            status=row["status"],
            attempt=row["attempt"],
            reason=row["error"] if row["status"] == "dead" else None,
        )
        for row in rows
    ]


async def get_run(pool: asyncpg.Pool, run_id: uuid.UUID) -> dict[str, Any] | None:
    """A run's row without its token hash (for the run API and `kubectl get runs`)."""
    with unavailable("reading a run"):
        row = await pool.fetchrow("SELECT * FROM runs WHERE id = $1", run_id)
    if row is None:
        return None
    run = dict(row)
    run.pop("token_hash", None)
    if run["result"] is not None:
        run["result"] = json.loads(run["result"])
    return run
