"""kopf handlers for AlertSource: validate the spec and its Secrets, write status.

As for Playbooks (`handlers.py`), `register(api, registry=…)` wires the handlers
(`kubesoar_operator.cli` calls it). The router serves AlertSources on its own (it
watches them and their Secrets); these handlers tell the user, on the resource,
whether it can: `Ready`, `Stalled` with a reason while the spec or a Secret is
unusable, and `status.path`. Secrets change without the AlertSource changing, so
the refresher (`refresher.py`) re-checks them. Every path goes through `check`, the
one status writer. Values are only tested for presence: they never reach a log
line, an Event or the status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf
from kubesoar.contracts import alertsource, http, kube
from kubesoar.contracts.kube import ALERT_SOURCE
from pydantic import ValidationError

from kubesoar_operator import conditions, refresher
from kubesoar_operator.kube import ApiError, Kube, NotFound

RESOURCE: dict[str, Any] = {
    "group": kube.API_GROUP,
    "version": kube.API_VERSION,
    "plural": kube.ALERT_SOURCE.plural,
}
RECHECK_SECONDS = 30.0
_log = logging.getLogger("kubesoar_operator.alertsources")

# Reasons (kubesoar.contracts.conditions): Ready=True `Succeeded`; Stalled `InvalidSpec`,
# `SecretNotFound` (re-checked periodically), `SecretKeyNotFound`; `Suspended` (the router
# answers 503).
READY = conditions.READY
SUCCEEDED = conditions.SUCCEEDED
INVALID_SPEC = conditions.INVALID_SPEC
SECRET_NOT_FOUND = conditions.SECRET_NOT_FOUND
SECRET_KEY_NOT_FOUND = conditions.SECRET_KEY_NOT_FOUND
SUSPENDED = conditions.SUSPENDED

SecretReader = Callable[[str], Mapping[str, Any] | None]  # name -> data (keys only matter)


def evaluate(
    namespace: str, name: str, spec: Mapping[str, Any], generation: int, read_secret: SecretReader
) -> dict[str, Any]:
    """The status (without counters) an AlertSource should have. Pure but for `read_secret`."""
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "path": http.ingest_path(namespace, name),
    }

    def outcome(ready: bool, reason: str, message: str, *, stalled: bool) -> dict[str, Any]:
        found = [conditions.make(READY, ready, reason, message, generation)]
        if stalled:
            found.append(conditions.make(conditions.STALLED, True, reason, message, generation))
        status["conditions"] = found
        return status

    try:
        parsed = alertsource.parse_spec(dict(spec))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        return outcome(False, INVALID_SPEC, f"spec.{where}: {first['msg']}", stalled=True)
    for ref in parsed.auth.secret_refs():
        data = read_secret(ref.name)
        if data is None:
            message = f"Secret {ref.name!r} not found in namespace {namespace!r}"
            return outcome(False, SECRET_NOT_FOUND, message, stalled=True)
        if not data.get(ref.key):
            message = f"Secret {ref.name!r} has no value under key {ref.key!r}"
            return outcome(False, SECRET_KEY_NOT_FOUND, message, stalled=True)
    if parsed.suspend:
        return outcome(False, SUSPENDED, "spec.suspend is true: alerts get 503", stalled=False)
    return outcome(True, SUCCEEDED, f"accepting {parsed.format.value} alerts", stalled=False)


def _secret_reader(api: Kube, namespace: str) -> SecretReader:
    def read(name: str) -> Mapping[str, Any] | None:
        try:
            return api.read_secret_data(namespace, name)
        except ApiError as exc:
            message = f"reading Secret {name!r}: API error {exc.status}"
            raise kopf.TemporaryError(message, delay=15) from None

    return read


def check(api: Kube, body: kopf.Body, logger: logging.Logger | kopf.Logger) -> None:
    """Evaluate the AlertSource and write its status if that changed (the one writer:
    the kopf handlers and the periodic re-check both come here). A changed Ready reason
    is logged and posted as an Event once. `NotFound` when the object is gone."""
    meta = body["metadata"]
    if meta.get("deletionTimestamp"):
        return  # nothing to report on, and a retry would hold kopf's finalizer
    namespace, name = meta["namespace"], meta["name"]
    current = dict(body.get("status") or {})
    wanted = evaluate(
        namespace,
        name,
        body.get("spec") or {},
        int(meta.get("generation") or 0),
        _secret_reader(api, namespace),
    )
    wanted["conditions"] = conditions.merge(current.get("conditions"), wanted["conditions"])
    if all(current.get(key) == value for key, value in wanted.items()):
        return
    before = conditions.find(current.get("conditions"), READY)
    after = conditions.find(wanted["conditions"], READY)
    assert after is not None
    # A merge patch replaces the conditions list whole: a Stalled that no longer
    # applies goes with it.
    api.patch_status(namespace, name, wanted, kind=ALERT_SOURCE)
    if before is None or before.get("reason") != after["reason"]:
        # The operator posts only its own transitions as Events (not kopf's log lines),
        # so a changed Ready reason is both logged and posted, once per transition.
        healthy = after["status"] == "True"
        log = logger.info if healthy else logger.warning
        log("%s: %s", after["reason"], after["message"])
        kopf.event(
            body,
            type="Normal" if healthy else "Warning",
            reason=after["reason"],
            message=after["message"],
        )


def register(
    api: Kube,
    *,
    registry: kopf.OperatorRegistry | None = None,
    recheck_seconds: float = RECHECK_SECONDS,
) -> kopf.OperatorRegistry:
    """Register the AlertSource handlers on `registry` and the re-check on the refresher."""
    registry = registry or kopf.get_default_registry()
    plural = RESOURCE["plural"]

    @kopf.on.resume(**RESOURCE, registry=registry, id="alertsource")
    @kopf.on.create(**RESOURCE, registry=registry, id="alertsource")
    @kopf.on.update(**RESOURCE, registry=registry, id="alertsource", field="spec")
    def alertsource_reconcile(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
        try:
            check(api, body, logger)
        except NotFound:
            return  # deleted meanwhile: its DELETED event follows
        except ApiError as exc:
            raise kopf.TemporaryError(str(exc)) from None

    @kopf.on.event(**RESOURCE, registry=registry)
    def alertsource_seen(event: kopf.RawEvent, **_: Any) -> None:
        refresher.REFRESHER.observe(plural, event)

    def alertsource_recheck(body: kopf.Body) -> None:
        """Re-check the Secrets (they change without the AlertSource changing)."""
        try:
            check(api, body, _log)
        except NotFound:
            raise refresher.Gone() from None
        except ApiError as exc:
            raise kopf.TemporaryError(str(exc)) from None

    # Not a kopf timer: timers make kopf hold a finalizer on every AlertSource (refresher.py).
    refresher.REFRESHER.register(plural, alertsource_recheck, recheck_seconds)
    return registry
