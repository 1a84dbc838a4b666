"""The source step of a reconcile without a cluster or a Git server (source.py): the pure
decision (keep, wait, resolve), the resolve-and-pack step with fake Kube and Git clients,
the failure counter and backoff, and when a persistent failure turns into `Stalled` while
a transient one stays `Reconciling` (issue 15)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from kubesoar_operator import conditions as c
from kubesoar_operator import source
from kubesoar_operator.artifacts import ArtifactStore
from kubesoar_operator.gitsource import Resolved, SourceError
from kubesoar_operator.kube import ApiError
from kubesoar_operator.source import Decision, SourceKey, SourceMemory, Step, decide
from kubesoar_operator.spec import parse_spec
from kubesoar_operator.status import Observation, summarize
from op_fakes import FakeGit, FakeKube, fail, playbook

KEY = SourceKey("https://git.example/pb.git", "branch", "main", "pb/", None)
OTHER_KEY = SourceKey("https://git.example/pb.git", "branch", "dev", "pb/", None)
RESOLVED = Resolved("a" * 40, "main")


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _resolved_memory(**changes: object) -> SourceMemory:
    memory = SourceMemory(key=KEY, resolved=RESOLVED, digest="d" * 64, resolved_monotonic=100.0)
    for name, value in changes.items():
        setattr(memory, name, value)
    return memory


def _decide(memory: SourceMemory, key: SourceKey = KEY, **facts: object) -> Decision:
    args: dict[str, object] = {
        "now": 110.0,
        "interval": 60.0,
        "forced": False,
        "artifact_missing": False,
    }
    args.update(facts)
    return decide(memory, key, **args)  # type: ignore[arg-type]


# --- the decision (pure) -------------------------------------------------------------------


def test_a_fresh_playbook_resolves() -> None:
    assert _decide(SourceMemory()) == Decision(Step.RESOLVE, changed=True)


def test_a_resolved_source_is_kept_until_its_interval_passes() -> None:
    memory = _resolved_memory()
    assert _decide(memory, now=159.9).step is Step.KEEP
    assert _decide(memory, now=160.0) == Decision(Step.RESOLVE, changed=False)


@pytest.mark.parametrize(
    "facts", [{"forced": True}, {"artifact_missing": True}], ids=["requestedAt", "artifact-lost"]
)
def test_a_request_or_a_lost_artifact_resolves_at_once(facts: dict[str, bool]) -> None:
    assert _decide(_resolved_memory(), **facts).step is Step.RESOLVE


def test_a_changed_spec_resolves_at_once_even_while_backing_off() -> None:
    memory = _resolved_memory(last_error=(c.AUTHENTICATION_FAILED, "no"), retry_at=500.0)
    assert _decide(memory, OTHER_KEY) == Decision(Step.RESOLVE, changed=True)


def test_a_failure_waits_out_its_backoff_then_resolves() -> None:
    memory = _resolved_memory(last_error=(c.GIT_OPERATION_FAILED, "down"), retry_at=120.0)
    assert _decide(memory, now=110.0) == Decision(Step.WAIT, wait=10.0)
    # Past the backoff a failed source is asked again, whatever its interval says.
    assert _decide(memory, now=120.0).step is Step.RESOLVE


def test_a_requested_reconcile_does_not_wait_for_the_backoff() -> None:
    memory = _resolved_memory(last_error=(c.GIT_OPERATION_FAILED, "down"), retry_at=500.0)
    assert _decide(memory, forced=True).step is Step.RESOLVE


def test_backoff_doubles_from_five_seconds_to_five_minutes() -> None:
    assert [source.backoff(n) for n in range(1, 9)] == [5, 10, 20, 40, 80, 160, 300, 300]


# --- resolve and pack, with fake clients ------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def fake_git(tmp_path: Path) -> FakeGit:
    return FakeGit(tmp_path / "repo")


def _step(
    kube: FakeKube,
    fake_git: FakeGit,
    store: ArtifactStore,
    memory: SourceMemory,
    *,
    secret: str | None = None,
    now: float = 100.0,
    changed: bool = False,
) -> float | None:
    spec = parse_spec(playbook(secret=secret)["spec"])
    return source.resolve_and_pack(
        kube, fake_git, store, namespace="tenant", name="pb", spec=spec, memory=memory,
        changed=changed, now=now, resolved_at="2026-01-01T00:00:00Z",
    )  # fmt: skip


def test_the_first_resolve_packs_and_stores_the_artifact(
    fake_git: FakeGit, store: ArtifactStore
) -> None:
    memory = SourceMemory()
    assert _step(FakeKube(), fake_git, store, memory, changed=True) is None
    assert memory.resolved == Resolved(fake_git.head(), "main") and memory.failures == 0
    assert memory.key == KEY and memory.last_error is None
    assert store.get("tenant", "pb", memory.digest) is not None
    assert (fake_git.resolves, fake_git.fetches) == (1, 1)


def test_the_same_commit_is_not_fetched_or_packed_again(
    fake_git: FakeGit, store: ArtifactStore
) -> None:
    memory = SourceMemory()
    _step(FakeKube(), fake_git, store, memory, changed=True)
    first = memory.digest
    assert _step(FakeKube(), fake_git, store, memory, now=200.0) is None
    assert (fake_git.resolves, fake_git.fetches) == (2, 1)
    assert memory.digest == first and memory.resolved_monotonic == 200.0


def test_a_new_commit_is_packed_and_the_previous_artifact_kept(
    fake_git: FakeGit, store: ArtifactStore
) -> None:
    memory = SourceMemory()
    _step(FakeKube(), fake_git, store, memory, changed=True)
    first = memory.digest
    fake_git.commit({"pb/triage.py": "def triage():\n    return 2\n"})
    _step(FakeKube(), fake_git, store, memory)
    second = memory.digest
    fake_git.commit({"pb/triage.py": "def triage():\n    return 3\n"})
    _step(FakeKube(), fake_git, store, memory)
    assert len({first, second, memory.digest}) == 3
    assert memory.digests == [second, memory.digest]  # the current one and the one before
    assert store.get("tenant", "pb", first) is None
    assert store.get("tenant", "pb", second) is not None


def test_a_lost_artifact_is_packed_again(fake_git: FakeGit, store: ArtifactStore) -> None:
    memory = SourceMemory()
    _step(FakeKube(), fake_git, store, memory, changed=True)
    store.prune("tenant", "pb", keep=set())
    _step(FakeKube(), fake_git, store, memory)
    assert fake_git.fetches == 2 and store.get("tenant", "pb", memory.digest) is not None


def test_the_secret_is_read_and_its_credentials_used(
    fake_git: FakeGit, store: ArtifactStore
) -> None:
    kube = FakeKube()
    data = {"username": b64(b"bob"), "password": b64(b"s3cret")}
    kube.add(
        {"kind": "Secret", "metadata": {"name": "git-auth", "namespace": "tenant"}, "data": data}
    )
    assert _step(kube, fake_git, store, SourceMemory(), secret="git-auth", changed=True) is None
    (creds,) = fake_git.seen_creds
    assert creds is not None and (creds.username, creds.password) == ("bob", "s3cret")


def test_a_missing_secret_fails_without_asking_git(fake_git: FakeGit, store: ArtifactStore) -> None:
    memory = SourceMemory()
    delay = _step(FakeKube(), fake_git, store, memory, secret="absent", changed=True)
    assert delay == 5.0 and memory.retry_at == 105.0 and memory.failures == 1
    assert memory.last_error == (c.SECRET_NOT_FOUND, "secret 'absent' not found")
    assert fake_git.resolves == 0


def test_an_api_error_reading_the_secret_is_transient(
    fake_git: FakeGit, store: ArtifactStore
) -> None:
    class Refusing(FakeKube):
        def read_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
            raise ApiError(500, "Internal Server Error")

    memory = SourceMemory()
    _step(Refusing(), fake_git, store, memory, secret="git-auth", changed=True)
    assert memory.last_error == (
        c.GIT_OPERATION_FAILED,
        "reading the secret: API error 500 Internal Server Error",
    )
    assert c.GIT_OPERATION_FAILED not in c.PERSISTENT


def test_failures_count_up_with_backoff_and_a_success_resets_them(
    fake_git: FakeGit, store: ArtifactStore
) -> None:
    memory = SourceMemory()
    fake_git.failures = [*fail(c.GIT_OPERATION_FAILED, 3)]
    delays = [_step(FakeKube(), fake_git, store, memory, now=float(t)) for t in range(3)]
    assert delays == [5.0, 10.0, 20.0] and memory.failures == 3
    assert memory.last_error == (c.GIT_OPERATION_FAILED, "GitOperationFailed for the test")
    assert memory.resolved is None and store.get("tenant", "pb", memory.digest) is None
    assert _step(FakeKube(), fake_git, store, memory, now=50.0) is None
    assert memory.failures == 0 and memory.last_error is None and memory.resolved is not None


def test_a_failure_after_a_success_keeps_the_resolved_source(
    fake_git: FakeGit, store: ArtifactStore
) -> None:
    """A Git failure keeps the last good artifact (the running pods are left alone)."""
    memory = SourceMemory()
    _step(FakeKube(), fake_git, store, memory, changed=True)
    good, digest = memory.resolved, memory.digest
    fake_git.failures = [SourceError(c.AUTHENTICATION_FAILED, "refused")]
    assert _step(FakeKube(), fake_git, store, memory) == 5.0
    assert (memory.resolved, memory.digest) == (good, digest)
    assert store.get("tenant", "pb", digest) is not None


def test_a_missing_path_is_an_artifact_failure(tmp_path: Path, store: ArtifactStore) -> None:
    fake_git = FakeGit(tmp_path / "repo", {"elsewhere/triage.py": "x = 1\n"})
    memory = SourceMemory()
    _step(FakeKube(), fake_git, store, memory, changed=True)
    assert memory.last_error is not None and memory.last_error[0] == c.ARTIFACT_FAILED
    assert "'pb'" in memory.last_error[1]


# --- persistent failures stall, transient ones keep reconciling -------------------------------


def _kinds(status: dict[str, object]) -> dict[str, tuple[str, str]]:
    return {x["type"]: (x["status"], x["reason"]) for x in status["conditions"]}  # type: ignore[attr-defined, index]


@pytest.mark.parametrize(
    "reason",
    [c.AUTHENTICATION_FAILED, c.REPOSITORY_NOT_FOUND, c.REF_NOT_FOUND, c.SECRET_NOT_FOUND],
)
def test_a_persistent_failure_stalls_after_a_bounded_number_of_attempts(reason: str) -> None:
    assert reason in c.PERSISTENT
    for failures in range(1, c.STALL_AFTER_FAILURES):
        status, _ = summarize(
            Observation(1, source_error=(reason, "why"), source_failures=failures), None
        )
        kinds = _kinds(status)
        assert kinds[c.RECONCILING] == ("True", c.PROGRESSING_WITH_RETRY)
        assert c.STALLED not in kinds
    status, events = summarize(
        Observation(1, source_error=(reason, "why"), source_failures=c.STALL_AFTER_FAILURES),
        status,
    )
    kinds = _kinds(status)
    assert kinds[c.STALLED] == ("True", reason) and c.RECONCILING not in kinds
    assert kinds[c.READY] == ("False", reason) and kinds[c.SOURCE_READY] == ("False", reason)
    stalled = c.find(status["conditions"], c.STALLED)
    assert stalled is not None
    assert stalled["message"] == (
        f"{reason} on {c.STALL_AFTER_FAILURES} attempts in a row (still retried with backoff): why"
    )
    assert events == []  # SourceFailed was posted at the first failure; no Event per retry


@pytest.mark.parametrize("reason", [c.GIT_OPERATION_FAILED, c.ARTIFACT_FAILED])
def test_a_transient_failure_keeps_reconciling_however_long_it_lasts(reason: str) -> None:
    status, _ = summarize(Observation(1, source_error=(reason, "down"), source_failures=50), None)
    kinds = _kinds(status)
    assert kinds[c.RECONCILING] == ("True", c.PROGRESSING_WITH_RETRY) and c.STALLED not in kinds


def test_a_stalled_source_heals_when_the_source_does() -> None:
    stalled, _ = summarize(
        Observation(1, source_error=(c.AUTHENTICATION_FAILED, "no"), source_failures=9), None
    )
    assert c.is_true(stalled["conditions"], c.STALLED)
    resolving, _ = summarize(Observation(1), stalled)
    assert c.find(resolving["conditions"], c.STALLED) is None
    assert _kinds(resolving)[c.RECONCILING] == ("True", c.PROGRESSING)


def test_the_counter_reaches_stalled_through_resolve_and_pack(
    fake_git: FakeGit, store: ArtifactStore
) -> None:
    """The counter the status reads is the one resolve_and_pack keeps."""
    memory = SourceMemory()
    fake_git.failures = [*fail(c.AUTHENTICATION_FAILED, c.STALL_AFTER_FAILURES)]
    for attempt in range(c.STALL_AFTER_FAILURES):
        _step(FakeKube(), fake_git, store, memory, now=float(attempt))
    status, _ = summarize(
        Observation(1, source_error=memory.last_error, source_failures=memory.failures), None
    )
    assert _kinds(status)[c.STALLED] == ("True", c.AUTHENTICATION_FAILED)
