"""OpenAPI v3 for runs.kubesoar.dev/v1alpha1, so `kubectl explain runs.status` works.

The kube-apiserver lists this group version in its own /openapi/v3 (from ours) and
proxies requests for /openapi/v3/apis/runs.kubesoar.dev/v1alpha1 here; kubectl finds
each kind by `x-kubernetes-group-version-kind`. The schemas describe what objects.py
writes; free-form parts (a run's results, the normalised alert) preserve unknown fields.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from kubesoar.contracts import kube
from kubesoar_store.alertviews import ALERT_STATUSES, DETERMINATIONS
from kubesoar_store.models import RUN_STATUSES

PATH = f"apis/{kube.RUNS_API_GROUP}/{kube.RUNS_API_VERSION}"
PREFIX = "dev.kubesoar.runs." + kube.RUNS_API_VERSION


def _p(kind: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "description": description, **extra}


def _s(description: str, **extra: Any) -> dict[str, Any]:
    return _p("string", description, **extra)


def _obj(description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return _p("object", description, properties=properties)


def _free(description: str) -> dict[str, Any]:
    return {"description": description, "x-kubernetes-preserve-unknown-fields": True}


def _array(description: str, items: dict[str, Any]) -> dict[str, Any]:
    return _p("array", description, items=items)


TIME = {"format": "date-time"}


def _top(
    kind: str, description: str, spec: dict[str, Any], status: dict[str, Any]
) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": {
            "apiVersion": _s(f"{kube.RUNS_API_GROUP}/{kube.RUNS_API_VERSION}"),
            "kind": _s(kind),
            "metadata": _obj("Standard object metadata; name is the id (a UUID).", {}),
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-group-version-kind": [
            {"group": kube.RUNS_API_GROUP, "version": kube.RUNS_API_VERSION, "kind": kind}
        ],
    }


RUN = _top(
    "Run",
    "One run of a Playbook for one alert, from kubesoar's system of record (PostgreSQL).",
    _obj(
        "What was asked.",
        {
            "playbook": _s("The Playbook the run belongs to."),
            "alertId": _s("The alert that started it."),
            "correlationId": _s("The ingest request's correlation id."),
            "entryPoints": _array("Entry points the run executes.", _s("An entry point name.")),
            "idempotencyKey": _s("The same key is never run twice."),
            "maxAttempts": _p("integer", "Deliveries before the run ends dead."),
        },
    ),
    _obj(
        "What happened.",
        {
            "phase": _s(
                "queued, running, waiting (for an approval), succeeded, failed, dead or denied"
                " (an approval was refused).",
                enum=list(RUN_STATUSES),
            ),
            "attempt": _p("integer", "The delivery attempt, from 1."),
            "startTime": _s("When a runtime pod first started it.", **TIME),
            "completionTime": _s("When it ended.", **TIME),
            "durationSeconds": _p("number", "Start to end."),
            "error": _s("Type: message of the first failure, redacted."),
            "traceback": _s("Redacted traceback, playbook frames first."),
            "results": _array(
                "Each entry point's outcome.", _free("name, status, result, error, where.")
            ),
            "actions": _array("Every @action attempt, in order.", _free("An action attempt.")),
            "approval": _obj(
                "What the run waits for (phase waiting), or the last approval it got.",
                {
                    "seq": _p("integer", "The journal call number the decision is kept under."),
                    "title": _s("What is to be approved."),
                    "details": _free("What the playbook shows the approver."),
                    "ttlSeconds": _p("number", "Undecided after this long: denied, Expired."),
                    "requestedAt": _s("When the run asked.", **TIME),
                    "expiresAt": _s("When it is denied as Expired if nobody decides.", **TIME),
                    "decision": _obj(
                        "How it was decided.",
                        {
                            "approved": _p("boolean", "true: the run goes on."),
                            "reason": _s("Approved, Denied or Expired."),
                            "decidedBy": _s("The Kubernetes user; absent when it expired."),
                            "comment": _s("The decider's words."),
                            "decidedAt": _s("When.", **TIME),
                        },
                    ),
                },
            ),
            "journal": _array(
                "Actions the action journal recorded (not repeated on redelivery).",
                _obj(
                    "A journal entry.",
                    {
                        "seq": _p("integer", "The n-th action call of the run, from 0."),
                        "action": _s("The action's name."),
                        "status": _s("succeeded or failed."),
                        "attempt": _p("integer", "The attempt that recorded it."),
                        "result": _free("Its return value (bounded)."),
                        "recordedAt": _s("When it was recorded.", **TIME),
                    },
                ),
            ),
        },
    ),
)

ALERT = _top(
    "Alert",
    "An alert kubesoar accepted, and what people and playbooks did with it.",
    _obj(
        "What people set (kubectl patch --type merge -p '{\"spec\": {...}}').",
        {
            "status": _s("new, in_progress or resolved.", enum=list(ALERT_STATUSES)),
            "determination": _s(
                "unknown, malicious, suspicious or benign.", enum=list(DETERMINATIONS)
            ),
            "assignee": _s("Who works it; null unassigns."),
            "comment": _s("Write-only: a patch with it adds a comment by the caller."),
        },
    ),
    _obj(
        "What came in and what happened since (read-only).",
        {
            "source": _s("The AlertSource it came in through."),
            "title": _s("The normalised title."),
            "severity": _s("The normalised severity."),
            "correlationId": _s("The ingest request's correlation id."),
            "receivedTime": _s("When the router accepted it.", **TIME),
            "resolvedTime": _s("When its status became resolved.", **TIME),
            "alert": _free("The normalised alert."),
            "runs": _array(
                "Its runs.",
                _obj(
                    "A run.",
                    {
                        "name": _s("The run's id."),
                        "playbook": _s("Its Playbook."),
                        "phase": _s("Its phase."),
                    },
                ),
            ),
            "comments": _array(
                "Comments, oldest first.",
                _obj(
                    "A comment.",
                    {
                        "time": _s("When.", **TIME),
                        "author": _s("user:<name> or run:<id>."),
                        "text": _s("The comment."),
                    },
                ),
            ),
            "activity": _array(
                "Every change, oldest first.",
                _obj(
                    "A change.",
                    {
                        "time": _s("When.", **TIME),
                        "actor": _s("user:<name> (the Kubernetes user) or run:<id>."),
                        "kind": _s("status, determination, assignee or comment."),
                        "from": _s("The value before."),
                        "to": _s("The value after."),
                    },
                ),
            ),
        },
    ),
)


def _list(kind: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"A page of {kind} objects, newest first.",
        "properties": {
            "apiVersion": _s("The group version."),
            "kind": _s(f"{kind}List"),
            "metadata": _obj("resourceVersion (the read time) and continue (the next page).", {}),
            "items": _array(
                f"The {kind} objects.", {"$ref": f"#/components/schemas/{PREFIX}.{kind}"}
            ),
        },
        "x-kubernetes-group-version-kind": [
            {"group": kube.RUNS_API_GROUP, "version": kube.RUNS_API_VERSION, "kind": f"{kind}List"}
        ],
    }


def _operation(kind: str, action: str, schema: str) -> dict[str, Any]:
    return {
        "operationId": f"{action}{kind}",
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": kube.RUNS_API_GROUP,
            "version": kube.RUNS_API_VERSION,
            "kind": kind,
        },
        "responses": {
            "200": {
                "description": "OK",
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}
                },
            }
        },
    }


def _paths() -> dict[str, Any]:
    """The operations; kubectl explain finds a resource's kind through them."""
    base = f"/{PATH}/namespaces/{{namespace}}"
    paths: dict[str, Any] = {}
    for resource, kind, writable in (
        (kube.RUNS_RESOURCE, "Run", False),
        (kube.ALERTS_RESOURCE, "Alert", True),
    ):
        item = {"get": _operation(kind, "get", f"{PREFIX}.{kind}")}
        if writable:
            item["patch"] = _operation(kind, "patch", f"{PREFIX}.{kind}")
            item["put"] = _operation(kind, "put", f"{PREFIX}.{kind}")
        paths[f"{base}/{resource}/{{name}}"] = item
        paths[f"{base}/{resource}"] = {"get": _operation(kind, "list", f"{PREFIX}.{kind}List")}
    return paths


