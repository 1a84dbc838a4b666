"""The routes of runs.kubesoar.dev/v1alpha1 and what each does.

    GET   /apis, /apis/runs.kubesoar.dev, /apis/runs.kubesoar.dev/v1alpha1   discovery
    GET   …/v1alpha1[/namespaces/{ns}]/runs[?watch=true]   list or watch (listing.py)
    GET   …/v1alpha1/namespaces/{ns}/runs/{name}           get
    POST  …/v1alpha1/namespaces/{ns}/runs/{name}/redeliver a failed or dead run again
    POST  …/v1alpha1/namespaces/{ns}/runs/{name}/approval  approve or deny a waiting run
    GET   …/v1alpha1[/namespaces/{ns}]/alerts[?watch=true] list or watch
    GET   …/v1alpha1/namespaces/{ns}/alerts/{name}         get
    PATCH …/v1alpha1/namespaces/{ns}/alerts/{name}         merge patch of spec (+ spec.comment)
    PUT   …/v1alpha1/namespaces/{ns}/alerts/{name}         update of spec
    GET   /openapi/v2, /openapi/v3, /openapi/v3/apis/…     the schemas (openapi.py)

Every request is authenticated (identity.py) by the middleware; every resource request
is then authorised (access.py) before the database is touched, so a refused user
learns nothing, not even whether a run exists.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web
from kubesoar import _bodies as bodies
from kubesoar.contracts import kube
from kubesoar_store import StoreUnavailable, alertviews, approvals, runviews

from kubesoar_router.api import discovery, listing, objects, openapi, watching
from kubesoar_router.api.access import Attributes, Authorizer, forbidden_message
from kubesoar_router.api.identity import FrontProxy, User, authenticate
from kubesoar_router.api.negotiation import json_response
from kubesoar_router.api.status import ApiProblem, invalid, not_found, response

logger = logging.getLogger("kubesoar.router.api")

MAX_PATCH_BYTES = 64 * 1024
MERGE_PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
USER_KEY = "kubesoar.user"


@dataclass
class ApiState:
    pool: asyncpg.Pool
    proxy: FrontProxy
    authorizer: Authorizer
    watches: watching.Watches = field(default_factory=watching.Watches)


STATE: web.AppKey[ApiState] = web.AppKey("runs_api", ApiState)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate every request; turn problems into `Status` answers."""
    try:
        request[USER_KEY] = authenticate(request, request.app[STATE].proxy)
        return await handler(request)
    except ApiProblem as problem:
        return response(problem)
    except StoreUnavailable as exc:
        logger.warning("runs API: %s", exc)
        return response(
            ApiProblem(503, "the system of record is unavailable; retry"), **{"Retry-After": "5"}
        )


async def _authorize(request: web.Request, verb: str, resource: str, name: str = "") -> None:
    user: User = request[USER_KEY]
    attributes = Attributes(verb, resource, request.match_info.get("namespace", ""), name)
    decision = await request.app[STATE].authorizer.decide(user, attributes)
    if not decision.allowed:
        raise ApiProblem(
            403, forbidden_message(user, attributes), resource=resource, name=name or None
        )


# --- discovery -----------------------------------------------------------------------
async def get_apis(request: web.Request) -> web.Response:
    return json_response(discovery.api_group_list())


async def get_group(request: web.Request) -> web.Response:
    return json_response(discovery.api_group())


async def get_resources(request: web.Request) -> web.Response:
    return json_response(discovery.resource_list())


async def get_openapi_root(request: web.Request) -> web.Response:
    return json_response(openapi.root())


async def get_openapi(request: web.Request) -> web.Response:
    body = openapi.document_v2() if request.path == "/openapi/v2" else openapi.document()
    tag = f'"{openapi.etag(body)}"'
    if request.headers.get("If-None-Match") == tag:
        return web.Response(status=304, headers={"ETag": tag})
    return web.Response(body=body, content_type="application/json", headers={"ETag": tag})


# --- list, watch, get ----------------------------------------------------------------
def list_handler(view: listing.View) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        watch = request.query.get("watch") in ("true", "1")
        await _authorize(request, "watch" if watch else "list", view.resource)
        state = request.app[STATE]
        return await listing.respond(request, view, state.pool, state.watches)

    return handle


