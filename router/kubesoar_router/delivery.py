"""Delivering an alert to a Playbook's runtime pods: `POST /v1/runs`.

aiohttp's client with a pooled keep-alive connector (measured: httpx could not hold
the ingest rate; bench/README.md). The idempotency key depends only on the alert id,
the Playbook and the Playbook's caller token (so nobody without the token can compute
it), so every delivery of one alert to one Playbook,
by this router or after the sender retries a 503, carries the same key, and a
runtime that already accepted that key answers with its first run instead of
running it again. Idempotency keys are remembered per runtime pod, so where a
retry goes decides whether it can run twice. Each attempt ends in one of three
outcomes:

- accepted: a 2xx with a `runId`. Done.
- refused, definitely not accepted: the connection could not be made (nothing was
  sent), or the runtime answered 429 (queue full), 503 (draining, not loaded) or
  another 4xx or 3xx (the runtime refuses before it remembers a key). The next
  endpoint is tried at once: nothing can run twice.
- ambiguous, maybe accepted: the request was sent but no usable answer came back
  (read timeout, connection reset or closed after sending, a 5xx other than
  503, a 2xx without a `runId`). The SAME endpoint is retried with the same
  body (`same_endpoint_retries`): if it had accepted, it replays the first
  answer. Only when that endpoint turns out gone (the retry cannot connect) or
  refuses the retry (which proves the first attempt was not accepted, since a
  runtime checks the key before its queue or draining state) does delivery move
  on to another endpoint. If it is still unsure after the retries, delivery stops
  there: the router answers 503, and remembers (`pinned`) which endpoint the key
  was last sent to, so the sender's retry of the same alert goes to that
  endpoint first and gets its replay rather than a second run elsewhere. When the
  router answers 503 because another Playbook's delivery failed, the keys that were
  accepted are pinned the same way (`pin`, called by the ingest handler).

The guarantees this gives the sender are in docs/reference/alertsource.md
("Delivery").
"""

from __future__ import annotations

import asyncio
import enum
import functools
import hashlib
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import aiohttp
from kubesoar._expiring import ExpiringMap
from kubesoar.contracts import caller, http
from multidict import CIMultiDict
from pydantic import ValidationError
from yarl import URL

from kubesoar_router.snapshot import Endpoint

logger = logging.getLogger("kubesoar.router")

MAX_ATTEMPTS = 3
MAX_ANSWER_BYTES = 64 * 1024
_HEADERS: Final = CIMultiDict({"Content-Type": "application/json"})


def idempotency_key(alert_id: str, namespace: str, playbook: str) -> str:
    digest = hashlib.sha256(f"{alert_id}\0{namespace}\0{playbook}".encode()).hexdigest()
    return f"{alert_id}:{digest[:16]}"


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    REFUSED = "refused"  # definitely not accepted: another endpoint may take it
    AMBIGUOUS = "ambiguous"  # maybe accepted: only this endpoint's replay can tell


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    reason: str = ""
    run_id: str | None = None


@dataclass(frozen=True)
class DeliveryPolicy:
    """Timeouts and retries of one delivery (one alert to one Playbook)."""

    # The runtime answers from memory (admission is synchronous), so a few seconds
    # without an answer means it is stuck, not busy.
    attempt_timeout: float = 3.0
    connect_timeout: float = 1.0
    # Endpoints tried, one after the other, while they refuse.
    max_endpoints: int = MAX_ATTEMPTS
    # Retries on the same endpoint after an ambiguous attempt, and the pause before each.
    same_endpoint_retries: int = 1
    retry_pause: float = 0.1
    # Keys left unsure (answered 503) and the endpoint they were last sent to.
    pinned_keys: int = 10_000
    pinned_seconds: float = 600.0


@dataclass(frozen=True)
class DeliveryResult:
    playbook: str
    run_id: str | None = None
    error: str | None = None
    # Where it was accepted, and with which key (see `Deliverer.pin`).
    endpoint: Endpoint | None = None
    key: str | None = None

    @property
    def ok(self) -> bool:
        return self.run_id is not None


