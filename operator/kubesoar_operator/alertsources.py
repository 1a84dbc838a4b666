"""kopf handlers for AlertSource: validate the spec and its Secrets, write status.

The operator loads this module (`kubesoar_operator.cli`); importing it registers
the handlers on kopf's default registry. The router serves AlertSources on its
own (it watches them and their Secrets); these handlers tell the user, on the
resource, whether it can: `Ready`, `Stalled` with a reason while the spec or a
Secret is unusable, and `status.path`. Secrets change without the AlertSource
changing, so a timer re-checks them. Values are only tested for presence:
they never reach a log line, an Event or the status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubesoar_router import sourcespec
from pydantic import ValidationError

from kubesoar_operator import conditions, refresher

RESOURCE: dict[str, Any] = {
    "group": sourcespec.GROUP,
    "version": sourcespec.VERSION,
    "plural": sourcespec.PLURAL,
}
RECHECK_SECONDS = 30.0

# --- reasons (each with its meaning) -----------------------------------------
READY = "Ready"
"""The router can authenticate senders: the spec is valid and its Secrets hold their keys."""
SUCCEEDED = "Succeeded"
"""Ready: the spec is valid and every referenced Secret key exists."""
INVALID_SPEC = "InvalidSpec"
"""Stalled: the spec is invalid; fix it."""
SECRET_NOT_FOUND = "SecretNotFound"  # noqa: S105 - a reason, not a secret
"""Stalled: a Secret named in auth does not exist in the namespace (re-checked periodically)."""
SECRET_KEY_NOT_FOUND = "SecretKeyNotFound"  # noqa: S105 - a reason, not a secret
"""Stalled: the Secret exists but has no (or an empty) value under the named key."""
SUSPENDED = "Suspended"
"""Not ready on purpose: spec.suspend is true, the router answers 503."""

SecretReader = Callable[[str], Mapping[str, Any] | None]  # name -> data (keys only matter)


def evaluate(
    namespace: str, name: str, spec: Mapping[str, Any], generation: int, read_secret: SecretReader
) -> dict[str, Any]:
    """The status (without counters) an AlertSource should have. Pure but for `read_secret`."""
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "path": sourcespec.ingest_path(namespace, name),
    }

    def outcome(ready: bool, reason: str, message: str, *, stalled: bool) -> dict[str, Any]:
        found = [conditions.make(READY, ready, reason, message, generation)]
        if stalled:
            found.append(conditions.make(conditions.STALLED, True, reason, message, generation))
        status["conditions"] = found
        return status

    try:
        parsed = sourcespec.parse_spec(dict(spec))
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


_core: client.CoreV1Api | None = None


def use_api_client(api_client: client.ApiClient) -> None:
    """Read Secrets with the operator's own credentials (set once at startup by cli.py)."""
    global _core
    _core = client.CoreV1Api(api_client)


def _core_api() -> client.CoreV1Api:
    if _core is None:
        raise kopf.TemporaryError("the operator has not configured its API client yet", delay=5)
    return _core


def _secret_reader(namespace: str) -> SecretReader:
    def read(name: str) -> Mapping[str, Any] | None:
        try:
            secret = _core_api().read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            message = f"reading Secret {name!r}: API error {exc.status}"
            raise kopf.TemporaryError(message, delay=15) from None
        return {**(secret.data or {}), **(secret.string_data or {})}

    return read


def reconcile(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger) -> None:
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
        _secret_reader(namespace),
    )
    wanted["conditions"] = conditions.merge(current.get("conditions"), wanted["conditions"])
    unchanged = all(current.get(key) == value for key, value in wanted.items())
    if unchanged:
        return
    before = conditions.find(current.get("conditions"), READY)
    after = conditions.find(wanted["conditions"], READY)
    assert after is not None
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
    for key, value in wanted.items():
        patch.status[key] = value
    # Conditions present before but no longer wanted (Stalled once fixed) are removed.
    if conditions.find(wanted["conditions"], conditions.STALLED) is None and conditions.find(
        current.get("conditions"), conditions.STALLED
    ):
        patch.status["conditions"] = wanted["conditions"]


@kopf.on.resume(**RESOURCE, id="alertsource")
@kopf.on.create(**RESOURCE, id="alertsource")
@kopf.on.update(**RESOURCE, id="alertsource", field="spec")
def alertsource_reconcile(
    body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any
) -> None:
    reconcile(body, patch, logger)


@kopf.on.event(**RESOURCE)
def alertsource_seen(event: kopf.RawEvent, **_: Any) -> None:
    refresher.REFRESHER.observe(RESOURCE["plural"], event)


def alertsource_recheck(body: kopf.Body) -> None:
    """Re-check the Secrets (they change without the AlertSource changing) and patch status."""
    patch = kopf.Patch()
    reconcile(body, patch, logging.getLogger("kubesoar_operator.alertsources"))
    if not patch.status:
        return
    meta = body["metadata"]
    try:
        client.CustomObjectsApi(_core_api().api_client).patch_namespaced_custom_object_status(
            RESOURCE["group"], RESOURCE["version"], meta["namespace"], RESOURCE["plural"],
            meta["name"], {"status": dict(patch.status)},
        )  # fmt: skip
    except ApiException as exc:
        if exc.status == 404:
            raise refresher.Gone() from None
        raise kopf.TemporaryError(f"API error {exc.status} {exc.reason}") from None


# Not a kopf timer: timers make kopf hold a finalizer on every AlertSource (refresher.py).
refresher.REFRESHER.register(RESOURCE["plural"], alertsource_recheck, RECHECK_SECONDS)