async def get_run(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    await _authorize(request, "get", kube.RUNS_RESOURCE, name)
    run_id = objects.parse_name(name)
    run = None
    if run_id is not None:
        run = await runviews.get_run(
            request.app[STATE].pool, request.match_info["namespace"], run_id
        )
    if run is None:
        raise not_found(kube.RUNS_RESOURCE, name)
    return json_response(listing.encode(request, listing.RUNS, [run], single=True))


async def get_alert(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    await _authorize(request, "get", kube.ALERTS_RESOURCE, name)
    alert_id = objects.parse_name(name)
    alert = None
    if alert_id is not None:
        alert = await alertviews.get_alert(
            request.app[STATE].pool, request.match_info["namespace"], alert_id
        )
    if alert is None:
        raise not_found(kube.ALERTS_RESOURCE, name)
    return json_response(listing.encode(request, listing.ALERTS, [alert], single=True))


async def redeliver_run(request: web.Request) -> web.Response:
    """POST runs/{name}/redeliver: a failed or dead run queued again as a new attempt."""
    name = request.match_info["name"]
    await _authorize(request, "create", f"{kube.RUNS_RESOURCE}/redeliver", name)
    await _bounded_json(request)  # kubectl create --raw sends a body; nothing in it is used
    run_id = objects.parse_name(name)
    namespace = request.match_info["namespace"]
    pool = request.app[STATE].pool
    before = await runviews.redeliver(pool, namespace, run_id) if run_id is not None else None
    if before is None or run_id is None:
        raise not_found(kube.RUNS_RESOURCE, name)
    run = await runviews.get_run(pool, namespace, run_id)
    if before not in runviews.REDELIVERABLE or run is None:
        raise ApiProblem(
            409,
            f'run "{name}" is {before}: only failed or dead runs are redelivered',
            resource=kube.RUNS_RESOURCE,
            name=name,
        )
    user: User = request[USER_KEY]
    logger.info("run %s/%s redelivered by %s", namespace, name, user.name)
    return json_response(objects.run_object(run), status=201)


APPROVAL_FIELDS = ("approved", "comment")


async def decide_run(request: web.Request) -> web.Response:
    """POST runs/{name}/approval {"approved": bool, "comment": str}: decide what a
    waiting run asks. Its own verb (`approve` on runs/approval), so that who may approve
    is granted apart from who may read or edit; the decider is the authenticated user."""
    name = request.match_info["name"]
    resource = f"{kube.RUNS_RESOURCE}/approval"
    await _authorize(request, "approve", resource, name)
    body = await _bounded_json(request)
    unknown = sorted(set(body) - {"apiVersion", "kind", *APPROVAL_FIELDS})
    if unknown:
        raise invalid(resource, name, unknown[0], "unknown field (approved, comment)")
    approved, comment = body.get("approved"), body.get("comment")
    if not isinstance(approved, bool):
        raise invalid(resource, name, "approved", "required: true or false")
    if comment is not None and not isinstance(comment, str):
        raise invalid(resource, name, "comment", "must be a string")
    run_id = objects.parse_name(name)
    namespace = request.match_info["namespace"]
    pool = request.app[STATE].pool
    user: User = request[USER_KEY]
    try:
        before = (
            await approvals.decide(
                pool, namespace, run_id, approved=approved, by=user.name, comment=comment
            )
            if run_id is not None
            else None
        )
    except ValueError as exc:
        raise invalid(resource, name, "comment", str(exc)) from None
    run = await runviews.get_run(pool, namespace, run_id) if run_id is not None else None
    if before is None or run is None:
        raise not_found(kube.RUNS_RESOURCE, name)
    if before != "waiting":
        raise ApiProblem(
            409,
            f'run "{name}" is {before}: only a waiting run is approved or denied',
            resource=kube.RUNS_RESOURCE,
            name=name,
        )
    logger.info(
        "run %s/%s %s by %s", namespace, name, "approved" if approved else "denied", user.name
    )
    return json_response(objects.run_object(run))


# --- change an alert -----------------------------------------------------------------
async def change_alert(request: web.Request) -> web.Response:
    """PATCH (merge patch) or PUT of an alert's spec, as the authenticated user."""
    name = request.match_info["name"]
    verb = "patch" if request.method == "PATCH" else "update"
    await _authorize(request, verb, kube.ALERTS_RESOURCE, name)
    content_type = request.content_type
    if verb == "patch" and content_type not in MERGE_PATCH_TYPES:
        raise ApiProblem(415, f"patch with --type merge; {content_type} is not supported")
    body = await _bounded_json(request)
    change, expected = alert_change(body, name)
    alert_id = objects.parse_name(name)
    user: User = request[USER_KEY]
    try:
        alert = (
            await alertviews.update_alert(
                request.app[STATE].pool,
                request.match_info["namespace"],
                alert_id,
                change,
                actor=f"user:{user.name}",
                expect_updated_at=expected,
            )
            if alert_id is not None
            else None
        )
    except alertviews.StaleAlert as exc:
        raise ApiProblem(
            409, f"{exc}; read it again and retry", resource=kube.ALERTS_RESOURCE, name=name
        ) from None
    except ValueError as exc:
        field = f"spec.{str(exc).split()[0]}"
        raise invalid(kube.ALERTS_RESOURCE, name, field, str(exc)) from None
    if alert is None:
        raise not_found(kube.ALERTS_RESOURCE, name)
    logger.info("alert %s/%s changed by %s", request.match_info["namespace"], name, user.name)
    return json_response(objects.alert_object(alert))


async def _bounded_json(request: web.Request) -> dict[str, Any]:
    raw = await request.content.read(MAX_PATCH_BYTES + 1)
    if len(raw) > MAX_PATCH_BYTES:
        raise ApiProblem(413, f"the body is larger than {MAX_PATCH_BYTES} bytes")
    try:
        # The same hostile-input checks as alert bodies (depth, huge numbers, NaN).
        body = bodies.parse_json(raw or b"{}")
    except bodies.BodyError as exc:
        raise ApiProblem(400, f"the body is not acceptable JSON: {exc.message}") from None
    if not isinstance(body, dict):
        raise ApiProblem(400, "the body must be a JSON object")
    return body


EDITABLE = ("status", "determination", "assignee", "comment")


def alert_change(body: dict[str, Any], name: str) -> tuple[alertviews.AlertChange, datetime | None]:
    """What a patch or update asks for: spec fields only (`status` of an Alert is
    read-only), and the resourceVersion it was based on, if it names one."""
    spec = body.get("spec") or {}
    if not isinstance(spec, dict):
        raise invalid(kube.ALERTS_RESOURCE, name, "spec", "must be an object")
    unknown = sorted(set(spec) - set(EDITABLE))
    if unknown:
        settable = ", ".join(f"spec.{key}" for key in EDITABLE)
        raise invalid(
            kube.ALERTS_RESOURCE, name, f"spec.{unknown[0]}", f"cannot be set ({settable} can)"
        )
    for key in EDITABLE:
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise invalid(kube.ALERTS_RESOURCE, name, f"spec.{key}", "must be a string")
    metadata = body.get("metadata") or {}
    version = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
    expected = None
    if version:
        try:
            expected = objects.parse_resource_version(str(version))
        except (TypeError, ValueError):
            raise invalid(
                kube.ALERTS_RESOURCE, name, "metadata.resourceVersion", "not one this server issued"
            ) from None
    assignee = spec.get("assignee")
    change = alertviews.AlertChange(
        status=spec.get("status"),
        determination=spec.get("determination"),
        # A merge patch's null removes the field: unassign.
        assignee="" if "assignee" in spec and assignee is None else assignee,
        comment=spec.get("comment"),
    )
    return change, expected


def add_routes(app: web.Application) -> None:
    base = kube.RUNS_API_VERSION_PATH
    app.router.add_get("/apis", get_apis)
    app.router.add_get(f"/apis/{kube.RUNS_API_GROUP}", get_group)
    app.router.add_get(base, get_resources)
    app.router.add_get("/openapi/v3", get_openapi_root)
    app.router.add_get(f"/openapi/v3/{openapi.PATH}", get_openapi)
    app.router.add_get("/openapi/v2", get_openapi)
    for view in (listing.RUNS, listing.ALERTS):
        handler = list_handler(view)
        app.router.add_get(f"{base}/{view.resource}", handler)
        app.router.add_get(f"{base}/namespaces/{{namespace}}/{view.resource}", handler)
    run = f"{base}/namespaces/{{namespace}}/{kube.RUNS_RESOURCE}/{{name}}"
    app.router.add_get(run, get_run)
    app.router.add_post(f"{run}/redeliver", redeliver_run)
    app.router.add_post(f"{run}/approval", decide_run)
    alert = f"{base}/namespaces/{{namespace}}/{kube.ALERTS_RESOURCE}/{{name}}"
    app.router.add_get(alert, get_alert)
    app.router.add_patch(alert, change_alert)
    app.router.add_put(alert, change_alert)
