"""An open-loop alert sender over several router replicas, as a careful sender behaves.

Alert i is due at `i / rate` seconds after the start, whatever happened to the ones
before (open loop: a slow or failing router does not slow the offered load down). At
most `max_in_flight` requests are open at once; an alert that finds them all busy waits,
and the wait counts in its latency. Each alert's body is made once, so every retry of it
is the same body (the router answers a repeat with `duplicate: true`, never a second
alert). Replicas are used in turn, as a Service's endpoints would be, and:

- no connection (a killed replica): the next replica, at once;
- 429 / 503: the next replica after `Retry-After` (capped at `max_retry_after`);
- no answer (timeout, connection lost mid-request): maybe accepted, so the same body
  again on the next replica;
- any other answer: final (202 accepted, anything else refused, with its status).

An alert still not accepted after `give_up_after` seconds is counted as not accepted.
The sender runs in a thread with its own event loop, so the caller can inject faults
meanwhile; `set_urls` changes the replicas (a replacement pod on a new address).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=2)


@dataclass
class Sent:
    body_id: str
    due: float
    """Monotonic time the alert was due (open loop)."""
    accepted_at: float | None = None
    alert_id: str | None = None
    run_ids: list[str] = field(default_factory=list)
    duplicate: bool = False
    tries: int = 0
    final_status: int | None = None
    problem: str = ""

    @property
    def accept_ms(self) -> float | None:
        return None if self.accepted_at is None else (self.accepted_at - self.due) * 1000


@dataclass
class SenderStats:
    statuses: Counter[str] = field(default_factory=Counter)
    """Every answer (or failure kind) of every try."""
    failovers: int = 0
    """Tries that found no connection and went to the next replica."""
    late_starts: int = 0
    """Alerts that started more than 100 ms after they were due (the sender fell behind)."""


class OpenLoopSender:
    def __init__(
        self,
        urls: list[str],
        path: str,
        token: str,
        *,
        rate: float,
        seconds: float,
        label: str,
        max_in_flight: int = 256,
        give_up_after: float = 120.0,
        max_retry_after: float = 2.0,
    ) -> None:
        if rate <= 0 or seconds <= 0:
            raise ValueError("rate and seconds must be positive")
        self.urls = list(urls)
        self.path = path
        self.token = token
        self.rate = rate
        self.seconds = seconds
        self.label = label
        self.max_in_flight = max_in_flight
        self.give_up_after = give_up_after
        self.max_retry_after = max_retry_after
        self.sent: list[Sent] = []
        self.stats = SenderStats()
        self.started = 0.0
        self.last_due = 0.0
        self._next = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._main, name=f"sender-{label}", daemon=True)
        self._error: BaseException | None = None

    # --- the caller's side --------------------------------------------------------
    def start(self) -> OpenLoopSender:
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"sender {self.label} still running after {timeout}s")
        if self._error is not None:
            raise RuntimeError(f"sender {self.label} crashed") from self._error

    def elapsed(self) -> float:
        return time.monotonic() - self.started if self.started else 0.0

    def set_urls(self, urls: list[str]) -> None:
        with self._lock:
            self.urls = list(urls)

    # --- the thread ----------------------------------------------------------------
    def _main(self) -> None:
        try:
            asyncio.run(self._send_all())
        except BaseException as exc:  # surfaced by join()
            self._error = exc

    async def _send_all(self) -> None:
        total = int(self.rate * self.seconds)
        gate = asyncio.Semaphore(self.max_in_flight)
        connector = aiohttp.TCPConnector(limit=self.max_in_flight, force_close=False)
        async with aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT) as session:
            self.started = time.monotonic()
            tasks = []
            for i in range(total):
                due = self.started + i / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent = Sent(body_id=uuid.uuid4().hex, due=due)
                self.sent.append(sent)
                self.last_due = due
                tasks.append(asyncio.create_task(self._deliver(session, gate, sent, i)))
            await asyncio.gather(*tasks)

    def _pick(self) -> str:
        with self._lock:
            url = self.urls[self._next % len(self.urls)]
            self._next += 1
        return url

    async def _deliver(
        self, session: aiohttp.ClientSession, gate: asyncio.Semaphore, sent: Sent, i: int
    ) -> None:
        body = json.dumps(
            {
                "id": sent.body_id,
                "source_id": sent.body_id,
                "title": f"{self.label} alert {i}",
                "severity": "high",
                "source_ip": "203.0.113.7",
            }
        ).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        async with gate:
            if time.monotonic() - sent.due > 0.1:
                self.stats.late_starts += 1
            while time.monotonic() - sent.due < self.give_up_after:
                sent.tries += 1
                url = self._pick()
                pause = 0.0
                try:
                    async with session.post(url + self.path, data=body, headers=headers) as answer:
                        status = answer.status
                        text = await answer.read()
                        retry_after = answer.headers.get("Retry-After", "1")
                except aiohttp.ClientConnectorError:
                    self.stats.statuses["no-connection"] += 1
                    self.stats.failovers += 1
                    await asyncio.sleep(0.05 if sent.tries % len(self.urls) else 0.5)
                    continue
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    self.stats.statuses[f"no-answer:{type(exc).__name__}"] += 1
                    continue
                self.stats.statuses[str(status)] += 1
                if status == 202:
                    receipt: dict[str, Any] = json.loads(text)
                    sent.accepted_at = time.monotonic()
                    sent.alert_id = receipt["alertId"]
                    sent.duplicate = bool(receipt.get("duplicate"))
                    sent.run_ids = [d["runId"] for d in receipt.get("deliveries", [])]
                    sent.final_status = 202
                    return
                if status in (429, 503):
                    try:
                        pause = min(float(retry_after), self.max_retry_after)
                    except ValueError:
                        pause = self.max_retry_after
                    await asyncio.sleep(pause)
                    continue
                sent.final_status = status
                sent.problem = text[:300].decode(errors="replace")
                return
            sent.problem = f"not accepted within {self.give_up_after:.0f}s"
