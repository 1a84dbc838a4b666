"""The runtime's core, independent of HTTP: admission (idempotency,
readiness, a bounded queue), a pool of workers, the report, and draining."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from kubesoar._alert import Alert
from kubesoar._engine import Engine, Run
from kubesoar._idempotency import IdempotencyCache
from kubesoar._loader import LoadedModule
from kubesoar._metrics import RuntimeMetrics
from kubesoar._settings import RuntimeSettings
from kubesoar.contracts import http

if TYPE_CHECKING:  # httpx is imported by the first run that makes a call
    import httpx

__all__ = ["NotAccepting", "QueueFull", "RuntimeService"]

log = logging.getLogger("kubesoar.runtime")


class NotAccepting(Exception):
    """The runtime cannot take runs now (module not loaded, or draining)."""


class QueueFull(Exception):
    """Every queue slot is taken; the sender should try again or elsewhere."""


class RuntimeService:
    def __init__(
        self,
        loaded: LoadedModule,
        settings: RuntimeSettings,
        *,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.loaded = loaded
        self.settings = settings
        self.metrics = RuntimeMetrics()
        self.metrics.loaded.set(1 if loaded.ok else 0)
        self.engine = Engine(
            loaded.entry_points,
            default_timeout=settings.timeout_seconds,
            secrets_dir=settings.secrets_dir,
            http_transport=http_transport,
            history=settings.history,
            on_finished=self._observe,
        )
        self.idempotency = IdempotencyCache()
        self.draining = False
        # Unbounded as an asyncio.Queue (whose maxsize 0 would mean "no bound"); the
        # bound is `queue_size` runs waiting beyond the idle workers (`_would_wait`).
        self._queue: asyncio.Queue[Run] = asyncio.Queue()
        self._idle_workers = 0
        self._workers: list[asyncio.Task[None]] = []
        self._runs_by_status: dict[str, Any] = {}

    @property
    def ready(self) -> bool:
        return self.loaded.ok and not self.draining

    def start(self) -> None:
        for index in range(self.settings.concurrency):
            self._workers.append(asyncio.create_task(self._work(), name=f"kubesoar-worker-{index}"))

    def submit(
        self,
        *,
        idempotency_key: str,
        alert: Alert,
        playbooks: list[str] | None,
        correlation_id: str | None,
        dispatched: http.RunRequest | None = None,
    ) -> tuple[int, http.RunAccepted]:
        """Admit a run; returns (status, body) of the answer to give.

        Synchronous on purpose: with no await between the idempotency check
        and the enqueue, two concurrent deliveries of one key cannot both run.
        Raises NotAccepting, QueueFull, or UnknownEntryPoints (a ValueError).
        `dispatched` is the request of a run from the system of record (it has a run id
        and says where to report); such a run is created even when no entry point
        matches any more, so its (empty) record reaches the router.
        """
        cache_key = idempotency_key
        if dispatched is not None and dispatched.run_id is not None:
            # A redelivery (attempt + 1) is a new attempt even on the pod that had the
            # first: its lease ran out because that attempt's reports never arrived, so
            # answering with the old run would leave nobody to report this one. The
            # journal keeps completed actions from running again; a repeat of the same
            # attempt (a dispatcher's retry after no answer) still replays.
            cache_key = f"{idempotency_key}#attempt-{dispatched.attempt}"
        replay = self.idempotency.get(cache_key)
        if replay is not None:
            status, (run_id, accepted) = replay
            return status, http.RunAccepted(run_id=run_id, accepted=list(accepted))
        if not self.loaded.ok:
            raise NotAccepting("the playbook module is not loaded")
        if self.draining:
            raise NotAccepting("the runtime is shutting down")
        entry_points = self.engine.select(alert, playbooks)
        answer = http.RunAccepted(run_id=None, accepted=[])
        if entry_points or (dispatched is not None and dispatched.run_id is not None):
            if self._would_wait() > self.settings.queue_size:
                raise QueueFull(f"{self.settings.queue_size} runs are already waiting")
            run = self.engine.create_run(
                alert,
                entry_points,
                correlation_id=correlation_id,
                idempotency_key=idempotency_key,
                **_dispatch_fields(dispatched),
            )
            self._queue.put_nowait(run)
            # The lease is kept while the run waits in this queue, not only once it runs.
            self.engine.keep_lease(run)
            self.metrics.queue_depth.set(self._queue.qsize())
            answer = http.RunAccepted(
                run_id=run.id, accepted=[entry.name for entry in entry_points]
            )
            # One line per run is too many at the ingest rate: DEBUG (lazy, so
            # nothing is formatted below the level); failures are logged by the engine.
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "accepted run %s for %s (correlation %s)",
                    run.id,
                    ",".join(answer.accepted),
                    run.correlation_id,
                )
        # Compact (run id, names): the cache holds tens of thousands of answers.
        self.idempotency.put(cache_key, 202, (answer.run_id, tuple(answer.accepted)))
        return 202, answer

    def _would_wait(self) -> int:
        """Runs that would wait for a worker if one more were admitted."""
        return max(0, self._queue.qsize() + 1 - self._idle_workers)

    async def _work(self) -> None:
        while True:
            self._idle_workers += 1
            try:
                run = await self._queue.get()
            finally:
                self._idle_workers -= 1
            self.metrics.queue_depth.set(self._queue.qsize())
            self.metrics.in_flight.inc()
            try:
                await self.engine.execute(run)
            except asyncio.CancelledError:
                raise
            except Exception:  # the engine records failures; this is a bug guard
                log.exception("run %s crashed the engine", run.id)
            finally:
                self.metrics.in_flight.dec()
                self._queue.task_done()

    def _observe(self, run: Run) -> None:
        # Labelled children are looked up once per label value, not once per run.
        runs = self._runs_by_status.get(run.status)
        if runs is None:
            runs = self._runs_by_status[run.status] = self.metrics.runs.labels(status=run.status)
        runs.inc()
        if run.duration_seconds is not None:
            self.metrics.run_duration.observe(run.duration_seconds)
        for attempt in run.attempts:
            self.metrics.action_attempts.labels(
                action=attempt["action"], status=attempt["status"]
            ).inc()
        if self.draining and run.status == "succeeded":
            # Succeeded runs are DEBUG lines (the engine's); while draining each one is
            # worth an INFO line, so the shutdown shows what it finished.
            log.info("run %s succeeded while draining (%d queued)", run.id, self._queue.qsize())

    def report(self) -> dict[str, Any]:
        """The `GET /v1/report` body (`contracts.http.Report`, as JSON)."""
        report = http.Report.model_validate(
            {
                "commit": self.settings.commit,
                "module": self.settings.module,
                "entryPoints": [entry.describe() for entry in self.loaded.entry_points],
                "loadError": self.loaded.error.to_json() if self.loaded.error else None,
                "runs": self.engine.totals.to_json(),
            }
        )
        return http.dump(report)

    async def drain(self, within_seconds: float) -> int:
        """Stop admitting, finish what was accepted within `within_seconds`; returns
        how many accepted runs could not finish (they are logged, not hidden)."""
        self.draining = True
        await self._hand_back_dispatched()
        log.info("draining: %d queued, waiting up to %.1fs", self._queue.qsize(), within_seconds)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_seconds):
                await self._queue.join()
        unfinished = self._queue.qsize() + sum(1 for run in self._in_flight_runs() if not run.done)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        # Runs a worker was running are marked by the engine when cancelled.
        self.engine.abandon_queued()
        if unfinished:
            log.error("drain timed out: %d accepted runs did not finish", unfinished)
        return unfinished

    async def _hand_back_dispatched(self) -> None:
        """Runs from the system of record that no worker started go back to the router
        at once, so another pod takes them instead of them waiting for this drain."""
        kept: list[Run] = []
        handed_back: list[Run] = []
        while not self._queue.empty():
            run = self._queue.get_nowait()
            self._queue.task_done()
            (handed_back if run.report is not None else kept).append(run)
        for run in kept:
            self._queue.put_nowait(run)
        for run in handed_back:
            assert run.report is not None
            self.engine.release_lease(run)
            run.status = "released"
            await self.engine.reports.release(run.report, run.id)
        if handed_back:
            log.info("draining: handed %d unstarted runs back to the router", len(handed_back))
        self.metrics.queue_depth.set(self._queue.qsize())

    def _in_flight_runs(self) -> list[Run]:
        return [run for run in self.engine.history() if run.status == "running"]


def _dispatch_fields(request: http.RunRequest | None) -> dict[str, Any]:
    if request is None or request.run_id is None:
        return {}
    return {
        "run_id": request.run_id,
        "attempt": request.attempt,
        "report": request.report,
        "journal": request.journal,
    }
