"""Condition types and reasons, declared once with their meaning.

Conditions follow kstatus: `Ready` always; `Reconciling` and `Stalled` only
while true (they are dropped when false, so `kubectl wait` and kstatus-aware
tools such as Argo CD and Flux read them correctly); `SourceReady` and
`RuntimeReady` say which half is at fault.

Every failing reason belongs to one of three kinds, which decides what sits
next to `Ready=False`:

- in progress (`IN_PROGRESS`): work under way → `Reconciling=True` with that reason;
- retried (every other failure): may heal on its own (network, credentials
  created later, pods crash-looping) → `Reconciling=True`, reason
  `ProgressingWithRetry`;
- terminal (`TERMINAL`): only a new spec or a new commit heals it →
  `Stalled=True` with that reason, `Reconciling` absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

# --- types -----------------------------------------------------------------
READY = "Ready"
"""The Playbook runs the pinned revision on every requested replica."""
RECONCILING = "Reconciling"
"""The operator is moving the Playbook towards its spec (present only while true)."""
STALLED = "Stalled"
"""The operator cannot make progress until the spec changes (present only while true)."""
SOURCE_READY = "SourceReady"
"""The Git ref resolved to a commit and the artifact of `path` is packed and served."""
RUNTIME_READY = "RuntimeReady"
"""The runtime pods are ready and loaded the module at the pinned commit."""

ALL_TYPES = (READY, RECONCILING, STALLED, SOURCE_READY, RUNTIME_READY)
TRANSIENT_TYPES = (RECONCILING, STALLED)

# --- reasons ---------------------------------------------------------------
REASONS: dict[str, str] = {}


def _reason(name: str, meaning: str) -> str:
    REASONS[name] = meaning
    return name


SUCCEEDED = _reason("Succeeded", "Everything this condition covers is in place.")
PROGRESSING = _reason("Progressing", "Work is under way; the message says what waits.")
INVALID_SPEC = _reason("InvalidSpec", "The spec is invalid; fix it, nothing retries until then.")
SUSPENDED = _reason(
    "Suspended", "spec.suspend is true: nothing is reconciled; Ready keeps its last status."
)
PROGRESSING_WITH_RETRY = _reason(
    "ProgressingWithRetry",
    "A failure that may heal is retried with backoff; the message names it (Reconciling).",
)
GIT_OPERATION_FAILED = _reason(
    "GitOperationFailed", "Git could not be reached or failed; retried with backoff."
)
AUTHENTICATION_FAILED = _reason(
    "AuthenticationFailed", "The Git server refused the credentials of `secretRef`."
)
SECRET_NOT_FOUND = _reason(
    "SecretNotFound", "The Secret named in `secretRef` is missing or lacks the expected keys."
)
REF_NOT_FOUND = _reason("RefNotFound", "The branch, tag, semver range or commit does not exist.")
ARTIFACT_FAILED = _reason(
    "ArtifactFailed", "`path` is missing at the commit or the packed folder is too large."
)
APPLY_FAILED = _reason(
    "ApplyFailed", "The API server refused a child object (quota, admission, RBAC)."
)
ARTIFACT_TOO_LARGE = _reason(
    "ArtifactTooLarge",
    "The folder at `path` has a file or a total over the operator's limits (named in the "
    "message); nothing is retried until the spec or the commit changes.",
)
ROLLING_OUT = _reason("RollingOut", "Pods of the new revision are starting.")
LOAD_FAILED = _reason(
    "LoadFailed", "The runtime could not import the module; the message has the error and line."
)
RUNTIME_UNAVAILABLE = _reason(
    "RuntimeUnavailable", "Pods are not ready (image, scheduling, crash); see the pods' events."
)


IN_PROGRESS = frozenset({PROGRESSING, ROLLING_OUT})
"""Not failures: the operator waits for work under way (Reconciling)."""
TERMINAL = frozenset({INVALID_SPEC, LOAD_FAILED, ARTIFACT_TOO_LARGE})
"""Failures retrying cannot heal: a spec change or a new commit must (Stalled).

A module that fails to import is terminal: the same commit fails the same way on
every retry. The ref is still re-resolved every `interval`, so a fixing commit on
a branch or a semver range is picked up without anyone touching the Playbook.
"""


def now_rfc3339() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def make(
    type_: str, status: bool, reason: str, message: str, observed_generation: int
) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message[:1024],
        "observedGeneration": observed_generation,
    }


def merge(
    previous: Iterable[Mapping[str, Any]] | None,
    current: Iterable[Mapping[str, Any]],
    *,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """The new conditions list, keeping `lastTransitionTime` where status did not change.

    Transient types (`Reconciling`, `Stalled`) are only kept when true.
    Conditions come out in a stable order (`ALL_TYPES`).
    """
    stamp = now or now_rfc3339()
    before = {c.get("type"): c for c in previous or ()}
    result = []
    for cond in current:
        if cond["type"] in TRANSIENT_TYPES and cond["status"] != "True":
            continue
        merged = dict(cond)
        old = before.get(cond["type"])
        same = old is not None and old.get("status") == cond["status"]
        merged["lastTransitionTime"] = (
            old.get("lastTransitionTime", stamp) if same and old is not None else stamp
        )
        result.append(merged)
    order = {t: i for i, t in enumerate(ALL_TYPES)}
    return sorted(result, key=lambda c: order.get(c["type"], len(order)))


def find(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == type_), None)


def is_true(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> bool:
    cond = find(conditions, type_)
    return cond is not None and cond.get("status") == "True"
