"""The runtime's HTTP API (aiohttp): runs, report, probes, metrics."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web
from pydantic import ValidationError

from kubesoar._alert import Alert
from kubesoar._bodies import BodyError, parse_json, read_body
from kubesoar._engine import UnknownEntryPoints
from kubesoar._service import NotAccepting, QueueFull, RuntimeService
from kubesoar.contracts import caller, http

__all__ = ["build_app"]

RETRY_AFTER_SECONDS: Final = "1"
SERVICE_KEY: Final = web.AppKey("service", RuntimeService)


def _error(status: int, code: str, message: str, **headers: str) -> web.Response:
    body = http.ErrorBody(error=code, message=message).model_dump_json()
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


class _BadRequest(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


async def _read_json(request: web.Request, limit: int) -> Any:
    try:
        return parse_json(await read_body(request, limit), code="invalid_json")
    except BodyError as exc:
        raise _BadRequest(exc.code, exc.message) from None


def _parse_run_request(body: Any) -> tuple[http.RunRequest, Alert]:
    if not isinstance(body, dict):
        raise _BadRequest("invalid_body", "the body must be a JSON object")
    try:
        request = http.parse_run_request(body)
    except ValidationError as exc:
        raise _BadRequest("invalid_field", http.run_request_problem(exc)) from None
    try:
        alert = Alert.model_validate(request.alert)
    except ValidationError as exc:
        problems = "; ".join(
            f"alert.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        raise _BadRequest("invalid_alert", problems) from None
    return request, alert


async def post_run(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    try:
        body = await _read_json(request, service.settings.max_body_bytes)
        request_body, alert = _parse_run_request(body)
        status, answer = service.submit(
            idempotency_key=request_body.idempotency_key,
            alert=alert,
            playbooks=request_body.playbooks,
            correlation_id=request_body.correlation_id,
            dispatched=request_body,
        )
    except _BadRequest as exc:
        service.metrics.rejected.labels(reason=exc.code).inc()
        status_code = 413 if exc.code == "body_too_large" else 400
        return _error(status_code, exc.code, str(exc))
    except UnknownEntryPoints as exc:
        service.metrics.rejected.labels(reason="unknown_playbooks").inc()
        return _error(400, "unknown_playbooks", str(exc))
    except QueueFull as exc:
        service.metrics.rejected.labels(reason="queue_full").inc()
        return _error(429, "queue_full", str(exc), **{"Retry-After": RETRY_AFTER_SECONDS})
    except NotAccepting as exc:
        service.metrics.rejected.labels(reason="not_accepting").inc()
        return _error(503, "unavailable", str(exc), **{"Retry-After": RETRY_AFTER_SECONDS})
    return web.json_response(http.dump(answer), status=status)


async def get_run(request: web.Request) -> web.Response:
    run = request.app[SERVICE_KEY].engine.get(request.match_info["run_id"])
    if run is None:
        return _error(404, "not_found", "no such run (unknown, or older than the kept history)")
    return web.json_response(run.to_json())


async def get_report(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVICE_KEY].report())


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    if service.ready:
        return web.json_response({"status": "ready"})
    reason = "draining" if service.draining else "module not loaded"
    return _error(503, "not_ready", reason)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[SERVICE_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


def _caller_auth(token: bytes) -> Any:
    """Middleware: `/v1/...` only for callers holding the Playbook's token (`contracts.caller`).

    Probes and metrics stay open: the kubelet and Prometheus carry no token, and they
    reveal no run or alert.
    """

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/v1/") and not caller.is_authorized(
            request.headers.get("Authorization"), token
        ):
            return _error(401, "unauthorized", "this runtime serves its router and operator only")
        response: web.StreamResponse = await handler(request)
        return response

    return check


def build_app(service: RuntimeService) -> web.Application:
    # client_max_size bounds anything aiohttp itself buffers; read_body
    # enforces the runtime's own limit with a JSON answer.
    token = service.settings.caller_token()
    middlewares = [_caller_auth(token)] if token is not None else []
    app = web.Application(
        client_max_size=service.settings.max_body_bytes + 1024, middlewares=middlewares
    )
    app[SERVICE_KEY] = service
    app.router.add_post(http.RUNS_PATH, post_run)
    app.router.add_get(http.run_path("{run_id}"), get_run)
    app.router.add_get(http.REPORT_PATH, get_report)
    app.router.add_get(http.HEALTHZ_PATH, healthz)
    app.router.add_get(http.READYZ_PATH, readyz)
    app.router.add_get(http.METRICS_PATH, metrics)
    return app
