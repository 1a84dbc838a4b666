"""kopf wiring: which events reconcile a Playbook, and how outcomes map to retries.

All logic lives in `reconcile.py`. Every trigger — create, update (spec,
labels or the `kubesoar.dev/requestedAt` annotation), resume after an operator
restart, and a periodic refresh that re-resolves refs once `interval` passed and
refreshes status from the runtime (refresher.py, not a kopf timer) — runs the
same reconcile.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kubesoar.contracts.kube import API_GROUP, API_VERSION, PLAYBOOK

from kubesoar_operator import autoscale, login, refresher, workers
from kubesoar_operator import conditions as c
from kubesoar_operator.kube import ApiError
from kubesoar_operator.reconcile import Outcome, Reconciler

PREFIX = "kopf.kubesoar.dev"


def configure_settings(settings: kopf.OperatorSettings) -> None:
    # Handler progress and the diff base live in annotations, so status stays ours alone.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    # Events are the transitions the reconcile chooses (kopf.event), one per change and
    # repeated at most every few minutes. kopf's own log lines ("Handler 'reconcile' failed
    # temporarily", on every retry) never become Events: they stay in the log.
    settings.posting.enabled = True
    settings.posting.loggers = False
    settings.posting.level = logging.WARNING
    # The API client's connection pool is sized for these threads (workers.py).
    settings.execution.max_workers = workers.HANDLER_WORKERS
    settings.networking.request_timeout = 60
    settings.watching.server_timeout = 300


def _post(body: kopf.Body, outcome: Outcome) -> None:
    for transition in outcome.transitions:
        kopf.event(
            body,
            type="Warning" if transition.warning else "Normal",
            reason=transition.reason,
            message=transition.message,
        )


def _why(outcome: Outcome) -> str:
    ready = c.find(outcome.status.get("conditions"), c.READY)
    return f"{ready['reason']}: {ready['message']}" if ready else "not ready yet, see status"


def _run(reconciler: Reconciler, body: kopf.Body) -> Outcome:
    try:
        return reconciler.reconcile(body)
    except ApiError as exc:
        raise kopf.TemporaryError(str(exc), delay=10) from None


def _being_deleted(body: kopf.Body) -> bool:
    """Deleting: nothing to reconcile, and a retried handler would hold kopf's finalizer.

    Children go with their owner (garbage collection); kopf releases its finalizer
    once no handler of the object is pending, so a Playbook marked for deletion
    (e.g. with its namespace, whose Secrets vanish first) must not keep retrying.
    """
    return body.metadata.get("deletionTimestamp") is not None


def register(
    reconciler: Reconciler,
    *,
    status_interval: float,
    kubeconfig: str | None = None,
    registry: kopf.OperatorRegistry | None = None,
) -> kopf.OperatorRegistry:
    registry = registry or kopf.get_default_registry()
    resource: dict[str, Any] = {
        "group": API_GROUP,
        "version": API_VERSION,
        "plural": PLAYBOOK.plural,
    }

    login.register(kubeconfig, registry)

    @kopf.on.startup(registry=registry)
    def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_settings(settings)

    @kopf.on.resume(**resource, registry=registry, id="reconcile")
    @kopf.on.create(**resource, registry=registry, id="reconcile")
    @kopf.on.update(**resource, registry=registry, id="reconcile")
    def playbook_reconcile(body: kopf.Body, **_: Any) -> None:
        if _being_deleted(body):
            return
        outcome = _run(reconciler, body)
        if outcome.gone:
            return  # deleted meanwhile: its DELETED event follows
        # A spec change may turn an idle Playbook into one rolling out: look again soon.
        refresher.REFRESHER.refresh_soon(
            PLAYBOOK.plural,
            body.metadata["namespace"],
            body.metadata["name"],
            status_interval if outcome.next_refresh is None else outcome.next_refresh,
        )
        _post(body, outcome)
        if outcome.invalid_spec:
            raise kopf.PermanentError(outcome.invalid_spec)
        if outcome.retry_in is not None:
            raise kopf.TemporaryError(_why(outcome), delay=outcome.retry_in)

    def playbook_refresh(body: kopf.Body) -> float | None:
        # Never raises for a failed source: the refresh keeps ticking, and the
        # reconcile itself backs off Git between ticks.
        if _being_deleted(body):
            return None
        outcome = _run(reconciler, body)
        if outcome.gone:
            # Found gone (its status patch 404s, or the owner check before applying
            # children): stop refreshing it, since its DELETED event may never come.
            raise refresher.Gone()
        _post(body, outcome)
        return outcome.next_refresh  # settled without pods: not before its source is due

    # Not a kopf timer: timers make kopf hold a finalizer on every Playbook (refresher.py).
    refresher.REFRESHER.register(PLAYBOOK.plural, playbook_refresh, status_interval)
    # Idle Playbooks learn of new runs on record from one query for all (runcounts.py).
    refresher.REFRESHER.register_sweep(
        PLAYBOOK.plural, lambda: reconciler.changed_run_counts(), status_interval
    )
    # Autoscaled Playbooks whose replicas should change (a queued run at zero): one query
    # for all every few seconds, and none while no Playbook is autoscaled (autoscale.py).
    refresher.REFRESHER.register_sweep(
        PLAYBOOK.plural,
        lambda: reconciler.autoscaler.due(),
        autoscale.POLL_SECONDS,
        name="autoscale",
    )

    @kopf.on.event(**resource, registry=registry)
    def playbook_seen(event: kopf.RawEvent, **_: Any) -> None:
        refresher.REFRESHER.observe(PLAYBOOK.plural, event)
        if event["type"] == "DELETED":
            meta = event["object"]["metadata"]
            reconciler.forget(meta["namespace"], meta["name"])

    return registry
