"""What runtime pods report about the runs the dispatcher gave them.

    POST /v1/runs/{id}/heartbeat  extend the lease               → 200 LeaseAnswer
    POST /v1/runs/{id}/actions    one @action call (JournalEntry) → 200 {"recorded": bool}
    POST /v1/runs/{id}/result     how the run ended (RunResult)   → 200 {"recorded": bool}
    POST /v1/runs/{id}/release    a draining pod hands it back    → 200 {}

Every call carries `Authorization: Bearer <the run's token>` (minted at claim time,
stored hashed): a pod can write only the runs it was given, and only while it holds the
lease. Anything else — another run's id, an expired lease, a guessed id — gets the same
403 and nothing is written. These calls come from untrusted playbook pods, so bodies are
bounded and parsed with the same reader as alerts; outputs over the store's bounds are
truncated with a marker, never refused.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from aiohttp import web
from kubesoar import _bearer as bearer
from kubesoar import _bodies as bodies
from kubesoar.contracts import http
from kubesoar_store import (
    NotLeased,
    RunRecord,
    StoreOverloaded,
    StoreUnavailable,
    alertviews,
    approvals,
    dispatch,
    journal,
)
from kubesoar_store.resultcommit import ResultCommitter
from pydantic import BaseModel, ValidationError

logger = logging.getLogger("kubesoar.router.callbacks")

MAX_REPORT_BYTES = 2 * 1024 * 1024
RETRY_AFTER_SECONDS = "2"
POOL_KEY: web.AppKey[Any] = web.AppKey("store_pool", object)
LEASE_KEY: web.AppKey[float] = web.AppKey("lease_seconds", float)
RESULTS_KEY: web.AppKey[ResultCommitter] = web.AppKey("result_committer", ResultCommitter)


def _answer(model: BaseModel | dict[str, Any], status: int = 200, **headers: str) -> web.Response:
    body = model.model_dump_json(by_alias=True) if isinstance(model, BaseModel) else None
    if body is None:
        return web.json_response(model, status=status, headers=headers)
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


def _error(status: int, code: str, message: str, **headers: str) -> web.Response:
    return _answer(http.ErrorBody(error=code, message=message), status, **headers)


def _forbidden() -> web.Response:
    return _error(403, "forbidden", "this run is not leased to the presented token")


def _run_id(request: web.Request) -> uuid.UUID | None:
    try:
        return uuid.UUID(request.match_info["run_id"])
    except ValueError:
        return None


async def _parsed(request: web.Request, model: type[BaseModel]) -> Any:
    body = await bodies.read_body(request, MAX_REPORT_BYTES)
    return model.model_validate(bodies.parse_json(body, code="invalid_json"))


def _handler(what: str) -> Any:
    async def handle(request: web.Request) -> web.Response:
        run_id = _run_id(request)
        token = bearer.presented_token(request.headers.get("Authorization"))
        if run_id is None or token is None:
            return _forbidden()
        pool = request.app[POOL_KEY]
        try:
            if what == "heartbeat":
                expires = await dispatch.heartbeat(
                    pool, run_id, token, lease_seconds=request.app[LEASE_KEY]
                )
                return _answer(http.LeaseAnswer(lease_expires_at=expires.isoformat()))
            if what == "actions":
                entry = await _parsed(request, http.JournalEntry)
                if entry.action.startswith(http.RESERVED_ACTION_PREFIX):
                    # Approval decisions are people's (the runs API), never a pod's.
                    return _error(
                        400, "reserved_action", f"action names starting with"
                        f" {http.RESERVED_ACTION_PREFIX!r} are kubesoar's own",
                    )  # fmt: skip
                written = await journal.put(
                    pool,
                    run_id,
                    token,
                    entry.seq,
                    action=entry.action,
                    status=entry.status,
                    result=entry.result,
                )
                return _answer({"recorded": written})
            if what == "result":
                result = await _parsed(request, http.RunResult)
                record = RunRecord(
                    status=result.status,
                    result={"results": result.results, "actions": result.actions},
                    error=result.error,
                    traceback=result.traceback,
                )
                if result.approval is not None:
                    waiting = approvals.Waiting(
                        seq=result.approval.seq,
                        title=result.approval.title,
                        details=result.approval.details,
                        ttl_seconds=result.approval.ttl_seconds,
                    )
                    written = await approvals.suspend(pool, run_id, token, waiting, record)
                    return _answer({"recorded": written})
                # Concurrent results share one statement (kubesoar_store.resultcommit).
                written = await request.app[RESULTS_KEY].complete(
                    run_id, token, record, also=_alert_lifecycle(run_id, result.results)
                )
                return _answer({"recorded": written})
            await dispatch.release(pool, run_id, token)
            return _answer({})
        except NotLeased:
            return _forbidden()
        except bodies.BodyError as exc:
            return _error(exc.status, exc.code, exc.message)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            return _error(400, "invalid_report", f"{where}: {first['msg']}")
        except (StoreUnavailable, StoreOverloaded) as exc:
            logger.warning("run report %s of %s not recorded: %s", what, run_id, exc)
            return _error(
                503, "unavailable", "the system of record is unavailable; retry",
                **{"Retry-After": RETRY_AFTER_SECONDS},
            )  # fmt: skip

    return handle


def _alert_lifecycle(run_id: uuid.UUID, results: list[Any]) -> Any:
    """The changes OpenSOAR-style lifecycle helpers made to the run's alert
    (`alertActivity` of each entry point), applied to that run's own alert with its record."""
    activity = [
        item
        for outcome in results
        if isinstance(outcome, dict) and isinstance(outcome.get("alertActivity"), list)
        for item in outcome["alertActivity"]
    ]
    if not activity:
        return None

    async def apply(conn: Any) -> None:
        await alertviews.apply_run_activity(conn, run_id, activity)

    return apply


def add_routes(app: web.Application, pool: Any, *, lease_seconds: float) -> None:
    app[POOL_KEY] = pool
    app[LEASE_KEY] = lease_seconds
    app[RESULTS_KEY] = ResultCommitter(pool)
    for what in ("heartbeat", "actions", "result", "release"):
        app.router.add_post(http.run_callback_path("{run_id}", what), _handler(what))
