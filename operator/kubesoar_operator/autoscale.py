"""Scale to zero and back: runtime replicas follow a Playbook's queue (`spec.scaling`).

The operator owns this, not KEDA's PostgreSQL scaler: it already reads the system of
record (runcounts.py) and writes the Deployment, so one owner decides replicas (an HPA
that KEDA creates would fight the operator's server-side apply of `spec.replicas`), it
knows what a scaler cannot (a new commit whose entry points no pod reported yet), and
it needs nothing installed beside kubesoar. docs/operations.md says more.

The signal is the runs table: `queued` runs (the dispatcher leaves them queued, losing
no attempt, while a Playbook has no ready pod) plus `running` ones (leased to a pod,
including those waiting in a pod's own queue). One query for all Playbooks
(`runcounts.ACTIVE_RUNS`) every `POLL_SECONDS` (1 s), and only while some Playbook is
autoscaled: that is how a Playbook at zero learns of its first queued run.

`decide` is pure:
- needed = ceil((queued + running) / runsPerReplica) within [minReplicas, maxReplicas],
  and at least one pod while the current commit's entry points are unknown: the router
  routes on the entry points pods reported (`status.playbooks`), so a Playbook at zero
  needs one pod per new commit to learn them (as Knative starts a new revision at 1);
- up at once; down to the largest `needed` of the last `idleSeconds` (the HPA's
  scale-down stabilization window): so the last pod goes once no run was queued or
  running for `idleSeconds`;
- the queue unreadable: keep what was asked for before (never scale down blind).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubesoar_operator.spec import PlaybookSpec

# How often the queue is read while any Playbook is autoscaled: a run queued for a
# Playbook at zero is seen within this, then a reconcile applies the Deployment at once.
# One indexed query a second; at 2 s the wake-up measured about a second slower (p50).
POLL_SECONDS = 1.0
# A reconcile decides on a queue read at most this old (the poll keeps it fresher).
RECONCILE_MAX_AGE = 5.0

# Why `desired` is what it is (status.scale.reason).
BUSY = "Busy"
"""Runs are queued or running: the pods they need, within min and max."""
COOLING_DOWN = "CoolingDown"
"""Fewer pods are needed than run: they go once unneeded for idleSeconds."""
IDLE = "Idle"
"""No run queued or running for idleSeconds (or ever): minReplicas."""
LEARNING_ENTRY_POINTS = "LearningEntryPoints"
"""No pod reported the current commit's entry points yet: one pod runs to learn them."""
QUEUE_UNKNOWN = "QueueUnknown"
"""The database cannot be read now: the last decision holds."""
NO_QUEUE_SIGNAL = "NoQueueSignal"
"""The operator has no database: max(minReplicas, 1) pods, so alerts find one."""
REASONS = frozenset(
    {BUSY, COOLING_DOWN, IDLE, LEARNING_ENTRY_POINTS, QUEUE_UNKNOWN, NO_QUEUE_SIGNAL}
)

# (queued, running) per (namespace, playbook), at most `max_age` seconds old; None when
# the database cannot be read.
ActiveRuns = Callable[[float], Mapping[tuple[str, str], tuple[int, int]] | None]


@dataclass(frozen=True)
class Policy:
    min_replicas: int
    max_replicas: int
    idle_seconds: float
    runs_per_replica: int

    @classmethod
    def of(cls, spec: PlaybookSpec) -> Policy | None:
        """The policy of an autoscaled Playbook; None for a fixed `spec.replicas`."""
        scaling = spec.scaling
        if scaling is None:
            return None
        return cls(
            min_replicas=scaling.min_replicas,
            max_replicas=scaling.max_replicas,
            idle_seconds=float(scaling.idle_seconds),
            runs_per_replica=scaling.runs_per_replica or spec.runtime.concurrency,
        )


@dataclass(frozen=True)
class Load:
    queued: int = 0
    running: int = 0

    @property
    def active(self) -> int:
        return self.queued + self.running


@dataclass(frozen=True)
class Memory:
    """What a decision remembers for the next one."""

    # (when, needed) of the last idleSeconds, `needed` strictly falling: window[0] is the
    # largest need of the window (a sliding-window maximum, at most maxReplicas + 1 long).
    window: tuple[tuple[float, int], ...] = ()
    last_active: float | None = None  # epoch seconds of the last queued or running run


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: str
    message: str
    last_active: float | None = None


