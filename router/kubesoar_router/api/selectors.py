"""Label and field selectors → store filters (equality only, as kubectl writes them).

Runs:   --field-selector status=failed | status.phase=failed | playbook=triage |
        spec.playbook=triage | spec.alertId=<uuid> | spec.correlationId=<id> |
        since=2h | since=2026-12-01T08:00:00Z (created then or later; s, m, h, d)
        -l kubesoar.dev/playbook=triage | -l runs.kubesoar.dev/status=failed
Alerts: --field-selector spec.status=resolved | spec.determination=benign |
        spec.assignee=alice | status.source=siem (each also without its prefix)

`metadata.namespace` is accepted when it names the request's namespace. Anything
else — an unknown key, `!=`, set-based label selectors — is a 400 that says which keys
work, never silently ignored (an ignored filter would list more than asked for).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from kubesoar.contracts import kube
from kubesoar_store.alertviews import ALERT_STATUSES, DETERMINATIONS, AlertFilter
from kubesoar_store.models import RUN_STATUSES
from kubesoar_store.runviews import RunFilter

from kubesoar_router.api import objects
from kubesoar_router.api.status import ApiProblem

RUN_FIELDS = {
    "status": "status",
    "status.phase": "status",
    "playbook": "playbook",
    "spec.playbook": "playbook",
    "spec.alertId": "alert_id",
    "alertId": "alert_id",
    "spec.correlationId": "correlation_id",
    "correlationId": "correlation_id",
    "since": "since",
}
RUN_LABELS = {kube.LABEL_PLAYBOOK: "playbook", kube.LABEL_RUN_STATUS: "status"}
ALERT_FIELDS = {
    "spec.status": "status",
    "status": "status",
    "spec.determination": "determination",
    "determination": "determination",
    "spec.assignee": "assignee",
    "assignee": "assignee",
    "status.source": "source",
    "source": "source",
}


def _pairs(text: str, what: str) -> list[tuple[str, str]]:
    pairs = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        if "!=" in term or "=" not in term:
            raise ApiProblem(400, f"{what} {term!r}: only key=value terms are supported")
        key, _, value = term.partition("==") if "==" in term else term.partition("=")
        pairs.append((key.strip(), value.strip()))
    return pairs


def _collect(
    query: Mapping[str, str], fields: Mapping[str, str], labels: Mapping[str, str], namespace: str
) -> dict[str, str]:
    wanted: dict[str, str] = {}
    sources = (
        ("fieldSelector", "field selector", fields),
        ("labelSelector", "label selector", labels),
    )
    for param, what, known in sources:
        for key, value in _pairs(query.get(param, ""), what):
            if key == "metadata.namespace" and param == "fieldSelector":
                if namespace and value != namespace:
                    wanted["namespace_mismatch"] = value
                elif not namespace:
                    wanted["namespace"] = value
                continue
            if key not in known:
                supported = ", ".join(sorted(known)) or "none"
                raise ApiProblem(400, f"{what} {key!r} is not supported (supported: {supported})")
            column = known[key]
            if column in wanted and wanted[column] != value:
                wanted["contradiction"] = value
            wanted[column] = value
    return wanted


_AGO = re.compile(r"^([0-9]{1,6})([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`since=` as a time: a duration back from now (`90s`, `30m`, `2h`, `7d`) or an
    RFC 3339 timestamp with its zone. A 400 that shows both forms otherwise."""
    ago = _AGO.match(text)
    if ago:
        seconds = int(ago[1]) * _UNIT_SECONDS[ago[2]]
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ApiProblem(
            400, f"since {text!r}: a duration such as 30m, 2h or 7d, or an RFC 3339 time"
            " such as 2026-12-01T08:00:00Z",
        )  # fmt: skip
    return when


def run_filter(query: Mapping[str, str], namespace: str) -> RunFilter | None:
    """The filter, or None when the selectors can match nothing (contradictory terms)."""
    wanted = _collect(query, RUN_FIELDS, RUN_LABELS, namespace)
    if "contradiction" in wanted or "namespace_mismatch" in wanted:
        return None
    status = wanted.get("status")
    if status is not None and status not in RUN_STATUSES:
        raise ApiProblem(400, f"status {status!r} is not one of {', '.join(RUN_STATUSES)}")
    alert_id = None
    if "alert_id" in wanted:
        alert_id = objects.parse_name(wanted["alert_id"])  # the UUID or the 202's `al-` id
        if alert_id is None:
            return None  # no alert has that id
    return RunFilter(
        namespace=namespace or wanted.get("namespace"),
        playbook=wanted.get("playbook"),
        status=status,
        alert_id=alert_id,
        correlation_id=wanted.get("correlation_id"),
        since=parse_since(wanted["since"]) if "since" in wanted else None,
    )


def alert_filter(query: Mapping[str, str], namespace: str) -> AlertFilter | None:
    wanted = _collect(query, ALERT_FIELDS, {}, namespace)
    if "contradiction" in wanted or "namespace_mismatch" in wanted:
        return None
    for column, allowed in (("status", ALERT_STATUSES), ("determination", DETERMINATIONS)):
        value = wanted.get(column)
        if value is not None and value not in allowed:
            raise ApiProblem(400, f"{column} {value!r} is not one of {', '.join(allowed)}")
    return AlertFilter(
        namespace=namespace or wanted.get("namespace"),
        status=wanted.get("status"),
        determination=wanted.get("determination"),
        assignee=wanted.get("assignee"),
        source=wanted.get("source"),
    )
