"""Keeping the system of record small: retention and expired keys, every few minutes.

Every router replica runs it; a PostgreSQL advisory lock lets one replica at a time do
a round (the others skip it), so deletes never pile up on each other. A round deletes,
in bounded batches (`store.retention`): alerts older than `retention_days`, then in each
namespace the alerts beyond the newest `max_alerts_per_namespace`; a namespace listed in
`namespaces` has its own days and count instead (an MSSP's per-tenant contract, set by
whoever installs the chart, not by the tenant). An alert whose runs are not finished is
kept whatever its age. Runs and their journal go with their alert. Then expired dedup,
replay and rate-limit keys are purged.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg
from kubesoar_store import StoreError, keys, retention
from kubesoar_store.errors import unavailable

logger = logging.getLogger("kubesoar.router.housekeeping")

LOCK_KEY = 0x6B736F6172  # "ksoar": the advisory lock of a housekeeping round


@dataclass(frozen=True)
class NamespaceRetention:
    """One namespace's own retention; None takes the cluster default, 0 means no limit."""

    days: float | None = None
    max_alerts: int | None = None


@dataclass(frozen=True)
class Retention:
    retention_days: float = 30.0
    """Alerts (with their runs) older than this are deleted; 0 keeps them by age."""
    max_alerts_per_namespace: int = 0
    """Keep at most this many alerts per namespace, newest first; 0 for no count limit."""
    interval_seconds: float = 300.0
    namespaces: Mapping[str, NamespaceRetention] = field(default_factory=dict)
    """Namespaces whose days or count differ from the defaults above."""

    def days_of(self, namespace: str) -> float:
        own = self.namespaces.get(namespace)
        return self.retention_days if own is None or own.days is None else own.days

    def max_alerts_of(self, namespace: str) -> int:
        own = self.namespaces.get(namespace)
        return (
            self.max_alerts_per_namespace
            if own is None or own.max_alerts is None
            else own.max_alerts
        )


def parse_namespace_retention(text: str) -> tuple[str, NamespaceRetention]:
    """`NS=DAYS` or `NS=DAYS,MAX_ALERTS` (either may be empty: the default); ValueError."""
    namespace, sep, values = text.partition("=")
    days_text, _, count_text = values.partition(",")
    if not sep or not namespace or not (days_text or count_text):
        raise ValueError(f"{text!r}: expected NAMESPACE=DAYS[,MAX_ALERTS], e.g. acme=90,50000")
    try:
        days = float(days_text) if days_text else None
        count = int(count_text) if count_text else None
    except ValueError:
        raise ValueError(f"{text!r}: DAYS is a number, MAX_ALERTS an integer") from None
    if (days is not None and days < 0) or (count is not None and count < 0):
        raise ValueError(f"{text!r}: DAYS and MAX_ALERTS are 0 (no limit) or more")
    return namespace, NamespaceRetention(days, count)


async def one_round(pool: asyncpg.Pool, policy: Retention) -> dict[str, int]:
    """One round if no other replica holds the lock; the counts deleted (empty if skipped)."""
    with unavailable("housekeeping"):
        async with pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
                return {}
            try:
                done = {"byAge": 0, "byCount": 0, "expiredKeys": 0}
                own = sorted(policy.namespaces)
                if policy.retention_days > 0:
                    done["byAge"] = await retention.delete_older_than(
                        pool, timedelta(days=policy.retention_days), except_namespaces=own
                    )
                if policy.max_alerts_per_namespace > 0:
                    done["byCount"] = await retention.keep_newest(
                        pool, policy.max_alerts_per_namespace, except_namespaces=own
                    )
                for namespace in own:
                    if (days := policy.days_of(namespace)) > 0:
                        done["byAge"] += await retention.delete_older_than(
                            pool, timedelta(days=days), namespace=namespace
                        )
                    if (count := policy.max_alerts_of(namespace)) > 0:
                        done["byCount"] += await retention.keep_newest(
                            pool, count, namespace=namespace
                        )
                done["expiredKeys"] = await keys.purge_expired(pool)
                return done
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def run(pool: asyncpg.Pool, policy: Retention) -> None:
    """Rounds until cancelled; a failed round is logged and retried next interval."""
    while True:
        # Jitter, so replicas started together do not all wake at once.
        await asyncio.sleep(policy.interval_seconds * random.uniform(0.8, 1.2))  # noqa: S311
        try:
            done = await one_round(pool, policy)
        except StoreError as exc:
            logger.warning("housekeeping round failed: %s", exc)
            continue
        if any(done.values()):
            logger.info("housekeeping deleted %s", done)
