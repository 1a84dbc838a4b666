"""The ingest API: `POST /v1/namespaces/{ns}/sources/{source}/alerts`.

Pipeline: known source (404) -> body size (413) -> source usable (503) -> auth
(401/403) -> JSON (400) -> normalise (400) -> rate limit (429) -> dedup (202,
duplicate) -> match in the URL's namespace only -> deliver to every matched
Playbook -> 202, or 503 with Retry-After if any delivery failed (the alert is then
not remembered by dedup, and an HMAC signature is released, so the retry goes through).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from kubesoar import _bodies as bodies

from kubesoar_router import auth, delivery, normalisers
from kubesoar_router.counters import CounterBook
from kubesoar_router.dedup import DedupCache, dedup_key
from kubesoar_router.errors import IngestError
from kubesoar_router.metrics import UNKNOWN, RouterMetrics
from kubesoar_router.ratelimit import TokenBucket
from kubesoar_router.snapshot import NamespaceState, Snapshot, Source

logger = logging.getLogger("kubesoar.router")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
INGEST_ROUTE = "/v1/namespaces/{namespace}/sources/{source}/alerts"
CORRELATION_HEADER = "X-Correlation-Id"
_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
DELIVERY_RETRY_AFTER = 5
SUSPENDED_RETRY_AFTER = 60


@dataclass
class Router:
    """State the ingest handler needs besides the snapshot."""

    snapshot: Snapshot
    deliverer: delivery.Deliverer | None = None
    delivery_policy: delivery.DeliveryPolicy = field(default_factory=delivery.DeliveryPolicy)
    metrics: RouterMetrics = field(default_factory=RouterMetrics)
    counters: CounterBook = field(default_factory=CounterBook)
    dedup: DedupCache = field(default_factory=DedupCache)
    replay_cache: auth.ReplayCache = field(default_factory=auth.ReplayCache)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    clock: Callable[[], float] = time.time
    _buckets: dict[tuple[str, str, float, int], TokenBucket] = field(default_factory=dict)

    def bucket(self, source: Source, now: float) -> TokenBucket | None:
        limit = source.spec.rate_limit if source.spec else None
        if limit is None:
            return None
        # The limit is part of the key, so a changed rateLimit starts a fresh bucket.
        key = (source.namespace, source.name, limit.requests_per_second, limit.effective_burst)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(
                limit.requests_per_second, limit.effective_burst, now
            )
        return bucket


ROUTER_KEY: web.AppKey[Router] = web.AppKey("router", Router)


def error_response(error: IngestError, correlation_id: str | None = None) -> web.Response:
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    if correlation_id:
        headers[CORRELATION_HEADER] = correlation_id
    return web.json_response(
        {"error": error.code, "message": error.message}, status=error.status, headers=headers
    )


def alert_id_for(namespace: str, source: str, body: bytes) -> str:
    """Same request body -> same alert id, so a sender's retry keeps its idempotency keys."""
    digest = hashlib.sha256(namespace.encode() + b"\0" + source.encode() + b"\0" + body)
    return "al-" + digest.hexdigest()[:32]


async def read_body(request: web.Request, limit: int) -> bytes:
    try:
        return await bodies.read_body(request, limit)
    except bodies.BodyError as exc:
        raise IngestError(exc.status, exc.code, exc.message) from None


def parse_json(body: bytes) -> Any:
    try:
        return bodies.parse_json(body)
    except bodies.BodyError as exc:
        raise IngestError(exc.status, exc.code, exc.message) from None


async def handle_alert(request: web.Request) -> web.Response:
    router = request.app[ROUTER_KEY]
    namespace = request.match_info["namespace"]
    source_name = request.match_info["source"]
    presented = request.headers.get(CORRELATION_HEADER, "")
    correlation_id = presented if _CORRELATION_ID.match(presented) else os.urandom(16).hex()
    state = router.snapshot.get(namespace)
    source = state.sources.get(source_name) if state else None
    if not router.snapshot.synced:
        return error_response(
            IngestError(503, "not_ready", "the router has not synced yet", retry_after=1),
            correlation_id,
        )
    if state is None or source is None:
        router.metrics.rejected.labels(UNKNOWN, UNKNOWN, "unknown_source").inc()
        return error_response(
            IngestError(404, "unknown_source", f"no AlertSource {source_name!r} in {namespace!r}"),
            correlation_id,
        )
    router.metrics.source(namespace, source_name).received.inc()
    counts = router.counters.of(namespace, source_name)
    counts.received += 1
    replay_key: bytes | None = None
    try:
        response, replay_key = await _accept(request, router, state, source, correlation_id)
    except IngestError as error:
        counts.rejected += 1
        router.metrics.rejected.labels(namespace, source_name, error.code).inc()
        if replay_key is not None:
            router.replay_cache.release(replay_key)
        logger.info(
            "alert refused",
            extra={
                "correlationId": correlation_id,
                "namespace": namespace,
                "source": source_name,
                "status": error.status,
                "error": error.code,
                "reason": error.message,
            },
        )
        return error_response(error, correlation_id)
    return response


