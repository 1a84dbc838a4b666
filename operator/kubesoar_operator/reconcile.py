"""One reconcile of one Playbook: spec → source → artifact → children → observe → status.

Kept free of kopf so that it can be driven by any trigger (kopf's create, update
and resume handlers, and the periodic refresh in `refresher.py`) and tested
directly; `handlers.py` maps the `Outcome` to kopf's retry semantics. Calls for
one Playbook are serialized by a lock, since the refresher's worker threads run
alongside kopf's handler threads.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from kubesoar.contracts.kube import (
    ANNOTATION_COMMIT,
    ANNOTATION_REQUESTED_AT,
    ANNOTATION_REVISION,
    runtime_selector_labels,
)

from kubesoar_operator import autoscale, children, metrics, render, report, source
from kubesoar_operator import conditions as c
from kubesoar_operator.artifacts import ArtifactStore
from kubesoar_operator.gitsource import GitClient
from kubesoar_operator.kube import Kube, NotFound
from kubesoar_operator.report import PodState
from kubesoar_operator.runcounts import RunCounts
from kubesoar_operator.sanitize import clean_url
from kubesoar_operator.sharedsource import SharedSource
from kubesoar_operator.signing import DEFAULT_TTL_SECONDS, Signer
from kubesoar_operator.spec import InvalidSpec, PlaybookSpec, parse_spec
from kubesoar_operator.status import (
    Observation,
    RolloutState,
    SourceState,
    Transition,
    summarize,
)

log = logging.getLogger("kubesoar_operator.reconcile")

# The same Event (reason and message) is posted at most once in this many seconds: a
# crash-looping pod or a flapping Git server would otherwise post one per cycle.
EVENT_REPEAT_SECONDS = 600.0
# A settled Playbook with no pods (spec.replicas 0, or suspended) is looked at again when
# its source falls due, a watch event or changed run counters say so, and at the latest
# after this long (a safety net for changes nobody reports, such as a deleted Deployment).
IDLE_RESYNC_SECONDS = 300.0
# `status.source.lastResolvedTime` of an unchanged revision and artifact is rewritten at
# most this often: every interval it would cost each Playbook a status write (and the
# operator a watch event), for a heartbeat nobody acts on (as Nodes moved theirs to Leases).
RESOLVED_TIME_EVERY_SECONDS = 600.0
# User actions: always worth an Event, however soon they repeat.
_ALWAYS_POSTED = frozenset({"Suspended", "Resumed", "NewRevision"})
_BAD_WAITING = {
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
}


@dataclass(frozen=True)
class Settings:
    artifact_url: str
    system_namespace: str = "kubesoar-system"
    artifact_port: int = 8090
    router_port: int = render.ROUTER_PORT
    runtime_image: str = render.DEFAULT_IMAGE
    url_ttl_seconds: int = DEFAULT_TTL_SECONDS


@dataclass
class Outcome:
    status: dict[str, Any]
    transitions: list[Transition]
    retry_in: float | None = None  # a temporary failure: try again after this many seconds
    # The Playbook no longer exists (or this body is of an older object of that name):
    # nothing was applied or written, and its memory is forgotten.
    gone: bool = False
    invalid_spec: str | None = None  # a permanent failure until the spec changes
    suspended: bool = False
    # Seconds until the periodic refresh has something to look at again (None: at its
    # usual interval): a settled Playbook with no pods only when its source falls due.
    next_refresh: float | None = None


class _OwnerGone(Exception):
    """The Playbook a reconcile acts for was deleted (or replaced) meanwhile."""


@dataclass
class _State:
    """What the operator remembers about one Playbook between reconciles."""

    source_memory: source.SourceMemory = field(default_factory=source.SourceMemory)
    # Fingerprint of each child (kind/name) as last applied: only changed ones are applied
    # again (a new commit changes the Deployment alone: one call, not four).
    applied: dict[str, str] = field(default_factory=dict)
    # Fingerprint of the Deployment as last applied, `replicas` left out: when only the
    # count changed, the pods' revision did not (a scale, not a rollout).
    applied_shape: str = ""
    # The status this operator last wrote; fresher than a body the refresher was handed.
    last_status: dict[str, Any] | None = None
    # (Event reason, message) -> when it was last posted, to keep flapping from flooding.
    posted: dict[tuple[str, str], float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        git: GitClient,
        store: ArtifactStore,
        signer: Signer,
        settings: Settings,
        http: httpx.Client,
    ) -> None:
        self.kube, self.git, self.store, self.signer = kube, git, store, signer
        self.settings, self.http = settings, http
        # Resolutions and artifacts shared by Playbooks on the same repository, ref and
        # credentials (sharedsource.py).
        self.sources = SharedSource(git, store)
        # With the system of record, status.runs comes from it (runcounts.py), and so does
        # the queue autoscaled Playbooks follow (`use_database`).
        self.run_counts: RunCounts | None = None
        self.autoscaler = autoscale.Autoscaler(None)
        self._states: dict[tuple[str, str], _State] = {}
        self._guard = threading.Lock()

    def _state(self, namespace: str, name: str) -> _State:
        with self._guard:
            return self._states.setdefault((namespace, name), _State())

    def use_database(self, run_counts: RunCounts) -> None:
        """Run counters and the autoscaler's queue from the system of record."""
        self.run_counts = run_counts
        self.autoscaler = autoscale.Autoscaler(run_counts.active_runs)

    def forget(self, namespace: str, name: str) -> None:
        """Drop memory and artifacts of a deleted Playbook."""
        with self._guard:
            self._states.pop((namespace, name), None)
        self.autoscaler.forget(namespace, name)
        self.store.prune(namespace, name, keep=set())
        metrics.record_ready(namespace, name, None)

    # --- the reconcile ------------------------------------------------------
    def reconcile(self, body: Mapping[str, Any]) -> Outcome:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        state = self._state(namespace, name)
        started = time.monotonic()
        with state.lock:
            try:
                outcome = self._reconcile(body, state)
            except (NotFound, _OwnerGone):
                outcome = Outcome({}, [], gone=True)
            outcome.transitions = _unrepeated(outcome.transitions, state, time.monotonic())
        if outcome.gone:
            log.info("%s/%s is gone: forgotten", namespace, name)
            self.forget(namespace, name)
            return outcome
        metrics.DURATION.observe(time.monotonic() - started)
        ready = c.find(outcome.status.get("conditions"), c.READY)
        metrics.record_ready(namespace, name, ready["status"] if ready else None)
        if outcome.suspended:
            metrics.RECONCILES.labels(result="suspended").inc()
        elif outcome.invalid_spec or outcome.retry_in is not None:
            metrics.RECONCILES.labels(result="failed").inc()
            metrics.FAILURES.labels(reason=ready["reason"] if ready else "Unknown").inc()
        else:
            metrics.RECONCILES.labels(result="succeeded").inc()
        for transition in outcome.transitions:
            metrics.TRANSITIONS.labels(reason=transition.reason).inc()
        return outcome

    def _reconcile(self, body: Mapping[str, Any], state: _State) -> Outcome:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        previous: Mapping[str, Any] = state.last_status or body.get("status") or {}
        requested = (meta.get("annotations") or {}).get(ANNOTATION_REQUESTED_AT)
        forced = requested is not None and requested != previous.get("lastHandledReconcileAt")
        obs = Observation(
            generation=int(meta.get("generation") or 0),
            endpoint=render.endpoint(name, namespace),
            requested_at=requested,
        )
        try:
            spec = parse_spec(body.get("spec"))
        except InvalidSpec as exc:
            self.autoscaler.forget(namespace, name)  # nothing is applied: nothing to poll for
            obs.spec_error = str(exc)
            status, transitions = self._publish(namespace, name, obs, previous)
            state.last_status = {**previous, **status}
            return Outcome(status, transitions, invalid_spec=obs.spec_error)
        if spec.suspend:
            # Nothing is resolved or applied; the status only says so (once, not every tick).
            self.autoscaler.forget(namespace, name)
            obs.suspended = True
            status, transitions = self._publish(namespace, name, obs, previous)
            state.last_status = {**previous, **status}
            return Outcome(status, transitions, suspended=True, next_refresh=IDLE_RESYNC_SECONDS)

        not_before = _requested_moment(requested) if forced else None
        retry_in = self._source(
            namespace, name, spec, state, obs, forced=forced, not_before=not_before
        )
        if obs.source is not None:
            obs.source = _coarse_resolved_time(obs.source, previous.get("source"))
        replicas, scaled = self._scale(namespace, name, spec, obs, previous)
        # The Deployment as read before applying, when nothing was applied: observing
        # reuses it instead of reading it again (one API call fewer per refresh).
        unchanged: tuple[dict[str, Any] | None] | None = None
        if obs.source is not None:
            applied_retry, unchanged = self._apply(body, spec, state, obs, replicas)
            retry_in = applied_retry or retry_in
        self._observe(namespace, name, replicas, obs, unchanged)
        if scaled is not None:
            _publish_scale(obs, *scaled)
        status, transitions = self._publish(namespace, name, obs, previous)
        state.last_status = {**previous, **status}
        next_refresh = None if retry_in is not None else _idle_for(spec, state, obs)
        return Outcome(status, transitions, retry_in=retry_in, next_refresh=next_refresh)

    def changed_run_counts(self) -> list[tuple[str, str]]:
        """Playbooks whose run counters on record differ from their status: one query for
        all (runcounts.py), so that idle Playbooks need no refresh to notice new runs."""
        if self.run_counts is None:
            return []
        with self._guard:
            known = [(key, state.last_status) for key, state in self._states.items()]
        changed = []
        for (namespace, name), last in known:
            if last is None:
                continue
            runs = self.run_counts.status_runs(namespace, name)
            if runs is None:
                return []  # the database is unreachable: nothing is known to have changed
            if runs != last.get("runs"):
                changed.append((namespace, name))
        return changed

    # --- steps -------------------------------------------------------------
    def _scale(
        self,
        namespace: str,
        name: str,
        spec: PlaybookSpec,
        obs: Observation,
        previous: Mapping[str, Any],
    ) -> tuple[int, tuple[autoscale.Policy, autoscale.Decision, str | None] | None]:
        """The replicas to apply: the fixed `spec.replicas`, or what the autoscaler decides
        (with its policy, decision and the commit whose entry points are known)."""
        policy = autoscale.Policy.of(spec)
        if policy is None:
            self.autoscaler.forget(namespace, name)
            return spec.replicas, None
        before = previous.get("scale")
        before = before if isinstance(before, Mapping) else None
        known = before.get("entryPointsCommit") if before is not None else None
        known = known if isinstance(known, str) else None
        learn = obs.source is not None and known != obs.source.commit
        decision = self.autoscaler.scale(namespace, name, policy, learn=learn, previous=before)
        if before is not None and before.get("desired") != decision.replicas:
            log.info(
                "%s/%s scales to %d pods: %s: %s",
                namespace, name, decision.replicas, decision.reason, decision.message,
            )  # fmt: skip
        return decision.replicas, (policy, decision, known)

    def _source(
        self,
        namespace: str,
        name: str,
        spec: PlaybookSpec,
        state: _State,
        obs: Observation,
        *,
        forced: bool,
        not_before: float | None = None,
    ) -> float | None:
        """Resolve and pack when due (source.py); fills obs.source or obs.source_error.

        Git is asked once for every Playbook with the same repository, ref and credentials
        (sharedsource.py): an answer younger than this Playbook's interval serves it, and
        for a `requestedAt`, one that started no earlier than the request (`not_before`).
        """
        memory, now = state.source_memory, time.monotonic()
        missing = bool(memory.digest) and self.store.get(namespace, name, memory.digest) is None
        decision = source.decide(
            memory,
            source.SourceKey.of(spec),
            now=now,
            interval=spec.source.interval_seconds,
            forced=forced,
            artifact_missing=missing,
        )
        retry_in: float | None = None
        if decision.step is source.Step.WAIT:
            retry_in = decision.wait  # backing off: do not hammer Git
        elif decision.step is source.Step.RESOLVE:
            retry_in = source.resolve_and_pack(
                self.kube,
                self.git,
                self.store,
                namespace=namespace,
                name=name,
                spec=spec,
                memory=memory,
                changed=decision.changed,
                now=now,
                resolved_at=c.now_rfc3339(),
                shared=self.sources,
                max_age=spec.source.interval_seconds,
                not_before_wall=not_before,
            )
        if retry_in is not None:
            obs.source_error, obs.source_failures = memory.last_error, memory.failures
            return retry_in
        obs.source = self._source_state(spec.source.git.url, memory)
        return None

    def _source_state(self, url: str, memory: source.SourceMemory) -> SourceState:
        assert memory.resolved is not None
        return SourceState(
            url=clean_url(url),
            revision=memory.resolved.revision,
            commit=memory.resolved.sha,
            digest=memory.digest,
            resolved_at=memory.resolved_at,
        )

    def _apply(
        self,
        body: Mapping[str, Any],
        spec: PlaybookSpec,
        state: _State,
        obs: Observation,
        replicas: int,
    ) -> tuple[float | None, tuple[dict[str, Any] | None] | None]:
        """Apply the children when they changed (or the Deployment is missing): the retry
        delay of a failure, and `(deployment,)` as read when nothing was applied."""
        assert obs.source is not None
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        ctx = render.RenderContext(
            name=name,
            namespace=namespace,
            spec=spec,
            commit=obs.source.commit,
            revision=obs.source.revision,
            digest=obs.source.digest,
            artifact_url=self.signer.url(
                self.settings.artifact_url,
                namespace,
                name,
                obs.source.digest,
                ttl_seconds=self.settings.url_ttl_seconds,
            ),
            system_namespace=self.settings.system_namespace,
            artifact_port=self.settings.artifact_port,
            router_port=self.settings.router_port,
            default_image=self.settings.runtime_image,
            replicas=replicas,
        )
        objs = children.owned_children(ctx, body)
        fingerprints = {_child_key(o): children.fingerprint([o]) for o in objs}
        deployment = self.kube.read_deployment(namespace, render.runtime_name(name))
        if deployment is None:
            changed = objs  # missing (deleted by hand, or never applied): all of them again
        else:
            changed = [
                o for o in objs if state.applied.get(_child_key(o)) != fingerprints[_child_key(o)]
            ]
        if not changed:
            return None, (deployment,)
        shape = _shape(objs)
        obs.resized = bool(state.applied_shape) and shape == state.applied_shape
        if not self._owner_current(body):
            # A body from before the Playbook was deleted (a queued refresh, a late event):
            # applying would re-create children the garbage collector just removed.
            raise _OwnerGone
        try:
            children.apply_all(self.kube, changed)
        except children.ApplyError as exc:
            obs.apply_error = str(exc)
            state.applied = {}  # not knowing which went through: all of them next time
            state.applied_shape = ""
            return source.MIN_BACKOFF, None
        state.applied = fingerprints
        state.applied_shape = shape
        return None, None

    def _owner_current(self, body: Mapping[str, Any]) -> bool:
        """The Playbook of `body` still exists, is the same object (uid) and is not being
        deleted: read afresh, since children are only applied after a change."""
        meta = body["metadata"]
        current = self.kube.read_playbook(meta["namespace"], meta["name"])
        if current is None or current["metadata"].get("deletionTimestamp"):
            return False
        uid = meta.get("uid")
        return uid is None or current["metadata"].get("uid") == uid

    def _observe(
        self,
        namespace: str,
        name: str,
        desired: int,
        obs: Observation,
        known: tuple[dict[str, Any] | None] | None = None,
    ) -> None:
        if known is not None:
            (deployment,) = known
        else:
            deployment = self.kube.read_deployment(namespace, render.runtime_name(name))
        if deployment is None:
            obs.rollout = RolloutState(exists=False, desired=desired)
            return
        dep_status = deployment.get("status") or {}
        annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
        # None wanted and the controller counts none: no pod to list (an idle Playbook's
        # refresh then costs one read). Pods being deleted are left out either way.
        no_pods = desired == 0 and not int(dep_status.get("replicas") or 0)
        listed = () if no_pods else self.kube.list_pods(namespace, runtime_selector_labels(name))
        pods = tuple(_pod_state(p) for p in listed if not p["metadata"].get("deletionTimestamp"))
        obs.rollout = RolloutState(
            exists=True,
            desired=desired,
            commit=annotations.get(ANNOTATION_COMMIT, ""),
            revision=annotations.get(ANNOTATION_REVISION, ""),
            generation_observed=int(dep_status.get("observedGeneration") or 0)
            >= int(deployment["metadata"].get("generation") or 0),
            replicas=int(dep_status.get("replicas") or 0),
            updated=int(dep_status.get("updatedReplicas") or 0),
            ready=int(dep_status.get("readyReplicas") or 0),
            pods=pods,
        )
        token = self.signer.caller_token(namespace, name)
        reports = report.collect(self.http, pods, render.RUNTIME_PORT, token)
        obs.summary = report.aggregate(reports, obs.rollout.commit)
        if self.run_counts is not None:
            recorded = self.run_counts.status_runs(namespace, name)
            if recorded is not None:  # else (database unreachable) the pods' counters
                obs.summary.runs = recorded

    def _publish(
        self, namespace: str, name: str, obs: Observation, previous: Mapping[str, Any]
    ) -> tuple[dict[str, Any], list[Transition]]:
        status, transitions = summarize(obs, previous)
        if _differs(status, previous):
            self.kube.patch_status(namespace, name, status)
        return status, transitions


