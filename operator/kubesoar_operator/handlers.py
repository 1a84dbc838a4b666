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
from kubernetes.client.exceptions import ApiException

from kubesoar_operator import conditions as c
from kubesoar_operator import login, refresher
from kubesoar_operator.reconcile import Outcome, Reconciler
from kubesoar_operator.spec import GROUP, PLURAL, VERSION

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
    settings.execution.max_workers = 16
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
    except ApiException as exc:
        # The exception's text carries response headers; keep the message short.
        raise kopf.TemporaryError(f"API error {exc.status} {exc.reason}", delay=10) from None


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
    timer_interval: float,
    kubeconfig: str | None = None,
    registry: kopf.OperatorRegistry | None = None,
) -> kopf.OperatorRegistry:
    registry = registry or kopf.get_default_registry()
    resource: dict[str, Any] = {"group": GROUP, "version": VERSION, "plural": PLURAL}

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
        _post(body, outcome)
        if outcome.invalid_spec:
            raise kopf.PermanentError(outcome.invalid_spec)
        if outcome.retry_in is not None:
            raise kopf.TemporaryError(_why(outcome), delay=outcome.retry_in)

    def playbook_refresh(body: kopf.Body) -> None:
        # Never raises for a failed source: the refresh keeps ticking, and the
        # reconcile itself backs off Git between ticks.
        if _being_deleted(body):
            return
        try:
            outcome = _run(reconciler, body)
        except kopf.TemporaryError:
            meta = body["metadata"]
            if reconciler.kube.read_playbook(meta["namespace"], meta["name"]) is None:
                reconciler.forget(meta["namespace"], meta["name"])  # its DELETED may never come
                raise refresher.Gone() from None
            raise
        _post(body, outcome)

    # Not a kopf timer: timers make kopf hold a finalizer on every Playbook (refresher.py).
    refresher.REFRESHER.register(PLURAL, playbook_refresh, timer_interval)

    @kopf.on.event(**resource, registry=registry)
    def playbook_seen(event: kopf.RawEvent, **_: Any) -> None:
        refresher.REFRESHER.observe(PLURAL, event)
        if event["type"] == "DELETED":
            meta = event["object"]["metadata"]
            reconciler.forget(meta["namespace"], meta["name"])

    return registry
