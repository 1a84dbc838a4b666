"""Summarize one reconcile into the Playbook's status, in one place.

`summarize` is pure: it takes what the reconcile observed and the previous
status, and returns the new status (conditions merged so unchanged ones keep
their `lastTransitionTime`) plus the transitions worth an Event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubesoar_operator import conditions as c
from kubesoar_operator.report import PodState, Summary, describe_load_error


@dataclass(frozen=True)
class SourceState:
    url: str  # already cleaned of credentials
    revision: str
    commit: str
    digest: str  # hex sha256
    resolved_at: str


@dataclass(frozen=True)
class RolloutState:
    """The Deployment's view, plus the pods'."""

    exists: bool
    desired: int
    commit: str = ""  # what the Deployment's pod template pins
    revision: str = ""
    generation_observed: bool = False
    replicas: int = 0
    updated: int = 0
    ready: int = 0
    pods: tuple[PodState, ...] = ()


@dataclass
class Observation:
    generation: int
    spec_error: str | None = None
    source: SourceState | None = None
    source_error: tuple[str, str] | None = None  # (reason, sanitized message)
    source_failures: int = 0  # failed source attempts in a row, this one included
    apply_error: str | None = None
    rollout: RolloutState | None = None
    summary: Summary = field(default_factory=Summary)
    endpoint: str | None = None
    requested_at: str | None = None
    suspended: bool = False
    scale: dict[str, Any] | None = None  # status.scale of an autoscaled Playbook
    # Autoscaled, and the current commit's entry points are known: fewer ready pods than
    # desired is a scale-up for queued runs (routes unchanged), not a rollout.
    scaling_known: bool = False
    # This reconcile changed the Deployment's replicas and nothing else: the controller
    # not having observed that yet is no rollout either.
    resized: bool = False


@dataclass
class Transition:
    """A change worth a Kubernetes Event."""

    warning: bool
    # NewRevision, Ready, SourceFailed, RuntimeFailed, InvalidSpec, Suspended, Resumed,
    # RunsDead, Scaled
    reason: str
    message: str


def _runtime_condition(obs: Observation, gen: int) -> dict[str, Any]:
    rollout, summary = obs.rollout, obs.summary
    if obs.apply_error:
        return c.make(c.RUNTIME_READY, False, c.APPLY_FAILED, obs.apply_error, gen)
    if rollout is None or not rollout.exists:
        return c.make(c.RUNTIME_READY, False, c.PROGRESSING, "waiting for the Deployment", gen)
    if summary.load_error:
        message = describe_load_error(summary.load_error)
        return c.make(c.RUNTIME_READY, False, c.LOAD_FAILED, message, gen)
    problems = [f"pod {p.name}: {p.problem}" for p in rollout.pods if p.problem]
    if problems:
        return c.make(c.RUNTIME_READY, False, c.RUNTIME_UNAVAILABLE, "; ".join(problems), gen)
    done = (
        (obs.source is None or rollout.commit == obs.source.commit)
        and rollout.generation_observed
        and rollout.updated >= rollout.desired
        and rollout.ready >= rollout.desired
        and rollout.replicas == rollout.desired
    )
    counts = f"{rollout.ready}/{rollout.desired} pods ready"
    if not done and _scaling(obs, rollout):
        message = f"{counts} at {rollout.revision}, scaling to {rollout.desired}"
        return c.make(c.RUNTIME_READY, True, c.SUCCEEDED, message, gen)
    if not done:
        return c.make(c.RUNTIME_READY, False, c.ROLLING_OUT, f"{counts}, rolling out", gen)
    if rollout.desired > 0 and summary.reports_at_commit == 0 and not obs.scaling_known:
        return c.make(
            c.RUNTIME_READY, False, c.PROGRESSING, f"{counts}, waiting for the runtime report", gen
        )
    return c.make(c.RUNTIME_READY, True, c.SUCCEEDED, f"{counts} at {rollout.revision}", gen)


def _scaling(obs: Observation, rollout: RolloutState) -> bool:
    """Pods at the current revision are added or removed by the autoscaler: the Playbook
    keeps serving (queued runs wait for the new pod), as a Deployment stays Available."""
    return (
        obs.scaling_known
        and obs.source is not None
        and rollout.commit == obs.source.commit
        and (rollout.generation_observed or obs.resized)
        and rollout.updated >= rollout.replicas
    )


def summarize(
    obs: Observation, previous: Mapping[str, Any] | None
) -> tuple[dict[str, Any], list[Transition]]:
    prev = dict(previous or {})
    prev_conditions = prev.get("conditions") or []
    gen = obs.generation
    status: dict[str, Any] = {"observedGeneration": gen}
    if obs.suspended:
        # A requestedAt stays unhandled: it acts once the Playbook is resumed.
        status["conditions"] = c.merge(prev_conditions, _suspended(prev_conditions, gen))
        return status, _transitions(prev, status)
    if obs.requested_at is not None:
        status["lastHandledReconcileAt"] = obs.requested_at

    if obs.spec_error:
        # Nothing else is re-evaluated: keep the last known SourceReady/RuntimeReady.
        kept = [
            dict(x) for x in prev_conditions if x.get("type") in (c.SOURCE_READY, c.RUNTIME_READY)
        ]
        current = [
            c.make(c.READY, False, c.INVALID_SPEC, obs.spec_error, gen),
            c.make(c.STALLED, True, c.INVALID_SPEC, obs.spec_error, gen),
            *kept,
        ]
        status["conditions"] = c.merge(prev_conditions, current)
        return status, _transitions(prev, status)

    if obs.source_error:
        reason, message = obs.source_error
        source_cond = c.make(c.SOURCE_READY, False, reason, message, gen)
    elif obs.source is not None:
        source_cond = c.make(
            c.SOURCE_READY, True, c.SUCCEEDED, f"stored artifact for {obs.source.revision}", gen
        )
    else:
        source_cond = c.make(c.SOURCE_READY, False, c.PROGRESSING, "resolving the source", gen)
    runtime_cond = _runtime_condition(obs, gen)

    if source_cond["status"] == "False":
        ready = c.make(c.READY, False, source_cond["reason"], source_cond["message"], gen)
    elif runtime_cond["status"] == "False":
        ready = c.make(c.READY, False, runtime_cond["reason"], runtime_cond["message"], gen)
    else:
        assert obs.source is not None
        ready = c.make(c.READY, True, c.SUCCEEDED, f"running {obs.source.revision}", gen)
    if _source_stalled(obs):
        progress = [_stalled_source(source_cond, obs.source_failures, gen)]
    else:
        progress = _progress(source_cond, runtime_cond, gen=gen)
    current = [ready, source_cond, runtime_cond, *progress]
    status["conditions"] = c.merge(prev_conditions, current)

    if obs.source is not None:
        status["source"] = {
            "url": obs.source.url,
            "revision": obs.source.revision,
            "commit": obs.source.commit,
            "digest": f"sha256:{obs.source.digest}",
            "lastResolvedTime": obs.source.resolved_at,
        }
    if obs.rollout is not None:
        status["replicas"] = obs.rollout.replicas
        status["readyReplicas"] = obs.rollout.ready
    # Merge-patch semantics: None removes it once spec.replicas is fixed again.
    status["scale"] = obs.scale
    if obs.endpoint:
        status["endpoint"] = obs.endpoint
    if obs.summary.reports_at_commit:
        status["playbooks"] = obs.summary.entry_points
    if obs.summary.runs:
        status["runs"] = obs.summary.runs
    # Merge-patch semantics: None removes a stale load error.
    status["loadError"] = obs.summary.load_error
    return status, _transitions(prev, status)


def _progress(*halves: dict[str, Any], gen: int) -> list[dict[str, Any]]:
    """`Reconciling` while anything retries or is under way, else `Stalled` for a terminal failure.

    A retried failure outranks work in progress: it is what a user has to know about.
    """
    failing = [x for x in halves if x["status"] == "False"]
    retried = [x for x in failing if x["reason"] not in c.IN_PROGRESS | c.TERMINAL]
    waiting = [x for x in failing if x["reason"] in c.IN_PROGRESS]
    terminal = [x for x in failing if x["reason"] in c.TERMINAL]
    if retried:
        first = retried[0]
        message = f"retrying after {first['reason']}: {first['message']}"
        return [c.make(c.RECONCILING, True, c.PROGRESSING_WITH_RETRY, message, gen)]
    if waiting:
        return [c.make(c.RECONCILING, True, waiting[0]["reason"], waiting[0]["message"], gen)]
    if terminal:
        return [c.make(c.STALLED, True, terminal[0]["reason"], terminal[0]["message"], gen)]
    return []


def _source_stalled(obs: Observation) -> bool:
    """A persistent source failure that lasted `STALL_AFTER_FAILURES` attempts in a row."""
    return (
        obs.source_error is not None
        and obs.source_error[0] in c.PERSISTENT
        and obs.source_failures >= c.STALL_AFTER_FAILURES
    )


def _stalled_source(source_cond: Mapping[str, Any], failures: int, gen: int) -> dict[str, Any]:
    """`Stalled` with the source's reason. It outranks the runtime half: whatever that
    waits for, the revision the spec asks for cannot be known until the source is fixed."""
    reason, message = source_cond["reason"], source_cond["message"]
    text = f"{reason} on {failures} attempts in a row (still retried with backoff): {message}"
    return c.make(c.STALLED, True, reason, text, gen)


def _suspended(previous: list[Mapping[str, Any]], gen: int) -> list[dict[str, Any]]:
    """Ready keeps its status (and transition time); its reason and message say suspended.

    `Reconciling` and `Stalled` go: nothing is in progress and nothing is retried, so
    kstatus tools see the Playbook as settled, as Flux shows its suspended objects.
    """
    kept = [dict(x) for x in previous if x.get("type") in (c.SOURCE_READY, c.RUNTIME_READY)]
    before = c.find(previous, c.READY)
    if before is None:
        ready = c.make(c.READY, False, c.SUSPENDED, "suspended before the first reconcile", gen)
    elif before.get("reason") == c.SUSPENDED:
        ready = {**before, "observedGeneration": gen}
    else:
        was = f"{before.get('reason')}: {before.get('message')}"
        message = f"suspended (spec.suspend is true); last state {was}"
        ready = c.make(c.READY, before.get("status") == "True", c.SUSPENDED, message, gen)
    return [ready, *kept]


_FAILURE_EVENTS = {
    c.SOURCE_READY: "SourceFailed",
    c.RUNTIME_READY: "RuntimeFailed",
    c.STALLED: "InvalidSpec",
}


def _transitions(prev: Mapping[str, Any], new: Mapping[str, Any]) -> list[Transition]:
    out: list[Transition] = []
    before = prev.get("conditions") or []
    after = new.get("conditions") or []
    old_rev = (prev.get("source") or {}).get("revision")
    new_rev = (new.get("source") or {}).get("revision")
    if new_rev and new_rev != old_rev:
        was = f" (was {old_rev})" if old_rev else ""
        out.append(Transition(False, "NewRevision", f"new revision {new_rev}{was}"))
    for type_, event_reason in _FAILURE_EVENTS.items():
        cond, old = c.find(after, type_), c.find(before, type_)
        if cond is None or cond["reason"] in c.IN_PROGRESS:
            continue
        if type_ == c.STALLED and cond["reason"] != c.INVALID_SPEC:
            continue  # a load error stalls too; RuntimeFailed already tells of it
        failing = cond["status"] == ("True" if type_ == c.STALLED else "False")
        changed = old is None or (old.get("status"), old.get("reason")) != (
            cond["status"],
            cond["reason"],
        )
        if failing and changed:
            out.append(Transition(True, event_reason, f"{cond['reason']}: {cond['message']}"))
    ready_after, ready_before = c.find(after, c.READY), c.find(before, c.READY)
    suspended_after = ready_after is not None and ready_after["reason"] == c.SUSPENDED
    suspended_before = ready_before is not None and ready_before.get("reason") == c.SUSPENDED
    if suspended_after and not suspended_before:
        out.append(Transition(False, "Suspended", "reconciliation suspended (spec.suspend)"))
    elif suspended_before and not suspended_after:
        out.append(Transition(False, "Resumed", "reconciliation resumed"))
    if c.is_true(after, c.READY) and not c.is_true(before, c.READY):
        ready = c.find(after, c.READY)
        out.append(Transition(False, "Ready", str(ready["message"]) if ready else "ready"))
    out.extend(_dead_runs(prev.get("runs") or {}, new.get("runs") or {}))
    out.extend(_scaled(prev.get("scale"), new.get("scale")))
    return out


def _scaled(before: Any, after: Any) -> list[Transition]:
    """A Normal Event when the autoscaler asks for another pod count (as the HPA posts
    SuccessfulRescale), saying why."""
    if not isinstance(after, Mapping) or not isinstance(before, Mapping):
        return []
    old, new = before.get("desired"), after.get("desired")
    if old is None or new is None or old == new:
        return []
    return [Transition(False, "Scaled", f"{old} → {new} pods: {after.get('message', '')}")]


def _dead_runs(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Transition]:
    """A Warning when more runs ran out of attempts (system of record counters only)."""
    if "dead" not in after or "dead" not in before:
        return []  # no counts yet, or counts summed over pods (which know no dead runs)
    more = int(after["dead"]) - int(before["dead"])
    if more <= 0:
        return []
    last = f"; last error: {after['lastError']}" if after.get("lastError") else ""
    plural = "s" if more > 1 else ""
    return [Transition(True, "RunsDead", f"{more} run{plural} ran out of attempts{last}")]
