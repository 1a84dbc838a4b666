"""Group commit: concurrent submissions share one statement, one transaction, one fsync.

Each `await submit(alert, runs)` waits until its alert and runs are committed
(or found to be a duplicate) and then gets its own `Accepted`; if the batch's
statement fails, every submission of that batch raises StoreUnavailable, so the
router never answers 202 for something that is not on disk.

A batch is flushed when `max_batch` submissions wait or `max_wait_seconds` after
the first one arrived, whichever comes first; while `max_inflight` batches are
being committed the next one keeps filling, so under load batches grow by
themselves instead of queueing round trips. Submissions not yet resolved are
bounded by `max_pending`: past it `submit` raises StoreOverloaded at once.

The batch is one INSERT statement (data-modifying CTEs over unnest()ed arrays),
which PostgreSQL runs as one implicit transaction: the dedup keys are claimed,
the alerts whose key was free are inserted, then their runs. A dedup key held
by another batch that has not committed yet (another router replica, say)
makes this one wait for it, so two replicas never both accept one key; keys are
claimed in sorted order so two batches cannot deadlock on them.

One bad alert must not fail its whole batch: what PostgreSQL is known to refuse
is fixed or refused in `submit` (NUL characters, lone surrogates), and if a batch
still fails on its data (SQLSTATE class 22/54) its submissions are committed one
by one, so only the offending one raises InvalidSubmission.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from kubesoar_store.errors import (
    InvalidSubmission,
    StoreError,
    StoreOverloaded,
    StoreUnavailable,
    is_bad_data,
    unavailable,
)
from kubesoar_store.models import Accepted, NewAlert, NewRun

logger = logging.getLogger("kubesoar.store.groupcommit")

INSERT_BATCH = """
WITH claimed AS (
    INSERT INTO dedup_keys AS d (key, alert_id, expires_at)
    SELECT k.key, k.alert_id, now() + make_interval(secs => k.secs)
    FROM unnest($1::bytea[], $2::uuid[], $3::float8[]) AS k(key, alert_id, secs)
    ON CONFLICT (key) DO UPDATE
        SET alert_id = EXCLUDED.alert_id, expires_at = EXCLUDED.expires_at
        WHERE d.expires_at <= now()
    RETURNING d.alert_id
), new_alerts AS (
    INSERT INTO alerts (id, namespace, source, alert, correlation_id, dedup_key)
    SELECT a.id, a.namespace, a.source, a.body, a.correlation_id, a.dedup_key
    FROM unnest($4::uuid[], $5::text[], $6::text[], $7::jsonb[], $8::text[], $9::bytea[])
        AS a(id, namespace, source, body, correlation_id, dedup_key)
    WHERE a.dedup_key IS NULL OR a.id IN (SELECT alert_id FROM claimed)
    -- The same id again is a sender's retry of a body already accepted: not a second alert.
    ON CONFLICT (id) DO NOTHING
    RETURNING id, namespace
), new_runs AS (
    INSERT INTO runs (id, alert_id, namespace, playbook, entry_points, idempotency_key,
                      max_attempts)
    SELECT r.id, r.alert_id, na.namespace, r.playbook,
           ARRAY(SELECT jsonb_array_elements_text(r.entry_points)),
           r.idempotency_key, r.max_attempts
    FROM unnest($10::uuid[], $11::uuid[], $12::text[], $13::jsonb[], $14::text[], $15::int[])
        AS r(id, alert_id, playbook, entry_points, idempotency_key, max_attempts)
    JOIN new_alerts na ON na.id = r.alert_id
    ORDER BY r.idempotency_key
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, alert_id
)
SELECT id, NULL::uuid AS alert_id FROM new_alerts
UNION ALL
SELECT id, alert_id FROM new_runs
"""


# "\u0000" in JSON text that is an escape (preceded by an even number of backslashes):
# jsonb refuses it, so it becomes U+FFFD, the replacement character.
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def encode_alert(alert: Any) -> str:
    """The alert as JSON text PostgreSQL's jsonb accepts; what it cannot hold becomes U+FFFD."""
    try:
        body = json.dumps(
            alert, separators=(",", ":"), ensure_ascii=False, default=str, allow_nan=False
        )
    except (ValueError, RecursionError) as exc:  # NaN/Infinity are not JSON; nor is a cycle
        raise InvalidSubmission(f"the alert is not storable JSON: {exc}") from None
    if "\\u0000" in body:
        body = _NUL_ESCAPE.sub(lambda m: m.group(1) + "\\ufffd", body)
    try:
        body.encode()
    except UnicodeEncodeError:  # lone surrogates: not UTF-8, so not storable
        body = body.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return body


def _check_names(alert: NewAlert, runs: Sequence[NewRun]) -> None:
    names = [alert.namespace, alert.source, alert.correlation_id or ""]
    for run in runs:
        names += [run.playbook, run.idempotency_key, *run.entry_points]
        if run.max_attempts < 1:
            raise InvalidSubmission(f"max_attempts must be >= 1, not {run.max_attempts}")
    if any("\x00" in name for name in names):
        raise InvalidSubmission("a name, key or correlation id contains a NUL character")


@dataclass
class _Submission:
    alert: NewAlert
    runs: Sequence[NewRun]
    body: str
    future: asyncio.Future[Accepted]
    # Another submission of the same batch holds the same dedup key.
    duplicate_in_batch: bool = False


