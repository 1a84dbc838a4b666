"""Alerts for the people working them: list, read with the activity log, change
status / determination / assignee and add comments — each change one activity row
naming its actor ("user:<name>" for a Kubernetes user, "run:<id>" for a playbook run).

Values are checked here against the same sets the table's CHECK constraints hold, so
a bad value is a ValueError with a message, not a database error. An update locks the
alert row, so two concurrent updates are applied one after the other and the activity
log records each old → new pair as it really happened.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from kubesoar_store.bounds import bounded_text
from kubesoar_store.errors import StoreError, unavailable
from kubesoar_store.paging import Position, changed_after, clamp_limit

ALERT_STATUSES = ("new", "in_progress", "resolved")
DETERMINATIONS = ("unknown", "malicious", "suspicious", "benign")
MAX_COMMENT_BYTES = 16 * 1024
MAX_ASSIGNEE_CHARS = 253
# A read shows at most this many activity rows, the newest (the log itself is kept whole).
MAX_ACTIVITY_SHOWN = 500

COLUMNS = (
    "a.id, a.id::text AS name, a.namespace, a.source, a.received_at, a.correlation_id,"
    " a.status, a.determination, a.assignee, a.updated_at, a.resolved_at,"
    " a.alert->>'title' AS title, a.alert->>'severity' AS severity"
)


class StaleAlert(StoreError):
    """The alert changed after the version the caller based its update on."""


@dataclass(frozen=True)
class AlertFilter:
    namespace: str | None = None
    status: str | None = None
    determination: str | None = None
    assignee: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class AlertChange:
    """What one request changes; None leaves a field as it is. `assignee` "" unassigns."""

    status: str | None = None
    determination: str | None = None
    assignee: str | None = None
    comment: str | None = None

    def check(self) -> None:
        if self.status is not None and self.status not in ALERT_STATUSES:
            raise ValueError(f"status must be one of {', '.join(ALERT_STATUSES)}")
        if self.determination is not None and self.determination not in DETERMINATIONS:
            raise ValueError(f"determination must be one of {', '.join(DETERMINATIONS)}")
        if self.assignee is not None and len(self.assignee) > MAX_ASSIGNEE_CHARS:
            raise ValueError(f"assignee is longer than {MAX_ASSIGNEE_CHARS} characters")
        if self.comment is not None and not self.comment.strip():
            raise ValueError("a comment must not be empty")
        if self.comment is not None and len(self.comment.encode()) > MAX_COMMENT_BYTES:
            raise ValueError(f"a comment is at most {MAX_COMMENT_BYTES} bytes")


@dataclass(frozen=True)
class AlertPage:
    alerts: list[dict[str, Any]]
    next: Position | None


def _where(where: AlertFilter, after: Position | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    for column in ("namespace", "status", "determination", "assignee", "source"):
        value = getattr(where, column)
        if value is not None:
            args.append(value)
            clauses.append(f"a.{column} = ${len(args)}")
    if after is not None:
        args += [after.created_at, after.id]
        t, i = f"${len(args) - 1}", f"${len(args)}"
        clauses.append(f"a.received_at <= {t} AND (a.received_at < {t} OR a.id < {i})")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


async def list_alerts(
    pool: asyncpg.Pool,
    where: AlertFilter,
    *,
    limit: int | None = None,
    after: Position | None = None,
    full: bool = False,
) -> AlertPage:
    """One page of alerts, newest first; `full` adds the normalised alert itself."""
    size = clamp_limit(limit)
    condition, args = _where(where, after)
    columns = COLUMNS + (", a.alert" if full else "")
    sql = (
        f"SELECT {columns} FROM alerts a{condition}"  # noqa: S608 - fixed fragments, values bound
        f" ORDER BY a.received_at DESC, a.id DESC LIMIT {size + 1}"
    )
    with unavailable("listing alerts"):
        rows = await pool.fetch(sql, *args)
    alerts = [_decoded(row) for row in rows[:size]]
    last = alerts[-1] if len(rows) > size else None
    return AlertPage(alerts, Position(last["received_at"], last["id"]) if last else None)


async def changed_alerts(
    pool: asyncpg.Pool,
    where: AlertFilter,
    *,
    since: datetime,
    after_id: uuid.UUID | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Alerts whose row changed after `since`, oldest change first (a watch polls this)."""
    condition, args = _where(where, None)
    clause = changed_after(condition, args, "a", since, after_id)
    sql = (
        f"SELECT {COLUMNS} FROM alerts a{clause}"  # noqa: S608
        f" ORDER BY a.updated_at, a.id LIMIT {int(limit)}"
    )
    with unavailable("watching alerts"):
        rows = await pool.fetch(sql, *args)
    return [_decoded(row) for row in rows]


async def get_alert(
    pool: asyncpg.Pool, namespace: str, alert_id: uuid.UUID
) -> dict[str, Any] | None:
    """One alert of `namespace` with the alert body, its runs' ids and its activity log."""
    with unavailable("reading an alert"):
        async with pool.acquire() as conn:
            return await _read(conn, namespace, alert_id)


