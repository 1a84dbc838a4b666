"""The bodies kubesoar's parts exchange over HTTP, as pydantic models.

- `POST /v1/runs` (router → runtime pod): `RunRequest` in, `RunAccepted` or `ErrorBody` out.
- `GET /v1/runs/{id}` (→ runtime pod): `RunRecord`.
- `GET /v1/report` (operator → runtime pod): `Report`.
- `POST /v1/namespaces/{ns}/sources/{source}/alerts` (sender → router): `IngestAccepted`
  or `ErrorBody`.

Field names on the wire are camelCase (the aliases); Python code uses the snake_case
attribute names. `docs/CONTRACTS.md` lists every model and field, and
`tests/runtime/test_contracts.py` keeps that page and these models in step.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# Paths and headers live in `paths` (standard library only: knowing a path need not
# import pydantic); re-exported here, where every part has looked for them.
from kubesoar.contracts.paths import CORRELATION_HEADER as CORRELATION_HEADER
from kubesoar.contracts.paths import HEALTHZ_PATH as HEALTHZ_PATH
from kubesoar.contracts.paths import METRICS_PATH as METRICS_PATH
from kubesoar.contracts.paths import READYZ_PATH as READYZ_PATH
from kubesoar.contracts.paths import REPORT_PATH as REPORT_PATH
from kubesoar.contracts.paths import RUNS_PATH as RUNS_PATH
from kubesoar.contracts.paths import ingest_path as ingest_path
from kubesoar.contracts.paths import run_path as run_path

MAX_KEY_CHARS: Final = 256
"""Longest idempotency key and correlation id a runtime accepts."""
MAX_ENTRY_POINTS: Final = 256
"""Most entry point names one `RunRequest` may select."""


class _Wire(BaseModel):
    # camelCase on the wire, snake_case in Python; unknown fields are a contract break.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class ErrorBody(_Wire):
    """Every 4xx/5xx answer of the router's ingest and the runtime's `/v1` API."""

    error: str = Field(description="stable machine-readable code, e.g. `invalid_json`")
    message: str = Field(description="what was wrong, for a human")


# --- POST /v1/runs -------------------------------------------------------------
class ReportTo(_Wire):
    """Where a runtime pod reports a dispatched run, and the run's own credential."""

    url: str = Field(
        max_length=2048,
        description="the dispatching router replica's base URL, e.g. `http://10.0.0.7:8081`",
    )
    fallback_urls: list[Annotated[str, Field(max_length=2048)]] = Field(
        default_factory=list,
        alias="fallbackUrls",
        max_length=16,
        description="the other live replicas, tried in order when `url` does not answer",
    )
    token: str = Field(
        min_length=16,
        max_length=256,
        description="the per-run token: `Authorization: Bearer` on every report of this run",
    )
    heartbeat_seconds: float = Field(
        default=10.0,
        alias="heartbeatSeconds",
        gt=0,
        le=3600,
        description="how often the pod extends the lease while the run is running",
    )


class JournalEntry(_Wire):
    """One `@action` call's outcome: sent by the pod as it happens, replayed to a later
    attempt of the same run (`RunRequest.journal`)."""

    seq: int = Field(ge=0, description="the n-th action call of the run, from 0")
    action: str = Field(max_length=253, description="the action's name")
    status: str = Field(pattern="^(succeeded|failed)$", description="succeeded or failed")
    result: Any = Field(default=None, description="its return value (bounded by the router)")


class RunRequest(_Wire):
    """The router asks a runtime pod to run the entry points an alert matched."""

    idempotency_key: str = Field(
        alias="idempotencyKey",
        min_length=1,
        max_length=MAX_KEY_CHARS,
        description="the same key twice gives the first answer again, never a second run",
    )
    correlation_id: str | None = Field(
        default=None,
        alias="correlationId",
        min_length=1,
        max_length=MAX_KEY_CHARS,
        description="the ingest request's correlation id, carried into logs and the run",
    )
    playbooks: list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None,
        max_length=MAX_ENTRY_POINTS,
        description="entry point names to run; null runs every entry point the alert matches",
    )
    alert: dict[str, Any] = Field(description="the normalised alert (kubesoar.Alert fields)")
    run_id: str | None = Field(
        default=None,
        alias="runId",
        max_length=64,
        description="the run's id in the system of record (dispatched runs only)",
    )
    attempt: int = Field(
        default=1, ge=1, le=1000, description="delivery attempt, from 1 (`ctx.attempt`)"
    )
    report: ReportTo | None = Field(
        default=None,
        description="where the pod reports this run's progress and record; absent: nowhere",
    )
    journal: list[JournalEntry] = Field(
        default_factory=list,
        max_length=10000,
        description="actions earlier attempts completed; they are not executed again",
    )


# What each field must be, for the one-line reason a refused request gets.
_RUN_REQUEST_RULES: Final = {
    "idempotencyKey": f"idempotencyKey must be a string of 1-{MAX_KEY_CHARS} chars",
    "correlationId": f"correlationId must be a string of 1-{MAX_KEY_CHARS} chars",
    "playbooks": "playbooks must be null or a list of entry point names",
    "alert": "alert must be a JSON object",
}


