"""The router's aiohttp applications: ingest (+ probes) and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from kubesoar._gc import tune_gc as tune_gc  # the router's cli calls it after start-up
from kubesoar.contracts import http

from kubesoar_router import callbacks, delivery, ingest
from kubesoar_router.ingest import ROUTER_KEY, Router

READY_PATH = http.READYZ_PATH
HEALTH_PATH = http.HEALTHZ_PATH
# Bounds on a request's head, checked by aiohttp's parser before any handler runs (a 400
# past them). The request line carries at most a 63-character namespace and a
# 253-character source name; alert senders, proxies included, send a few dozen headers.
# aiohttp 3.14 defaults to 8190/8190/128; older releases allowed 32768 headers.
MAX_LINE_SIZE = 4096
MAX_FIELD_SIZE = 8190
MAX_HEADERS = 64
HANDLER_ARGS = {
    "max_line_size": MAX_LINE_SIZE,
    "max_field_size": MAX_FIELD_SIZE,
    "max_headers": MAX_HEADERS,
}


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    if request.app[ROUTER_KEY].snapshot.synced:
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "syncing"}, status=503)


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[ROUTER_KEY].metrics.exposition()
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


def create_ingest_app(router: Router, *, serve_metrics: bool = False) -> web.Application:
    """The ingest app; it opens the delivery client session on startup and closes it after."""
    # The handler reads the body itself against `router.max_body_bytes` (to answer 413
    # as JSON), so aiohttp's own limit only needs to be out of the way.
    app = web.Application(client_max_size=router.max_body_bytes + 1, handler_args=HANDLER_ARGS)
    app[ROUTER_KEY] = router

    async def client_session(app: web.Application) -> AsyncIterator[None]:
        session = delivery.make_session()
        router.deliverer = delivery.Deliverer(session, policy=router.delivery_policy)
        yield
        await session.close()

    app.cleanup_ctx.append(client_session)
    app.router.add_post(ingest.INGEST_ROUTE, ingest.handle_alert)
    if router.durable is not None:
        callbacks.add_routes(
            app,
            router.durable.pool,
            lease_seconds=router.durable.dispatcher.policy.lease_seconds,
        )
    app.router.add_get(HEALTH_PATH, _healthz)
    app.router.add_get(READY_PATH, _readyz)
    if serve_metrics:
        app.router.add_get(http.METRICS_PATH, _metrics)
    return app


def create_metrics_app(router: Router) -> web.Application:
    app = web.Application(handler_args=HANDLER_ARGS)
    app[ROUTER_KEY] = router
    app.router.add_get(http.METRICS_PATH, _metrics)
    return app
