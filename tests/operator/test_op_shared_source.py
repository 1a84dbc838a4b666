"""Resolve once, use many (issue 16): Playbooks on the same repository, ref and credential
identity share one `ls-remote` per interval and one fetch-and-pack per (commit, path),
concurrent reconciles join the resolution in flight, a `requestedAt` is answered by a
resolution that started after it, and nothing is ever shared across credentials. With
fake clients that count what Git was asked, and once against a real Git HTTP server."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubesoar_operator.artifacts import Artifact, ArtifactStore
from kubesoar_operator.gitsource import Credentials, GitClient, Resolved, SourceError
from kubesoar_operator.reconcile import Reconciler
from kubesoar_operator.sharedsource import SharedSource
from kubesoar_operator.spec import GitRef
from op_fakes import FakeGit, FakeKube, playbook
from support.git_http import GitHTTPServer

MAIN = GitRef(branch="main")
BASIC_A = Credentials(username="a", password="pa55-a")
BASIC_B = Credentials(username="b", password="pa55-b")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class GatedGit(FakeGit):
    """A FakeGit whose resolutions wait at a gate, so that askers overlap for sure."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def resolve(self, url: str, ref: GitRef, creds: Credentials | None = None) -> Resolved:
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        return super().resolve(url, ref, creds)


