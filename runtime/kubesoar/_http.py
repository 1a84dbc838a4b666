"""The runtime's HTTP API (aiohttp): runs, report, probes, metrics."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web
from pydantic import ValidationError

from kubesoar import _caller as caller
from kubesoar._alert import Alert
from kubesoar._bodies import BodyError, parse_json, read_body
from kubesoar._engine import UnknownEntryPoints
from kubesoar._service import NotAccepting, QueueFull, RuntimeService

__all__ = ["build_app"]

MAX_KEY_CHARS: Final = 256
MAX_PLAYBOOKS: Final = 256
RETRY_AFTER_SECONDS: Final = "1"
SERVICE_KEY: Final = web.AppKey("service", RuntimeService)


def _error(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


class _BadRequest(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


async def _read_json(request: web.Request, limit: int) -> Any:
    try:
        return parse_json(await read_body(request, limit), code="invalid_json")
    except BodyError as exc:
        raise _BadRequest(exc.code, exc.message) from None


def _optional_string(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_KEY_CHARS:
        raise _BadRequest("invalid_field", f"{key} must be a string of 1-{MAX_KEY_CHARS} chars")
    return value


def _parse_run_request(body: Any) -> tuple[str, Alert, list[str] | None, str | None]:
    if not isinstance(body, dict):
        raise _BadRequest("invalid_body", "the body must be a JSON object")
    key = _optional_string(body, "idempotencyKey")
    if key is None:
        raise _BadRequest("invalid_field", "idempotencyKey is required")
    correlation_id = _optional_string(body, "correlationId")
    playbooks = body.get("playbooks")
    if playbooks is not None and (
        not isinstance(playbooks, list)
        or len(playbooks) > MAX_PLAYBOOKS
        or not all(isinstance(name, str) and name for name in playbooks)
    ):
        raise _BadRequest("invalid_field", "playbooks must be null or a list of entry point names")
    if not isinstance(body.get("alert"), dict):
        raise _BadRequest("invalid_field", "alert must be a JSON object")
    try:
        alert = Alert.model_validate(body["alert"])
    except ValidationError as exc:
        problems = "; ".join(
            f"alert.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        raise _BadRequest("invalid_alert", problems) from None
    return key, alert, playbooks, correlation_id


async def post_run(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    try:
        body = await _read_json(request, service.settings.max_body_bytes)
        key, alert, playbooks, correlation_id = _parse_run_request(body)
        status, answer = service.submit(
            idempotency_key=key, alert=alert, playbooks=playbooks, correlation_id=correlation_id
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
    return web.json_response(answer, status=status)


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
    """Middleware: `/v1/...` only for callers holding the Playbook's token (kubesoar._caller).

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
    app.router.add_post("/v1/runs", post_run)
    app.router.add_get("/v1/runs/{run_id}", get_run)
    app.router.add_get("/v1/report", get_report)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