async def _accept(
    request: web.Request,
    router: Router,
    state: NamespaceState,
    source: Source,
    correlation_id: str,
) -> tuple[web.Response, bytes | None]:
    namespace, name = source.namespace, source.name
    body = await read_body(request, router.max_body_bytes)
    if source.problem is not None or source.spec is None:
        # The reason (which Secret, which field) is on the AlertSource's status,
        # not told to an unauthenticated caller.
        raise IngestError(
            503, "source_not_ready", "the source is not ready; see its status", retry_after=30
        )
    spec = source.spec
    if spec.suspend:
        raise IngestError(
            503, "source_suspended", "the source is suspended", retry_after=SUSPENDED_RETRY_AFTER
        )
    now = router.clock()
    replay_key = auth.authenticate(
        spec.auth,
        source.credentials,
        request.headers,
        body,
        now=now,
        replay_cache=router.replay_cache,
        path=auth.alerts_path(namespace, name),
        method=request.method,
    )
    try:
        return await _process(router, state, source, body, now, correlation_id), replay_key
    except IngestError:
        if replay_key is not None:
            router.replay_cache.release(replay_key)
        raise


async def _process(
    router: Router,
    state: NamespaceState,
    source: Source,
    body: bytes,
    now: float,
    correlation_id: str,
) -> web.Response:
    assert source.spec is not None
    spec = source.spec
    namespace, name = source.namespace, source.name
    payload = parse_json(body)
    alert_id = alert_id_for(namespace, name, body)
    try:
        alert = normalisers.build_alert(
            spec.format.value,
            payload,
            alert_id=alert_id,
            tenant=namespace,
            received_at=datetime.fromtimestamp(now, UTC),
        )
    except normalisers.NormaliseError as exc:
        raise IngestError(400, "invalid_alert", str(exc)) from None
    bucket = router.bucket(source, now)
    if bucket is not None:
        wait = bucket.take(now)
        if wait is not None:
            raise IngestError(
                429, "rate_limited", "too many alerts for this source", retry_after=wait
            )
    match_view = alert.as_match_dict()
    key = None
    if spec.dedup.window_seconds > 0:
        key = dedup_key(f"{namespace}/{name}", match_view, spec.dedup.paths)
    if key is not None and router.dedup.seen(key, now):
        router.metrics.source(namespace, name).duplicates.inc()
        router.counters.of(namespace, name).duplicates += 1
        return _accepted(alert_id, correlation_id, [], duplicate=True)
    matches = state.index.match(match_view)
    results = await _deliver_all(router, state, name, alert, matches, correlation_id)
    failed = [result for result in results if not result.ok]
    if failed:
        # The sender will send the whole alert again: the Playbooks that did accept it
        # must get it on the same pod, whose replay answers without a second run.
        assert router.deliverer is not None
        for result in results:
            if result.ok and result.key is not None and result.endpoint is not None:
                router.deliverer.pin(result.key, result.endpoint)
        names = ", ".join(f"{r.playbook} ({r.error})" for r in failed)
        raise IngestError(
            503,
            "delivery_failed",
            f"not confirmed by Playbook(s) {names}; retry later with the same body",
            retry_after=DELIVERY_RETRY_AFTER,
        )
    if key is not None:
        router.dedup.remember(key, spec.dedup.window_seconds, now)
    counts = router.counters.of(namespace, name)
    counts.accepted += 1
    counts.last_alert_time = now
    if logger.isEnabledFor(logging.DEBUG):  # the `extra` dict is not built below DEBUG
        logger.debug(
            "alert accepted",
            extra={
                "correlationId": correlation_id,
                "namespace": namespace,
                "source": name,
                "alertId": alert_id,
                "playbooks": [r.playbook for r in results],
            },
        )
    return _accepted(alert_id, correlation_id, results, duplicate=False)


async def _deliver_all(
    router: Router,
    state: NamespaceState,
    source_label: str,
    alert: Any,
    matches: list[Any],
    correlation_id: str,
) -> list[delivery.DeliveryResult]:
    if not matches:
        return []
    deliverer = router.deliverer
    if deliverer is None:  # pragma: no cover - the app always sets one
        raise IngestError(503, "not_ready", "delivery is not configured", retry_after=1)
    namespace = state.namespace
    metrics = router.metrics.source(namespace, source_label)
    # The Alert is serialised once, whatever the number of matched Playbooks.
    alert_json = alert.model_dump_json().encode()

    async def one(match: Any) -> delivery.DeliveryResult:
        started = time.perf_counter()
        key = delivery.idempotency_key(alert.id, namespace, match.playbook)
        body = delivery.run_request_body(
            key=key, correlation_id=correlation_id, entries=match.entries, alert_json=alert_json
        )
        result = await deliverer.deliver(
            namespace=namespace,
            playbook=match.playbook,
            endpoints=state.endpoints.get(match.playbook, ()),
            body=body,
            correlation_id=correlation_id,
            key=key,
        )
        metrics.delivery_seconds.observe(time.perf_counter() - started)
        (metrics.delivered_ok if result.ok else metrics.delivered_failed).inc()
        return result

    metrics.matched.inc(len(matches))
    if len(matches) == 1:
        return [await one(matches[0])]
    return list(await asyncio.gather(*(one(match) for match in matches)))


def _accepted(
    alert_id: str, correlation_id: str, results: list[delivery.DeliveryResult], *, duplicate: bool
) -> web.Response:
    return web.json_response(
        {
            "alertId": alert_id,
            "correlationId": correlation_id,
            "deliveries": [{"playbook": r.playbook, "runId": r.run_id} for r in results],
            "duplicate": duplicate,
        },
        status=202,
        headers={CORRELATION_HEADER: correlation_id},
    )
