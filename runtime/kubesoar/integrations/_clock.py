"""The time source the integrations wait on (rate limits, retries, polling)
and expire cached answers by.

Tests swap it for a `FakeClock` whose `sleep` advances time instantly, so a
rate limit of 4 requests a minute is checked without waiting a minute and
without asserting on wall-clock durations.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "MonotonicClock", "get_clock", "set_clock"]


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock that only moves when slept on (or `advance`d); it remembers every
    wait it was asked for, in order."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._now += max(seconds, 0.0)
        await asyncio.sleep(0)  # still yield, as a real sleep would


_clock: Clock = MonotonicClock()


def get_clock() -> Clock:
    return _clock


def set_clock(clock: Clock | None) -> Clock:
    """Use `clock` process-wide (None: the real one); returns the previous one."""
    global _clock
    previous = _clock
    _clock = clock if clock is not None else MonotonicClock()
    return previous
