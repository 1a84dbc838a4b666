"""What a run carries: its ids, a logger, secrets, an HTTP client, and the
record of action attempts. `current_context()` finds it from any coroutine of
the run (actions use it), because it lives in a context variable."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from kubesoar._approval import DEFAULT_TTL_SECONDS, Approval, Approver, request_approval
from kubesoar._journal import ActionJournal
from kubesoar._redact import redact
from kubesoar._secrets import Secrets

if TYPE_CHECKING:  # imported by the first `ctx.http`: a pod waiting for runs never needs it
    import httpx

__all__ = [
    "MAX_ATTEMPTS_PER_RUN",
    "BackoffSleep",
    "CorrelationFilter",
    "RunContext",
    "bind_log_ids",
    "current_context",
    "known_secret_values",
    "unbind_log_ids",
]

T = TypeVar("T")

# How an action waits between attempts: `asyncio.sleep`'s signature.
BackoffSleep = Callable[[float], Awaitable[None]]

# A runaway loop of actions must not grow one run's record without bound.
MAX_ATTEMPTS_PER_RUN: Final = 1000


def default_http_timeout() -> httpx.Timeout:
    """Timeouts of `ctx.http` and the integrations' own clients: 30 s, 10 s to connect."""
    import httpx

    return httpx.Timeout(30.0, connect=10.0)


def __getattr__(name: str) -> Any:
    # `DEFAULT_HTTP_TIMEOUT` as before, built on first use so that importing this module
    # does not import httpx.
    if name == "DEFAULT_HTTP_TIMEOUT":
        return default_http_timeout()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_current: ContextVar[RunContext | None] = ContextVar("kubesoar_run_context", default=None)
# (run id, correlation id) for log lines of a run outside any entry point's
# context (the engine's own lines about the run).
_log_ids: ContextVar[tuple[str, str]] = ContextVar("kubesoar_log_ids", default=("", ""))


# Secret values that runs of this process have read, so that error text and
# log lines can mask them (`redact`). Bounded: rotation adds values, and a
# runaway playbook must not grow this without limit.
MAX_KNOWN_SECRETS: Final = 256
_known_secrets: dict[str, None] = {}


def known_secret_values() -> tuple[str, ...]:
    """The secret values read by runs of this process (to mask, never to show)."""
    return tuple(_known_secrets)


def _remember_secret(value: str) -> None:
    if not value or value in _known_secrets:
        return
    _known_secrets[value] = None
    while len(_known_secrets) > MAX_KNOWN_SECRETS:
        del _known_secrets[next(iter(_known_secrets))]


class _RememberingSecrets(Secrets):
    """`Secrets` that remembers the values it hands out, for redaction."""

    def get(self, name: str, key: str) -> str:
        value = super().get(name, key)
        _remember_secret(value)
        return value


def bind_log_ids(run_id: str, correlation_id: str) -> Any:
    """Tag log lines of this task with a run's ids; returns a reset token."""
    return _log_ids.set((run_id, correlation_id))


def unbind_log_ids(token: Any) -> None:
    _log_ids.reset(token)


def current_context() -> RunContext | None:
    """The context of the run this coroutine belongs to, or None outside runs."""
    return _current.get()


