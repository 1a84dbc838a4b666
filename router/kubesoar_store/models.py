"""What goes into the store and what comes back out: plain frozen dataclasses."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubesoar_store.ids import uuid7

RUN_STATUSES = ("queued", "running", "waiting", "succeeded", "failed", "dead", "denied")
FINAL_STATUSES = ("succeeded", "failed", "dead", "denied")
REPORTED_FINAL_STATUSES = ("succeeded", "failed", "denied")
"""How a runtime pod can say a run ended (`dead` is the store's own verdict)."""


@dataclass(frozen=True)
class NewRun:
    """One run to create with an alert: one per matched Playbook."""

    playbook: str
    idempotency_key: str
    entry_points: Sequence[str] = ()
    max_attempts: int = 3
    id: uuid.UUID = field(default_factory=uuid7)


@dataclass(frozen=True)
class NewAlert:
    """A normalised alert as the router accepted it.

    `dedup_key` (bytes, e.g. kubesoar_router.dedup.dedup_key) makes the alert a
    duplicate while another alert with the same key is inside its window
    (`dedup_window_seconds`), across every router replica.
    """

    namespace: str
    source: str
    alert: Mapping[str, Any]
    correlation_id: str | None = None
    dedup_key: bytes | None = None
    dedup_window_seconds: float = 0.0
    id: uuid.UUID = field(default_factory=uuid7)


@dataclass(frozen=True)
class Accepted:
    """The outcome of GroupCommitter.submit, known only after the COMMIT.

    duplicate: the dedup key was live, nothing was written (alert_id is the
    submission's id, not stored). run_ids: the runs created; a run whose
    idempotency key already existed is not created again and not listed.
    """

    alert_id: uuid.UUID
    duplicate: bool
    run_ids: tuple[uuid.UUID, ...] = ()


@dataclass(frozen=True)
class ClaimedRun:
    """A run leased to a dispatcher; `token` is shown once, only its hash is stored."""

    id: uuid.UUID
    alert_id: uuid.UUID
    namespace: str
    playbook: str
    entry_points: tuple[str, ...]
    attempt: int
    max_attempts: int
    idempotency_key: str
    lease_expires_at: datetime
    token: str
    alert: Mapping[str, Any]
    correlation_id: str | None
    resumes: int = 0
    """Decided approvals so far: a resumed run replays its journal, and its request to
    a pod is a new one (the pod's idempotency cache must not answer it from before)."""


@dataclass(frozen=True)
class RunRecord:
    """What a runtime pod reports when a run ends (bounded by `complete`, never refused)."""

    status: str  # "succeeded", "failed" or "denied"
    result: Any = None
    error: str | None = None
    traceback: str | None = None


@dataclass(frozen=True)
class ExpiredLease:
    """A run whose lease ran out: requeued (status "queued", attempt+1) or "dead"."""

    id: uuid.UUID
    namespace: str
    playbook: str
    status: str
    attempt: int
    reason: str | None


@dataclass(frozen=True)
class PlaybookCounters:
    namespace: str
    playbook: str
    total: int
    succeeded: int
    failed: int
    dead: int
    queued: int
    running: int
    last_error: str | None
    last_error_at: datetime | None
    last_run_at: datetime | None = None
    waiting: int = 0
    """Runs parked until a person decides their approval."""
    denied: int = 0
    """Runs that ended at a refused or expired approval."""