async def update_alert(
    pool: asyncpg.Pool,
    namespace: str,
    alert_id: uuid.UUID,
    change: AlertChange,
    *,
    actor: str,
    expect_updated_at: datetime | None = None,
) -> dict[str, Any] | None:
    """Apply `change` as `actor`; the alert as it is afterwards, or None if there is none.

    `expect_updated_at`: refuse (StaleAlert) when the alert changed since the caller read
    it (the API's resourceVersion precondition).
    """
    change.check()
    with unavailable("updating an alert"):
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT status, determination, assignee, updated_at FROM alerts"
                " WHERE id = $1 AND namespace = $2 FOR UPDATE",
                alert_id,
                namespace,
            )
            if row is None:
                return None
            if expect_updated_at is not None and row["updated_at"] != expect_updated_at:
                raise StaleAlert(f"alert {alert_id} was changed since that version")
            await _apply(conn, alert_id, dict(row), change, actor)
            return await _read(conn, namespace, alert_id)


async def _apply(
    conn: asyncpg.Connection,
    alert_id: uuid.UUID,
    current: dict[str, Any],
    change: AlertChange,
    actor: str,
) -> None:
    assignee = None if change.assignee == "" else change.assignee
    wanted = {
        "status": change.status,
        "determination": change.determination,
        "assignee": assignee if change.assignee is not None else current["assignee"],
    }
    activity = [
        (kind, current[kind], new)
        for kind, new in wanted.items()
        if (new is not None or kind == "assignee") and new != current[kind]
    ]
    if change.comment is not None:
        activity.append(("comment", None, bounded_text(change.comment, MAX_COMMENT_BYTES)))
    if not activity:
        return
    status = change.status or current["status"]
    await conn.execute(
        "UPDATE alerts SET status = $2, determination = $3, assignee = $4, updated_at = now(),"
        " resolved_at = CASE WHEN $2 = 'resolved' THEN coalesce(resolved_at, now()) END"
        " WHERE id = $1",
        alert_id,
        status,
        change.determination or current["determination"],
        wanted["assignee"],
    )
    await conn.executemany(
        "INSERT INTO alert_activity (alert_id, actor, kind, old_value, new_value)"
        " VALUES ($1, $2, $3, $4, $5)",
        [(alert_id, actor, kind, old, new) for kind, old, new in activity],
    )


async def _read(
    conn: asyncpg.Connection, namespace: str, alert_id: uuid.UUID
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {COLUMNS}, a.alert FROM alerts a WHERE a.id = $1 AND a.namespace = $2",  # noqa: S608
        alert_id,
        namespace,
    )
    if row is None:
        return None
    alert = _decoded(row)
    alert["runs"] = [
        dict(r)
        for r in await conn.fetch(
            "SELECT id, playbook, status FROM runs WHERE alert_id = $1 ORDER BY created_at, id",
            alert_id,
        )
    ]
    activity = await conn.fetch(
        "SELECT at, actor, kind, old_value, new_value FROM ("
        " SELECT * FROM alert_activity WHERE alert_id = $1 ORDER BY id DESC LIMIT $2"
        ") AS newest ORDER BY id",
        alert_id,
        MAX_ACTIVITY_SHOWN,
    )
    alert["activity"] = [dict(r) for r in activity]
    return alert


def _decoded(row: asyncpg.Record) -> dict[str, Any]:
    alert = dict(row)
    if alert.get("alert") is not None:
        alert["alert"] = json.loads(alert["alert"])
    return alert


# --- changes a playbook run makes (OpenSOAR's lifecycle helpers) ----------------------
MAX_RUN_ACTIVITY = 100


def run_changes(activity: Sequence[Any]) -> list[AlertChange]:
    """A run's `alertActivity` records (OpenSOAR's vocabulary: status_change,
    determination_set, assigned, comment) as changes, in order. The records come from
    playbook code: what does not validate is skipped, never stored, and at most
    MAX_RUN_ACTIVITY are read."""
    changes = []
    for item in list(activity)[:MAX_RUN_ACTIVITY]:
        if not isinstance(item, Mapping):
            continue
        meta = item.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        action = item.get("action")
        if action == "status_change" and _text(meta.get("new")):
            change = AlertChange(status=_text(meta.get("new")))
        elif action == "determination_set" and _text(meta.get("new")):
            change = AlertChange(determination=_text(meta.get("new")))
        elif action == "assigned":
            who = meta.get("assigned_username") or meta.get("assigned_to")
            change = AlertChange(assignee=_text(who) or "")
        elif action == "comment":
            change = AlertChange(comment=_text(item.get("detail")) or "")
        else:
            continue  # custom activity records stay in the run's result
        try:
            change.check()
        except ValueError:
            continue
        changes.append(change)
    return changes


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


async def apply_run_activity(
    conn: asyncpg.Connection, run_id: uuid.UUID, activity: Sequence[Any]
) -> int:
    """Apply a run's lifecycle changes to that run's own alert, as actor `run:<id>`, in the
    caller's transaction (the one that records the run's result, so both or neither are
    kept). The alert is the run's, from the runs table: an alert id in the records is
    not trusted. Returns how many changes were applied."""
    changes = run_changes(activity)
    if not changes:
        return 0
    row = await conn.fetchrow(
        "SELECT a.id, a.status, a.determination, a.assignee FROM runs r"
        " JOIN alerts a ON a.id = r.alert_id WHERE r.id = $1 FOR UPDATE OF a",
        run_id,
    )
    if row is None:
        return 0
    alert_id, current = row["id"], dict(row)
    for change in changes:
        if change.assignee and change.status is None and current["status"] == "new":
            # OpenSOAR's assign_current_alert starts work on a new alert.
            change = dataclasses.replace(change, status="in_progress")
        await _apply(conn, alert_id, current, change, f"run:{run_id}")
        current = dict(
            await conn.fetchrow(
                "SELECT status, determination, assignee FROM alerts WHERE id = $1", alert_id
            )
        )
    return len(changes)