class CorrelationFilter(logging.Filter):
    """Stamps every record with the current run's ids (or empty strings), so
    each log line of a run carries its correlation id whoever logs it, and
    redacts it: URLs lose userinfo and query strings, credentials and the
    secret values runs have read are masked, in the message and in the
    traceback (kept as `exc_text`), whoever logs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _current.get()
        if ctx is not None:
            record.run_id, record.correlation_id = ctx.run_id, ctx.correlation_id
        else:
            record.run_id, record.correlation_id = _log_ids.get()
        redact_record(record)
        return True


def redact_record(record: logging.LogRecord) -> None:
    """Redact a log record in place (message, arguments and traceback)."""
    if getattr(record, "kubesoar_redacted", False):
        return
    secrets = known_secret_values()
    try:
        message = record.getMessage()
    except Exception:  # bad arguments: leave it to the handler's error path
        return
    cleaned = redact(message, secrets)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[0] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        record.exc_text = redact(text, secrets)
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text, secrets)
    record.kubesoar_redacted = True


class RunContext:
    """Handed to `func(alert, ctx)` entry points; also `current_context()`."""

    def __init__(
        self,
        *,
        run_id: str,
        correlation_id: str,
        playbook: str = "",
        secrets_dir: str | Path | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
        logger: logging.Logger | None = None,
        backoff_sleep: BackoffSleep | None = None,
        attempt: int = 1,
        idempotency_key: str | None = None,
        journal: ActionJournal | None = None,
        approver: Approver | None = None,
    ) -> None:
        self.run_id = run_id
        # Delivery attempt of this run, from 1: more than 1 after a redelivery (the pod
        # that had it died or hung). Actions an earlier attempt completed are not run
        # again (`journal`); anything else a playbook does can use these two to stay
        # idempotent (docs/playbooks.md, "At least once").
        self.attempt = attempt
        self.idempotency_key = idempotency_key
        self.journal = journal
        self._approver = approver
        self.correlation_id = correlation_id
        self.playbook = playbook
        self.secrets: Secrets = _RememberingSecrets(secrets_dir)
        # How actions wait between retries; None means `asyncio.sleep`.
        self.backoff_sleep = backoff_sleep
        self.logger = logger or logging.getLogger("kubesoar.playbook")
        self.attempts: list[dict[str, Any]] = []
        self.dropped_attempts = 0
        # Changes OpenSOAR-style lifecycle helpers made to the run's alert view.
        self.alert_activity: list[dict[str, Any]] = []
        self._http_transport = http_transport
        self._http: httpx.AsyncClient | None = None

    def secret(self, name: str, key: str) -> str:
        """Shorthand for `ctx.secrets.get(name, key)`."""
        return self.secrets.get(name, key)

    @property
    def http(self) -> httpx.AsyncClient:
        """An httpx client with timeouts, closed when the run ends."""
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(
                timeout=default_http_timeout(),
                transport=self._http_transport,
                follow_redirects=False,
            )
        return self._http

    async def gather_limited(
        self,
        awaitables: Iterable[Awaitable[T]] | Iterable[Callable[[], Awaitable[T]]],
        *,
        limit: int = 4,
        return_exceptions: bool = False,
    ) -> list[T | BaseException]:
        """Await many coroutines (or zero-argument coroutine factories) with
        at most `limit` in flight; results keep the input order."""
        if limit < 1:
            raise ValueError("limit must be >= 1")
        gate = asyncio.Semaphore(limit)

        async def one(item: Any) -> T:
            async with gate:
                awaitable = item() if callable(item) else item
                result: T = await awaitable
                return result

        tasks = [one(item) for item in awaitables]
        return await asyncio.gather(*tasks, return_exceptions=return_exceptions)

    async def approval(
        self, title: str, details: Any = None, *, ttl_seconds: float = DEFAULT_TTL_SECONDS
    ) -> Approval:
        """Wait for a person to approve `title` (kubesoar._approval): returns the decision
        when approved, raises `ApprovalDenied` when denied or expired. The run is parked
        meanwhile, holding no worker; `details` (JSON) is shown to the approver."""
        return await request_approval(
            title, details, ttl_seconds, journal=self.journal, approver=self._approver
        )

    def record_attempt(self, attempt: dict[str, Any]) -> None:
        if len(self.attempts) >= MAX_ATTEMPTS_PER_RUN:
            self.dropped_attempts += 1
            return
        self.attempts.append(attempt)

    def activate(self) -> Any:
        """Make this the current context; returns the token for `deactivate`."""
        return _current.set(self)

    @staticmethod
    def deactivate(token: Any) -> None:
        _current.reset(token)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