def _publish_scale(
    obs: Observation, policy: autoscale.Policy, decision: autoscale.Decision, known: str | None
) -> None:
    """`status.scale`, and whether the current commit's entry points are known (a pod
    at that commit reported them now, or one did before)."""
    rollout, current = obs.rollout, obs.source
    if current is not None and rollout is not None and rollout.commit == current.commit:
        if obs.summary.reports_at_commit:
            known = current.commit
    obs.scaling_known = current is not None and known == current.commit
    obs.scale = autoscale.as_status(policy, decision, known)


def _coarse_resolved_time(current: SourceState, before: Any) -> SourceState:
    """`current` with the previous status's `lastResolvedTime` when the revision and the
    artifact are the same and that time is less than `RESOLVED_TIME_EVERY_SECONDS` old."""
    if not isinstance(before, Mapping):
        return current
    same = (
        before.get("revision") == current.revision
        and before.get("digest") == f"sha256:{current.digest}"
    )
    previous_time = before.get("lastResolvedTime")
    if not same or not isinstance(previous_time, str):
        return current
    try:
        then = datetime.fromisoformat(previous_time.replace("Z", "+00:00"))
        now = datetime.fromisoformat(current.resolved_at.replace("Z", "+00:00"))
    except ValueError:
        return current
    if timedelta(0) <= now - then < timedelta(seconds=RESOLVED_TIME_EVERY_SECONDS):
        return dataclasses.replace(current, resolved_at=previous_time)
    return current


