"""Which representation a client asked for (the Accept header), and JSON answers.

kubectl asks for a meta.k8s.io `Table` first (what `kubectl get` prints), then plain
JSON (`-o yaml`); metadata-only clients (the namespace and garbage-collector
controllers) ask for `PartialObjectMetadata[List]`. Protobuf is never offered, so a
client that accepts only protobuf gets 406.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from kubesoar_router.api.status import ApiProblem

TABLE, METADATA, OBJECT = "table", "metadata", "object"


def representation(accept: str) -> tuple[str, str]:
    """(TABLE | METADATA | OBJECT, meta.k8s.io version): the first media range of the
    Accept header this server can produce, in the client's order."""
    if not accept.strip():
        return OBJECT, ""
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if media not in ("application/json", "application/*", "*/*"):
            continue
        values = dict(p.split("=", 1) for p in params if "=" in p)
        shape, group, version = values.get("as"), values.get("g"), values.get("v")
        if shape is None:
            return OBJECT, ""
        if group == "meta.k8s.io" and version in ("v1", "v1beta1"):
            if shape == "Table":
                return TABLE, version
            if shape in ("PartialObjectMetadata", "PartialObjectMetadataList"):
                return METADATA, version
    raise ApiProblem(406, f"none of the requested representations is served: {accept[:200]}")


def of(request: web.Request) -> tuple[str, str]:
    return representation(request.headers.get("Accept", ""))


def json_response(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, default=str), status=status, content_type="application/json"
    )
