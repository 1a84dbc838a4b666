"""A dispatched run's reports to the router: heartbeats, the action journal, the result.

When the router's dispatcher gives a pod a run from the system of record, the request
says where to report (`RunRequest.report`: the router's URL and the run's own token).
The pod then tells the router, over HTTP:

- every `heartbeatSeconds` while the run is running (the lease stays the pod's);
- each `@action` call that succeeded, right after it did (the journal: a later attempt
  of the run — after this pod died, say — gets it back and does not call the action
  again);
- how the run ended (the record the router keeps);
- that it hands back a run it had not started, when it drains.

Reports are retried with backoff for a bounded time and never raise into the playbook:
a report that cannot be made costs at most a repeated action on redelivery (the
at-least-once contract, docs/playbooks.md), never a failed run.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any, Final

from kubesoar.contracts import caller, http

if TYPE_CHECKING:  # imported by the first report: a pod waiting for runs never needs it
    import aiohttp

__all__ = ["RunReports"]

log = logging.getLogger("kubesoar.reports")

TIMEOUT_SECONDS: Final = (5.0, 2.0)
"""A report's timeout, and its connect timeout."""
RETRY_DELAYS: Final = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)
"""Pauses between tries of one report: about 16 s in all, then it is given up."""
MAX_CONNECTIONS: Final = 32
"""Reports in flight per pod, over as many kept-alive connections; more wait their turn.

aiohttp, as the runtime's server already is: with httpx, hundreds of concurrent runs'
reports queued inside its connection pool, whose matching costs grows with requests x
connections, and reports that waited 5 s there failed (bench/README.md, Durable ingest)."""


class RunReports:
    """One HTTP session for every run's reports of this pod."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            import aiohttp

            total, connect = TIMEOUT_SECONDS
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
                timeout=aiohttp.ClientTimeout(total=total, connect=connect),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def heartbeat(self, to: http.ReportTo, run_id: str) -> bool:
        return await self._post(to, run_id, "heartbeat", {}, retries=1)

    async def action(self, to: http.ReportTo, run_id: str, entry: http.JournalEntry) -> bool:
        return await self._post(to, run_id, "actions", http.dump(entry))

    async def result(self, to: http.ReportTo, run_id: str, result: http.RunResult) -> bool:
        # The engine keeps heartbeating until this returns (Engine.keep_lease).
        return await self._post(to, run_id, "result", http.dump(result))

    async def release(self, to: http.ReportTo, run_id: str) -> bool:
        return await self._post(to, run_id, "release", {}, retries=2)

    async def heartbeats(self, to: http.ReportTo, run_id: str) -> None:
        """Heartbeat until cancelled (from admission until the record is delivered)."""
        while True:
            await asyncio.sleep(to.heartbeat_seconds)
            await self.heartbeat(to, run_id)

    async def _post(
        self,
        to: http.ReportTo,
        run_id: str,
        what: str,
        body: dict[str, Any],
        *,
        retries: int = len(RETRY_DELAYS),
    ) -> bool:
        """True once the router took it; False when it refused (403: the lease is gone) or
        did not answer within the retries."""
        import aiohttp

        path = http.run_callback_path(run_id, what)
        # The dispatching replica first; when it does not answer (gone in a rolling
        # upgrade, killed), any other live replica takes the report: they share the store.
        urls = [base.rstrip("/") + path for base in (to.url, *to.fallback_urls)]
        headers = {
            "Authorization": caller.authorization(to.token),
            "Content-Type": "application/json",
        }
        data = json.dumps(body).encode()
        problem = "not tried"
        for pause in (0.0, *RETRY_DELAYS[:retries]):
            if pause:
                await asyncio.sleep(pause)
            for url in urls:
                try:
                    async with self._http().post(
                        url, data=data, headers=headers, allow_redirects=False
                    ) as response:
                        status = response.status
                        await response.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    problem = type(exc).__name__
                    continue
                if status < 300:
                    return True
                if status == 403:
                    # The lease is not ours any more (it ran out, the run went elsewhere).
                    log.warning(
                        "run %s: the router refused the %s report (lease lost)", run_id, what
                    )
                    return False
                problem = f"HTTP {status}"
                if status < 500 and status != 429:
                    log.warning("run %s: %s report refused (%s)", run_id, what, problem)
                    return False  # a 4xx will not change on a retry
        log.warning("run %s: %s report not delivered (%s)", run_id, what, problem)
        return False
