"""Label and field selectors → store filters (equality only, as kubectl writes them).

Runs:   --field-selector status=failed | status.phase=failed | playbook=triage |
        spec.playbook=triage | spec.alertId=<uuid> | spec.correlationId=<id>
        -l kubesoar.dev/playbook=triage | -l runs.kubesoar.dev/status=failed
Alerts: --field-selector spec.status=resolved | spec.determination=benign |
        spec.assignee=alice | status.source=siem (each also without its prefix)

`metadata.namespace` is accepted when it names the request's namespace. Anything
else — an unknown key, `!=`, set-based label selectors — is a 400 that says which keys
work, never silently ignored (an ignored filter would list more than asked for).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from kubesoar.contracts import kube
from kubesoar_store.alertviews import ALERT_STATUSES, DETERMINATIONS, AlertFilter
from kubesoar_store.models import RUN_STATUSES
from kubesoar_store.runviews import RunFilter

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
        try:
            alert_id = uuid.UUID(wanted["alert_id"])
        except ValueError:
            return None  # no alert has that id
    return RunFilter(
        namespace=namespace or wanted.get("namespace"),
        playbook=wanted.get("playbook"),
        status=status,
        alert_id=alert_id,
        correlation_id=wanted.get("correlation_id"),
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
