"""The action journal of one run, as its entry points see it.

Each `@action` call of a run gets the next sequence number (from 0, across the run's
entry points, in call order). On a redelivered attempt, a call whose number an earlier
attempt recorded as succeeded, under the same action name, returns the recorded
result instead of running again; every other call runs and, when it succeeds, is
recorded (reported to the router) before the playbook sees its result.

Only JSON values can be replayed: a result that is not one is not recorded, so a
redelivery calls that action again. A playbook whose calls change order between
attempts (e.g. driven by the clock or randomness) finds names that do not match, and
those calls run again too — never the wrong result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from kubesoar.contracts import http

__all__ = ["ActionJournal"]

log = logging.getLogger("kubesoar.journal")

Report = Callable[[http.JournalEntry], Awaitable[bool]]


class ActionJournal:
    def __init__(self, recorded: Iterable[http.JournalEntry] = (), report: Report | None = None):
        self._recorded = {entry.seq: entry for entry in recorded if entry.status == "succeeded"}
        self._report = report
        self._next = 0

    def next_seq(self) -> int:
        """The number of the call about to be made (synchronous: taken before any await)."""
        seq = self._next
        self._next += 1
        return seq

    def replay(self, seq: int, action: str) -> http.JournalEntry | None:
        """The earlier attempt's succeeded outcome of call `seq`, if it was this action."""
        entry = self._recorded.get(seq)
        if entry is None:
            return None
        if entry.action != action:
            log.warning(
                "action call %d is %s now but was %s in an earlier attempt: running it",
                seq,
                action,
                entry.action,
            )
            return None
        return entry

    async def record(self, seq: int, action: str, result: Any) -> None:
        if self._report is None:
            return
        try:
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError):
            log.info("action %s returned a value that is not JSON: not journaled", action)
            return
        entry = http.JournalEntry(seq=seq, action=action, status="succeeded", result=result)
        await self._report(entry)
