"""Periodic work on every watched object, without kopf timers (and so without finalizers).

A kopf timer makes kopf put its finalizer on each object, because kopf must
stop the timer before the object may go. kubesoar has nothing to do at
deletion (children go by garbage collection through their owner references),
and the finalizer costs a lot: a tenant namespace cannot be deleted while the
operator is down, and kopf stops watching a namespace as soon as it is marked
for deletion (nolar/kopf#1088), which leaves it Terminating for good.

So kopf's watch only reports what it sees (`observe`, from `@kopf.on.event`),
and one loop here calls each kind's refresh function for every object it
knows, every `interval` seconds, a few at a time in worker threads (the
refresh functions make blocking API and Git calls, as kopf's sync handlers do).
An idle object does not cost that: a refresh function returns when its object next
has something to look at (a settled Playbook without pods: when its source falls
due), a handler that reconciled an object says the same (`refresh_soon`), and a
sweep (`register_sweep`, one query for all) names objects that changed unseen.
Objects marked for deletion are dropped: there is nothing left to refresh. A
refresh waiting for a free worker looks the object up again when it gets one:
it runs with the newest body the watch has seen, and not at all if the object
was deleted meanwhile (a refresh must never act on a deleted object's old body).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import kopf

from kubesoar_operator import workers

log = logging.getLogger("kubesoar_operator.refresher")

# Returns when it next has something to look at, in seconds (None: at its interval).
RefreshFn = Callable[[kopf.Body], float | None]
# Finds objects that changed without a watch event (say, run counters on record).
SweepFn = Callable[[], Iterable[tuple[str, str]]]


class Gone(Exception):
    """Raised by a refresh function when its object no longer exists: forget it.

    kopf stops watching a namespace once it is marked for deletion, so the
    DELETED events of its objects may never arrive.
    """


Key = tuple[str, str, str]  # plural, namespace, name


class Refresher:
    def __init__(self, max_parallel: int = workers.REFRESH_WORKERS) -> None:
        self._refresh: dict[str, tuple[RefreshFn, float]] = {}
        self._bodies: dict[Key, dict[str, Any]] = {}
        self._due: dict[Key, float] = {}
        # Asked for sooner than due (refresh_soon), from any thread: taken by the loop.
        self._soon: dict[Key, float] = {}
        # name -> (plural, sweep, interval)
        self._sweeps: dict[str, tuple[str, SweepFn, float]] = {}
        self._max_parallel = max_parallel
        # kopf's context (its settings and Event queue) as seen in its handlers, so that
        # kopf.event() works in the refresh functions, which run outside any handler.
        self._kopf_context: contextvars.Context | None = None

    def register(self, plural: str, refresh: RefreshFn, interval: float) -> None:
        """Refresh every object of `plural` every `interval` seconds with `refresh(body)`."""
        self._refresh[plural] = (refresh, interval)

    def register_sweep(
        self, plural: str, sweep: SweepFn, interval: float, *, name: str | None = None
    ) -> None:
        """Every `interval` seconds, refresh the objects of `plural` that `sweep()` names
        (namespace, name) at once; it runs in a worker thread. One sweep per `name`
        (default: the kind's plural)."""
        self._sweeps[name or plural] = (plural, sweep, interval)

    def refresh_soon(self, plural: str, namespace: str, name: str, delay: float = 0.0) -> None:
        """Refresh this object within `delay` seconds (sooner if it is due sooner anyway).

        Safe from any thread: a handler that reconciled an object says when it next needs
        a look, since a spec change may turn an idle object into one that is rolling out.
        """
        key = (plural, namespace, name)
        self._soon[key] = min(self._soon.get(key, float("inf")), max(0.0, delay))

    def observe(self, plural: str, event: Mapping[str, Any]) -> None:
        """Remember the newest body of an object from a watch event (or forget it).

        Called from a kopf handler (`@kopf.on.event`), whose context it keeps.
        """
        self._kopf_context = contextvars.copy_context()
        obj = event.get("object") or {}
        meta = obj.get("metadata") or {}
        key = (plural, meta.get("namespace", ""), meta.get("name", ""))
        if event.get("type") == "DELETED" or meta.get("deletionTimestamp"):
            self._bodies.pop(key, None)
            self._due.pop(key, None)
            return
        self._bodies[key] = dict(obj)

    async def run(self, stop: asyncio.Event, tick: float = 0.5) -> None:
        """Refresh objects as they fall due, until `stop` is set."""
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self._max_parallel)
        # Threads of its own, as many as the slots plus one per sweep (a sweep never waits
        # behind busy refreshes): the loop's default pool may be smaller than
        # `max_parallel` (workers.py).
        threads = ThreadPoolExecutor(
            self._max_parallel + max(1, len(self._sweeps)), thread_name_prefix="refresh"
        )
        running: set[asyncio.Task[None]] = set()
        busy: set[Key] = set()

        async def refresh_one(key: Key, refresh: RefreshFn) -> None:
            try:
                async with slots:
                    body = self._bodies.get(key)
                    if body is None:
                        return  # deleted while it waited for a slot
                    raw = cast(kopf.RawBody, body)
                    context = (self._kopf_context or contextvars.copy_context()).copy()
                    wait = await loop.run_in_executor(threads, context.run, refresh, kopf.Body(raw))
                    if wait is not None and key in self._due:
                        self._due[key] = loop.time() + wait
            except Gone:
                self._bodies.pop(key, None)
                self._due.pop(key, None)
            except (kopf.TemporaryError, kopf.PermanentError) as exc:
                log.warning("refreshing %s %s/%s failed: %s", *key, exc)
            except Exception:  # one object's failure must not stop the others' refreshes
                log.exception("refreshing %s %s/%s failed", *key)
            finally:
                busy.discard(key)

        sweep_due = {
            sweep_name: loop.time() + interval
            for sweep_name, (_, _, interval) in self._sweeps.items()
        }

        async def sweep(sweep_name: str) -> None:
            plural, fn, interval = self._sweeps[sweep_name]
            try:
                for namespace, name in await loop.run_in_executor(threads, lambda: list(fn())):
                    self.refresh_soon(plural, namespace, name)
            except Exception:  # a failed sweep is tried again at its next interval
                log.exception("sweeping %s failed", sweep_name)
            finally:
                sweep_due[sweep_name] = loop.time() + interval

        while not stop.is_set():
            now = loop.time()
            for sweep_name, due in list(sweep_due.items()):
                if now >= due:
                    sweep_due[sweep_name] = float("inf")  # not again until this one finished
                    task = loop.create_task(sweep(sweep_name))
                    running.add(task)
                    task.add_done_callback(running.discard)
            for key in list(self._soon):
                delay = self._soon.pop(key)
                if key in self._bodies:
                    self._due[key] = min(self._due.get(key, now + delay), now + delay)
            for key in list(self._bodies):
                refresh, interval = self._refresh.get(key[0], (None, 0.0))
                if refresh is None or key in busy:
                    continue
                due = self._due.setdefault(key, now + interval)
                if now < due:
                    continue
                self._due[key] = now + interval
                busy.add(key)
                task = loop.create_task(refresh_one(key, refresh))
                running.add(task)
                task.add_done_callback(running.discard)
            try:
                await asyncio.wait_for(stop.wait(), timeout=tick)
            except TimeoutError:
                pass
        if running:
            await asyncio.wait(running, timeout=30)
        threads.shutdown(wait=False, cancel_futures=True)


# One per operator process: the Playbook and AlertSource handlers register on it.
REFRESHER = Refresher()