def decide(
    policy: Policy, load: Load | None, memory: Memory, now: float, *, learn: bool = False
) -> tuple[Decision, Memory]:
    """Replicas for `load` (None: unknown) at `now` (epoch seconds), and the new memory.

    `learn`: no pod reported the current commit's entry points yet.
    """
    if load is None:
        kept = memory.window[0][1] if memory.window else policy.min_replicas
        kept = max(kept, 1) if learn else kept
        message = f"the queue cannot be read: keeping {_pods(kept)}"
        return Decision(kept, QUEUE_UNKNOWN, message, memory.last_active), memory
    last_active = now if load.active else memory.last_active
    by_load = math.ceil(load.active / policy.runs_per_replica)
    needed = min(max(by_load, policy.min_replicas), policy.max_replicas)
    if learn:
        needed = max(needed, 1)
    recent = [(when, n) for when, n in memory.window if now - when < policy.idle_seconds]
    window = (*((when, n) for when, n in recent if n > needed), (now, needed))
    replicas = window[0][1]
    runs = f"{load.queued} queued and {load.running} running runs"
    idle = f"{policy.idle_seconds:g}s"
    if replicas > needed:
        reason = COOLING_DOWN
        message = f"{runs} need {_pods(needed)}; {replicas} kept until unneeded for {idle}"
    elif learn and by_load < 1:
        reason = LEARNING_ENTRY_POINTS
        message = "one pod reports the entry points of the new commit, for the router"
    elif load.active:
        per = policy.runs_per_replica
        capped = " (maxReplicas)" if by_load > policy.max_replicas else ""
        reason, message = BUSY, f"{runs}, {per} per pod: {_pods(replicas)}{capped}"
    else:
        reason = IDLE
        message = f"no run queued or running for {idle}: minReplicas, {_pods(replicas)}"
    return Decision(replicas, reason, message, last_active), Memory(window, last_active)


def without_signal(policy: Policy) -> Decision:
    """No database, no queue to follow: enough pods that direct delivery finds one."""
    replicas = min(max(policy.min_replicas, 1), policy.max_replicas)
    message = f"no database (--database-url-file) to read the queue from: {_pods(replicas)}"
    return Decision(replicas, NO_QUEUE_SIGNAL, message)


def seed(policy: Policy, previous: Mapping[str, Any] | None, now: float) -> Memory:
    """Memory from the `status.scale` an earlier operator wrote: a restart neither drops
    pods still cooling down nor forgets when the Playbook was last active."""
    if not isinstance(previous, Mapping):
        return Memory()
    last_active = parse_time(previous.get("lastActiveTime"))
    desired = previous.get("desired")
    if isinstance(desired, int) and desired > policy.min_replicas:
        when = last_active if last_active is not None else now
        return Memory(((when, min(desired, policy.max_replicas)),), last_active)
    return Memory(last_active=last_active)


def as_status(
    policy: Policy, decision: Decision, entry_points_commit: str | None
) -> dict[str, Any]:
    """`status.scale`."""
    status: dict[str, Any] = {
        "desired": decision.replicas,
        "minReplicas": policy.min_replicas,
        "maxReplicas": policy.max_replicas,
        "reason": decision.reason,
        "message": decision.message[:1024],
    }
    if decision.last_active is not None:
        status["lastActiveTime"] = format_time(decision.last_active)
    if entry_points_commit:
        status["entryPointsCommit"] = entry_points_commit
    return status


def format_time(epoch: float) -> str:
    moment = datetime.fromtimestamp(int(epoch), UTC)
    return moment.isoformat().replace("+00:00", "Z")


def parse_time(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def _pods(count: int) -> str:
    return f"{count} pod" if count == 1 else f"{count} pods"


@dataclass
class _Tracked:
    policy: Policy
    learn: bool
    memory: Memory
    applied: int  # the replicas the last reconcile asked the Deployment for


@dataclass
class Autoscaler:
    """Decisions of every autoscaled Playbook, and the poll that notices when one changes.

    Reconciles call `scale` (the replicas to render); the refresher calls `due` every
    `POLL_SECONDS` (one query for all) and refreshes the Playbooks it names at once.
    """

    active_runs: ActiveRuns | None  # None: no database, no signal
    clock: Callable[[], float] = time.time
    _tracked: dict[tuple[str, str], _Tracked] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def scale(
        self,
        namespace: str,
        name: str,
        policy: Policy,
        *,
        learn: bool,
        previous: Mapping[str, Any] | None = None,
    ) -> Decision:
        """The decision a reconcile applies; `previous` is the status.scale on record."""
        if self.active_runs is None:
            return without_signal(policy)
        loads = self.active_runs(RECONCILE_MAX_AGE)
        key = (namespace, name)
        with self._lock:
            now = self.clock()
            tracked = self._tracked.get(key)
            memory = tracked.memory if tracked is not None else seed(policy, previous, now)
            decision, memory = decide(policy, _load(loads, key), memory, now, learn=learn)
            self._tracked[key] = _Tracked(policy, learn, memory, decision.replicas)
        return decision

    def due(self) -> list[tuple[str, str]]:
        """Autoscaled Playbooks whose replicas should change now (a queued run at zero,
        a deeper queue, an idle period over): to be reconciled at once."""
        with self._lock:
            if self.active_runs is None or not self._tracked:
                return []  # nothing autoscaled: not even the query
        loads = self.active_runs(POLL_SECONDS / 2)
        if loads is None:
            return []
        changed = []
        with self._lock:
            now = self.clock()
            for key, tracked in self._tracked.items():
                decision, tracked.memory = decide(
                    tracked.policy, _load(loads, key), tracked.memory, now, learn=tracked.learn
                )
                if decision.replicas != tracked.applied:
                    changed.append(key)
        return changed

    def forget(self, namespace: str, name: str) -> None:
        """A Playbook deleted, or back to a fixed spec.replicas."""
        with self._lock:
            self._tracked.pop((namespace, name), None)


def _load(
    loads: Mapping[tuple[str, str], tuple[int, int]] | None, key: tuple[str, str]
) -> Load | None:
    if loads is None:
        return None
    queued, running = loads.get(key, (0, 0))
    return Load(queued, running)
