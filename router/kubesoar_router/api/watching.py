"""`watch=true`: a stream of ADDED / MODIFIED events, made by polling the database.

Runs and alerts live in PostgreSQL, not etcd, so there is no change feed to follow; a
watch polls `updated_at > cursor` every second instead (a few indexed rows per poll).

resourceVersion is a time: the database clock in microseconds. A list answers with the
time it was read; a watch from that version reports every row whose `updated_at` is
later. Because `updated_at` is the writing transaction's start time, a transaction that
commits a little after it began could be passed by the cursor, so each poll looks
`LAG` back and skips what it already sent (the last sent version per row, kept for the
window only). What a watch does not do: DELETED events (retention deletes quietly),
bookmarks, and a watch from a version older than the data (there is no 410 Gone: it
simply reports the rows changed since then). A row is reported only when what the
table shows changed (a heartbeat that only extends a lease is not an event).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from kubesoar_router.api import objects
from kubesoar_router.api.status import ApiProblem

LAG = timedelta(seconds=5)
POLL_SECONDS = 1.0
MAX_WATCH_SECONDS = 1800
MAX_WATCHES = 200  # concurrent watches per router replica; more get 429
PAGE_ROWS = 1000  # rows per poll query (the store's `limit`)

# (changed after this time, [and after this id at that time]) -> rows, oldest change first
Fetch = Callable[[datetime, uuid.UUID | None], Awaitable[list[dict[str, Any]]]]


class Watches:
    """Counts the open watches of a replica, so they stay bounded."""

    def __init__(self, limit: int = MAX_WATCHES) -> None:
        self.limit = limit
        self.open = 0


def since_version(query: Mapping[str, str], now: datetime) -> datetime:
    """Where a watch starts: the resourceVersion asked for, or now when none (or "0")."""
    text = query.get("resourceVersion", "")
    if text in ("", "0"):
        return now
    try:
        return objects.parse_resource_version(text)
    except ValueError:
        raise ApiProblem(
            400, f"resourceVersion {text[:40]!r} is not one this server issued"
        ) from None


def timeout_seconds(query: Mapping[str, str]) -> float:
    try:
        asked = int(query.get("timeoutSeconds") or MAX_WATCH_SECONDS)
    except ValueError:
        raise ApiProblem(400, "timeoutSeconds must be an integer") from None
    return float(min(max(asked, 1), MAX_WATCH_SECONDS))


async def stream(
    request: web.Request,
    watches: Watches,
    *,
    fetch: Fetch,
    since: datetime,
    created_key: str,
    signature: Callable[[Mapping[str, Any]], tuple[Any, ...]],
    encode: Callable[[Mapping[str, Any]], dict[str, Any]],
) -> web.StreamResponse:
    """Answer with events until the timeout or the client goes away."""
    if watches.open >= watches.limit:
        raise ApiProblem(429, "too many watches on this replica; retry later")
    watches.open += 1
    try:
        return await _stream(request, fetch, since, created_key, signature, encode)
    finally:
        watches.open -= 1


async def _stream(
    request: web.Request,
    fetch: Fetch,
    since: datetime,
    created_key: str,
    signature: Callable[[Mapping[str, Any]], tuple[Any, ...]],
    encode: Callable[[Mapping[str, Any]], dict[str, Any]],
) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds(request.query)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    cursor = since
    # Per row: (updated_at, signature) last sent, or seen at the start (not sent).
    sent: dict[uuid.UUID, tuple[datetime, tuple[Any, ...]]] = {}
    first = True
    with contextlib.suppress(ConnectionResetError):
        while loop.time() < deadline:
            start: tuple[datetime, uuid.UUID | None] = (cursor - LAG, None)
            while True:
                rows = await fetch(*start)
                for row in rows:
                    updated, mark = row["updated_at"], signature(row)
                    cursor = max(cursor, updated)
                    previous = sent.get(row["id"])
                    sent[row["id"]] = (updated, mark)
                    if first and updated <= since:
                        continue  # the list the client holds has it already
                    if previous is not None and previous[1] == mark:
                        continue
                    kind = "ADDED" if previous is None and row[created_key] > since else "MODIFIED"
                    event = {"type": kind, "object": encode(row)}
                    await response.write(json.dumps(event, default=str).encode() + b"\n")
                if len(rows) < PAGE_ROWS:
                    break
                start = (rows[-1]["updated_at"], rows[-1]["id"])  # busy: page on, no sleep
            first = False
            horizon = cursor - 2 * LAG
            for key in [k for k, (updated, _) in sent.items() if updated < horizon]:
                del sent[key]
            await asyncio.sleep(POLL_SECONDS)
    return response
