"""Runs that wait for a person: park, decide, expire.

    running --suspend (the pod, with the run's token)--> waiting
    waiting --decide (a person, through the runs API)--> queued, resumes + 1
    waiting --expire_approvals (nobody decided in time)--> queued, resumes + 1

A waiting run holds no lease and no worker. The decision is written to the action
journal under the call number of the `ctx.approval` that asked (`approval.seq`), as
the action `kubesoar.approval`, in the same transaction that queues the run again; the
pod that resumes it replays the journal, so that call returns the decision and the
actions before it are not executed again. The last request and its decision stay in
`runs.approval` for `kubectl get run -o yaml`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from kubesoar.contracts.http import APPROVAL_ACTION

from kubesoar_store.bounds import MAX_RESULT_BYTES, bounded_json
from kubesoar_store.dispatch import check_lease
from kubesoar_store.errors import NotLeased, unavailable
from kubesoar_store.models import RunRecord

MAX_COMMENT_CHARS = 1000
MAX_TITLE_CHARS = 200
MAX_DETAILS_BYTES = 16 * 1024
"""As the runtime bounds them (kubesoar._approval); a pod that sends more gets a marker."""


@dataclass(frozen=True)
class Waiting:
    """What a run asks people to decide (kubesoar.contracts.http.ApprovalRequest)."""

    seq: int
    title: str
    details: Any
    ttl_seconds: float


@dataclass(frozen=True)
class Decided:
    """A run whose approval was decided and that is queued again."""

    id: uuid.UUID
    namespace: str
    playbook: str
    decision: dict[str, Any]


def decision(
    *, approved: bool, reason: str, by: str | None, comment: str | None, at: datetime
) -> dict[str, Any]:
    """The journal result a resumed `ctx.approval` reads (ApprovalDecision on the wire)."""
    return {
        "approved": approved,
        "reason": reason,
        "decidedBy": by,
        "comment": comment,
        "decidedAt": _rfc3339(at),
    }


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def suspend(
    pool: asyncpg.Pool,
    run_id: uuid.UUID,
    token: str,
    waiting: Waiting,
    record: RunRecord,
    *,
    max_result_bytes: int = MAX_RESULT_BYTES,
) -> bool:
    """Park a running run until its approval is decided. True when written; False for
    a repeat of the same report (the token stays the run's until the next claim, so a
    pod retrying after a lost answer gets an answer, not a 403)."""
    result = bounded_json(record.result, max_result_bytes) if record.result is not None else None
    with unavailable("parking a run for approval"):
        async with pool.acquire() as conn, conn.transaction():
            status = await check_lease(conn, run_id, token)
            if status == "waiting":
                return False
            if status != "running":
                raise NotLeased(f"run {run_id} is {status}, not running")
            now: datetime = await conn.fetchval("SELECT now()")
            expires = now + timedelta(seconds=waiting.ttl_seconds)
            request = {
                "seq": waiting.seq,
                "title": waiting.title[:MAX_TITLE_CHARS],
                # Bounded alone: over the bound, the details become the truncation marker
                # and the request keeps its seq (what a decision is written under).
                "details": json.loads(bounded_json(waiting.details, MAX_DETAILS_BYTES)),
                "ttlSeconds": waiting.ttl_seconds,
                "requestedAt": _rfc3339(now),
                "expiresAt": _rfc3339(expires),
            }
            await conn.execute(
                "UPDATE runs SET status = 'waiting', approval = $2::jsonb,"
                " approval_expires_at = $3, result = $4::jsonb, lease_owner = NULL,"
                " lease_expires_at = NULL, updated_at = now() WHERE id = $1",
                run_id,
                json.dumps(request),
                expires,
                result,
            )
    return True


_QUEUE_AGAIN = """
WITH journaled AS (
    INSERT INTO action_journal AS j (run_id, seq, action, status, attempt, result)
    VALUES ($1, $2, $3, 'succeeded', $4, $5::jsonb)
    -- A different call recorded under this number by an earlier attempt gives way:
    -- the decision is what this number means now.
    ON CONFLICT (run_id, seq) DO UPDATE SET action = EXCLUDED.action,
        status = EXCLUDED.status, attempt = EXCLUDED.attempt, result = EXCLUDED.result,
        recorded_at = now()
)
UPDATE runs SET status = 'queued', approval = approval || jsonb_build_object('decision', $5::jsonb),
    approval_expires_at = NULL, resumes = resumes + 1, available_at = now(), updated_at = now()
WHERE id = $1
"""


async def decide(
    pool: asyncpg.Pool,
    namespace: str,
    run_id: uuid.UUID,
    *,
    approved: bool,
    by: str,
    comment: str | None = None,
) -> str | None:
    """A person's decision on a waiting run of `namespace`. Returns the status the run
    had — the decision was written only when that is "waiting" — or None when there is
    no such run."""
    if comment is not None and len(comment) > MAX_COMMENT_CHARS:
        raise ValueError(f"comment must be at most {MAX_COMMENT_CHARS} characters")
    with unavailable("deciding an approval"):
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT status, attempt, approval, now() AS now FROM runs"
                " WHERE id = $1 AND namespace = $2 FOR UPDATE",
                run_id,
                namespace,
            )
            if row is None:
                return None
            if row["status"] != "waiting":
                status: str = row["status"]
                return status
            seq = json.loads(row["approval"])["seq"]
            decided = decision(
                approved=approved,
                reason="Approved" if approved else "Denied",
                by=by,
                comment=comment,
                at=row["now"],
            )
            await conn.execute(
                _QUEUE_AGAIN, run_id, seq, APPROVAL_ACTION, row["attempt"], json.dumps(decided)
            )
    return "waiting"


_EXPIRED = """
SELECT id, namespace, playbook, attempt, (approval->>'seq')::int AS seq,
       coalesce($1::timestamptz, now()) AS now
FROM runs
WHERE status = 'waiting' AND approval_expires_at <= coalesce($1::timestamptz, now())
ORDER BY approval_expires_at
LIMIT $2
FOR UPDATE SKIP LOCKED
"""


async def expire_approvals(
    pool: asyncpg.Pool, *, now: datetime | None = None, limit: int = 100
) -> list[Decided]:
    """Deny, with reason Expired, the approvals nobody decided within their TTL, and
    queue those runs again (their playbooks see `ApprovalDenied`)."""
    decided: list[Decided] = []
    with unavailable("expiring approvals"):
        async with pool.acquire() as conn, conn.transaction():
            for row in await conn.fetch(_EXPIRED, now, limit):
                expired = decision(
                    approved=False, reason="Expired", by=None, comment=None, at=row["now"]
                )
                await conn.execute(
                    _QUEUE_AGAIN,
                    row["id"],
                    row["seq"],
                    APPROVAL_ACTION,
                    row["attempt"],
                    json.dumps(expired),
                )
                decided.append(Decided(row["id"], row["namespace"], row["playbook"], expired))
    return decided
