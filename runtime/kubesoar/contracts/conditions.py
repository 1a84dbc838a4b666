"""Condition types and reasons on Playbook and AlertSource status, each with its meaning.

The operator writes them, the router and GitOps tools (Argo CD, Flux/kstatus) read
them. Conditions follow kstatus: `Ready` always; `Reconciling` and `Stalled` only
while true; `SourceReady` and `RuntimeReady` say which half of a Playbook is at fault.
Which reasons count as in progress, retried or terminal is operator policy
(`kubesoar_operator.conditions`); the names and their meanings are the contract.
"""

from __future__ import annotations

from typing import Final

# --- types ---------------------------------------------------------------------
READY: Final = "Ready"
"""Playbook: runs the pinned revision on every requested replica. AlertSource: its spec
and Secrets are valid, the router can authenticate senders."""
RECONCILING: Final = "Reconciling"
"""The operator is moving the Playbook towards its spec (present only while true)."""
STALLED: Final = "Stalled"
"""The operator cannot make progress until the spec (or a Secret) changes (present only
while true)."""
SOURCE_READY: Final = "SourceReady"
"""The Git ref resolved to a commit and the artifact of `path` is packed and served."""
RUNTIME_READY: Final = "RuntimeReady"
"""The runtime pods are ready and loaded the module at the pinned commit."""

ALL_TYPES: Final = (READY, RECONCILING, STALLED, SOURCE_READY, RUNTIME_READY)
TRANSIENT_TYPES: Final = (RECONCILING, STALLED)
"""Types written only while true (kstatus): dropped rather than set False."""

# --- reasons -------------------------------------------------------------------
REASONS: dict[str, str] = {}
"""Every reason either resource may carry, with its meaning (docs/CONTRACTS.md lists them)."""


def _reason(name: str, meaning: str) -> str:
    REASONS[name] = meaning
    return name


SUCCEEDED: Final = _reason("Succeeded", "Everything this condition covers is in place.")
PROGRESSING: Final = _reason("Progressing", "Work is under way; the message says what waits.")
INVALID_SPEC: Final = _reason(
    "InvalidSpec", "The spec is invalid; fix it, nothing retries until then."
)
SUSPENDED: Final = _reason(
    "Suspended", "spec.suspend is true: nothing is reconciled; Ready keeps its last status."
)
PROGRESSING_WITH_RETRY: Final = _reason(
    "ProgressingWithRetry",
    "A failure that may heal is retried with backoff; the message names it (Reconciling).",
)
GIT_OPERATION_FAILED: Final = _reason(
    "GitOperationFailed", "Git could not be reached or failed; retried with backoff."
)
AUTHENTICATION_FAILED: Final = _reason(
    "AuthenticationFailed", "The Git server refused the credentials of `secretRef`."
)
SECRET_NOT_FOUND: Final = _reason(
    "SecretNotFound", "A Secret the spec names is missing or lacks the expected keys."
)
SECRET_KEY_NOT_FOUND: Final = _reason(
    "SecretKeyNotFound", "AlertSource: the Secret exists but has no such key."
)
REF_NOT_FOUND: Final = _reason(
    "RefNotFound", "The branch, tag, semver range or commit does not exist."
)
REPOSITORY_NOT_FOUND: Final = _reason(
    "RepositoryNotFound",
    "The Git server has no repository at the URL (some servers say so of a private "
    "repository the credentials may not read).",
)
ARTIFACT_FAILED: Final = _reason(
    "ArtifactFailed", "`path` is missing at the commit or the packed folder is too large."
)
ARTIFACT_TOO_LARGE: Final = _reason(
    "ArtifactTooLarge",
    "The folder at `path` has a file or a total over the operator's limits (named in the "
    "message); nothing is retried until the spec or the commit changes.",
)
APPLY_FAILED: Final = _reason(
    "ApplyFailed", "The API server refused a child object (quota, admission, RBAC)."
)
ROLLING_OUT: Final = _reason("RollingOut", "Pods of the new revision are starting.")
LOAD_FAILED: Final = _reason(
    "LoadFailed", "The runtime could not import the module; the message has the error and line."
)
RUNTIME_UNAVAILABLE: Final = _reason(
    "RuntimeUnavailable", "Pods are not ready (image, scheduling, crash); see the pods' events."
)

ALERT_SOURCE_REASONS: Final = (
    SUCCEEDED,
    INVALID_SPEC,
    SECRET_NOT_FOUND,
    SECRET_KEY_NOT_FOUND,
    SUSPENDED,
)
"""The reasons an AlertSource's `Ready`/`Stalled` conditions may carry."""
PLAYBOOK_REASONS: Final = tuple(r for r in REASONS if r != SECRET_KEY_NOT_FOUND)
"""The reasons a Playbook's conditions may carry."""