@functools.cache
def document() -> bytes:
    schemas = {
        f"{PREFIX}.Run": RUN,
        f"{PREFIX}.RunList": _list("Run"),
        f"{PREFIX}.Alert": ALERT,
        f"{PREFIX}.AlertList": _list("Alert"),
    }
    spec = {
        "openapi": "3.0.0",
        "info": {"title": "kubesoar runs", "version": kube.RUNS_API_VERSION},
        "paths": _paths(),
        "components": {"schemas": schemas},
    }
    return json.dumps(spec, sort_keys=True).encode()


@functools.cache
def document_v2() -> bytes:
    """The same schemas as Swagger 2.0 definitions: the aggregator merges every
    APIService's /openapi/v2 into the cluster's (and logs an error for each that has none)."""
    definitions = json.loads(document())["components"]["schemas"]
    text = json.dumps(definitions, sort_keys=True).replace(
        "#/components/schemas/", "#/definitions/"
    )
    spec = {
        "swagger": "2.0",
        "info": {"title": "kubesoar runs", "version": kube.RUNS_API_VERSION},
        "paths": {},
        "definitions": json.loads(text),
    }
    return json.dumps(spec, sort_keys=True).encode()


def etag(body: bytes | None = None) -> str:
    return hashlib.sha256(document() if body is None else body).hexdigest()[:32].upper()


def root() -> dict[str, Any]:
    """/openapi/v3: where each group version's document is."""
    return {"paths": {PATH: {"serverRelativeURL": f"/openapi/v3/{PATH}?hash={etag()}"}}}
