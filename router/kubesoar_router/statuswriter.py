"""Adding the router's per-source counts to `AlertSource.status.counters`.

Every `interval` seconds each replica adds its deltas since the last flush with
a read-modify-write guarded by `metadata.resourceVersion` (a conflict re-reads
and retries), so N replicas sum correctly without coordination. Deltas that
could not be written are kept for the next flush; at most one write per source
per interval.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from kubesoar.contracts import kube

from kubesoar_router.counters import CounterBook, SourceCounts
from kubesoar_router.kubeapi import ApiError, KubeApi

logger = logging.getLogger("kubesoar.router")

DEFAULT_INTERVAL_SECONDS = 10.0
CONFLICT_RETRIES = 3


def _path(namespace: str, name: str) -> str:
    return kube.ALERT_SOURCE.path(namespace, name)


def added(current: dict[str, Any], delta: SourceCounts) -> dict[str, Any]:
    counters = {
        "received": int(current.get("received") or 0) + delta.received,
        "accepted": int(current.get("accepted") or 0) + delta.accepted,
        "rejected": int(current.get("rejected") or 0) + delta.rejected,
        "duplicates": int(current.get("duplicates") or 0) + delta.duplicates,
    }
    last = current.get("lastAlertTime")
    if delta.last_alert_time is not None:
        mine = datetime.fromtimestamp(delta.last_alert_time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        last = max(filter(None, [last, mine]))
    if last:
        counters["lastAlertTime"] = last
    return counters


async def flush(api: KubeApi, book: CounterBook) -> None:
    for (namespace, name), delta in book.take().items():
        try:
            await _add(api, namespace, name, delta)
        except ApiError as exc:
            if exc.status == 404:
                continue  # the AlertSource is gone; its counts go with it
            logger.warning(
                "could not write counters",
                extra={"namespace": namespace, "source": name, "reason": str(exc)},
            )
            book.give_back((namespace, name), delta)
        except (TimeoutError, OSError) as exc:
            logger.warning(
                "could not write counters",
                extra={"namespace": namespace, "source": name, "reason": str(exc)},
            )
            book.give_back((namespace, name), delta)


async def _add(api: KubeApi, namespace: str, name: str, delta: SourceCounts) -> None:
    for attempt in range(CONFLICT_RETRIES):
        current = await api.get(_path(namespace, name))
        patch = {
            "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
            "status": {
                "counters": added((current.get("status") or {}).get("counters") or {}, delta)
            },
        }
        try:
            await api.merge_patch(_path(namespace, name) + "/status", patch)
            return
        except ApiError as exc:
            if exc.status != 409 or attempt == CONFLICT_RETRIES - 1:
                raise


async def run(api: KubeApi, book: CounterBook, interval: float = DEFAULT_INTERVAL_SECONDS) -> None:
    while True:
        await asyncio.sleep(interval)
        await flush(api, book)
