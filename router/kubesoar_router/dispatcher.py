"""The dispatcher: queued runs in the system of record → ready runtime pods.

Every router replica runs one. They coordinate only through the database: a run is
leased (`store.dispatch.claim`, `FOR UPDATE SKIP LOCKED`) to one replica at a time with
a fresh per-run token, and the pod that takes it reports to whichever replica its
`report.url` names (`callbacks.py`), extending the lease with heartbeats.

One tick:
1. every `expire_every` seconds, runs whose lease ran out are requeued with
   `attempt + 1`, or end `dead` after `max_attempts` (`store.dispatch.expire_leases`),
   and approvals nobody decided in time are denied as Expired, their runs queued again
   (`store.approvals.expire_approvals`);
2. the queue depth per Playbook is read (ingest refuses with 429 above
   `max_queued_per_playbook`, from this cached view);
3. for each Playbook with queued runs and ready endpoints in the snapshot, up to
   `claim_batch` runs are claimed and each is POSTed to one of its pods — without
   waiting for the answers: the next tick claims more while those POSTs are in flight,
   up to `max_in_flight` per Playbook (a slow pod holds back its own Playbook, never
   the others, and never the next claim of a fast one).

What a pod's answer means for the lease:
- 202 with the run id: the pod has it; the lease stays, the pod heartbeats.
- refused (no connection, 429 busy, 503 draining): the next endpoint is tried; when
  none takes it the run is handed back (`release`, same attempt) to wait in the queue.
  A busy pod is no longer an error for the sender: the run waits.
- maybe accepted (sent, no usable answer): the lease is kept. If the pod has the run it
  reports it; if not, the lease runs out and the run is redelivered, `attempt + 1`.
- refused for good (400, 404, 413: the pod cannot run this request): the run ends
  `failed` with the pod's reason, so it is not retried forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
import asyncpg
from kubesoar.contracts import caller, http
from kubesoar_store import (
    ClaimedRun,
    RunRecord,
    StoreError,
    approvals,
    dispatch,
    journal,
    replicas,
)
from kubesoar_store.errors import unavailable
from multidict import CIMultiDict
from pydantic import ValidationError
from yarl import URL

from kubesoar_router.delivery import affinity
from kubesoar_router.metrics import RouterMetrics
from kubesoar_router.snapshot import Endpoint, Snapshot

logger = logging.getLogger("kubesoar.router.dispatcher")

MAX_ANSWER_BYTES = 64 * 1024
QUEUED_TOTALS = """
SELECT namespace, playbook, count(*) AS queued
FROM runs WHERE status = 'queued'
GROUP BY namespace, playbook
"""


@dataclass
class DispatchPolicy:
    lease_seconds: float = 30.0
    """How long a pod has to heartbeat or report before the run is redelivered."""
    claim_batch: int = 32
    """Runs claimed per Playbook per tick."""
    busy_backoff_seconds: float = 0.5
    """How long a run handed back because every pod was busy waits before the next try."""
    idle_interval: float = 0.2
    """Pause between ticks that found nothing to do."""
    expire_every: float = 1.0
    announce_every: float = 5.0
    """How often this replica tells the others (through the database) where pods reach it."""
    connect_timeout: float = 1.0
    answer_timeout: float = 3.0
    max_endpoints: int = 3
    """Pods tried for one run in one tick."""
    max_in_flight: int = 64
    """Runs of one Playbook being POSTed at once (claimed, answer not yet in)."""


@dataclass(frozen=True)
class _Outcome:
    kind: str  # "accepted", "refused", "maybe", "rejected"
    reason: str = ""


@dataclass
class Dispatcher:
    pool: asyncpg.Pool
    snapshot: Snapshot
    session: aiohttp.ClientSession
    report_url: str
    """This replica's base URL as runtime pods reach it (`--advertise-url`)."""
    owner: str = field(default_factory=lambda: f"router-{uuid.uuid4().hex[:12]}")
    caller_key: bytes | None = None
    policy: DispatchPolicy = field(default_factory=DispatchPolicy)
    clock: Callable[[], float] = time.monotonic
    metrics: RouterMetrics = field(default_factory=RouterMetrics)
    queued: dict[tuple[str, str], int] = field(default_factory=dict)
    """Queue depth per (namespace, Playbook) as of the last tick (ingest's 429 check)."""
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _last_expiry: float = 0.0
    _last_announce: float = float("-inf")
    _peers: list[str] = field(default_factory=list)
    _in_flight: dict[tuple[str, str], set[asyncio.Task[None]]] = field(default_factory=dict)

    async def leave(self) -> None:
        """Stop being offered to pods as a report target (a clean shutdown)."""
        try:
            await replicas.forget(self.pool, self.owner)
        except StoreError as exc:
            logger.warning("could not deregister this router replica: %s", exc)

    def wake(self) -> None:
        """Ingest committed new runs: do not wait for the idle interval."""
        self._wake.set()

    async def run(self) -> None:
        try:
            await self._loop()
        finally:
            # Runs whose POST was cut short keep their leases: the pod may have them; if
            # not, the lease runs out and they are redelivered.
            for sending in self._in_flight.values():
                for task in sending:
                    task.cancel()

    async def _loop(self) -> None:
        while True:
            try:
                busy = await self.tick()
            except StoreError as exc:
                logger.warning("dispatch tick failed: %s", exc)
                busy = False
            except Exception:  # a bug must not stop dispatching for good
                logger.exception("dispatch tick crashed")
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.policy.idle_interval):
                        await self._wake.wait()
                self._wake.clear()

    async def tick(self) -> bool:
        """One round; True when it dispatched something (so the next round comes at once)."""
        now = self.clock()
        if now - self._last_announce >= self.policy.announce_every:
            self._last_announce = now
            await replicas.announce(self.pool, self.owner, self.report_url)
            self._peers = await replicas.live_peers(
                self.pool, self.owner, within_seconds=3 * self.policy.announce_every
            )
        if now - self._last_expiry >= self.policy.expire_every:
            self._last_expiry = now
            for expired in await dispatch.expire_leases(self.pool):
                counter = (
                    self.metrics.runs_dead
                    if expired.status == "dead"
                    else self.metrics.runs_redelivered
                )
                counter.labels(expired.namespace, expired.playbook).inc()
                log = logger.warning if expired.status == "dead" else logger.info
                log(
                    "lease of run %s ran out: %s (attempt %d)%s",
                    expired.id,
                    expired.status,
                    expired.attempt,
                    f": {expired.reason}" if expired.reason else "",
                    extra={"namespace": expired.namespace, "playbook": expired.playbook},
                )
            for decided in await approvals.expire_approvals(self.pool):
                self.metrics.approvals_expired.labels(decided.namespace, decided.playbook).inc()
                logger.info(
                    "approval of run %s expired undecided: denied",
                    decided.id,
                    extra={"namespace": decided.namespace, "playbook": decided.playbook},
                )
        with unavailable("reading queue depths"):
            rows = await self.pool.fetch(QUEUED_TOTALS)
        queued = {(r["namespace"], r["playbook"]): r["queued"] for r in rows}
        for gone in self.queued.keys() - queued.keys():
            self.metrics.runs_queued.labels(*gone).set(0)
        for (namespace, playbook), depth in queued.items():
            self.metrics.runs_queued.labels(namespace, playbook).set(depth)
        self.queued = queued
        dispatched = False
        for key, _ in sorted(self.queued.items()):
            namespace, playbook = key
            state = self.snapshot.get(namespace)
            endpoints = state.endpoints.get(playbook, ()) if state else ()
            if not endpoints:
                continue  # no ready pod: the runs wait in the database
            sending = self._in_flight.setdefault(key, set())
            room = min(self.policy.claim_batch, self.policy.max_in_flight - len(sending))
            if room <= 0:
                continue  # its pods have enough to answer; a finished POST wakes the loop
            claimed = await dispatch.claim(
                self.pool,
                self.owner,
                limit=room,
                lease_seconds=self.policy.lease_seconds,
                namespaces=[namespace],
                playbook=playbook,
            )
            for run in claimed:
                task = asyncio.create_task(self._send(run, endpoints), name=f"send-{run.id}")
                sending.add(task)
                task.add_done_callback(self._sent(sending))
            dispatched = dispatched or bool(claimed)
        return dispatched

    def _sent(self, sending: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            sending.discard(task)
            if not task.cancelled() and task.exception() is not None:
                logger.error("sending a run crashed", exc_info=task.exception())
            self._wake.set()  # room for more of this Playbook

        return done

    # --- one run ------------------------------------------------------------------
    async def _send(self, run: ClaimedRun, endpoints: Sequence[Endpoint]) -> None:
        token = ""
        key = run.idempotency_key
        if run.resumes:
            # A continuation after an approval: a new request, not a repeat of the last.
            key = f"{key}#resume-{run.resumes}"
        if self.caller_key is not None:
            token = caller.caller_token(self.caller_key, run.namespace, run.playbook)
            # As for direct delivery: a key nobody without the token can compute.
            key = caller.secret_idempotency_key(token, key)
        body = await self._request_body(run, key)
        order = sorted(endpoints, key=lambda e: affinity(run.idempotency_key, e))
        reasons = []
        for endpoint in order[: self.policy.max_endpoints]:
            outcome = await self._post(endpoint, body, token, str(run.id))
            if outcome.kind == "accepted":
                self.metrics.runs_dispatched.labels(run.namespace, run.playbook).inc()
                return
            if outcome.kind == "maybe":
                # The pod may be running it: keep the lease, let the pod's report (or the
                # lease's end) decide. Sending it elsewhere could run it twice.
                logger.warning(
                    "run %s maybe accepted by %s (%s); its lease decides",
                    run.id,
                    endpoint.url,
                    outcome.reason,
                )
                return
            if outcome.kind == "rejected":
                await self._fail(run, f"the runtime refused the run: {outcome.reason}")
                return
            reasons.append(f"{endpoint.url}: {outcome.reason}")
        logger.info("run %s waits: %s", run.id, "; ".join(reasons))
        try:
            await dispatch.release(
                self.pool, run.id, run.token, delay_seconds=self.policy.busy_backoff_seconds
            )
        except StoreError as exc:
            logger.warning("could not hand run %s back (its lease will): %s", run.id, exc)

    async def _request_body(self, run: ClaimedRun, idempotency_key: str) -> bytes:
        # A first attempt that never waited has no journal: one query saved per run.
        resumed = run.attempt > 1 or run.resumes > 0
        recorded = await journal.entries(self.pool, run.id) if resumed else []
        entries = [
            http.JournalEntry(seq=e.seq, action=e.action, status=e.status, result=e.result)
            for e in recorded
            if e.status == "succeeded"
        ]
        request = http.RunRequest(
            idempotency_key=idempotency_key,
            correlation_id=run.correlation_id,
            playbooks=list(run.entry_points) or None,
            alert=dict(run.alert),
            run_id=str(run.id),
            attempt=run.attempt,
            report=http.ReportTo(
                url=self.report_url,
                fallback_urls=self._peers,
                token=run.token,
                # Three heartbeats per lease: one lost request does not lose the run.
                heartbeat_seconds=self.policy.lease_seconds / 3,
            ),
            journal=entries,
        )
        return request.model_dump_json(by_alias=True).encode()

    async def _post(self, endpoint: Endpoint, body: bytes, token: str, run_id: str) -> _Outcome:
        headers = CIMultiDict({"Content-Type": "application/json"})
        if token:
            headers["Authorization"] = caller.authorization(token)
        timeout = aiohttp.ClientTimeout(
            total=self.policy.connect_timeout + 2 * self.policy.answer_timeout,
            sock_connect=self.policy.connect_timeout,
            sock_read=self.policy.answer_timeout,
        )
        try:
            async with self.session.post(
                URL(endpoint.url + http.RUNS_PATH),
                data=body,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                status = response.status
                raw = await response.content.read(MAX_ANSWER_BYTES)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            return _Outcome("refused", type(exc).__name__)  # nothing was sent
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return _Outcome("maybe", type(exc).__name__)
        if status in (401, 429, 503):
            return _Outcome("refused", f"HTTP {status}")
        if status in (400, 404, 413):
            return _Outcome("rejected", f"HTTP {status}: {_error_text(raw)}")
        if status >= 300:
            return _Outcome("maybe", f"HTTP {status}")
        try:
            answer = http.RunAccepted.model_validate_json(raw)
        except ValidationError:
            return _Outcome("maybe", f"HTTP {status} without a RunAccepted")
        if answer.run_id != run_id:
            return _Outcome("maybe", f"HTTP {status} for run {answer.run_id}, not {run_id}")
        return _Outcome("accepted")

    async def _fail(self, run: ClaimedRun, error: str) -> None:
        logger.warning("run %s failed: %s", run.id, error)
        try:
            await dispatch.complete(
                self.pool, run.id, run.token, RunRecord(status="failed", error=error)
            )
        except StoreError as exc:
            logger.warning("could not record run %s as failed: %s", run.id, exc)


def _error_text(raw: bytes) -> str:
    try:
        body = http.ErrorBody.model_validate_json(raw)
    except ValidationError:
        return "no error body"
    return f"{body.error}: {body.message}"[:300]
