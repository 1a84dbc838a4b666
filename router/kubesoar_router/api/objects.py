"""Rows of the system of record as Kubernetes objects: `Run` and `Alert` of
runs.kubesoar.dev/v1alpha1, their lists, and the `Table` kubectl prints.

    Run    metadata.name = the run id; spec = what was asked (playbook, alert,
           entry points, idempotency key, max attempts); status = what happened
           (phase, attempt, times, results, every action attempt, the action journal,
           error, redacted traceback)
    Alert  metadata.name = the alert id; spec = what people set (status,
           determination, assignee); status = what came in (source, the normalised
           alert, its runs) and the activity log (who changed what, when; comments)

resourceVersion is the row's `updated_at` in microseconds since the epoch: it changes
whenever the row does, so an update can be made conditional on it (409 when stale).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from kubesoar.contracts import kube

API_VERSION = f"{kube.RUNS_API_GROUP}/{kube.RUNS_API_VERSION}"


def timestamp(value: datetime | None) -> str | None:
    return None if value is None else _rfc3339(value)


@functools.lru_cache(maxsize=4096)
def _rfc3339(value: datetime) -> str:
    # Cached: a group commit gives a whole batch of runs one timestamp.
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def resource_version(updated_at: datetime) -> str:
    return str((updated_at - EPOCH) // MICROSECOND)


def parse_resource_version(text: str) -> datetime:
    """The `updated_at` a resourceVersion stands for; ValueError for any other text."""
    return EPOCH + int(text) * MICROSECOND


def human_duration(seconds: float) -> str:
    """As kubectl shows ages: 45s, 5m12s, 3h, 2d5h, 400d."""
    s = int(seconds)
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d" if days < 730 else f"{days // 365}y"


def _metadata(
    row: Mapping[str, Any], created: datetime, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    name = _name(row)
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": row["namespace"],
        "uid": name,
        "resourceVersion": resource_version(row["updated_at"]),
        "creationTimestamp": timestamp(created),
    }
    if labels:
        metadata["labels"] = labels
    return metadata


def _name(row: Mapping[str, Any]) -> str:
    name = row.get("name")
    return name if isinstance(name, str) else str(row["id"])


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


# --- runs ---------------------------------------------------------------------------
def run_metadata(row: Mapping[str, Any]) -> dict[str, Any]:
    labels = {kube.LABEL_PLAYBOOK: row["playbook"], kube.LABEL_RUN_STATUS: row["status"]}
    return _metadata(row, row["created_at"], labels)


def run_object(row: Mapping[str, Any]) -> dict[str, Any]:
    started, finished = row["started_at"], row["finished_at"]
    duration = (finished - started).total_seconds() if started and finished else None
    status = _drop_none(
        {
            "phase": row["status"],
            "attempt": row["attempt"],
            "startTime": timestamp(started),
            "completionTime": timestamp(finished),
            "durationSeconds": round(duration, 3) if duration is not None else None,
            "error": row["error"],
        }
    )
    result = row.get("result")
    if isinstance(result, Mapping):
        status["results"] = result.get("results") or []
        status["actions"] = result.get("actions") or []
    elif result is not None:
        status["results"] = result
    if row.get("traceback"):
        status["traceback"] = row["traceback"]
    if row.get("approval") is not None:
        # What the run waits for (phase waiting), or the last decision it got.
        status["approval"] = row["approval"]
    if "journal" in row:
        status["journal"] = [
            _drop_none(
                {
                    "seq": entry.seq,
                    "action": entry.action,
                    "status": entry.status,
                    "attempt": entry.attempt,
                    "result": entry.result,
                    "recordedAt": timestamp(entry.recorded_at),
                }
            )
            for entry in row["journal"]
        ]
    return {
        "apiVersion": API_VERSION,
        "kind": "Run",
        "metadata": run_metadata(row),
        "spec": _drop_none(
            {
                "playbook": row["playbook"],
                "alertId": str(row["alert_id"]),
                "correlationId": row.get("correlation_id"),
                "entryPoints": list(row["entry_points"]),
                "idempotencyKey": row["idempotency_key"],
                "maxAttempts": row["max_attempts"],
            }
        ),
        "status": status,
    }


RUN_COLUMNS = [
    ("Name", "string", "name", "The run's id."),
    ("Playbook", "string", "", "The Playbook the run belongs to."),
    ("Status", "string", "", "queued, running, waiting, succeeded, failed, dead or denied."),
    ("Attempt", "integer", "", "The delivery attempt, from 1."),
    ("Age", "string", "", "Time since the run was created."),
    ("Duration", "string", "", "Start to end (or to now, while it runs)."),
]


def run_cells(row: Mapping[str, Any], now: datetime) -> list[Any]:
    started, finished = row["started_at"], row["finished_at"]
    duration = ""
    if started is not None:
        duration = human_duration(((finished or now) - started).total_seconds())
    return [
        _name(row),
        row["playbook"],
        row["status"],
        row["attempt"],
        human_duration((now - row["created_at"]).total_seconds()),
        duration,
    ]


# --- alerts -------------------------------------------------------------------------
def alert_metadata(row: Mapping[str, Any]) -> dict[str, Any]:
    return _metadata(row, row["received_at"])


def alert_object(row: Mapping[str, Any]) -> dict[str, Any]:
    activity = [
        _drop_none(
            {
                "time": timestamp(entry["at"]),
                "actor": entry["actor"],
                "kind": entry["kind"],
                "from": entry["old_value"],
                "to": entry["new_value"],
            }
        )
        for entry in row.get("activity") or []
    ]
    status = _drop_none(
        {
            "source": row["source"],
            "title": row.get("title"),
            "severity": row.get("severity"),
            "correlationId": row["correlation_id"],
            "receivedTime": timestamp(row["received_at"]),
            "resolvedTime": timestamp(row["resolved_at"]),
            "alert": row.get("alert"),
        }
    )
    if "runs" in row:
        status["runs"] = [
            {"name": str(r["id"]), "playbook": r["playbook"], "phase": r["status"]}
            for r in row["runs"]
        ]
    if "activity" in row:
        status["comments"] = [
            {"time": a["time"], "author": a["actor"], "text": a.get("to", "")}
            for a in activity
            if a["kind"] == "comment"
        ]
        status["activity"] = activity
    return {
        "apiVersion": API_VERSION,
        "kind": "Alert",
        "metadata": alert_metadata(row),
        "spec": _drop_none(
            {
                "status": row["status"],
                "determination": row["determination"],
                "assignee": row["assignee"],
            }
        ),
        "status": status,
    }


ALERT_COLUMNS = [
    ("Name", "string", "name", "The alert's id."),
    ("Source", "string", "", "The AlertSource it came in through."),
    ("Severity", "string", "", "The normalised severity."),
    ("Status", "string", "", "new, in_progress or resolved."),
    ("Determination", "string", "", "unknown, malicious, suspicious or benign."),
    ("Assignee", "string", "", "Who works it."),
    ("Title", "string", "", "The alert's title."),
    ("Age", "string", "", "Time since it was received."),
]


def alert_cells(row: Mapping[str, Any], now: datetime) -> list[Any]:
    return [
        _name(row),
        row["source"],
        row.get("severity") or "",
        row["status"],
        row["determination"],
        row["assignee"] or "",
        row.get("title") or "",
        human_duration((now - row["received_at"]).total_seconds()),
    ]


# --- lists and tables ---------------------------------------------------------------
def list_meta(continue_token: str | None, version: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": version} if version else {}
    if continue_token:
        meta["continue"] = continue_token
    return meta


def object_list(
    kind: str, items: list[dict[str, Any]], token: str | None, version: str | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": f"{kind}List",
        "metadata": list_meta(token, version),
        "items": items,
    }


def metadata_list(
    items: list[dict[str, Any]], token: str | None, version: str | None = None
) -> dict[str, Any]:
    """`PartialObjectMetadataList`, for metadata-only clients (the namespace controller)."""
    return {
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadataList",
        "metadata": list_meta(token, version),
        "items": [
            {
                "apiVersion": "meta.k8s.io/v1",
                "kind": "PartialObjectMetadata",
                "metadata": item["metadata"],
            }
            for item in items
        ],
    }


def table(
    *,
    version: str,
    columns: list[tuple[str, str, str, str]],
    rows: Iterable[Mapping[str, Any]],
    cells: Callable[[Mapping[str, Any], datetime], list[Any]],
    render: Callable[[Mapping[str, Any]], dict[str, Any]],
    metadata: Callable[[Mapping[str, Any]], dict[str, Any]],
    include_object: str,
    token: str | None,
    resource_version: str | None = None,
) -> dict[str, Any]:
    """A meta.k8s.io Table; each row carries the object, its metadata or nothing
    (`includeObject`: Object, Metadata (the default) or None). Metadata is built on its
    own: rendering whole objects only to keep their metadata doubled a page's cost."""
    now = datetime.now(UTC)
    table_rows = []
    for row in rows:
        entry: dict[str, Any] = {"cells": cells(row, now)}
        if include_object == "Object":
            entry["object"] = render(row)
        elif include_object != "None":
            entry["object"] = {
                "apiVersion": f"meta.k8s.io/{version}",
                "kind": "PartialObjectMetadata",
                "metadata": metadata(row),
            }
        table_rows.append(entry)
    return {
        "apiVersion": f"meta.k8s.io/{version}",
        "kind": "Table",
        "metadata": list_meta(token, resource_version),
        "columnDefinitions": [
            {"name": n, "type": t, "format": f, "description": d, "priority": 0}
            for n, t, f, d in columns
        ],
        "rows": table_rows,
    }


ALERT_ID_PREFIX = "al-"


def parse_name(name: str) -> uuid.UUID | None:
    """The row id a name stands for: the UUID of `metadata.name`, or for an alert also
    the id the router's 202 answered with (`al-` and the same 128 bits in hex), so the
    id a sender got back works with `kubectl get alert` as it is."""
    if name.startswith(ALERT_ID_PREFIX):
        name = name.removeprefix(ALERT_ID_PREFIX)
        if len(name) != 32:
            return None
    try:
        return uuid.UUID(name)
    except ValueError:
        return None
