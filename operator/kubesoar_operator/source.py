"""The source step of a reconcile: decide whether Git must be asked, then resolve and pack.

Two halves, so that each is tested without a cluster or a Git server
(tests/operator/test_op_source_decision.py):

- `decide` is pure. From what the operator remembers of a Playbook's source
  (`SourceMemory`), the spec's source (`SourceKey`), the time and two facts (a
  `requestedAt` not handled yet; the stored artifact gone), it answers KEEP (the
  resolved commit and artifact stand), WAIT (a failure is backing off: do not hammer
  Git) or RESOLVE.
- `resolve_and_pack` acts on RESOLVE: read the Secret, ask Git for the commit, fetch
  and pack when the commit or the artifact changed, store the artifact. It records a
  success or a failure (with its backoff) in the memory. Given the operator's
  `SharedSource` (sharedsource.py), Playbooks with the same repository, ref and
  credentials share one resolution per interval and one artifact per (commit, path).

`SourceMemory.failures` counts failed attempts in a row; `status.summarize` turns a
persistent failure (`conditions.PERSISTENT`) that lasted `conditions.STALL_AFTER_FAILURES`
attempts into `Stalled`, while the attempts go on with backoff.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import git

from kubesoar_operator import conditions as c
from kubesoar_operator.artifacts import ArtifactError, ArtifactStore, ArtifactTooLarge
from kubesoar_operator.gitsource import Credentials, Resolved, SourceError
from kubesoar_operator.kube import ApiError
from kubesoar_operator.sanitize import sanitize
from kubesoar_operator.sharedsource import SharedSource
from kubesoar_operator.spec import GitRef, PlaybookSpec

log = logging.getLogger("kubesoar_operator.reconcile")

MIN_BACKOFF, MAX_BACKOFF = 5.0, 300.0


class SecretReader(Protocol):
    def read_secret_data(self, namespace: str, name: str) -> dict[str, str] | None: ...


class GitResolver(Protocol):
    def resolve(self, url: str, ref: GitRef, creds: Credentials | None = None) -> Resolved: ...

    def fetch(self, url: str, resolved: Resolved, creds: Credentials | None = None) -> git.Repo: ...


@dataclass(frozen=True)
class SourceKey:
    """What in the spec decides the source: a change means resolve again at once."""

    url: str
    ref_kind: str
    ref_value: str
    path: str
    secret_name: str | None

    @classmethod
    def of(cls, spec: PlaybookSpec) -> SourceKey:
        git_spec = spec.source.git
        secret = git_spec.secret_ref.name if git_spec.secret_ref else None
        return cls(git_spec.url, git_spec.ref.kind, git_spec.ref.value, spec.source.path, secret)


@dataclass
class SourceMemory:
    """What the operator remembers of one Playbook's source between reconciles."""

    key: SourceKey | None = None  # of the last attempt, successful or not
    resolved: Resolved | None = None
    digest: str = ""  # of the artifact in use
    resolved_at: str = ""  # RFC 3339, for status
    resolved_monotonic: float = 0.0
    failures: int = 0  # failed attempts in a row
    last_error: tuple[str, str] | None = None  # (reason, sanitized message)
    retry_at: float = 0.0
    # The artifacts kept: the current one and the one before (its pods may restart
    # mid-rollout).
    digests: list[str] = field(default_factory=list)
    # (commit, path) found too large: not fetched or packed again (terminal).
    refused: tuple[str, str] | None = None


class Step(enum.Enum):
    KEEP = "keep"
    WAIT = "wait"
    RESOLVE = "resolve"


@dataclass(frozen=True)
class Decision:
    step: Step
    wait: float = 0.0  # WAIT: seconds left of the backoff
    changed: bool = False  # RESOLVE: the spec's source differs from the last attempt


def decide(
    memory: SourceMemory,
    key: SourceKey,
    *,
    now: float,
    interval: float,
    forced: bool,
    artifact_missing: bool,
) -> Decision:
    """Whether to ask Git now. A changed spec, a `requestedAt` or a lost artifact always
    does; otherwise a failure waits out its backoff, and a success holds for `interval`."""
    changed = key != memory.key
    if not (changed or forced or artifact_missing):
        if memory.last_error is not None and now < memory.retry_at:
            return Decision(Step.WAIT, wait=memory.retry_at - now)
        due = now - memory.resolved_monotonic >= interval
        if memory.last_error is None and not due and memory.resolved is not None:
            return Decision(Step.KEEP)
    return Decision(Step.RESOLVE, changed=changed)