def _secret(namespace: str, name: str, creds: Credentials) -> dict[str, Any]:
    data = {
        "username": base64.b64encode((creds.username or "").encode()).decode(),
        "password": base64.b64encode((creds.password or "").encode()).decode(),
    }
    return {"kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "data": data}


def _playbooks(kube: FakeKube, count: int, **options: Any) -> list[dict[str, Any]]:
    bodies = [playbook(f"pb-{i}", f"tenant-{i % 10}", **options) for i in range(count)]
    for body in bodies:
        kube.add(body)
    return bodies


def _source_ready(kube: FakeKube, body: dict[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    status: dict[str, Any] = kube.objects[("Playbook", meta["namespace"], meta["name"])]["status"]
    return status


def test_a_hundred_concurrent_reconciles_make_one_resolution_and_one_pack(
    tmp_path: Path, make_reconciler: Callable[[Any, FakeKube], Reconciler]
) -> None:
    fake_git, kube = FakeGit(tmp_path / "repo"), FakeKube()
    reconciler = make_reconciler(fake_git, kube)
    bodies = _playbooks(kube, 100)
    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(reconciler.reconcile, bodies))
    assert all(o.retry_in is None and not o.gone for o in outcomes)
    assert (fake_git.resolves, fake_git.fetches) == (1, 1)
    digests = {_source_ready(kube, b)["source"]["digest"] for b in bodies}
    assert len(digests) == 1  # every Playbook got the one artifact
    digest = digests.pop().removeprefix("sha256:")
    store = reconciler.store
    assert all(store.get(b["metadata"]["namespace"], b["metadata"]["name"], digest) for b in bodies)
    blobs = list((tmp_path / "artifacts" / ".blobs").glob("*.tar.gz"))
    assert [b.name for b in blobs] == [f"{digest}.tar.gz"]
    assert blobs[0].stat().st_nlink == 101  # one copy of the bytes, a link per Playbook


def test_askers_join_the_resolution_in_flight(tmp_path: Path) -> None:
    gated = GatedGit(tmp_path / "repo")
    shared = SharedSource(gated, ArtifactStore(tmp_path / "artifacts"))
    with ThreadPoolExecutor(20) as pool:
        futures = [
            pool.submit(shared.resolve, "https://git.example/pb.git", MAIN, None, max_age=60)
            for _ in range(20)
        ]
        assert gated.entered.wait(10)
        gated.gate.set()
        answers = {f.result().resolved for f in futures}
    assert answers == {Resolved(gated.head(), "main")}
    assert gated.resolves == 1 and shared.resolutions == 1


def test_a_resolution_serves_until_the_interval_then_git_is_asked_again(tmp_path: Path) -> None:
    fake_git, clock = FakeGit(tmp_path / "repo"), Clock()
    shared = SharedSource(fake_git, ArtifactStore(tmp_path / "a"), clock=clock)
    first = shared.resolve("https://git.example/pb.git", MAIN, None, max_age=60)
    clock.now += 59
    assert shared.resolve("https://git.example/pb.git", MAIN, None, max_age=60) == first
    assert fake_git.resolves == 1
    # A Playbook with a shorter interval does not take an answer that old.
    shared.resolve("https://git.example/pb.git", MAIN, None, max_age=30)
    assert fake_git.resolves == 2
    clock.now += 61
    new_commit = fake_git.commit({"pb/triage.py": "def triage():\n    return 2\n"})
    again = shared.resolve("https://git.example/pb.git", MAIN, None, max_age=60)
    assert again.resolved.sha == new_commit and again.asked_at == clock.now
    assert fake_git.resolves == 3


def test_other_refs_and_urls_are_resolved_on_their_own(tmp_path: Path) -> None:
    fake_git = FakeGit(tmp_path / "repo")
    shared = SharedSource(fake_git, ArtifactStore(tmp_path / "a"))
    shared.resolve("https://git.example/pb.git", MAIN, None, max_age=60)
    shared.resolve("https://git.example/pb.git", GitRef(branch="dev"), None, max_age=60)
    shared.resolve("https://git.example/other.git", MAIN, None, max_age=60)
    assert fake_git.resolves == 3


def test_never_shared_across_credential_identities(
    tmp_path: Path, make_reconciler: Callable[[Any, FakeKube], Reconciler]
) -> None:
    """Tenants with other credentials each ask Git with their own, however recent the
    other's answer: a tenant must never be handed what only another's credentials got."""
    fake_git, kube = FakeGit(tmp_path / "repo"), FakeKube()
    reconciler = make_reconciler(fake_git, kube)
    a = playbook("pb-a", "tenant-a", secret="git")
    b = playbook("pb-b", "tenant-b", secret="git")
    a2 = playbook("pb-a2", "tenant-a", secret="git")
    for body in (a, b, a2):
        kube.add(body)
    kube.add(_secret("tenant-a", "git", BASIC_A))
    kube.add(_secret("tenant-b", "git", BASIC_B))
    for body in (a, b, a2):
        assert reconciler.reconcile(body).retry_in is None
    # a2 has a's credentials: it shares a's answer; b asked (and fetched) on its own.
    assert (fake_git.resolves, fake_git.fetches) == (2, 2)
    assert [repr(c) for c in fake_git.seen_creds] == ["Credentials(username, password)"] * 2
    assert {c.password for c in fake_git.seen_creds if c} == {"pa55-a", "pa55-b"}
    # Without any credentials: yet another identity.
    public = playbook("pb-public", "tenant-c")
    kube.add(public)
    reconciler.reconcile(public)
    assert fake_git.resolves == 3 and fake_git.seen_creds[-1] is None


def test_the_identity_key_reveals_no_credential(tmp_path: Path) -> None:
    shared = SharedSource(FakeGit(tmp_path / "repo"), ArtifactStore(tmp_path / "a"))
    key = shared.identity("https://git.example/pb.git", BASIC_A)
    assert "pa55" not in key and key != shared.identity("https://git.example/pb.git", BASIC_B)
    other_process = SharedSource(FakeGit(tmp_path / "repo2"), ArtifactStore(tmp_path / "b"))
    assert other_process.identity("https://git.example/pb.git", BASIC_A) != key  # salted


def test_a_request_is_answered_by_a_resolution_started_after_it(tmp_path: Path) -> None:
    fake_git, clock, wall = FakeGit(tmp_path / "repo"), Clock(), Clock()
    shared = SharedSource(fake_git, ArtifactStore(tmp_path / "a"), clock=clock, wallclock=wall)
    shared.resolve("https://git.example/pb.git", MAIN, None, max_age=60)
    clock.now += 5
    wall.now += 5
    requested = wall.now - 1  # the request came after the cached answer started
    shared.resolve("https://git.example/pb.git", MAIN, None, max_age=60, not_before_wall=requested)
    assert fake_git.resolves == 2
    # Every other Playbook requested at that moment takes that fresh answer.
    for _ in range(50):
        shared.resolve(
            "https://git.example/pb.git", MAIN, None, max_age=60, not_before_wall=requested
        )
    assert fake_git.resolves == 2


def test_requested_playbooks_share_the_resolution_after_their_request(
    tmp_path: Path, make_reconciler: Callable[[Any, FakeKube], Reconciler]
) -> None:
    """`requestedAt` on all of them with one timestamp, as `kubectl annotate --all` does:
    they all see the new commit, with one resolution between them."""
    fake_git, kube = FakeGit(tmp_path / "repo"), FakeKube()
    reconciler = make_reconciler(fake_git, kube)
    bodies = _playbooks(kube, 30)
    for body in bodies:
        reconciler.reconcile(body)
    new_commit = fake_git.commit({"pb/triage.py": "def triage():\n    return 2\n"})
    # Pushed, then requested within the same second as the cached answer: whole seconds
    # count from the end of theirs, so the cached answer is too old for the request.
    requested = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    for body in bodies:
        body["metadata"]["annotations"] = {"kubesoar.dev/requestedAt": requested}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(reconciler.reconcile, bodies))
    assert {_source_ready(kube, b)["source"]["commit"] for b in bodies} == {new_commit}
    assert fake_git.resolves == 2 and fake_git.fetches == 2


def test_a_failure_is_shared_in_flight_only(tmp_path: Path) -> None:
    fake_git = FakeGit(tmp_path / "repo")
    fake_git.failures = [SourceError("GitOperationFailed", "down"), None]
    shared = SharedSource(fake_git, ArtifactStore(tmp_path / "a"))
    with pytest.raises(SourceError):
        shared.resolve("https://git.example/pb.git", MAIN, None, max_age=60)
    # The next asker (this Playbook's retry, or another) asks Git again.
    assert shared.resolve("https://git.example/pb.git", MAIN, None, max_age=60).resolved
    assert fake_git.resolves == 2


def test_a_blob_stays_while_any_playbook_links_it(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "a")
    artifact = Artifact(b"bytes", "e" * 64)
    store.put("t1", "pb", artifact)
    assert store.link("t2", "pb", artifact.digest) is not None
    store.prune("t1", "pb", keep=set())
    assert store.has_blob(artifact.digest) and store.get("t2", "pb", artifact.digest)
    assert store.get("t1", "pb", artifact.digest) is None
    store.prune("t2", "pb", keep=set())
    assert not store.has_blob(artifact.digest)  # the last link took the bytes with it
    assert store.link("t3", "pb", artifact.digest) is None


def test_a_pruned_blob_is_packed_again_for_the_next_playbook(tmp_path: Path) -> None:
    fake_git = FakeGit(tmp_path / "repo")
    store = ArtifactStore(tmp_path / "a")
    shared = SharedSource(fake_git, store)
    resolved = Resolved(fake_git.head(), "main")
    digest = shared.artifact("https://git.example/pb.git", resolved, None, "pb/")
    store.link("t1", "pb", digest)
    store.prune("t1", "pb", keep=set())
    assert shared.artifact("https://git.example/pb.git", resolved, None, "pb/") == digest
    assert store.has_blob(digest) and fake_git.fetches == 2


def _upload_pack_handshakes(server: GitHTTPServer) -> int:
    return sum("info/refs" in path for path in server.requests)


def test_n_playbooks_on_a_real_git_server_cost_one_resolution(
    tmp_path: Path,
    git_server: GitHTTPServer,
    make_reconciler: Callable[[Any, FakeKube], Reconciler],
) -> None:
    """Against `git http-backend`: 40 Playbooks over 10 namespaces on one repository and
    branch cost the Git server what one Playbook costs (one ls-remote and one fetch)."""
    repo = git_server.create_repo("playbooks", {"pb/triage.py": "def triage():\n    return 1\n"})

    def reconcile_all(count: int, cache: str) -> tuple[int, set[str]]:
        kube = FakeKube()
        reconciler = make_reconciler(GitClient(tmp_path / cache), kube)
        bodies = _playbooks(kube, count)
        for body in bodies:
            body["spec"]["source"]["git"]["url"] = git_server.url("playbooks")
        before = _upload_pack_handshakes(git_server)
        with ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(reconciler.reconcile, bodies))
        assert all(o.retry_in is None for o in outcomes), [o.status for o in outcomes]
        commits = {_source_ready(kube, b)["source"]["commit"] for b in bodies}
        return _upload_pack_handshakes(git_server) - before, commits

    alone, commits_alone = reconcile_all(1, "git-one")
    together, commits = reconcile_all(40, "git-many")
    assert commits == commits_alone == {repo.head()}
    assert alone >= 2  # one ls-remote, one fetch
    assert together == alone


def test_the_real_git_client_is_asked_once_by_many_threads(
    tmp_path: Path, git_server: GitHTTPServer
) -> None:
    git_server.create_repo("playbooks")
    shared = SharedSource(GitClient(tmp_path / "cache"), ArtifactStore(tmp_path / "a"))
    url = git_server.url("playbooks")
    with ThreadPoolExecutor(16) as pool:
        answers = set(pool.map(lambda _: shared.resolve(url, MAIN, None, max_age=60), range(64)))
    assert len({a.resolved for a in answers}) == 1 and shared.resolutions == 1
