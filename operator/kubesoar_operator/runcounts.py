"""Playbook run counters from the system of record, for `status.runs` and the autoscaler.

With a database the counters are what PostgreSQL holds for each Playbook (every run
any pod ran, kept by retention), not what the pods still running happen to remember.
One query reads every Playbook's counters (`kubesoar_store.counters`), at most once per
`max_age` seconds however many Playbooks refresh; reconciles run on kopf's worker
threads, so the asyncio pool lives on a loop of its own in a background thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from typing import Any

import asyncpg
from kubesoar_store import PlaybookCounters, StoreError
from kubesoar_store.counters import playbook_counters
from kubesoar_store.errors import unavailable
from kubesoar_store.pool import create_pool

log = logging.getLogger("kubesoar_operator.runcounts")

QUERY_TIMEOUT_SECONDS = 10.0
# The autoscaler's signal (autoscale.py), read every few seconds: only unfinished runs,
# which the partial indexes `runs_queue` and `runs_leases` hold, never the history.
ACTIVE_RUNS = """
SELECT namespace, playbook,
       count(*) FILTER (WHERE status = 'queued') AS queued,
       count(*) FILTER (WHERE status = 'running') AS running
FROM runs
WHERE status IN ('queued', 'running')
GROUP BY namespace, playbook
"""


def _rfc3339(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def as_status(counters: PlaybookCounters | None) -> dict[str, Any]:
    """`status.runs` from a Playbook's counters (zeros when it has no run on record)."""
    if counters is None:
        return {
            "total": 0,
            "succeeded": 0,
            "failed": 0,
            "dead": 0,
            "queued": 0,
            "running": 0,
            "waiting": 0,
            "denied": 0,
        }
    runs: dict[str, Any] = {
        "total": counters.total,
        "succeeded": counters.succeeded,
        "failed": counters.failed,
        "dead": counters.dead,
        "queued": counters.queued,
        "running": counters.running,
        "waiting": counters.waiting,
        "denied": counters.denied,
    }
    if counters.last_run_at is not None:
        runs["lastRunTime"] = _rfc3339(counters.last_run_at)
    if counters.last_error:
        runs["lastError"] = counters.last_error[:1024]
        runs["lastErrorTime"] = _rfc3339(counters.last_error_at)
    return runs


class RunCounts:
    def __init__(self, database_url: str, *, max_age: float = 5.0) -> None:
        self._url = database_url
        self._max_age = max_age
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="kubesoar-runcounts", daemon=True
        )
        self._thread.start()
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str], PlaybookCounters] = {}
        self._fetched_at = float("-inf")
        # None after a failed read, kept as long as an answer would be: while the database
        # is down, reconciles are not queued behind one connection attempt each.
        self._active: dict[tuple[str, str], tuple[int, int]] | None = {}
        self._active_at = float("-inf")
        # A lock of its own: the queue poll never waits behind the counters' longer query
        # (the pool has a connection for each).
        self._active_lock = threading.Lock()

    def status_runs(self, namespace: str, playbook: str) -> dict[str, Any] | None:
        """The Playbook's `status.runs`, or None when the database cannot be read now
        (the caller keeps what the status had)."""
        with self._lock:
            if time.monotonic() - self._fetched_at > self._max_age:
                future = asyncio.run_coroutine_threadsafe(self._read(), self._loop)
                try:
                    self._counters = future.result(QUERY_TIMEOUT_SECONDS)
                except (StoreError, FutureTimeout) as exc:
                    future.cancel()
                    log.warning("run counters unavailable: %s", exc)
                    return None
                self._fetched_at = time.monotonic()
            return as_status(self._counters.get((namespace, playbook)))

    def active_runs(self, max_age: float) -> dict[tuple[str, str], tuple[int, int]] | None:
        """(queued, running) of every Playbook with unfinished runs, at most `max_age`
        seconds old (one query for all); None when the database cannot be read now."""
        with self._active_lock:
            if time.monotonic() - self._active_at > max_age:
                future = asyncio.run_coroutine_threadsafe(self._read_active(), self._loop)
                try:
                    self._active = future.result(QUERY_TIMEOUT_SECONDS)
                except (StoreError, FutureTimeout) as exc:
                    future.cancel()
                    if self._active is not None:  # once per outage, not once a second
                        log.warning("queued runs unavailable: %s", exc)
                    self._active = None
                self._active_at = time.monotonic()
            return self._active

    async def _pool_ready(self) -> asyncpg.Pool:
        async with self._pool_lock:  # the counters and the queue poll may both ask first
            if self._pool is None:
                self._pool = await create_pool(
                    self._url,
                    min_size=1,
                    max_size=2,
                    application_name="kubesoar-operator-runcounts",
                )
        return self._pool

    async def _read_active(self) -> dict[tuple[str, str], tuple[int, int]]:
        pool = await self._pool_ready()
        with unavailable("reading queued runs"):
            rows = await pool.fetch(ACTIVE_RUNS)
        return {(r["namespace"], r["playbook"]): (r["queued"], r["running"]) for r in rows}

    async def _read(self) -> dict[tuple[str, str], PlaybookCounters]:
        rows = await playbook_counters(await self._pool_ready())
        return {(row.namespace, row.playbook): row for row in rows}

    def close(self) -> None:
        async def shutdown() -> None:
            if self._pool is not None:
                await self._pool.close()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(QUERY_TIMEOUT_SECONDS)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(QUERY_TIMEOUT_SECONDS)