def backoff(failures: int) -> float:
    """Seconds before attempt `failures + 1`: 5, 10, 20, ... up to 300."""
    return float(min(MAX_BACKOFF, MIN_BACKOFF * 2.0 ** (max(failures, 1) - 1)))


def resolve_and_pack(
    kube: SecretReader,
    git_client: GitResolver,
    store: ArtifactStore,
    *,
    namespace: str,
    name: str,
    spec: PlaybookSpec,
    memory: SourceMemory,
    changed: bool,
    now: float,
    resolved_at: str,
    shared: SharedSource | None = None,
    max_age: float = 0.0,
    not_before_wall: float | None = None,
) -> float | None:
    """Resolve the ref, and fetch and pack when needed; None on success, else the seconds
    until the next attempt (the failure is in `memory.last_error`).

    With `shared` (one per operator), the resolution is taken from one younger than
    `max_age` seconds that started at or after `not_before_wall`, when another Playbook
    with the same URL, credentials and ref asked (sharedsource.py); the memory then keeps
    that resolution's time, so this Playbook falls due with the others. Without it, Git
    is asked for this Playbook alone.
    """
    git_spec = spec.source.git
    key = SourceKey.of(spec)
    alone = shared is None
    shared = shared or SharedSource(git_client, store)
    creds: Credentials | None = None
    try:
        if key.secret_name:
            data = kube.read_secret_data(namespace, key.secret_name)
            if data is None:
                raise SourceError(c.SECRET_NOT_FOUND, f"secret {key.secret_name!r} not found")
            creds = Credentials.from_secret_data(data)
        resolution = shared.resolve(
            git_spec.url, git_spec.ref, creds, max_age=max_age, not_before_wall=not_before_wall
        )
        resolved = resolution.resolved
        if memory.refused == (resolved.sha, spec.source.path) and memory.last_error:
            raise ArtifactTooLarge(memory.last_error[1])
        stored = bool(memory.digest) and store.get(namespace, name, memory.digest) is not None
        if changed or memory.resolved != resolved or not stored:
            try:
                digest = shared.artifact(git_spec.url, resolved, creds, spec.source.path)
            except ArtifactTooLarge:
                memory.refused = (resolved.sha, spec.source.path)
                raise
            if store.link(namespace, name, digest) is None:
                raise ArtifactError(f"artifact {digest[:12]} was removed while linking it")
            if digest not in memory.digests:
                # Keep the previous revision's artifact: its pods may restart mid-rollout.
                memory.digests = [*memory.digests[-1:], digest]
                store.prune(namespace, name, keep=set(memory.digests))
            memory.digest = digest
    except (SourceError, ArtifactError, ApiError) as exc:
        memory.failures += 1
        delay = backoff(memory.failures)
        if isinstance(exc, ArtifactTooLarge):
            # Terminal for this commit: only re-resolve at the interval, for a fix.
            delay = float(spec.source.interval_seconds)
        memory.retry_at, memory.key = now + delay, key
        memory.last_error = failure(exc, creds)
        log.warning(
            "source of %s/%s failed (%s), retry in %.0fs",
            namespace, name, memory.last_error[0], delay,
        )  # fmt: skip
        return delay
    if memory.resolved != resolved:
        log.info("%s/%s resolved to %s", namespace, name, resolved.revision)
    memory.key, memory.resolved, memory.failures, memory.last_error = key, resolved, 0, None
    if alone:
        memory.resolved_monotonic, memory.resolved_at = now, resolved_at
    else:  # when Git was asked, maybe for another Playbook: the source is that old
        memory.resolved_monotonic = resolution.asked_at
        memory.resolved_at = _rfc3339(resolution.asked_at_wall)
    return None


def _rfc3339(wall: float) -> str:
    moment = datetime.fromtimestamp(wall, UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


def failure(exc: Exception, creds: Credentials | None) -> tuple[str, str]:
    """(reason, message) of a failed attempt, with credential values masked."""
    secrets = creds.secret_values() if creds else []
    if isinstance(exc, SourceError):
        return exc.reason, sanitize(exc.message, secrets)
    if isinstance(exc, ArtifactTooLarge):
        return c.ARTIFACT_TOO_LARGE, sanitize(str(exc), secrets)
    if isinstance(exc, ArtifactError):
        return c.ARTIFACT_FAILED, sanitize(str(exc), secrets)
    assert isinstance(exc, ApiError)
    return c.GIT_OPERATION_FAILED, f"reading the secret: {exc}"
