"""Runs entry points for an alert: in `order`, each under its timeout, with
its own `RunContext`; keeps a bounded history of runs and their totals."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from kubesoar._alert import Alert
from kubesoar._approval import ApprovalDenied, ApprovalPending, Approver
from kubesoar._context import (
    BackoffSleep,
    RunContext,
    bind_log_ids,
    known_secret_values,
    unbind_log_ids,
)
from kubesoar._journal import ActionJournal
from kubesoar._jsonsafe import json_safe
from kubesoar._redact import redact
from kubesoar._reports import RunReports
from kubesoar._sdk import EntryPoint
from kubesoar._traceback import describe_failure, playbook_root
from kubesoar.contracts import http

if TYPE_CHECKING:  # httpx is imported by the first run that makes a call
    import httpx

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "Engine", "Run", "RunTotals", "UnknownEntryPoints"]

log = logging.getLogger("kubesoar.engine")

DEFAULT_TIMEOUT_SECONDS: Final = 300.0
DEFAULT_HISTORY: Final = 1000
MAX_ERROR_CHARS: Final = 2000
MAX_LISTED_NAMES: Final = 50
ABANDONED_ERROR: Final = "abandoned: the runtime shut down before the run finished"


class UnknownEntryPoints(ValueError):
    """Names asked for that the loaded module does not define; the message
    lists the ones it does (the fix is usually a typo)."""

    def __init__(self, names: list[str], known: Iterable[str] = ()) -> None:
        valid = sorted(known)
        shown = ", ".join(valid[:MAX_LISTED_NAMES]) or "none"
        if len(valid) > MAX_LISTED_NAMES:
            shown += f" (and {len(valid) - MAX_LISTED_NAMES} more)"
        super().__init__(f"unknown entry points: {', '.join(sorted(names))}; valid: {shown}")
        self.names = names
        self.known = valid


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _error_text(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(exc)).strip()
    # Error text reaches the run record, the report, status and logs.
    return redact(text, known_secret_values())[:MAX_ERROR_CHARS]


def _failed(entry: EntryPoint, exc: BaseException) -> dict[str, Any]:
    """The outcome fields of a failed entry point: the error, the playbook line
    it came from (`where`) and the traceback, the playbook's own frames first."""
    # skip_outer=1: the top frame is `_run_entry`, not the author's business.
    failure = describe_failure(
        exc, root=playbook_root(entry.func), secrets=known_secret_values(), skip_outer=1
    )
    return {
        "status": "failed",
        "result": None,
        "error": _error_text(exc),
        "where": failure.where,
        "traceback": failure.traceback,
    }


@dataclass
class Run:
    """One delivery of an alert: the entry points it runs and what happened."""

    id: str
    alert: Alert
    entry_points: list[EntryPoint]
    correlation_id: str
    idempotency_key: str | None = None
    # queued -> running -> succeeded | failed | denied (an approval was refused), or
    # waiting (parked for an approval: the router queues it again once decided), or
    # abandoned (still queued or running when a drain window ended)
    status: str = "queued"
    created: str = field(default_factory=_now)
    started: str | None = None
    finished: str | None = None
    duration_seconds: float | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    # Dispatched from the system of record: the delivery attempt, where to report, and
    # the actions earlier attempts completed (kubesoar._reports, kubesoar._journal).
    attempt: int = 1
    report: http.ReportTo | None = None
    journal: ActionJournal | None = None
    # Heartbeats keep the lease from the moment the pod accepts the run until its
    # record is delivered: a run waiting in the pod's queue holds its lease too.
    heartbeats: asyncio.Task[None] | None = field(default=None, repr=False, compare=False)
    # What the run waits for when its status is waiting.
    approval: http.ApprovalRequest | None = None

    @property
    def done(self) -> bool:
        """Nothing more happens to it on this pod (a waiting run resumes elsewhere)."""
        return self.status in {"succeeded", "failed", "denied", "waiting", "abandoned"}

    def result_of(self, name: str) -> Any:
        for result in self.results:
            if result["name"] == name:
                return result.get("result")
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "runId": self.id,
            "correlationId": self.correlation_id,
            "idempotencyKey": self.idempotency_key,
            "alertId": self.alert.id,
            "playbooks": [entry.name for entry in self.entry_points],
            "status": self.status,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "durationSeconds": self.duration_seconds,
            "results": self.results,
            "actions": self.attempts,
            "error": self.error,
            "attempt": self.attempt,
            **({"approval": http.dump(self.approval)} if self.approval is not None else {}),
        }

    def to_result(self) -> http.RunResult:
        """The record a dispatched run reports to the router when it ends."""
        failed = next((r for r in self.results if r.get("status") == "failed"), None)
        return http.RunResult(
            status=self.status if self.status in _REPORTED else "failed",
            approval=self.approval,
            results=self.results,
            actions=self.attempts,
            error=self.error,
            traceback=failed.get("traceback") if failed else None,
            duration_seconds=self.duration_seconds,
        )


# The statuses a run's report names as they are; anything else (abandoned) is failed.
_REPORTED = frozenset({"succeeded", "failed", "denied", "waiting"})


