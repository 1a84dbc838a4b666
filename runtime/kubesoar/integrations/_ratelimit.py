"""Token buckets, one per integration per Playbook (and credential): a call
waits for a token instead of sending a request the vendor would refuse.

VirusTotal's public API allows 4 requests a minute; the fifth lookup of a
burst waits 15 s here rather than drawing a 429, retrying, and drawing more.
A 429 the vendor sends anyway empties the bucket until its `Retry-After`, so
every caller of that bucket waits, not just the one that was refused.
"""

from __future__ import annotations

import asyncio
import os
from typing import Final

from kubesoar.integrations._clock import get_clock

__all__ = ["MAX_BUCKETS", "TokenBucket", "bucket_for", "reset_buckets"]

MAX_BUCKETS: Final = 1024


class TokenBucket:
    """`per_minute` tokens a minute, at most `burst` saved up (default: one
    minute's worth, but no less than 1)."""

    def __init__(self, per_minute: float, burst: float | None = None) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, burst if burst is not None else per_minute)
        self.tokens = self.capacity
        self._stamp = get_clock().now()
        self._held_until = 0.0
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            start = max(self._stamp, self._held_until)
            if now > start:
                self.tokens = min(self.capacity, self.tokens + (now - start) * self.rate)
            self._stamp = now

    def wait_needed(self) -> float:
        """Seconds until a token is free (0 when one is)."""
        now = get_clock().now()
        self._refill(now)
        hold = max(0.0, self._held_until - now)
        if self.tokens >= 1.0:
            return hold
        return hold + (1.0 - self.tokens) / self.rate

    async def acquire(self) -> float:
        """Take a token, waiting for one; returns the seconds waited."""
        waited = 0.0
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            # A lock belongs to one event loop; test sessions start a loop per test.
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:  # first come, first served
            while True:
                delay = self.wait_needed()
                if delay <= 0:
                    self.tokens -= 1.0
                    return waited
                await get_clock().sleep(delay)
                waited += delay

    def hold(self, seconds: float) -> None:
        """The vendor said "retry after `seconds`": no token until then, and
        then one (the retry), refilling at the usual rate from there."""
        now = get_clock().now()
        self._refill(now)
        self.tokens = min(1.0, self.capacity)
        self._held_until = max(self._held_until, now + seconds)


_buckets: dict[tuple[str, ...], TokenBucket] = {}


def bucket_for(integration: str, credential: str, per_minute: float) -> TokenBucket:
    """The bucket of this integration for this Playbook (the pod serves one
    Playbook: its namespace and name come from the environment the operator
    sets) and credential fingerprint."""
    owner = f"{os.environ.get('KUBESOAR_NAMESPACE', '')}/{os.environ.get('KUBESOAR_PLAYBOOK', '')}"
    key = (owner, integration, credential, f"{per_minute:g}")
    bucket = _buckets.get(key)
    if bucket is None:
        if len(_buckets) >= MAX_BUCKETS:
            _buckets.pop(next(iter(_buckets)))
        bucket = _buckets[key] = TokenBucket(per_minute)
    return bucket


def reset_buckets() -> None:
    _buckets.clear()