def run_request_problem(exc: ValidationError) -> str:
    """The first reason a `RunRequest` was refused, as one line naming the field."""
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        if error["type"] == "missing":
            return f"{field} is required"
        if field in _RUN_REQUEST_RULES:
            return _RUN_REQUEST_RULES[field]
        return f"{field}: {error['msg']}" if field else str(error["msg"])
    return "invalid run request"


def parse_run_request(body: Any) -> RunRequest:
    """Validate a decoded `POST /v1/runs` body; raises `ValidationError`."""
    return RunRequest.model_validate(body)


_encode_string = json.JSONEncoder(ensure_ascii=True).encode


@functools.lru_cache(maxsize=1024)
def _entries_json(entries: tuple[str, ...]) -> bytes:
    return json.dumps(list(entries), separators=(",", ":")).encode()


def encode_run_request(
    *, key: str, correlation_id: str, entries: Sequence[str], alert_json: bytes
) -> bytes:
    """A `RunRequest` as JSON, with the alert's JSON (serialised once per alert and
    shared by every matched Playbook) spliced in rather than re-encoded per delivery."""
    return b"".join(
        (
            b'{"idempotencyKey":',
            _encode_string(key).encode(),
            b',"correlationId":',
            _encode_string(correlation_id).encode(),
            b',"playbooks":',
            _entries_json(tuple(entries)),
            b',"alert":',
            alert_json,
            b"}",
        )
    )


class RunAccepted(_Wire):
    """202 to `POST /v1/runs`. `run_id` is null when no entry point matched."""

    run_id: str | None = Field(alias="runId", description="the run's id at this pod")
    accepted: list[str] = Field(description="the entry points the run will execute")


# --- runtime pod → router: a dispatched run's progress -------------------------
RUN_CALLBACK_PREFIX: Final = "/v1/runs/"
"""Router paths a pod reports to: `{prefix}{id}/heartbeat`, `/actions`, `/result`, `/release`."""


def run_callback_path(run_id: str, what: str) -> str:
    return f"{RUN_CALLBACK_PREFIX}{run_id}/{what}"


APPROVAL_ACTION: Final = "kubesoar.approval"
"""The journal entry an approval's decision is kept under. Only the router writes it
(from a person's decision or the expiry); a pod reporting an action of this name, or
any other `kubesoar.` name, is refused."""
RESERVED_ACTION_PREFIX: Final = "kubesoar."
MAX_APPROVAL_TTL_SECONDS: Final = 7 * 24 * 3600
APPROVAL_REASONS: Final = ("Approved", "Denied", "Expired")


class ApprovalRequest(_Wire):
    """What a run waits for: `await ctx.approval(title, details, ttl_seconds=...)`."""

    seq: int = Field(ge=0, description="the journal call number the decision is kept under")
    title: str = Field(min_length=1, max_length=200, description="what is to be approved")
    details: Any = Field(default=None, description="JSON for the approver (bounded by the router)")
    ttl_seconds: float = Field(
        alias="ttlSeconds",
        gt=0,
        le=MAX_APPROVAL_TTL_SECONDS,
        description="undecided after this long: a deny with reason `Expired`",
    )


class ApprovalDecision(_Wire):
    """How an approval was decided: the journal entry's result, replayed to the run."""

    approved: bool = Field(description="true: go on; false: `ApprovalDenied` in the playbook")
    reason: str = Field(
        pattern="^(Approved|Denied|Expired)$", description="Approved, Denied or Expired"
    )
    decided_by: str | None = Field(
        default=None, alias="decidedBy", description="the Kubernetes user; null when it expired"
    )
    comment: str | None = Field(default=None, max_length=1000, description="the decider's words")
    decided_at: str | None = Field(
        default=None, alias="decidedAt", description="RFC 3339 time of the decision"
    )


class RunResult(_Wire):
    """`POST /v1/runs/{id}/result` from the pod that ran it: how the run ended, or that
    it waits for an approval (`status` waiting: the run is parked, not leased, until a
    decision queues it again)."""

    status: str = Field(
        pattern="^(succeeded|failed|denied|waiting)$",
        description="succeeded, failed, denied (an approval was refused) or waiting",
    )
    approval: ApprovalRequest | None = Field(
        default=None, description="what the run waits for; set exactly when status is waiting"
    )
    results: list[dict[str, Any]] = Field(
        default_factory=list, description="each entry point's outcome, as in `RunRecord`"
    )
    actions: list[dict[str, Any]] = Field(
        default_factory=list, description="every action attempt, in order"
    )
    error: str | None = Field(default=None, description="`Type: message`, redacted")
    traceback: str | None = Field(
        default=None, description="redacted traceback, playbook frames first"
    )
    duration_seconds: float | None = Field(
        default=None, alias="durationSeconds", description="how long it ran"
    )

    @model_validator(mode="after")
    def _approval_exactly_when_waiting(self) -> RunResult:
        if (self.status == "waiting") != (self.approval is not None):
            raise ValueError("approval is set exactly when status is waiting")
        return self


