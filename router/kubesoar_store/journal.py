"""The action journal: each @action call's outcome by (run, call sequence).

On a redelivered attempt the runtime asks for the entry of each call before
making it; a succeeded entry is returned instead of calling the action again,
so a side effect that completed before a pod died is not repeated. Writes and
reads need the run's current token, like every other report of a runtime pod.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from kubesoar_store import tokens
from kubesoar_store.bounds import MAX_JOURNAL_RESULT_BYTES, bounded_json
from kubesoar_store.errors import NotLeased, unavailable


@dataclass(frozen=True)
class JournalEntry:
    run_id: uuid.UUID
    seq: int
    action: str
    status: str  # "succeeded" or "failed"
    attempt: int
    result: Any
    recorded_at: datetime


async def _require_lease(conn: asyncpg.Connection, run_id: uuid.UUID, token: str) -> int:
    """The run's attempt, when `token` is its current lease (row locked for the transaction)."""
    row = await conn.fetchrow(
        "SELECT status, token_hash, attempt FROM runs WHERE id = $1 FOR SHARE", run_id
    )
    if row is None or row["status"] != "running" or not tokens.matches(token, row["token_hash"]):
        raise NotLeased(f"run {run_id} is not leased to this token")
    attempt: int = row["attempt"]
    return attempt


async def put(
    pool: asyncpg.Pool,
    run_id: uuid.UUID,
    token: str,
    seq: int,
    *,
    action: str,
    status: str,
    result: Any = None,
    max_result_bytes: int = MAX_JOURNAL_RESULT_BYTES,
) -> bool:
    """Record call `seq` of the run. True when written; False when it already was.

    A succeeded entry is final: a later put for the same seq is ignored (and
    answered False), so a retried report cannot overwrite what was recorded. A
    failed entry may be replaced by the outcome of a later attempt.
    """
    if status not in ("succeeded", "failed"):
        raise ValueError(f"a journal entry is succeeded or failed, not {status!r}")
    if seq < 0:
        raise ValueError("seq starts at 0")
    body = bounded_json(result, max_result_bytes)
    with unavailable("writing the action journal"):
        async with pool.acquire() as conn, conn.transaction():
            attempt = await _require_lease(conn, run_id, token)
            written = await conn.fetchval(
                "INSERT INTO action_journal AS j (run_id, seq, action, status, attempt, result)"
                " VALUES ($1, $2, $3, $4, $5, $6::jsonb)"
                " ON CONFLICT (run_id, seq) DO UPDATE SET action = EXCLUDED.action,"
                " status = EXCLUDED.status, attempt = EXCLUDED.attempt, result = EXCLUDED.result,"
                " recorded_at = now() WHERE j.status <> 'succeeded'"
                " RETURNING true",
                run_id,
                seq,
                action,
                status,
                attempt,
                body,
            )
    return bool(written)


async def get(pool: asyncpg.Pool, run_id: uuid.UUID, token: str, seq: int) -> JournalEntry | None:
    """Entry `seq` of the run, or None when that call was never recorded."""
    with unavailable("reading the action journal"):
        async with pool.acquire() as conn, conn.transaction():
            await _require_lease(conn, run_id, token)
            row = await conn.fetchrow(
                "SELECT * FROM action_journal WHERE run_id = $1 AND seq = $2", run_id, seq
            )
    return _entry(row) if row is not None else None


async def entries(pool: asyncpg.Pool, run_id: uuid.UUID) -> list[JournalEntry]:
    """Every entry of a run, in call order (for the run record; no token: trusted callers)."""
    with unavailable("reading the action journal"):
        rows = await pool.fetch(
            "SELECT * FROM action_journal WHERE run_id = $1 ORDER BY seq", run_id
        )
    return [_entry(row) for row in rows]


def _entry(row: asyncpg.Record) -> JournalEntry:
    return JournalEntry(
        run_id=row["run_id"],
        seq=row["seq"],
        action=row["action"],
        status=row["status"],
        attempt=row["attempt"],
        result=json.loads(row["result"]) if row["result"] is not None else None,
        recorded_at=row["recorded_at"],
    )