@functools.lru_cache(maxsize=4096)
def affinity(key: str, endpoint: Endpoint) -> bytes:
    """Rendezvous hashing: the endpoints of a key in an order every router replica agrees on.

    Keys are unique per alert and Playbook, so alerts still spread evenly over the pods.
    But a sender's retry of the same alert, through any router replica, tries the same
    pod first, which holds the key if an earlier attempt was accepted unseen (a timeout
    after sending) and answers with its replay instead of a second run elsewhere. Only a
    change of the ready endpoints between the attempts moves a key.
    """
    seed = f"{key}\0{endpoint.address}:{endpoint.port}".encode()
    return hashlib.blake2b(seed, digest_size=8).digest()


def _runs_url(endpoint: Endpoint) -> URL:
    # A parsed URL per endpoint, not a string parsed again on every request.
    return URL(endpoint.url + http.RUNS_PATH)


class Deliverer:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        policy: DeliveryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.policy = policy or DeliveryPolicy()
        self._session = session
        # A connect that fails or times out (`sock_connect`) sent nothing: refused. The
        # wait for a free pooled connection is bounded only by `total`, which counts as
        # ambiguous: a busy pool does not prove the endpoint gone.
        self._timeout = aiohttp.ClientTimeout(
            total=self.policy.connect_timeout + 2 * self.policy.attempt_timeout,
            connect=None,
            sock_connect=self.policy.connect_timeout,
            sock_read=self.policy.attempt_timeout,
        )
        self._turns: dict[tuple[str, str], itertools.count[int]] = {}
        self._pinned: ExpiringMap[str, Endpoint] = ExpiringMap(self.policy.pinned_keys)
        self._clock = clock

    def _start(self, namespace: str, playbook: str) -> int:
        turn = self._turns.get((namespace, playbook))
        if turn is None:
            turn = self._turns[(namespace, playbook)] = itertools.count()
        return next(turn)

    def pinned(self, key: str) -> Endpoint | None:
        """The endpoint an unsure delivery of `key` was last sent to, if remembered."""
        return self._pinned.get(key, self._clock())

    def pin(self, key: str, endpoint: Endpoint) -> None:
        """Send the next delivery of `key` to `endpoint` first: for a key left unsure, and
        for a key one pod accepted while another Playbook's delivery of the same alert
        failed (the router answers 503, and the sender's retry must find that pod's replay,
        not a second run on another pod of the Playbook)."""
        now = self._clock()
        self._pinned.put(key, endpoint, expires_at=now + self.policy.pinned_seconds, now=now)

    def _order(
        self, namespace: str, playbook: str, endpoints: Sequence[Endpoint], key: str | None
    ) -> list[Endpoint]:
        if key is None:
            start = self._start(namespace, playbook)
            count = len(endpoints)
            order = [endpoints[(start + i) % count] for i in range(count)]
        else:
            order = sorted(endpoints, key=lambda endpoint: affinity(key, endpoint))
        pinned = self.pinned(key) if key is not None and self._pinned else None
        if pinned is not None and pinned in order:
            order.remove(pinned)
            order.insert(0, pinned)
        return order[: self.policy.max_endpoints]

    async def deliver(
        self,
        *,
        namespace: str,
        playbook: str,
        endpoints: Sequence[Endpoint],
        body: bytes,
        correlation_id: str,
        key: str | None = None,
        token: str = "",
    ) -> DeliveryResult:
        """`token` is the Playbook's caller token (`contracts.caller`), sent on every attempt."""
        if not endpoints:
            return DeliveryResult(playbook, error="no ready runtime endpoint")
        last_error = "not attempted"
        for endpoint in self._order(namespace, playbook, endpoints, key):
            attempt = await self._post(endpoint, body, token)
            retries = 0
            while (
                attempt.outcome is Outcome.AMBIGUOUS and retries < self.policy.same_endpoint_retries
            ):
                retries += 1
                self._log_attempt(
                    namespace, playbook, endpoint, attempt, correlation_id, "retrying it"
                )
                await asyncio.sleep(self.policy.retry_pause)
                retry = await self._post(endpoint, body, token)
                # A refusal after an ambiguous attempt: the endpoint did not keep the key
                # (a runtime checks keys before its queue), or it is gone. Either way
                # another endpoint is next; say what happened first.
                if retry.outcome is Outcome.REFUSED:
                    attempt = Attempt(Outcome.REFUSED, f"{attempt.reason}, then {retry.reason}")
                else:
                    attempt = retry
            if attempt.outcome is Outcome.ACCEPTED:
                if key is not None and self._pinned:
                    self._pinned.discard(key)
                return DeliveryResult(playbook, run_id=attempt.run_id, endpoint=endpoint, key=key)
            if attempt.outcome is Outcome.AMBIGUOUS:
                # Sending it elsewhere could run it twice: stop, answer 503, and send the
                # sender's retry here first.
                if key is not None:
                    self.pin(key, endpoint)
                self._log_attempt(
                    namespace, playbook, endpoint, attempt, correlation_id, "giving up"
                )
                return DeliveryResult(
                    playbook,
                    error=f"a runtime pod may have accepted it ({attempt.reason}); "
                    "a retry of the same alert is sent there first",
                )
            last_error = attempt.reason
            self._log_attempt(
                namespace, playbook, endpoint, attempt, correlation_id, "next endpoint"
            )
        return DeliveryResult(playbook, error=last_error)

    def _log_attempt(
        self,
        namespace: str,
        playbook: str,
        endpoint: Endpoint,
        attempt: Attempt,
        correlation_id: str,
        then: str,
    ) -> None:
        logger.warning(
            "delivery attempt %s: %s",
            attempt.outcome.value,
            then,
            extra={
                "correlationId": correlation_id,
                "namespace": namespace,
                "playbook": playbook,
                "endpoint": endpoint.url,
                "reason": attempt.reason,
            },
        )

    async def _post(self, endpoint: Endpoint, body: bytes, token: str = "") -> Attempt:
        """One attempt: the runtime's answer, classified."""
        headers = _HEADERS
        if token:
            headers = CIMultiDict(_HEADERS)
            headers["Authorization"] = caller.authorization(token)
        try:
            async with self._session.post(
                _runs_url(endpoint),
                data=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                status = response.status
                raw = await response.content.read(MAX_ANSWER_BYTES)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # No connection, so nothing was sent.
            return Attempt(Outcome.REFUSED, _describe(exc))
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            # Sent (or partly sent), no answer: the runtime may have accepted it.
            return Attempt(Outcome.AMBIGUOUS, _describe(exc))
        if status >= 300:
            if status >= 500 and status != 503:
                return Attempt(Outcome.AMBIGUOUS, f"runtime answered {status}")
            return Attempt(Outcome.REFUSED, f"runtime answered {status}")
        try:
            answer = http.RunAccepted.model_validate_json(raw)
        except ValidationError:
            return Attempt(Outcome.AMBIGUOUS, f"runtime answered {status} without a RunAccepted")
        if answer.run_id is None:
            return Attempt(Outcome.AMBIGUOUS, f"runtime answered {status} without a runId")
        return Attempt(Outcome.ACCEPTED, run_id=answer.run_id)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:300]


def make_session(*, connections: int = 256, per_host: int = 64) -> aiohttp.ClientSession:
    """The delivery client: keep-alive connections pooled per runtime endpoint. Timeouts
    are per attempt (`DeliveryPolicy`), given with each request."""
    connector = aiohttp.TCPConnector(
        limit=connections, limit_per_host=per_host, keepalive_timeout=30
    )
    return aiohttp.ClientSession(connector=connector, raise_for_status=False)