class LeaseAnswer(_Wire):
    """The router's answer to a heartbeat."""

    lease_expires_at: str = Field(alias="leaseExpiresAt", description="RFC 3339 lease end")


# --- GET /v1/runs/{id} ----------------------------------------------------------
class RunRecord(_Wire):
    """One run as a runtime pod keeps it (its last runs only; see docs/operations.md)."""

    run_id: str = Field(alias="runId", description="the run's id at this pod")
    correlation_id: str | None = Field(alias="correlationId", description="from the request")
    idempotency_key: str | None = Field(alias="idempotencyKey", description="from the request")
    alert_id: str | None = Field(alias="alertId", description="the alert's `id`")
    playbooks: list[str] = Field(description="the entry points this run executes")
    status: str = Field(description="queued, running, succeeded, failed, denied or waiting")
    created: str = Field(description="RFC 3339 time the run was accepted")
    started: str | None = Field(description="RFC 3339 time a worker started it")
    finished: str | None = Field(description="RFC 3339 time it ended")
    duration_seconds: float | None = Field(
        alias="durationSeconds", description="started → finished"
    )
    results: list[dict[str, Any]] = Field(
        description="each entry point's outcome: name, status, result, error, where (file:line),"
        " traceback (redacted, playbook frames first), durationSeconds"
    )
    actions: list[dict[str, Any]] = Field(description="every action attempt, in order")
    error: str | None = Field(description="`Type: message` of the first failure, redacted")
    attempt: int = Field(default=1, description="the delivery attempt this pod ran")
    approval: ApprovalRequest | None = Field(
        default=None, description="what the run waits for, when its status is waiting"
    )


# --- GET /v1/report ---------------------------------------------------------------
class EntryPointInfo(_Wire):
    """An entry point the module registered; the router routes on `conditions`."""

    name: str = Field(description="unique in the module; `RunRequest.playbooks` names it")
    trigger: str | None = Field(default=None, description="the source it is meant for, if any")
    conditions: dict[str, Any] | None = Field(
        default=None, description="the match conditions (docs/playbooks.md)"
    )
    order: int = Field(default=1000, description="lower runs first")
    priority: int = Field(default=0, description="higher is more important")
    description: str = Field(default="", description="the first line of the docstring")
    fields: str = Field(
        default="kubesoar",
        pattern="^(kubesoar|opensoar)$",
        description="whose alert fields and values `conditions` name: `kubesoar`, or"
        " `opensoar` for entry points registered through the `opensoar` alias (OpenSOAR's"
        " names, and its severities: `info` is `low`)",
    )


class LoadErrorInfo(_Wire):
    """Why the module could not be imported."""

    type: str = Field(description="the exception's type, e.g. `SyntaxError`")
    message: str = Field(description="its message, redacted")
    file: str | None = Field(default=None, description="the playbook file, relative to its folder")
    line: int | None = Field(default=None, description="the line in that file")


class RunTotals(_Wire):
    """Counters of one pod since it started."""

    total: int = Field(default=0, description="runs finished")
    succeeded: int = Field(default=0, description="runs whose entry points all returned")
    failed: int = Field(default=0, description="runs that raised, timed out or were abandoned")
    abandoned: int | None = Field(
        default=None, description="runs a drain left unfinished (also in failed); absent if 0"
    )
    last_run_time: str | None = Field(
        default=None, alias="lastRunTime", description="RFC 3339 end of the last run"
    )
    last_error: str | None = Field(
        default=None, alias="lastError", description="the last run's error, if it failed"
    )


class Report(_Wire):
    """What a runtime pod loaded and how its runs went; the operator builds status from it."""

    commit: str | None = Field(default=None, description="the commit the pod's code is from")
    module: str | None = Field(default=None, description="the module it imported")
    entry_points: list[EntryPointInfo] = Field(
        default_factory=list, alias="entryPoints", description="what the module registered"
    )
    load_error: LoadErrorInfo | None = Field(
        default=None, alias="loadError", description="null when the module loaded"
    )
    runs: RunTotals = Field(default_factory=RunTotals, description="this pod's counters")


# --- the router's ingest answer -------------------------------------------------------
class Delivery(_Wire):
    """Where one matched Playbook's run went."""

    playbook: str = Field(description="the matched Playbook")
    run_id: str | None = Field(alias="runId", description="the run's id, null if none started")


class IngestAccepted(_Wire):
    """202 to an ingest POST: where the alert went (or that it was a duplicate)."""

    alert_id: str = Field(alias="alertId", description="the same body gives the same id")
    correlation_id: str = Field(alias="correlationId", description="also in the header")
    deliveries: list[Delivery] = Field(description="one per matched Playbook")
    duplicate: bool = Field(description="true when dedup recognised the alert; nothing ran")


def dump(model: BaseModel) -> dict[str, Any]:
    """A model as its wire JSON object: camelCase keys; optional fields nobody set
    (such as `RunTotals.abandoned`) are absent rather than null."""
    return model.model_dump(by_alias=True, exclude_unset=True)