def _run_status(results: list[dict[str, Any]]) -> str:
    """A run waits when an entry point waits (nothing after it ran); it failed when one
    failed; it was denied when one stopped at a refused approval; else it succeeded."""
    statuses = {result["status"] for result in results}
    if "waiting" in statuses:
        return "waiting"
    if statuses - {"succeeded", "denied"}:
        return "failed"
    return "denied" if "denied" in statuses else "succeeded"


@dataclass
class RunTotals:
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    abandoned: int = 0  # also counted in failed
    last_run_time: str | None = None
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        totals: dict[str, Any] = {
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "lastRunTime": self.last_run_time,
            "lastError": self.last_error,
        }
        if self.abandoned:  # present once a drain left runs behind
            totals["abandoned"] = self.abandoned
        return totals


class Engine:
    """Selects and runs entry points. One per loaded module."""

    def __init__(
        self,
        entry_points: Iterable[EntryPoint],
        *,
        default_timeout: float = DEFAULT_TIMEOUT_SECONDS,
        secrets_dir: str | Path | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
        history: int = DEFAULT_HISTORY,
        on_finished: Callable[[Run], None] | None = None,
        backoff_sleep: BackoffSleep | None = None,
        reports: RunReports | None = None,
        approver: Approver | None = None,
    ) -> None:
        self.entry_points = list(entry_points)
        self.approver = approver  # decides `ctx.approval` of runs not dispatched (tests)
        self._by_name = {entry.name: entry for entry in self.entry_points}
        self.default_timeout = default_timeout
        self.secrets_dir = secrets_dir
        self.http_transport = http_transport
        self.totals = RunTotals()
        self._history: OrderedDict[str, Run] = OrderedDict()
        self._history_size = history
        self._on_finished = on_finished
        self.backoff_sleep = backoff_sleep  # how actions wait between retries
        self.reports = reports or RunReports()

    def select(self, alert: Alert, names: list[str] | None) -> list[EntryPoint]:
        """Named entry points (in run order), or every triggered one whose
        conditions match when `names` is None."""
        if names is not None:
            unknown = [name for name in names if name not in self._by_name]
            if unknown:
                raise UnknownEntryPoints(unknown, self._by_name)
            wanted = set(names)
            return [entry for entry in self.entry_points if entry.name in wanted]
        match_dict = alert.as_match_dict()
        return [
            entry
            for entry in self.entry_points
            if entry.triggered_by(alert.source) and entry.condition.matches(match_dict)
        ]

    def create_run(
        self,
        alert: Alert,
        entry_points: list[EntryPoint],
        *,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
        run_id: str | None = None,
        attempt: int = 1,
        report: http.ReportTo | None = None,
        journal: Iterable[http.JournalEntry] = (),
    ) -> Run:
        """A new run; `run_id`, `attempt`, `report` and `journal` come with a run the
        router dispatched from the system of record (its id is the stored run's)."""
        run_id = run_id or uuid.uuid4().hex
        run = Run(
            id=run_id,
            alert=alert,
            entry_points=entry_points,
            correlation_id=correlation_id or run_id,
            idempotency_key=idempotency_key,
            attempt=attempt,
            report=report,
        )
        if report is not None:
            to = report

            async def report_action(entry: http.JournalEntry) -> bool:
                return await self.reports.action(to, run_id, entry)

            run.journal = ActionJournal(journal, report_action)
        self._history[run_id] = run
        while len(self._history) > self._history_size:
            self._history.popitem(last=False)
        return run

    def get(self, run_id: str) -> Run | None:
        return self._history.get(run_id)

    def history(self) -> list[Run]:
        return list(self._history.values())

    async def execute(self, run: Run) -> Run:
        """Run each entry point in order; one failing does not stop the rest."""
        run.status = "running"
        run.started = _now()
        clock = time.perf_counter()
        log_token = bind_log_ids(run.id, run.correlation_id)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("run %s started: %s", run.id, ", ".join(e.name for e in run.entry_points))
        self.keep_lease(run)
        try:
            for entry in run.entry_points:
                outcome = await self._run_entry(run, entry)
                run.results.append(outcome)
                if outcome["status"] == "waiting":
                    # Later entry points run after the decision: their action calls would
                    # take journal numbers the waiting one needs when it resumes.
                    run.approval = outcome.pop("approval")
                    break
        except asyncio.CancelledError:
            # A drain that ran out: no more heartbeats, so the lease runs out and the
            # router gives the run to another pod, attempt + 1.
            self.release_lease(run)
            run.error = ABANDONED_ERROR
            run.results.append({"name": "", "status": "cancelled", "error": run.error})
            raise
        finally:
            run.duration_seconds = round(time.perf_counter() - clock, 6)
            run.finished = _now()
            failed = [r for r in run.results if r["status"] not in ("succeeded", "waiting")]
            run.status = _run_status(run.results)
            if run.error == ABANDONED_ERROR:
                run.status = "abandoned"
                log.warning("run %s abandoned while running: %s", run.id, ABANDONED_ERROR)
            elif failed and run.error is None:
                first = failed[0]
                where = f" (at {first['where']})" if first.get("where") else ""
                run.error = f"{first['name']}: {first.get('error')}{where}"
            if run.status == "waiting":
                title = run.approval.title if run.approval else ""
                log.info("run %s waits for approval %r", run.id, title)
            else:
                self._count(run)
            # A succeeded run is counted and kept in the history; a line each at the
            # ingest rate would cost more than the run (DEBUG shows them).
            log.log(
                logging.DEBUG if run.status == "succeeded" else logging.INFO,
                "run %s %s in %.3fs",
                run.id,
                run.status,
                run.duration_seconds,
            )
            unbind_log_ids(log_token)
        if run.report is not None:
            try:
                # Heartbeats go on while the record is delivered: the database may be
                # restarting (503s for seconds), and the lease must outlast that.
                await self.reports.result(run.report, run.id, run.to_result())
            finally:
                self.release_lease(run)
        return run

    def keep_lease(self, run: Run) -> None:
        """Start heartbeating a dispatched run (from admission; idempotent)."""
        if run.report is not None and run.heartbeats is None:
            run.heartbeats = asyncio.create_task(
                self.reports.heartbeats(run.report, run.id), name=f"heartbeats-{run.id}"
            )

    @staticmethod
    def release_lease(run: Run) -> None:
        """Stop heartbeating: the record is delivered, or the run was given up."""
        if run.heartbeats is not None:
            run.heartbeats.cancel()
            run.heartbeats = None

    def _count(self, run: Run) -> None:
        self.totals.total += 1
        self.totals.last_run_time = run.finished
        if run.status == "succeeded":
            self.totals.succeeded += 1
        elif run.status == "denied":
            pass  # people said no: in the total, neither a success nor a failure
        else:
            self.totals.failed += 1
            self.totals.last_error = run.error
            if run.status == "abandoned":
                self.totals.abandoned += 1
        if self._on_finished is not None:
            self._on_finished(run)

    def abandon_queued(self) -> list[Run]:
        """Mark every run still waiting for a worker as abandoned (the drain
        window ended before it started): counted, and a WARNING per run id."""
        left = [run for run in self._history.values() if run.status == "queued"]
        for run in left:
            self.release_lease(run)  # dispatched: the lease runs out, another pod runs it
            run.status = "abandoned"
            run.error = ABANDONED_ERROR
            run.finished = _now()
            log.warning("run %s abandoned while queued: %s", run.id, ABANDONED_ERROR)
            self._count(run)
        return left

    async def _run_entry(self, run: Run, entry: EntryPoint) -> dict[str, Any]:
        ctx = RunContext(
            run_id=run.id,
            correlation_id=run.correlation_id,
            playbook=entry.name,
            secrets_dir=self.secrets_dir,
            http_transport=self.http_transport,
            logger=logging.getLogger(f"kubesoar.playbook.{entry.name}"),
            backoff_sleep=self.backoff_sleep,
            attempt=run.attempt,
            idempotency_key=run.idempotency_key,
            journal=run.journal,
            approver=self.approver,
        )
        timeout = entry.timeout or self.default_timeout
        started = _now()
        clock = time.perf_counter()
        token = ctx.activate()
        deadline = asyncio.timeout(timeout)
        outcome: dict[str, Any] = {"name": entry.name, "started": started}
        try:
            args: tuple[Any, ...] = (run.alert, ctx) if entry.wants_context else (run.alert,)
            async with deadline:
                if asyncio.iscoroutinefunction(entry.func):
                    value = await entry.func(*args)
                else:
                    value = await asyncio.to_thread(entry.func, *args)
            outcome.update(status="succeeded", result=json_safe(value), error=None)
        except ApprovalPending as pending:
            outcome.update(status="waiting", result=None, error=None, approval=pending.request)
        except ApprovalDenied as exc:
            # A decision, not a bug: no traceback, the decider's words in the error.
            outcome.update(status="denied", result=None, error=_error_text(exc))
        except TimeoutError as exc:
            # The entry point's own deadline, or an action's that it let through.
            if deadline.expired():
                error = f"timed out after {timeout}s"
                outcome.update(status="timeout", result=None, error=error)
            else:
                outcome.update(_failed(entry, exc))
        except Exception as exc:
            outcome.update(_failed(entry, exc))
            # The pod log carries the traceback too: it may be all an operator sees.
            ctx.logger.warning(
                "entry point %s failed: %s%s\n%s",
                entry.name,
                outcome["error"],
                f" (at {outcome['where']})" if outcome["where"] else "",
                outcome["traceback"],
            )
        finally:
            ctx.deactivate(token)
            await ctx.aclose()
            outcome["durationSeconds"] = round(time.perf_counter() - clock, 6)
            for attempt in ctx.attempts:
                run.attempts.append({"playbook": entry.name, **attempt})
            if ctx.dropped_attempts:
                outcome["droppedAttempts"] = ctx.dropped_attempts
            if ctx.alert_activity:
                outcome["alertActivity"] = json_safe(ctx.alert_activity)
        return outcome
