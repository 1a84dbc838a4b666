"""Fixtures for the store tests: pools on a fresh migrated database, a committer, seeded runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import asyncpg
import pytest
from kubesoar_store import GroupCommitter, NewAlert, NewRun
from kubesoar_store.ids import uuid7
from kubesoar_store.pool import create_pool


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=8)
    yield pool
    await pool.close()


@pytest.fixture
async def committer(pool: asyncpg.Pool) -> AsyncIterator[GroupCommitter]:
    async with GroupCommitter(pool) as committer:
        yield committer


SeedRuns = Callable[..., Awaitable[list[NewRun]]]


@pytest.fixture
def seed_runs(committer: GroupCommitter) -> SeedRuns:
    """seed_runs(n, namespace="ns", playbook="pb", max_attempts=3) -> the NewRuns, queued."""

    async def seed(
        n: int,
        namespace: str = "ns",
        playbook: str = "pb",
        max_attempts: int = 3,
        entry_points: Sequence[str] = ("triage",),
    ) -> list[NewRun]:
        runs = []
        for i in range(n):
            run = NewRun(
                playbook=playbook,
                idempotency_key=f"{uuid7()}:{playbook}",
                entry_points=entry_points,
                max_attempts=max_attempts,
            )
            alert = NewAlert(namespace=namespace, source="src", alert={"title": f"alert {i}"})
            accepted = await committer.submit(alert, [run])
            assert accepted.run_ids == (run.id,)
            runs.append(run)
        return runs

    return seed
