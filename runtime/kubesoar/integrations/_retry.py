"""When to try a call again, and how long to wait first.

Retried: 429 and 5xx answers and transport errors (the vendor may not have
seen the request). A `Retry-After` (seconds or an HTTP date) is honoured;
otherwise the wait is `base * 2 ** (attempt - 1)`, capped. A `Retry-After`
longer than `MAX_RETRY_AFTER_SECONDS` is not waited for: the call fails and
says so, since the run's timeout would end it anyway.
"""

from __future__ import annotations

import email.utils
import time
from typing import Final

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_BACKOFF_SECONDS",
    "MAX_RETRY_AFTER_SECONDS",
    "backoff_seconds",
    "is_retryable_status",
    "parse_retry_after",
]

MAX_ATTEMPTS: Final = 4
BASE_BACKOFF_SECONDS: Final = 1.0
MAX_BACKOFF_SECONDS: Final = 30.0
MAX_RETRY_AFTER_SECONDS: Final = 120.0


def is_retryable_status(status: int) -> bool:
    return status == 429 or 500 <= status <= 599


def backoff_seconds(attempt: int) -> float:
    """The wait after failed attempt `attempt` (1-based) without a Retry-After."""
    return float(min(BASE_BACKOFF_SECONDS * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header, or None when absent/invalid."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