def _shape(objs: list[dict[str, Any]]) -> str:
    """Fingerprint of the rendered Deployment without its `replicas`."""
    deployment = next(o for o in objs if o["kind"] == "Deployment")
    spec = {k: v for k, v in deployment["spec"].items() if k != "replicas"}
    return children.fingerprint([{**deployment, "spec": spec}])


def _child_key(obj: Mapping[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def _idle_for(spec: PlaybookSpec, state: _State, obs: Observation) -> float | None:
    """Seconds a settled Playbook without pods can wait for its next refresh, or None
    while anything is under way, failing, or running in pods (whose reports are polled)."""
    rollout, source_state = obs.rollout, obs.source
    settled = (
        source_state is not None
        and obs.apply_error is None
        and rollout is not None
        and rollout.exists
        and rollout.generation_observed
        and rollout.desired == 0
        and rollout.replicas == 0
        and not rollout.pods
    )
    if not settled:
        return None
    memory = state.source_memory
    source_due = memory.resolved_monotonic + spec.source.interval_seconds - time.monotonic()
    return max(0.0, min(source_due, IDLE_RESYNC_SECONDS))


def _requested_moment(requested: str | None) -> float:
    """The wall-clock moment of a `requestedAt` (`time.time()` scale): a resolution that
    started then or later has seen what was pushed before the request.

    A timestamp (RFC 3339, as `flux reconcile` and `date -u +%FT%TZ` write it) lets
    every Playbook requested at once share one resolution: whole seconds count from the
    end of that second, since the push may have happened within it, and the first
    resolution started for that moment answers the others with the same one
    (sharedsource.py). Anything else means now: this Playbook asks afresh.
    """
    try:
        moment = datetime.fromisoformat((requested or "").strip().replace("Z", "+00:00"))
    except ValueError:
        return time.time()
    if moment.tzinfo is None:
        return time.time()
    return moment.timestamp() + (1.0 if moment.microsecond == 0 else 0.0)


def _unrepeated(transitions: list[Transition], state: _State, now: float) -> list[Transition]:
    """Drop transitions whose Event was posted within `EVENT_REPEAT_SECONDS`."""
    state.posted = {k: t for k, t in state.posted.items() if now - t < EVENT_REPEAT_SECONDS}
    kept = []
    for transition in transitions:
        key = (transition.reason, transition.message)
        if transition.reason not in _ALWAYS_POSTED and key in state.posted:
            continue
        state.posted[key] = now
        kept.append(transition)
    return kept


def _pod_state(pod: Mapping[str, Any]) -> PodState:
    status = pod.get("status") or {}
    ready = any(
        cond.get("type") == "Ready" and cond.get("status") == "True"
        for cond in status.get("conditions") or ()
    )
    problem = None
    for kind, statuses in (
        ("init container", status.get("initContainerStatuses") or ()),
        ("container", status.get("containerStatuses") or ()),
    ):
        for cs in statuses:
            state = cs.get("state") or {}
            waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
            if waiting.get("reason") in _BAD_WAITING:
                problem = f"{kind} {cs.get('name')}: {waiting['reason']}"
            elif terminated and terminated.get("exitCode", 0) != 0 and kind == "init container":
                problem = (
                    f"{kind} {cs.get('name')} failed "
                    f"(exit {terminated.get('exitCode')}, {terminated.get('reason', 'Error')})"
                )
    annotations = pod["metadata"].get("annotations") or {}
    return PodState(
        name=pod["metadata"]["name"],
        ip=status.get("podIP"),
        ready=ready,
        commit=annotations.get(ANNOTATION_COMMIT),
        problem=problem,
    )


def _differs(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    for key, value in new.items():
        if value is None:
            if old.get(key) is not None:
                return True
        elif old.get(key) != value:
            return True
    return False
