"""The ingest API: `POST /v1/namespaces/{ns}/sources/{source}/alerts`.

Pipeline: router synced (503 not_ready) -> body size and read time (413, 408) ->
known, usable source and its auth (401) -> suspended (503) -> JSON (400) -> normalise
(400) -> rate limit (429) -> dedup (202, duplicate) -> match in the URL's namespace
only -> deliver to every matched Playbook -> 202, or 503 with Retry-After if any
delivery failed (the alert is then not remembered by dedup, and an HMAC signature is
released, so the retry goes through).

Before a request has authenticated, the answer must not tell whether its AlertSource
exists: an unknown namespace or source, a source that cannot authenticate anyone (an
invalid spec, a missing Secret) and every failed credential check all get the same
401 `unauthorized` with the same message (`Unauthenticated`). The body is read (and
bounded) before the source is looked up, so 413 and 408 do not tell either. The
distinct reason goes to the rejected-alerts metric and the log, never to the caller.
Only an authenticated sender learns that its source is suspended.
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
from kubesoar.contracts import caller, http
from kubesoar.contracts.http import CORRELATION_HEADER
from pydantic import BaseModel

from kubesoar_router import auth, delivery, durable, normalizers
from kubesoar_router.counters import CounterBook
from kubesoar_router.dedup import DedupCache, dedup_key
from kubesoar_router.durable import Durable
from kubesoar_router.errors import IngestError
from kubesoar_router.metrics import UNKNOWN, RouterMetrics
from kubesoar_router.ratelimit import TokenBucket
from kubesoar_router.snapshot import NamespaceState, Snapshot, Source

logger = logging.getLogger("kubesoar.router")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
INGEST_ROUTE = http.ingest_path("{namespace}", "{source}")
_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
DELIVERY_RETRY_AFTER = 5
SUSPENDED_RETRY_AFTER = 60
# The whole body must arrive within this many seconds of the handler starting to read
# it (a slow or stalled sender otherwise holds a connection and a handler forever).
BODY_TIMEOUT_SECONDS = 30.0
UNAUTHORIZED = "unauthorized"
UNAUTHORIZED_MESSAGE = "authentication failed for this source"


class Unauthenticated(IngestError):
    """Any refusal before authentication: one public answer, the reason kept inside.

    `reason` (a stable code such as `unknown_source` or `invalid_token`) labels the
    rejected-alerts metric and the log line; `detail` is logged. Neither is sent.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(401, UNAUTHORIZED, UNAUTHORIZED_MESSAGE)
        self.reason = reason
        self.detail = detail


@dataclass
class Router:
    """State the ingest handler needs besides the snapshot."""

    snapshot: Snapshot
    deliverer: delivery.Deliverer | None = None
    delivery_policy: delivery.DeliveryPolicy = field(default_factory=delivery.DeliveryPolicy)
    metrics: RouterMetrics = field(default_factory=RouterMetrics)
    # The operator's signing key, from which each Playbook's caller token is derived
    # (kubesoar.contracts.caller); None sends no token (runtime pods the operator renders refuse).
    caller_key: bytes | None = None
    counters: CounterBook = field(default_factory=CounterBook)
    dedup: DedupCache = field(default_factory=DedupCache)
    replay_cache: auth.ReplayCache = field(default_factory=auth.ReplayCache)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout: float = BODY_TIMEOUT_SECONDS
    clock: Callable[[], float] = time.time
    # The system of record (durable.py); None delivers straight to runtime pods.
    durable: Durable | None = None
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
    response = _json(http.ErrorBody(error=error.code, message=error.message), error.status, headers)
    if error.status == 408:
        # The rest of the body may still be on its way: the connection cannot carry
        # another request, and waiting for it is what the timeout refused to do.
        response.force_close()
    return response


def alert_id_for(namespace: str, source: str, body: bytes) -> str:
    """Same request body -> same alert id, so a sender's retry keeps its idempotency keys."""
    digest = hashlib.sha256(namespace.encode() + b"\0" + source.encode() + b"\0" + body)
    return "al-" + digest.hexdigest()[:32]


