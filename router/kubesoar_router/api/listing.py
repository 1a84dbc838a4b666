"""List and watch, the same way for runs and alerts: one `View` per resource says how
its rows are filtered, paged, watched and shown."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web
from kubesoar.contracts import kube
from kubesoar_store import alertviews, runviews
from kubesoar_store.paging import BadContinue, Position

from kubesoar_router.api import negotiation, objects, selectors, watching
from kubesoar_router.api.status import ApiProblem

Row = Mapping[str, Any]


@dataclass(frozen=True)
class View:
    resource: str
    kind: str
    render: Callable[[Row], dict[str, Any]]
    metadata: Callable[[Row], dict[str, Any]]
    columns: list[tuple[str, str, str, str]]
    cells: Callable[[Row, datetime], list[Any]]
    created_key: str
    # What a watch compares to tell a change the table shows from a bookkeeping write.
    signature: Callable[[Row], tuple[Any, ...]]
    where: Callable[[Mapping[str, str], str], Any]
    page: Callable[..., Awaitable[tuple[list[dict[str, Any]], Position | None]]]
    changed: Callable[..., Awaitable[list[dict[str, Any]]]]


async def _run_page(
    pool: asyncpg.Pool, where: Any, **kw: Any
) -> tuple[list[dict[str, Any]], Position | None]:
    page = await runviews.list_runs(pool, where, **kw)
    return page.runs, page.next


async def _alert_page(
    pool: asyncpg.Pool, where: Any, **kw: Any
) -> tuple[list[dict[str, Any]], Position | None]:
    page = await alertviews.list_alerts(pool, where, **kw)
    return page.alerts, page.next


RUNS = View(
    resource=kube.RUNS_RESOURCE,
    kind="Run",
    render=objects.run_object,
    metadata=objects.run_metadata,
    columns=objects.RUN_COLUMNS,
    cells=objects.run_cells,
    created_key="created_at",
    signature=lambda r: (r["status"], r["attempt"], r["finished_at"]),
    where=selectors.run_filter,
    page=_run_page,
    changed=runviews.changed_runs,
)
ALERTS = View(
    resource=kube.ALERTS_RESOURCE,
    kind="Alert",
    render=objects.alert_object,
    metadata=objects.alert_metadata,
    columns=objects.ALERT_COLUMNS,
    cells=objects.alert_cells,
    created_key="received_at",
    signature=lambda r: (r["updated_at"],),
    where=selectors.alert_filter,
    page=_alert_page,
    changed=alertviews.changed_alerts,
)


def encode(
    request: web.Request,
    view: View,
    rows: Sequence[Row],
    *,
    token: str | None = None,
    version: str | None = None,
    single: bool = False,
) -> dict[str, Any]:
    """The rows as the client asked for them: a Table, metadata, or objects."""
    shape, meta_version = negotiation.of(request)
    if shape == negotiation.TABLE:
        return objects.table(
            version=meta_version,
            columns=view.columns,
            rows=rows,
            cells=view.cells,
            render=view.render,
            metadata=view.metadata,
            include_object=request.query.get("includeObject", "Metadata"),
            token=token,
            resource_version=version,
        )
    items = [view.render(row) for row in rows]
    if shape == negotiation.METADATA:
        if single:
            return {
                "apiVersion": "meta.k8s.io/v1",
                "kind": "PartialObjectMetadata",
                "metadata": items[0]["metadata"],
            }
        return objects.metadata_list(items, token, version)
    return items[0] if single else objects.object_list(view.kind, items, token, version)


def _paging(query: Mapping[str, str]) -> tuple[int | None, Position | None]:
    try:
        limit = int(query["limit"]) if query.get("limit") else None
    except ValueError:
        raise ApiProblem(400, "limit must be an integer") from None
    try:
        after = Position.parse(query["continue"]) if query.get("continue") else None
    except BadContinue as exc:
        raise ApiProblem(400, str(exc)) from None
    return limit, after


async def _nothing(*_: Any, **__: Any) -> list[dict[str, Any]]:
    return []


async def respond(
    request: web.Request, view: View, pool: asyncpg.Pool, watches: watching.Watches
) -> web.StreamResponse:
    """A list, or with watch=true a stream of events (authorised by the caller)."""
    namespace = request.match_info.get("namespace", "")
    where = view.where(request.query, namespace)  # None: the selectors match nothing
    now = await runviews.database_now(pool)
    if request.query.get("watch") in ("true", "1"):
        since = watching.since_version(request.query, now)

        async def fetch(after: datetime, after_id: uuid.UUID | None) -> list[dict[str, Any]]:
            if where is None:
                return []
            return await view.changed(
                pool, where, since=after, after_id=after_id, limit=watching.PAGE_ROWS
            )

        return await watching.stream(
            request,
            watches,
            fetch=fetch,
            since=since,
            created_key=view.created_key,
            signature=view.signature,
            encode=lambda row: encode(request, view, [row], single=True),
        )
    limit, after = _paging(request.query)
    shape, _ = negotiation.of(request)
    rows, following = (
        await view.page(pool, where, limit=limit, after=after, full=shape == negotiation.OBJECT)
        if where is not None
        else ([], None)
    )
    token = following.token() if following else None
    version = objects.resource_version(now)
    return negotiation.json_response(encode(request, view, rows, token=token, version=version))
