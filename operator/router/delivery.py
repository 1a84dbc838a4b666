"""Delivering an alert to a Playbook's runtime pods: `POST /v1/runs`.

aiohttp's client with a pooled connector (see DESIGN.md, Measured decisions: httpx
could not hold the ingest rate). Endpoints are taken round-robin per Playbook; a
connection error, a timeout, a 5xx or a 429 (queue full) moves on to the next
endpoint. The idempotency key depends only on the alert id and the Playbook, so a
retried delivery (here or after the sender retries a 503) is run at most once by
a runtime that already accepted it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubesoar.operator.router.snapshot import Endpoint

logger = logging.getLogger("kubesoar.router")

RUNS_PATH = "/v1/runs"
MAX_ATTEMPTS = 3
MAX_ANSWER_BYTES = 64 * 1024


def idempotency_key(alert_id: str, namespace: str, playbook: str) -> str:
    digest = hashlib.sha256(f"{alert_id}\0{namespace}\0{playbook}".encode()).hexdigest()
    return f"{alert_id}:{digest[:16]}"


def run_request_body(
    *, key: str, correlation_id: str, entries: Sequence[str], alert_json: bytes
) -> bytes:
    """The `POST /v1/runs` body, with the alert's JSON serialised once per alert."""
    head = json.dumps(
        {"idempotencyKey": key, "correlationId": correlation_id, "playbooks": list(entries)},
        separators=(",", ":"),
    )
    return head[:-1].encode() + b',"alert":' + alert_json + b"}"


@dataclass(frozen=True)
class DeliveryResult:
    playbook: str
    run_id: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.run_id is not None


class Deliverer:
    def __init__(self, session: aiohttp.ClientSession, *, max_attempts: int = MAX_ATTEMPTS):
        self._session = session
        self._max_attempts = max_attempts
        self._turns: dict[tuple[str, str], itertools.count[int]] = {}

    def _start(self, namespace: str, playbook: str) -> int:
        turn = self._turns.get((namespace, playbook))
        if turn is None:
            turn = self._turns[(namespace, playbook)] = itertools.count()
        return next(turn)

    async def deliver(
        self,
        *,
        namespace: str,
        playbook: str,
        endpoints: Sequence[Endpoint],
        body: bytes,
        correlation_id: str,
    ) -> DeliveryResult:
        if not endpoints:
            return DeliveryResult(playbook, error="no ready runtime endpoint")
        start = self._start(namespace, playbook)
        attempts = min(self._max_attempts, len(endpoints))
        last_error = "not attempted"
        for attempt in range(attempts):
            endpoint = endpoints[(start + attempt) % len(endpoints)]
            outcome = await self._post(endpoint, body)
            if isinstance(outcome, str):
                last_error = outcome
                logger.warning(
                    "delivery attempt failed",
                    extra={
                        "correlationId": correlation_id,
                        "namespace": namespace,
                        "playbook": playbook,
                        "endpoint": endpoint.url,
                        "reason": outcome,
                    },
                )
                continue
            return DeliveryResult(playbook, run_id=outcome["runId"])
        return DeliveryResult(playbook, error=last_error)

    async def _post(self, endpoint: Endpoint, body: bytes) -> dict[str, Any] | str:
        """The runtime's answer, or why this endpoint could not take the alert."""
        try:
            async with self._session.post(
                endpoint.url + RUNS_PATH,
                data=body,
                headers={"Content-Type": "application/json"},
            ) as response:
                raw = await response.content.read(MAX_ANSWER_BYTES)
                if response.status >= 300:
                    return f"runtime answered {response.status}"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        try:
            answer = json.loads(raw)
        except ValueError:
            return "runtime answered with invalid JSON"
        if not isinstance(answer, dict) or not isinstance(answer.get("runId"), str):
            return "runtime answer has no runId"
        return answer


def make_session(
    *, connections: int = 256, connect_timeout: float = 1.0, total_timeout: float = 10.0
) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=64, keepalive_timeout=30)
    timeout = aiohttp.ClientTimeout(total=total_timeout, sock_connect=connect_timeout)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, raise_for_status=False)
