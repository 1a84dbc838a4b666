"""The operator's artifact HTTP server (aiohttp), serving signed artifact URLs.

`GET /artifacts/{namespace}/{name}/{digest}.tar.gz?expires=..&sig=..` answers
the tarball, `403` for a missing, bad or expired signature, `404` for an
unknown artifact, `400` for a malformed request. `GET /healthz` says `ok`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web
from kubesoar.contracts import caller, http

from kubesoar_operator.artifacts import DIGEST, NAME, ArtifactStore
from kubesoar_operator.signing import Signer

log = logging.getLogger("kubesoar_operator.artifacts")
_SUFFIX = ".tar.gz"


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def make_app(
    store: ArtifactStore, signer: Signer, clock: Callable[[], float] = time.time
) -> web.Application:
    async def artifact(request: web.Request) -> web.StreamResponse:
        namespace = request.match_info["namespace"]
        name = request.match_info["name"]
        filename = request.match_info["file"]
        digest = filename.removesuffix(_SUFFIX)
        if not (NAME.match(namespace) and NAME.match(name)) or not (
            filename.endswith(_SUFFIX) and DIGEST.match(digest)
        ):
            return _error(400, "bad_request", "expected /artifacts/{ns}/{name}/{sha256}.tar.gz")
        try:
            expires = int(request.query.get("expires", ""))
        except ValueError:
            return _error(403, "forbidden", "missing or malformed expires")
        sig = request.query.get("sig", "")
        if not signer.verify(namespace, name, digest, expires, sig, now=clock()):
            log.info("refused artifact %s/%s/%s: bad or expired signature", namespace, name, digest)
            return _error(403, "forbidden", "bad or expired signature")
        path = store.get(namespace, name, digest)
        if path is None:
            return _error(404, "not_found", "no such artifact (the operator may be re-packing it)")
        return web.FileResponse(
            path,
            headers={
                "Content-Type": "application/gzip",
                "Cache-Control": "private, max-age=0",
                # Only a holder of this Playbook's signed URL gets the Playbook's token.
                caller.TOKEN_HEADER: signer.caller_token(namespace, name),
            },
        )

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=1024)
    app.router.add_get("/artifacts/{namespace}/{name}/{file}", artifact)
    app.router.add_get(http.HEALTHZ_PATH, healthz)
    return app


async def start(
    store: ArtifactStore, signer: Signer, host: str, port: int
) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (call `cleanup()` to stop) and the bound port."""
    runner = web.AppRunner(make_app(store, signer), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, int(bound)