class GroupCommitter:
    """Shares commits between concurrent submissions; see the module docstring.

    Use as `async with GroupCommitter(pool) as committer:`, or call start() and close().
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_batch: int = 512,
        max_wait_seconds: float = 0.002,
        max_pending: int = 10_000,
        max_inflight: int = 2,
    ) -> None:
        if max_batch < 1 or max_pending < 1 or max_inflight < 1 or max_wait_seconds < 0:
            raise ValueError("max_batch, max_pending and max_inflight must be >= 1, wait >= 0")
        self._pool = pool
        self._max_batch = max_batch
        self._max_wait = max_wait_seconds
        self._max_pending = max_pending
        self._inflight = asyncio.Semaphore(max_inflight)
        self._waiting: list[_Submission] = []
        self._outstanding = 0
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def outstanding(self) -> int:
        """Submissions not yet resolved (waiting for a batch or being committed)."""
        return self._outstanding

    async def __aenter__(self) -> GroupCommitter:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_loop(), name="group-commit")

    async def close(self) -> None:
        """Commit what was submitted, then stop; later submissions raise StoreUnavailable."""
        self._closed = True
        self._full.set()
        self._arrived.set()
        if self._flusher is not None:
            await self._flusher
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    async def submit(self, alert: NewAlert, runs: Sequence[NewRun] = ()) -> Accepted:
        """Store the alert and its runs; returns once committed (or found a duplicate).

        Raises StoreOverloaded when max_pending submissions are outstanding,
        StoreUnavailable when the batch could not be committed, and
        InvalidSubmission when PostgreSQL cannot store this alert.
        """
        if self._closed or self._flusher is None:
            raise StoreUnavailable("the group committer is not running")
        if self._outstanding >= self._max_pending:
            raise StoreOverloaded(
                f"{self._outstanding} submissions are waiting for the database (the bound)"
            )
        _check_names(alert, runs)
        body = encode_alert(alert.alert)
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Submission(alert, runs, body, future))
        self._outstanding += 1
        if len(self._waiting) >= self._max_batch:
            self._full.set()
        self._arrived.set()
        return await future

    async def _flush_loop(self) -> None:
        while True:
            await self._arrived.wait()
            if not self._waiting:
                if self._closed:
                    return
                self._arrived.clear()
                continue
            if not self._full.is_set() and self._max_wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._max_wait)
            await self._inflight.acquire()
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            if len(self._waiting) < self._max_batch and not self._closed:
                self._full.clear()
            task = asyncio.create_task(self._flush(batch))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _flush(self, batch: list[_Submission]) -> None:
        try:
            try:
                rows = await self._commit(batch)
            except StoreUnavailable as exc:
                if not is_bad_data(exc.__cause__) or len(batch) == 1:
                    raise
                await self._commit_one_by_one(batch)
                return
        except BaseException as exc:
            error = (
                exc
                if isinstance(exc, StoreUnavailable)
                else StoreUnavailable(f"committing {len(batch)} alerts failed: {exc!r}")
            )
            logger.warning("group commit of %d alerts failed: %s", len(batch), error)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
        else:
            self._resolve(batch, rows)
        finally:
            self._outstanding -= len(batch)
            self._inflight.release()

    async def _commit_one_by_one(self, batch: list[_Submission]) -> None:
        logger.warning("a batch of %d alerts had data PostgreSQL refused; one by one", len(batch))
        for item in batch:
            item.duplicate_in_batch = False
            try:
                rows = await self._commit([item])
            except StoreUnavailable as exc:
                error: StoreError = (
                    InvalidSubmission(f"PostgreSQL cannot store this alert: {exc.__cause__}")
                    if is_bad_data(exc.__cause__)
                    else exc
                )
                if not item.future.done():
                    item.future.set_exception(error)
            else:
                self._resolve([item], rows)

    async def _commit(self, batch: list[_Submission]) -> list[asyncpg.Record]:
        keyed: dict[bytes, _Submission] = {}
        for item in batch:
            key = item.alert.dedup_key
            if key is None:
                continue
            if key in keyed:
                item.duplicate_in_batch = True
            else:
                keyed[key] = item
        keys = sorted(keyed)
        alerts = [item for item in batch if not item.duplicate_in_batch]
        runs = [(item.alert.id, run) for item in alerts for run in item.runs]
        args: list[Any] = [
            keys,
            [keyed[k].alert.id for k in keys],
            [float(keyed[k].alert.dedup_window_seconds) for k in keys],
            [item.alert.id for item in alerts],
            [item.alert.namespace for item in alerts],
            [item.alert.source for item in alerts],
            [item.body for item in alerts],
            [item.alert.correlation_id for item in alerts],
            [item.alert.dedup_key for item in alerts],
            [run.id for _, run in runs],
            [alert_id for alert_id, _ in runs],
            [run.playbook for _, run in runs],
            [json.dumps(list(run.entry_points)) for _, run in runs],
            [run.idempotency_key for _, run in runs],
            [run.max_attempts for _, run in runs],
        ]
        with unavailable(f"committing {len(batch)} alerts"):
            async with self._pool.acquire() as conn:
                rows: list[asyncpg.Record] = await conn.fetch(INSERT_BATCH, *args)
        return rows

    @staticmethod
    def _resolve(batch: list[_Submission], rows: list[asyncpg.Record]) -> None:
        inserted: set[uuid.UUID] = set()
        runs_of: dict[uuid.UUID, list[uuid.UUID]] = {}
        for row in rows:
            if row["alert_id"] is None:
                inserted.add(row["id"])
            else:
                runs_of.setdefault(row["alert_id"], []).append(row["id"])
        for item in batch:
            if item.future.done():  # the caller went away; its rows are committed anyway
                continue
            alert_id = item.alert.id
            if alert_id in inserted:
                accepted = Accepted(alert_id, False, tuple(runs_of.get(alert_id, ())))
            else:
                accepted = Accepted(alert_id, True)
            item.future.set_result(accepted)
