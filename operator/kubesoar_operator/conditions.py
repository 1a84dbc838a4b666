"""Conditions on Playbook status: how the operator uses the contract's types and reasons.

Conditions follow kstatus: `Ready` always; `Reconciling` and `Stalled` only
while true (they are dropped when false, so `kubectl wait` and kstatus-aware
tools such as Argo CD and Flux read them correctly); `SourceReady` and
`RuntimeReady` say which half is at fault.

Every failing reason belongs to one of four kinds, which decides what sits
next to `Ready=False`:

- in progress (`IN_PROGRESS`): work under way → `Reconciling=True` with that reason;
- retried (every other failure): may heal on its own (network, a timeout, a 5xx,
  pods crash-looping) → `Reconciling=True`, reason `ProgressingWithRetry`;
- persistent (`PERSISTENT`): a source failure that someone usually has to fix
  (credentials, a repository or ref that does not exist, a missing Secret). Retried
  like the above, and so `Reconciling` at first; after `STALL_AFTER_FAILURES`
  failed attempts in a row → `Stalled=True` with that reason and `Reconciling`
  absent, while the attempts go on with backoff, so a fix heals it unaided;
- terminal (`TERMINAL`): only a new spec or a new commit heals it →
  `Stalled=True` with that reason, `Reconciling` absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

# The names and their meanings are the contract (kubesoar.contracts.conditions); which
# reasons are in progress, retried or terminal is this operator's policy, below.
from kubesoar.contracts.conditions import (
    ALERT_SOURCE_REASONS,
    ALL_TYPES,
    APPLY_FAILED,
    ARTIFACT_FAILED,
    ARTIFACT_TOO_LARGE,
    AUTHENTICATION_FAILED,
    GIT_OPERATION_FAILED,
    INVALID_SPEC,
    LOAD_FAILED,
    PLAYBOOK_REASONS,
    PROGRESSING,
    PROGRESSING_WITH_RETRY,
    READY,
    REASONS,
    RECONCILING,
    REF_NOT_FOUND,
    REPOSITORY_NOT_FOUND,
    ROLLING_OUT,
    RUNTIME_READY,
    RUNTIME_UNAVAILABLE,
    SECRET_KEY_NOT_FOUND,
    SECRET_NOT_FOUND,
    SOURCE_READY,
    STALLED,
    SUCCEEDED,
    SUSPENDED,
    TRANSIENT_TYPES,
)

__all__ = [
    "ALERT_SOURCE_REASONS",
    "ALL_TYPES",
    "APPLY_FAILED",
    "ARTIFACT_FAILED",
    "ARTIFACT_TOO_LARGE",
    "AUTHENTICATION_FAILED",
    "GIT_OPERATION_FAILED",
    "INVALID_SPEC",
    "IN_PROGRESS",
    "LOAD_FAILED",
    "PERSISTENT",
    "PLAYBOOK_REASONS",
    "PROGRESSING",
    "PROGRESSING_WITH_RETRY",
    "READY",
    "REASONS",
    "RECONCILING",
    "REF_NOT_FOUND",
    "REPOSITORY_NOT_FOUND",
    "ROLLING_OUT",
    "RUNTIME_READY",
    "RUNTIME_UNAVAILABLE",
    "SECRET_KEY_NOT_FOUND",
    "SECRET_NOT_FOUND",
    "SOURCE_READY",
    "STALLED",
    "STALL_AFTER_FAILURES",
    "SUCCEEDED",
    "SUSPENDED",
    "TERMINAL",
    "TRANSIENT_TYPES",
    "find",
    "is_true",
    "make",
    "merge",
    "now_rfc3339",
]

IN_PROGRESS = frozenset({PROGRESSING, ROLLING_OUT})
"""Not failures: the operator waits for work under way (Reconciling)."""
TERMINAL = frozenset({INVALID_SPEC, LOAD_FAILED, ARTIFACT_TOO_LARGE})
"""Failures retrying cannot heal: a spec change or a new commit must (Stalled).

A module that fails to import is terminal: the same commit fails the same way on
every retry. The ref is still re-resolved every `interval`, so a fixing commit on
a branch or a semver range is picked up without anyone touching the Playbook.
"""
PERSISTENT = frozenset(
    {AUTHENTICATION_FAILED, REPOSITORY_NOT_FOUND, REF_NOT_FOUND, SECRET_NOT_FOUND}
)
"""Source failures that retrying rarely heals by itself: Stalled after
`STALL_AFTER_FAILURES` attempts in a row, still retried with backoff."""
STALL_AFTER_FAILURES = 3
"""With the backoff of 5 s then 10 s, the third failed attempt comes about 15 s after
the first: long enough for a Secret applied alongside the Playbook, or a Git server
restarting, short enough for Argo CD and Flux to report a wrong password promptly."""


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
