"""Ingest with a system of record: an alert is answered 202 only once it and its runs
are committed in PostgreSQL.

After authentication, normalisation and matching (ingest.py), the alert and one run
per matched Playbook are handed to the group committer, which shares one transaction
among concurrent requests; the dispatcher (dispatcher.py) then pushes the queued runs
to ready runtime pods. What changes for a sender compared with direct delivery:

- no ready or no free runtime pod is not an error: the run waits in the database;
- a Playbook whose queue holds `max_queued_per_playbook` runs refuses more with 429
  and `Retry-After` (the queue depth is the dispatcher's view, at most a tick old);
- dedup, the HMAC replay cache and rate limits hold across router replicas (the store's
  expiring keys), in addition to each replica's own fast in-memory check;
- the database unreachable is 503 with `Retry-After`, never a 202.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from kubesoar.contracts import http
from kubesoar_store import (
    GroupCommitter,
    NewAlert,
    NewRun,
    StoreError,
    StoreOverloaded,
    StoreUnavailable,
    keys,
)
from kubesoar_store.migrate import require_schema
from kubesoar_store.pool import create_pool

from kubesoar_router import delivery, housekeeping
from kubesoar_router.dispatcher import Dispatcher, DispatchPolicy
from kubesoar_router.errors import IngestError
from kubesoar_router.metrics import RouterMetrics
from kubesoar_router.snapshot import Snapshot

logger = logging.getLogger("kubesoar.router")

UNAVAILABLE_RETRY_AFTER = 5
QUEUE_FULL_RETRY_AFTER = 10
DEFAULT_MAX_QUEUED_PER_PLAYBOOK = 10_000
DEFAULT_MAX_ATTEMPTS = 3


@dataclass
class Durable:
    """The router's system of record: the pool, the group committer, the dispatcher."""

    pool: asyncpg.Pool
    committer: GroupCommitter
    dispatcher: Dispatcher
    max_queued_per_playbook: int = DEFAULT_MAX_QUEUED_PER_PLAYBOOK
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


@contextlib.asynccontextmanager
async def open_durable(
    database_url: str,
    snapshot: Snapshot,
    *,
    report_url: str,
    caller_key: bytes | None,
    policy: DispatchPolicy | None = None,
    max_queued_per_playbook: int = DEFAULT_MAX_QUEUED_PER_PLAYBOOK,
    retention: housekeeping.Retention | None = None,
    wait_seconds: float = 0.0,
    metrics: RouterMetrics | None = None,
) -> AsyncIterator[Durable]:
    """Connect, check the schema is migrated, start the committer and the dispatcher;
    on exit stop them in the reverse order (nothing accepted is left uncommitted).

    `wait_seconds`: how long to keep trying while the database is unreachable or not
    migrated yet (a router started with its database, before the migration Job ran)."""
    pool = await _connect_migrated(database_url, wait_seconds)
    session = delivery.make_session()
    try:
        async with GroupCommitter(pool) as committer:
            dispatcher = Dispatcher(
                pool,
                snapshot,
                session,
                report_url=report_url,
                caller_key=caller_key,
                policy=policy or DispatchPolicy(),
                metrics=metrics or RouterMetrics(),
            )
            tasks = [asyncio.create_task(dispatcher.run(), name="dispatcher")]
            if retention is not None:
                tasks.append(
                    asyncio.create_task(housekeeping.run(pool, retention), name="housekeeping")
                )
            try:
                yield Durable(
                    pool, committer, dispatcher, max_queued_per_playbook=max_queued_per_playbook
                )
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await dispatcher.leave()
    finally:
        await session.close()
        await pool.close()


async def _connect_migrated(database_url: str, wait_seconds: float) -> asyncpg.Pool:
    deadline = time.monotonic() + wait_seconds
    pause = 1.0
    while True:
        try:
            pool = await create_pool(database_url, application_name="kubesoar-router")
        except StoreError as exc:
            problem: StoreError = exc
        else:
            try:
                async with pool.acquire() as conn:
                    await require_schema(conn)
                return pool
            except StoreError as exc:
                problem = exc
                await pool.close()
        if time.monotonic() + pause > deadline:
            raise problem
        logger.warning("waiting for the system of record: %s", problem)
        await asyncio.sleep(pause)
        pause = min(pause * 2, 15.0)


def alert_uuid(alert_id: str) -> uuid.UUID:
    """The stored alert's id: the same 128 bits as the alert's `al-<32 hex>` id, so a
    sender's retry of the same body is the same row (and not a second alert)."""
    return uuid.UUID(hex=alert_id.removeprefix("al-")[:32].ljust(32, "0"))


async def first_use(durable: Durable, replay_key: bytes, window: float) -> bool:
    """Across replicas: False when another replica already took this signature."""
    try:
        return await keys.remember_replay(durable.pool, replay_key, window)
    except StoreUnavailable:
        raise _unavailable() from None


async def check_rate(durable: Durable, scope: str, rate: float, burst: int) -> None:
    """Across replicas: one token bucket per source in the database."""
    try:
        decision = await keys.take_token(durable.pool, scope, rate=rate, burst=burst)
    except StoreUnavailable:
        raise _unavailable() from None
    if not decision.allowed:
        raise IngestError(
            429,
            "rate_limited",
            "too many alerts for this source",
            retry_after=max(1.0, decision.retry_after_seconds),
        )


async def accept(
    durable: Durable,
    *,
    namespace: str,
    source: str,
    alert_id: str,
    alert: dict[str, Any],
    correlation_id: str,
    dedup_key: bytes | None,
    dedup_window_seconds: float,
    matches: Sequence[Any],
    max_attempts: Mapping[str, int],
) -> http.IngestAccepted:
    """Commit the alert and its runs; the answer lists the runs created (queued)."""
    for match in matches:
        queued = durable.dispatcher.queued.get((namespace, match.playbook), 0)
        if queued >= durable.max_queued_per_playbook:
            raise IngestError(
                429,
                "queue_full",
                f"Playbook {match.playbook} has {queued} runs waiting; retry later",
                retry_after=QUEUE_FULL_RETRY_AFTER,
            )
    runs = [
        NewRun(
            playbook=match.playbook,
            idempotency_key=delivery.idempotency_key(alert_id, namespace, match.playbook),
            entry_points=tuple(match.entries),
            max_attempts=max_attempts.get(match.playbook, durable.max_attempts),
        )
        for match in matches
    ]
    new_alert = NewAlert(
        namespace=namespace,
        source=source,
        alert=alert,
        correlation_id=correlation_id,
        dedup_key=dedup_key,
        dedup_window_seconds=dedup_window_seconds,
        id=alert_uuid(alert_id),
    )
    try:
        accepted = await durable.committer.submit(new_alert, runs)
    except (StoreUnavailable, StoreOverloaded) as exc:
        logger.warning("alert not accepted: %s", exc, extra={"correlationId": correlation_id})
        raise _unavailable() from None
    if accepted.run_ids:
        durable.dispatcher.wake()
    created = set(accepted.run_ids)
    return http.IngestAccepted(
        alert_id=alert_id,
        correlation_id=correlation_id,
        deliveries=[
            http.Delivery(playbook=run.playbook, run_id=str(run.id))
            for run in runs
            if run.id in created
        ],
        duplicate=accepted.duplicate,
    )


def _unavailable() -> IngestError:
    return IngestError(
        503,
        "unavailable",
        "the system of record is unavailable; nothing was accepted, retry later",
        retry_after=UNAVAILABLE_RETRY_AFTER,
    )