async def read_body(
    request: web.Request, limit: int, seconds: float = BODY_TIMEOUT_SECONDS
) -> bytes:
    """The whole body: 413 past `limit` bytes, 408 if it has not arrived in `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            return await bodies.read_body(request, limit)
    except bodies.BodyError as exc:
        raise IngestError(exc.status, exc.code, exc.message) from None
    except TimeoutError:
        raise IngestError(
            408, "body_timeout", f"the request body did not arrive within {seconds:g} s"
        ) from None


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
    if not router.snapshot.synced:
        return error_response(
            IngestError(503, "not_ready", "the router has not synced yet", retry_after=1),
            correlation_id,
        )
    state = router.snapshot.get(namespace)
    source = state.sources.get(source_name) if state else None
    if state is not None and source is not None:
        router.metrics.source(namespace, source_name).received.inc()
        router.counters.of(namespace, source_name).received += 1
    try:
        # Read (and bound) the body before looking at the source: the answer to an
        # oversized or slow body must be the same whether the source exists or not.
        body = await read_body(request, router.max_body_bytes, router.body_timeout)
        if state is None or source is None:
            raise Unauthenticated("unknown_source", "no such AlertSource")
        return await _accept(request, router, state, source, body, correlation_id)
    except IngestError as error:
        return _refused(router, error, namespace, source_name, correlation_id, known=source)


def _refused(
    router: Router,
    error: IngestError,
    namespace: str,
    source_name: str,
    correlation_id: str,
    *,
    known: Source | None,
) -> web.Response:
    reason = error.reason if isinstance(error, Unauthenticated) else error.code
    detail = error.detail if isinstance(error, Unauthenticated) else error.message
    extra = {
        "correlationId": correlation_id,
        "namespace": namespace,
        "source": source_name,
        "status": error.status,
        "error": reason,
        "reason": detail,
    }
    if known is None:
        # Unbounded label values (and log lines) from whoever probes for names: the
        # metric counts them under "-", the log only at DEBUG.
        router.metrics.rejected.labels(UNKNOWN, UNKNOWN, reason).inc()
        logger.debug("alert refused", extra=extra)
    else:
        router.counters.of(namespace, source_name).rejected += 1
        router.metrics.rejected.labels(namespace, source_name, reason).inc()
        logger.info("alert refused", extra=extra)
    return error_response(error, correlation_id)


def _authenticate(
    request: web.Request, router: Router, source: Source, body: bytes, now: float
) -> bytes | None:
    """The replay-cache key reserved, if any; `Unauthenticated` for every refusal."""
    if source.problem is not None or source.spec is None:
        # No usable spec or credentials: nobody can authenticate. The reason (which
        # Secret, which field) is on the AlertSource's status and in the log.
        raise Unauthenticated("source_not_ready", source.problem or "no valid spec")
    try:
        return auth.authenticate(
            source.spec.auth,
            source.credentials,
            request.headers,
            body,
            now=now,
            replay_cache=router.replay_cache,
            path=http.ingest_path(source.namespace, source.name),
            method=request.method,
        )
    except IngestError as error:  # 401/403, or 503 for credentials not available
        raise Unauthenticated(error.code, error.message) from None


async def _accept(
    request: web.Request,
    router: Router,
    state: NamespaceState,
    source: Source,
    body: bytes,
    correlation_id: str,
) -> web.Response:
    now = router.clock()
    replay_key = _authenticate(request, router, source, body, now)
    try:
        assert source.spec is not None  # _authenticate refuses a source without one
        if source.spec.suspend:
            raise IngestError(
                503,
                "source_suspended",
                "the source is suspended",
                retry_after=SUSPENDED_RETRY_AFTER,
            )
        hmac_auth = source.spec.auth.hmac
        if router.durable is not None and replay_key is not None and hmac_auth is not None:
            window = hmac_auth.replay_window_seconds
            if not await durable.first_use(router.durable, replay_key, window):
                # Another replica took it: the same uniform refusal as a local replay.
                raise Unauthenticated("replayed", "the signature was already used")
        return await _process(router, state, source, body, now, correlation_id)
    except IngestError:
        # A refused or failed request releases its signature, so the sender may retry
        # the very same signed request.
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
        alert = normalizers.build_alert(
            spec.format.value,
            payload,
            alert_id=alert_id,
            tenant=namespace,
            received_at=datetime.fromtimestamp(now, UTC),
        )
    except normalizers.NormalizeError as exc:
        raise IngestError(400, "invalid_alert", str(exc)) from None
    if router.durable is not None:
        return await _process_durably(router, state, source, alert, alert_id, now, correlation_id)
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


async def _process_durably(
    router: Router,
    state: NamespaceState,
    source: Source,
    alert: Any,
    alert_id: str,
    now: float,
    correlation_id: str,
) -> web.Response:
    """The alert and its runs committed, then 202 (durable.py); dedup, rate limits and
    the replay cache hold across replicas there."""
    assert source.spec is not None and router.durable is not None
    spec = source.spec
    namespace, name = source.namespace, source.name
    limit = spec.rate_limit
    if limit is not None:
        scope = f"{namespace}/{name}"
        await durable.check_rate(
            router.durable, scope, limit.requests_per_second, limit.effective_burst
        )
    match_view = alert.as_match_dict()
    key = None
    if spec.dedup.window_seconds > 0:
        key = dedup_key(f"{namespace}/{name}", match_view, spec.dedup.paths)
    matches = state.index.match(match_view)
    answer = await durable.accept(
        router.durable,
        namespace=namespace,
        source=name,
        alert_id=alert_id,
        alert=alert.model_dump(mode="json"),
        correlation_id=correlation_id,
        dedup_key=key,
        dedup_window_seconds=float(spec.dedup.window_seconds),
        matches=matches,
        max_attempts=state.max_attempts,
    )
    counts = router.counters.of(namespace, name)
    if answer.duplicate:
        router.metrics.source(namespace, name).duplicates.inc()
        counts.duplicates += 1
    else:
        router.metrics.source(namespace, name).matched.inc(len(matches))
        counts.accepted += 1
        counts.last_alert_time = now
    return _json(answer, 202, {CORRELATION_HEADER: correlation_id})


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
        token = ""
        if router.caller_key is not None:
            token = caller.caller_token(router.caller_key, namespace, match.playbook)
            key = caller.secret_idempotency_key(token, key)
        body = http.encode_run_request(
            key=key, correlation_id=correlation_id, entries=match.entries, alert_json=alert_json
        )
        result = await deliverer.deliver(
            namespace=namespace,
            playbook=match.playbook,
            endpoints=state.endpoints.get(match.playbook, ()),
            body=body,
            correlation_id=correlation_id,
            key=key,
            token=token,
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
    answer = http.IngestAccepted(
        alert_id=alert_id,
        correlation_id=correlation_id,
        deliveries=[http.Delivery(playbook=r.playbook, run_id=r.run_id) for r in results],
        duplicate=duplicate,
    )
    return _json(answer, 202, {CORRELATION_HEADER: correlation_id})


def _json(model: BaseModel, status: int, headers: dict[str, str]) -> web.Response:
    return web.Response(
        body=model.model_dump_json(by_alias=True),
        status=status,
        headers=headers,
        content_type="application/json",
    )
