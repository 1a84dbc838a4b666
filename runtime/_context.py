"""What a run carries: its ids, a logger, secrets, an HTTP client, and the
record of action attempts. `current_context()` finds it from any coroutine of
the run (actions use it), because it lives in a context variable."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Final, TypeVar

import httpx
from kubesoar._secrets import Secrets

__all__ = [
    "MAX_ATTEMPTS_PER_RUN",
    "CorrelationFilter",
    "RunContext",
    "bind_log_ids",
    "current_context",
    "unbind_log_ids",
]

T = TypeVar("T")

# A runaway loop of actions must not grow one run's record without bound.
MAX_ATTEMPTS_PER_RUN: Final = 1000
DEFAULT_HTTP_TIMEOUT: Final = httpx.Timeout(30.0, connect=10.0)

_current: ContextVar[RunContext | None] = ContextVar("kubesoar_run_context", default=None)
# (run id, correlation id) for log lines of a run outside any entry point's
# context (the engine's own lines about the run).
_log_ids: ContextVar[tuple[str, str]] = ContextVar("kubesoar_log_ids", default=("", ""))


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
    each log line of a run carries its correlation id whoever logs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _current.get()
        if ctx is not None:
            record.run_id, record.correlation_id = ctx.run_id, ctx.correlation_id
        else:
            record.run_id, record.correlation_id = _log_ids.get()
        return True


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
    ) -> None:
        self.run_id = run_id
        self.correlation_id = correlation_id
        self.playbook = playbook
        self.secrets = Secrets(secrets_dir)
        self.logger = logger or logging.getLogger("kubesoar.playbook")
        self.attempts: list[dict[str, Any]] = []
        self.dropped_attempts = 0
        self._http_transport = http_transport
        self._http: httpx.AsyncClient | None = None

    def secret(self, name: str, key: str) -> str:
        """Shorthand for `ctx.secrets.get(name, key)`."""
        return self.secrets.get(name, key)

    @property
    def http(self) -> httpx.AsyncClient:
        """An httpx client with timeouts, closed when the run ends."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=DEFAULT_HTTP_TIMEOUT,
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
