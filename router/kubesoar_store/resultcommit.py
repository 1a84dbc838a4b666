"""Result commit: the final records of concurrent runs share one statement and one fsync.

`dispatch.complete` writes one run's record in a transaction of its own (BEGIN, SELECT
… FOR UPDATE, UPDATE, COMMIT: four round trips and a WAL flush per run). Under load
the runtime pods report many results at once, so `ResultCommitter.complete` queues
each report for up to `max_wait_seconds` (or `max_batch` reports) and writes them
with one UPDATE over unnest()ed arrays, as the GroupCommitter does for alerts
(bench/README.md, "batched-results": 0.2 instead of 4.1 transactions per alert).

The answers are `dispatch.complete`'s, per report: True when written; False when the
run already ended under this token (a pod retrying after a lost answer); NotLeased
when the token is not the run's or the run is not running; StoreUnavailable for every
report of a batch whose statement failed. A report that must change its alert in the
same transaction (`also`), or a second report for a run already queued, goes through
`dispatch.complete` on its own.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from kubesoar_store import dispatch, tokens
from kubesoar_store.bounds import MAX_RESULT_BYTES, bounded_json, bounded_text
from kubesoar_store.errors import NotLeased, StoreOverloaded, unavailable
from kubesoar_store.models import REPORTED_FINAL_STATUSES, RunRecord

logger = logging.getLogger("kubesoar.store.resultcommit")

# Only rows still running under the presented token's hash are locked and written. The
# hashes are compared in SQL: equality of SHA-256 digests leaks nothing usable about
# the token (tokens.matches is the constant-time check for a token against a hash).
COMPLETE_BATCH = """
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::text[], $4::jsonb[], $5::text[],
                         $6::text[]) AS i(id, token_hash, status, result, error, traceback)
), locked AS (
    SELECT r.id FROM runs r JOIN input i ON i.id = r.id
    WHERE r.status = 'running' AND r.token_hash = i.token_hash
    ORDER BY r.id
    FOR UPDATE OF r
)
UPDATE runs r
SET status = i.status, result = i.result, error = i.error, traceback = i.traceback,
    finished_at = now(), lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
FROM input i JOIN locked l ON l.id = i.id
WHERE r.id = i.id
RETURNING r.id
"""


@dataclass
class _Pending:
    token: str
    record: RunRecord
    answer: asyncio.Future[bool]


@dataclass
class ResultCommitter:
    pool: asyncpg.Pool
    max_batch: int = 256
    max_wait_seconds: float = 0.002
    max_pending: int = 10_000
    max_result_bytes: int = MAX_RESULT_BYTES
    _waiting: dict[uuid.UUID, _Pending] = field(default_factory=dict)
    _flusher: asyncio.Task[None] | None = None

    async def complete(
        self,
        run_id: uuid.UUID,
        token: str,
        record: RunRecord,
        *,
        also: Callable[[asyncpg.Connection], Awaitable[object]] | None = None,
    ) -> bool:
        """Record how the run ended; the answers of `dispatch.complete`."""
        if record.status not in REPORTED_FINAL_STATUSES:
            raise ValueError(f"a run ends succeeded, failed or denied, not {record.status!r}")
        earlier = self._waiting.get(run_id)
        if also is not None or earlier is not None:
            if earlier is not None:  # let the first report of this run settle first
                await asyncio.wait([earlier.answer])
            return await dispatch.complete(
                self.pool, run_id, token, record, max_result_bytes=self.max_result_bytes, also=also
            )
        if len(self._waiting) >= self.max_pending:
            raise StoreOverloaded("too many run results waiting to be written")
        pending = _Pending(token, record, asyncio.get_running_loop().create_future())
        self._waiting[run_id] = pending
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon(), name="result-commit")
        return await asyncio.shield(pending.answer)

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.max_wait_seconds)
        while self._waiting:
            batch = dict(list(self._waiting.items())[: self.max_batch])
            try:
                outcomes = await self._write(batch)
            except Exception as exc:  # StoreUnavailable, or a bug: every report hears it
                outcomes = dict.fromkeys(batch, exc)
            for run_id, pending in batch.items():
                del self._waiting[run_id]
                if pending.answer.done():
                    continue
                outcome = outcomes[run_id]
                if isinstance(outcome, BaseException):
                    pending.answer.set_exception(outcome)
                else:
                    pending.answer.set_result(outcome)

    async def _write(self, batch: dict[uuid.UUID, _Pending]) -> dict[uuid.UUID, bool | Exception]:
        ids = list(batch)
        records = [batch[i].record for i in ids]
        with unavailable(f"recording {len(ids)} runs"):
            async with self.pool.acquire() as conn:
                written = {
                    row["id"]
                    for row in await conn.fetch(
                        COMPLETE_BATCH,
                        ids,
                        [tokens.digest(batch[i].token) for i in ids],
                        [r.status for r in records],
                        [
                            bounded_json(r.result, self.max_result_bytes)
                            if r.result is not None
                            else None
                            for r in records
                        ],
                        [bounded_text(r.error) for r in records],
                        [bounded_text(r.traceback) for r in records],
                    )
                }
                left = [i for i in ids if i not in written]
                rows = (
                    await conn.fetch(
                        "SELECT id, status, token_hash FROM runs WHERE id = ANY($1)", left
                    )
                    if left
                    else []
                )
        outcomes: dict[uuid.UUID, bool | Exception] = dict.fromkeys(written, True)
        known = {row["id"]: row for row in rows}
        for run_id in left:
            row = known.get(run_id)
            # One answer for "no such run" and "not yours", as dispatch.check_lease gives.
            if row is None or not tokens.matches(batch[run_id].token, row["token_hash"]):
                outcomes[run_id] = NotLeased(f"run {run_id} is not leased to this token")
            elif row["status"] in REPORTED_FINAL_STATUSES:
                outcomes[run_id] = False  # a repeat of a report already written
            else:
                outcomes[run_id] = NotLeased(f"run {run_id} is {row['status']}, not running")
        return outcomes
