"""OpenSOAR's alert lifecycle helpers (`from opensoar import
resolve_current_alert, ...`) with OpenSOAR's signatures, validation and
return shapes.

A change is applied to the run's alert view (the object the entry point
received, seen by the rest of the run) and recorded, in OpenSOAR's activity
vocabulary, in the entry point's result under `alertActivity`; a router with a
database applies those records to the stored alert when it records the run's
result (kubesoar_store.alertviews.apply_run_activity). `assign_current_alert`
cannot check that the analyst exists.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Final

from kubesoar._context import current_context
from kubesoar._opensoar_alert import OpenSOARAlert, current_view

__all__ = [
    "VALID_ALERT_STATUSES",
    "VALID_DETERMINATIONS",
    "add_current_alert_comment",
    "assign_current_alert",
    "get_current_alert_id",
    "resolve_current_alert",
    "update_current_alert",
]

VALID_ALERT_STATUSES: Final = frozenset({"new", "in_progress", "resolved"})
VALID_DETERMINATIONS: Final = frozenset({"unknown", "malicious", "suspicious", "benign"})
_PLAYBOOK_SOURCE: Final = {"source": "playbook"}


def get_current_alert_id() -> str | None:
    view = current_view()
    return None if view is None else str(view.id)


def _bound() -> OpenSOARAlert:
    view = current_view()
    if view is None:
        raise RuntimeError("No current alert is bound to this execution context")
    return view


def _record(view: OpenSOARAlert, action: str, detail: str, metadata: dict[str, Any]) -> None:
    ctx = current_context()
    if ctx is None:
        return
    ctx.alert_activity.append(
        {
            "alert_id": str(view.id),
            "action": action,
            "detail": detail,
            "metadata": metadata,
            "at": datetime.now(UTC).isoformat(),
        }
    )


async def update_current_alert(
    *,
    status: str | None = None,
    determination: str | None = None,
    reason: str | None = None,
    partner: str | None = None,
    activity_action: str | None = None,
    activity_detail: str | None = None,
    activity_metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Change the current alert's status, determination, reason or partner."""
    if status is None and determination is None and reason is None and partner is None:
        raise ValueError("At least one alert field must be updated")
    if status is not None and status not in VALID_ALERT_STATUSES:
        raise ValueError(f"status must be one of: {', '.join(sorted(VALID_ALERT_STATUSES))}")
    if determination is not None and determination not in VALID_DETERMINATIONS:
        raise ValueError(f"determination must be one of: {', '.join(sorted(VALID_DETERMINATIONS))}")
    if status == "resolved":
        determination = determination or "unknown"
        if determination == "unknown":
            raise ValueError("resolving an alert requires a determination other than 'unknown'")
    view = _bound()
    old_status, old_determination = view.status, view.determination
    if status is not None:
        view.status = status
    if determination is not None:
        view.determination = determination
    if view.status == "resolved":
        view.resolved_at = view.resolved_at or datetime.now(UTC)
    if reason is not None:
        view.resolve_reason = reason
    if partner is not None:
        view.partner = partner
    if view.status != old_status:
        _record(
            view,
            "status_change",
            f"Status changed from {old_status} to {view.status}"
            + (f" — {reason}" if reason else ""),
            {"old": old_status, "new": view.status, **_PLAYBOOK_SOURCE},
        )
    if determination is not None and determination != old_determination:
        was = f" (was {old_determination})" if old_determination != "unknown" else ""
        _record(
            view,
            "determination_set",
            f"Determination set to {determination}{was}",
            {"old": old_determination, "new": determination, **_PLAYBOOK_SOURCE},
        )
    if activity_action and activity_detail:
        _record(view, activity_action, activity_detail, activity_metadata or _PLAYBOOK_SOURCE)
    return {
        "alert_id": str(view.id),
        "status": view.status,
        "determination": view.determination,
        "partner": view.partner,
        "resolved_at": view.resolved_at.isoformat() if view.resolved_at else None,
    }


async def resolve_current_alert(
    *,
    determination: str,
    reason: str | None = None,
    partner: str | None = None,
    activity_action: str | None = None,
    activity_detail: str | None = None,
    activity_metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Resolve the current alert with a determination other than `unknown`."""
    if determination not in VALID_DETERMINATIONS - {"unknown"}:
        raise ValueError("determination must be one of: benign, suspicious, malicious")
    return await update_current_alert(
        status="resolved",
        determination=determination,
        reason=reason,
        partner=partner,
        activity_action=activity_action,
        activity_detail=activity_detail,
        activity_metadata=activity_metadata,
    )


async def add_current_alert_comment(
    text: str, *, metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Add a comment to the current alert."""
    if not text.strip():
        raise ValueError("comment text must not be empty")
    view = _bound()
    comment_id = str(uuid.uuid4())
    _record(view, "comment", text.strip(), {**(metadata or _PLAYBOOK_SOURCE), "id": comment_id})
    return {
        "alert_id": str(view.id),
        "comment_id": comment_id,
        "action": "comment",
        "detail": text.strip(),
    }


async def assign_current_alert(
    *, analyst_id: str | None = None, username: str | None = None
) -> dict[str, Any]:
    """Assign the current alert (or unassign it, given neither argument).
    The analyst is taken as given: kubesoar has no analyst directory."""
    if analyst_id and username:
        raise ValueError("Provide either analyst_id or username, not both")
    view = _bound()
    if not analyst_id and not username:
        view.assigned_to = view.assigned_username = None
        _record(
            view,
            "assigned",
            "Alert unassigned by playbook",
            {**_PLAYBOOK_SOURCE, "assigned_to": None},
        )
        return {"alert_id": str(view.id), "assigned_to": None, "assigned_username": None}
    view.assigned_to = analyst_id
    view.assigned_username = username
    if view.status == "new":
        view.status = "in_progress"
    who = username or analyst_id
    _record(
        view,
        "assigned",
        f"Assigned to {who} by playbook",
        {**_PLAYBOOK_SOURCE, "assigned_to": analyst_id, "assigned_username": username},
    )
    return {"alert_id": str(view.id), "assigned_to": analyst_id, "assigned_username": username}
