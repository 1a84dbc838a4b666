"""Reading runs for people: list a namespace's runs newest first, page by page, and one
run with its whole record (for the runs.kubesoar.dev API behind `kubectl get runs`).

Lists are keyset-paged (paging.py) on the (namespace, created_at DESC) index. The
SQL is assembled from fixed fragments for the filters present, each value a bound
parameter, so the planner sees a plain `namespace = $1 AND ...` and uses the index
(a catch-all `$1 IS NULL OR ...` would not, once the prepared plan turns generic).
A summary list leaves out the large columns (result, traceback) a table never shows.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from kubesoar_store.errors import unavailable
from kubesoar_store.journal import entries
from kubesoar_store.paging import Position, changed_after, clamp_limit

# `name`: the id as text, made by PostgreSQL (str(UUID) in Python cost more than the
# query itself when a page of 500 is turned into a table).
SUMMARY_COLUMNS = (
    "r.id, r.id::text AS name, r.namespace, r.playbook, r.entry_points, r.status, r.attempt,"
    " r.max_attempts, r.idempotency_key, r.alert_id, r.created_at, r.started_at,"
    " r.finished_at, r.updated_at, r.error, r.approval"
)
FULL_COLUMNS = SUMMARY_COLUMNS + ", r.result, r.traceback"


@dataclass(frozen=True)
class RunFilter:
    """Equality filters; None matches everything. `namespace` None: every namespace."""

    namespace: str | None = None
    playbook: str | None = None
    status: str | None = None
    alert_id: uuid.UUID | None = None
    correlation_id: str | None = None
    since: datetime | None = None
    """Runs created at this time or later."""


@dataclass(frozen=True)
class RunPage:
    runs: list[dict[str, Any]]
    next: Position | None  # where the next page starts; None on the last page


def _where(where: RunFilter, after: Position | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []

    def bind(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if where.namespace is not None:
        clauses.append(f"r.namespace = {bind(where.namespace)}")
    if where.playbook is not None:
        clauses.append(f"r.playbook = {bind(where.playbook)}")
    if where.status is not None:
        clauses.append(f"r.status = {bind(where.status)}")
    if where.alert_id is not None:
        clauses.append(f"r.alert_id = {bind(where.alert_id)}")
    if where.since is not None:
        clauses.append(f"r.created_at >= {bind(where.since)}")
    if where.correlation_id is not None:
        placeholder = bind(where.correlation_id)
        clauses.append(
            "r.alert_id IN (SELECT a.id FROM alerts a WHERE a.namespace = r.namespace"  # noqa: S608
            f" AND a.correlation_id = {placeholder})"
        )
    if after is not None:
        # Spelled out rather than a row comparison: `created_at <= $t` is an index condition.
        t, i = bind(after.created_at), bind(after.id)
        clauses.append(f"r.created_at <= {t} AND (r.created_at < {t} OR r.id < {i})")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


async def list_runs(
    pool: asyncpg.Pool,
    where: RunFilter,
    *,
    limit: int | None = None,
    after: Position | None = None,
    full: bool = False,
) -> RunPage:
    """One page of runs, newest first. `full` adds result and traceback to each."""
    size = clamp_limit(limit)
    condition, args = _where(where, after)
    sql = (
        f"SELECT {FULL_COLUMNS if full else SUMMARY_COLUMNS} FROM runs r{condition}"  # noqa: S608 - fixed fragments, values bound
        f" ORDER BY r.created_at DESC, r.id DESC LIMIT {size + 1}"
    )
    with unavailable("listing runs"):
        rows = await pool.fetch(sql, *args)
    runs = [_decoded(row) for row in rows[:size]]
    more = len(rows) > size
    last = runs[-1] if more else None
    return RunPage(runs, Position(last["created_at"], last["id"]) if last else None)


async def changed_runs(
    pool: asyncpg.Pool,
    where: RunFilter,
    *,
    since: datetime,
    after_id: uuid.UUID | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Runs whose row changed after `since`, oldest change first (a watch polls this)."""
    condition, args = _where(where, None)
    clause = changed_after(condition, args, "r", since, after_id)
    sql = (
        f"SELECT {SUMMARY_COLUMNS} FROM runs r{clause}"  # noqa: S608
        f" ORDER BY r.updated_at, r.id LIMIT {int(limit)}"
    )
    with unavailable("watching runs"):
        rows = await pool.fetch(sql, *args)
    return [_decoded(row) for row in rows]


async def database_now(pool: asyncpg.Pool) -> datetime:
    """The database's clock: what updated_at is written with (resourceVersions use it)."""
    with unavailable("reading the clock"):
        now: datetime = await pool.fetchval("SELECT now()")
    return now


async def get_run(pool: asyncpg.Pool, namespace: str, run_id: uuid.UUID) -> dict[str, Any] | None:
    """One run of `namespace` with its whole record and its action journal; None if absent."""
    with unavailable("reading a run"):
        row = await pool.fetchrow(
            f"SELECT {FULL_COLUMNS}, a.correlation_id FROM runs r"  # noqa: S608 - fixed columns
            " JOIN alerts a ON a.id = r.alert_id WHERE r.id = $1 AND r.namespace = $2",
            run_id,
            namespace,
        )
    if row is None:
        return None
    run = _decoded(row)
    run["journal"] = await entries(pool, run_id)
    return run


def _decoded(row: asyncpg.Record) -> dict[str, Any]:
    run = dict(row)
    for column in ("result", "approval"):
        if run.get(column) is not None:
            run[column] = json.loads(run[column])
    return run


REDELIVERABLE = ("failed", "dead")


async def redeliver(pool: asyncpg.Pool, namespace: str, run_id: uuid.UUID) -> str | None:
    """Queue a failed or dead run again, as a new attempt (one more than it had, with room
    for it under max_attempts). Returns the status the run had before — it was queued
    again only when that is in REDELIVERABLE; otherwise nothing is written — or None when
    there is no such run. Actions its earlier attempts completed are in the journal and
    are not executed again."""
    with unavailable("redelivering a run"):
        async with pool.acquire() as conn, conn.transaction():
            status: str | None = await conn.fetchval(
                "SELECT status FROM runs WHERE id = $1 AND namespace = $2 FOR UPDATE",
                run_id,
                namespace,
            )
            if status not in REDELIVERABLE:
                return status
            await conn.execute(
                "UPDATE runs SET status = 'queued', attempt = attempt + 1,"
                " max_attempts = greatest(max_attempts, attempt + 1), available_at = now(),"
                " finished_at = NULL, updated_at = now() WHERE id = $1",
                run_id,
            )
    return status
