"""Proposed changes to the router and the runtime, applied as patches inside the bench's
processes only, to measure what each would buy before its owner makes it for real.

    .venv/bin/python bench/durable/bench.py all --experiment reports-bounded ...

Nothing here changes kubesoar: each experiment replaces one function or object in the
process that starts with `--experiment NAME`, and the default run applies none. What
each models (and the change proposed in bench/README.md):

- reports-bounded (runtime): at most REPORTS_IN_FLIGHT run reports in flight per pod,
  over as many kept-alive connections. Without it, 256 concurrent runs queue their
  result reports inside httpcore's pool (100 connections, 20 kept alive): the pool's
  request/connection matching is O(requests x connections) per event
  (encode/httpcore#1035), and a report that waits 5 s in it fails with PoolTimeout.
- reports-aiohttp (runtime): the run reports go through one aiohttp session (at most
  REPORTS_IN_FLIGHT connections, kept alive) instead of httpx; the runtime already
  serves with aiohttp. Same retries and answers as RunReports._post.
- httpx-quiet (runtime): httpx's INFO line per request ("HTTP Request: POST ...") off.
- pool-no-reset (router): the asyncpg pool skips its reset query (advisory unlock,
  CLOSE ALL, UNLISTEN, RESET ALL) on every release; the store never changes session state.
- journal-on-redelivery (router): the dispatcher reads a run's action journal only for
  attempt > 1 (a first attempt has none), not once per dispatched run.
- batched-results (router): the result reports of concurrent runs are written by one
  UPDATE over unnest()ed arrays (one transaction, one WAL flush), as GroupCommitter does
  for alerts, instead of a transaction of four statements per run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

RUNTIME = ("reports-bounded", "reports-aiohttp", "httpx-quiet")
ROUTER = ("pool-no-reset", "journal-on-redelivery", "batched-results")
NAMES = RUNTIME + ROUTER
REPORTS_IN_FLIGHT = 32


def add_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--experiment",
        action="append",
        default=[],
        choices=NAMES,
        help="patch in a proposed change (bench processes only; repeatable)",
    )


def apply(names: list[str], concerns: tuple[str, ...]) -> None:
    """Apply the named experiments that concern this process (RUNTIME or ROUTER)."""
    for name in names:
        if name in concerns:
            _PATCHES[name]()


# --- runtime ---------------------------------------------------------------------------
def _reports_bounded() -> None:
    import httpx
    from kubesoar import _reports

    original_post = _reports.RunReports._post
    slots: dict[int, asyncio.Semaphore] = {}

    def bounded_http(self: Any) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(
                max_connections=REPORTS_IN_FLIGHT, max_keepalive_connections=REPORTS_IN_FLIGHT
            )
            total, connect = _reports.TIMEOUT_SECONDS
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(total, connect=connect),
                transport=self._transport,
                follow_redirects=False,
                limits=limits,
            )
        return self._client  # type: ignore[no-any-return]

    async def bounded_post(self: Any, *args: Any, **kwargs: Any) -> bool:
        slot = slots.setdefault(id(self), asyncio.Semaphore(REPORTS_IN_FLIGHT))
        async with slot:
            return await original_post(self, *args, **kwargs)

    _reports.RunReports._http = bounded_http  # type: ignore[method-assign]
    _reports.RunReports._post = bounded_post  # type: ignore[method-assign]


def _reports_aiohttp() -> None:
    import aiohttp
    from kubesoar import _reports
    from kubesoar.contracts import caller, http

    sessions: dict[int, aiohttp.ClientSession] = {}

    def session_of(reports: Any) -> aiohttp.ClientSession:
        session = sessions.get(id(reports))
        if session is None:
            connector = aiohttp.TCPConnector(limit=REPORTS_IN_FLIGHT)
            timeout = aiohttp.ClientTimeout(total=5.0, connect=2.0)
            session = sessions[id(reports)] = aiohttp.ClientSession(
                connector=connector, timeout=timeout
            )
        return session

    async def post(
        self: Any,
        to: Any,
        run_id: str,
        what: str,
        body: dict[str, Any],
        *,
        retries: int = len(_reports.RETRY_DELAYS),
    ) -> bool:
        path = http.run_callback_path(run_id, what)
        urls = [base.rstrip("/") + path for base in (to.url, *to.fallback_urls)]
        headers = {
            "Authorization": caller.authorization(to.token),
            "Content-Type": "application/json",
        }
        data = json.dumps(body).encode()
        problem = ""
        for pause in (0.0, *_reports.RETRY_DELAYS[:retries]):
            if pause:
                await asyncio.sleep(pause)
            for url in urls:
                try:
                    async with session_of(self).post(
                        url, data=data, headers=headers, allow_redirects=False
                    ) as response:
                        status = response.status
                        await response.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    problem = type(exc).__name__
                    continue
                if status < 300:
                    return True
                if status == 403:
                    _reports.log.warning("run %s: the router refused the %s report", run_id, what)
                    return False
                problem = f"HTTP {status}"
                if status < 500 and status != 429:
                    _reports.log.warning("run %s: %s report refused (%s)", run_id, what, problem)
                    return False
        _reports.log.warning("run %s: %s report not delivered (%s)", run_id, what, problem)
        return False

    _reports.RunReports._post = post  # type: ignore[method-assign]


def _httpx_quiet() -> None:
    # The runtime configures its logging after start-up; a level on the logger itself
    # survives that (configure_json_logging sets the root logger's level only).
    logging.getLogger("httpx").setLevel(logging.WARNING)


# --- router ----------------------------------------------------------------------------
def _pool_no_reset() -> None:
    import asyncpg

    original = asyncpg.create_pool

    async def rollback_only(conn: Any) -> None:
        return None  # asyncpg has already rolled back an open transaction (Connection._reset)

    def create_pool(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("reset", rollback_only)
        return original(*args, **kwargs)

    asyncpg.create_pool = create_pool


def _journal_on_redelivery() -> None:
    from kubesoar_router import dispatcher

    real_entries = getattr(dispatcher, "journal").entries  # noqa: B009 - not re-exported

    async def entries_of(pool: Any, run_id: uuid.UUID) -> Any:
        if first_attempts.pop(run_id, False):
            return []
        return await real_entries(pool, run_id)

    first_attempts: dict[uuid.UUID, bool] = {}
    original_body = dispatcher.Dispatcher._request_body

    async def request_body(self: Any, run: Any, key: str) -> bytes:
        if run.attempt == 1:
            first_attempts[run.id] = True
        return await original_body(self, run, key)

    setattr(dispatcher, "journal", SimpleNamespace(entries=entries_of))  # noqa: B010
    setattr(dispatcher.Dispatcher, "_request_body", request_body)  # noqa: B010


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


class _ResultBatcher:
    """Collects `complete` calls for up to MAX_WAIT s (or MAX_BATCH), writes them at once."""

    MAX_BATCH = 256
    MAX_WAIT = 0.002

    def __init__(self, unbatched: Any) -> None:
        self.unbatched = unbatched
        self.waiting: dict[uuid.UUID, tuple[str, Any, asyncio.Future[bool]]] = {}
        self.flusher: asyncio.Task[None] | None = None

    async def complete(
        self, pool: Any, run_id: uuid.UUID, token: str, record: Any, *, also: Any = None
    ) -> bool:
        if also is not None:  # alert changes to write in the same transaction: one by one
            return await self.unbatched(pool, run_id, token, record, also=also)  # type: ignore[no-any-return]
        if record.status not in ("succeeded", "failed"):
            raise ValueError(f"a run ends succeeded or failed, not {record.status!r}")
        if run_id in self.waiting:  # a retried report of one already waiting
            return await asyncio.shield(self.waiting[run_id][2])
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.waiting[run_id] = (token, record, future)
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush_soon(pool))
        return await future

    async def _flush_soon(self, pool: Any) -> None:
        await asyncio.sleep(self.MAX_WAIT)
        while self.waiting:
            batch = dict(list(self.waiting.items())[: self.MAX_BATCH])
            for run_id in batch:
                del self.waiting[run_id]
            try:
                outcome = await self._write(pool, batch)
            except Exception as exc:
                for _, _, future in batch.values():
                    if not future.done():
                        future.set_exception(exc)
                continue
            for run_id, (_, _, future) in batch.items():
                if not future.done():
                    result = outcome[run_id]
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)

    async def _write(self, pool: Any, batch: dict[uuid.UUID, Any]) -> dict[uuid.UUID, Any]:
        from kubesoar_store import NotLeased, tokens
        from kubesoar_store.bounds import MAX_RESULT_BYTES, bounded_json, bounded_text
        from kubesoar_store.errors import unavailable

        ids = list(batch)
        records = [batch[i][1] for i in ids]
        with unavailable(f"recording {len(ids)} runs"):
            async with pool.acquire() as conn:
                written = {
                    row["id"]
                    for row in await conn.fetch(
                        COMPLETE_BATCH,
                        ids,
                        [tokens.digest(batch[i][0]) for i in ids],
                        [r.status for r in records],
                        [
                            bounded_json(r.result, MAX_RESULT_BYTES)
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
        outcome: dict[uuid.UUID, Any] = dict.fromkeys(written, True)
        known = {row["id"]: row for row in rows}
        for run_id in left:
            row = known.get(run_id)
            if row is not None and tokens.matches(batch[run_id][0], row["token_hash"]):
                final = row["status"] in ("succeeded", "failed")
                outcome[run_id] = False if final else NotLeased(f"run {run_id} is {row['status']}")
            else:
                outcome[run_id] = NotLeased(f"run {run_id} is not leased to this token")
        return outcome


def _batched_results() -> None:
    from kubesoar_router import callbacks

    real = getattr(callbacks, "dispatch")  # noqa: B009 - not re-exported
    batcher = _ResultBatcher(real.complete)
    proxy = SimpleNamespace(
        **{name: getattr(real, name) for name in dir(real) if not name.startswith("__")}
    )
    proxy.complete = batcher.complete
    setattr(callbacks, "dispatch", proxy)  # noqa: B010


_PATCHES: dict[str, Callable[[], None]] = {
    "reports-bounded": _reports_bounded,
    "reports-aiohttp": _reports_aiohttp,
    "httpx-quiet": _httpx_quiet,
    "pool-no-reset": _pool_no_reset,
    "journal-on-redelivery": _journal_on_redelivery,
    "batched-results": _batched_results,
}
