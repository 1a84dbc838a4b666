"""The runs.kubesoar.dev HTTPS server: its own port (8443 in the chart), its own TLS.

The serving certificate is the one the APIService's caBundle trusts (the chart makes
one, or mounts yours). The TLS context asks every client for a certificate and accepts
only those the front-proxy CA signed (identity.py), so nothing reaches a handler
without having come through the cluster's aggregator.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import asyncpg
from aiohttp import web

from kubesoar_router.api import handlers
from kubesoar_router.api.access import Authorizer
from kubesoar_router.api.identity import FrontProxy, client_ca_context
from kubesoar_router.kubeapi import KubeApi

# Request heads are small (kubectl's Accept header is the longest); bodies are read
# bounded by the handlers themselves.
HANDLER_ARGS = {"max_line_size": 8190, "max_field_size": 8190, "max_headers": 64}


def tls_context(cert_file: Path, key_file: Path, proxy: FrontProxy) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    client_ca_context(context, proxy)
    return context


def create_app(pool: asyncpg.Pool, proxy: FrontProxy, authorizer: Authorizer) -> web.Application:
    app = web.Application(
        middlewares=[handlers.guard],
        client_max_size=handlers.MAX_PATCH_BYTES + 1,
        handler_args=HANDLER_ARGS,
    )
    app[handlers.STATE] = handlers.ApiState(pool, proxy, authorizer)
    handlers.add_routes(app)
    return app


async def start(
    pool: asyncpg.Pool,
    api: KubeApi,
    *,
    host: str,
    port: int,
    cert_file: Path,
    key_file: Path,
) -> web.AppRunner:
    """Read the cluster's front-proxy settings, then serve; the caller cleans the runner up."""
    proxy = await FrontProxy.load(api)
    runner = web.AppRunner(create_app(pool, proxy, Authorizer(api)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls_context(cert_file, key_file, proxy))
    await site.start()
    return runner
