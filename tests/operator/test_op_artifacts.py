"""Artifacts: deterministic tarballs and digests, the store, signed URLs (valid, tampered,
expired, another tenant), and the artifact HTTP server answering for real on loopback."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import git
import pytest
from kubesoar_operator import artifact_server, artifacts
from kubesoar_operator.artifacts import (
    Artifact,
    ArtifactError,
    ArtifactStore,
    ArtifactTooLarge,
    pack,
)
from kubesoar_operator.signing import Signer, window_expiry
from support.git_http import GitHTTPServer

FILES = {
    "phishing/triage.py": "def x():\n    return 1\n",
    "phishing/lib/helpers.py": "Y = 2\n",
    "phishing/run.sh": "#!/bin/sh\n",
    "other/secret.txt": "not in the artifact\n",
}


def _repo(server: GitHTTPServer) -> tuple[git.Repo, str]:
    work = server.create_repo("pb", FILES)
    return git.Repo(work.bare), work.head()


def _names(artifact: Artifact) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(artifact.data), mode="r:gz") as tar:
        return tar.getnames()


def test_pack_is_deterministic_and_limited_to_path(git_server: GitHTTPServer) -> None:
    repo, sha = _repo(git_server)
    first, second = pack(repo, sha, "phishing/"), pack(repo, sha, "phishing")
    assert first.data == second.data
    assert first.digest == hashlib.sha256(first.data).hexdigest()
    assert _names(first) == ["lib", "lib/helpers.py", "run.sh", "triage.py"]
    with tarfile.open(fileobj=io.BytesIO(first.data), mode="r:gz") as tar:
        for member in tar.getmembers():
            assert (member.mtime, member.uid, member.gid, member.uname) == (0, 0, 0, "")
        assert tar.extractfile("triage.py").read() == FILES["phishing/triage.py"].encode()
    assert first.data[4:8] == b"\x00\x00\x00\x00"  # gzip header MTIME field
    assert gzip.decompress(first.data)
    whole = pack(repo, sha, "")
    assert "other/secret.txt" in _names(whole) and whole.digest != first.digest
    repo.close()


def test_pack_refuses_a_missing_path(git_server: GitHTTPServer) -> None:
    repo, sha = _repo(git_server)
    with pytest.raises(ArtifactError, match="does not exist"):
        pack(repo, sha, "nope/")
    with pytest.raises(ArtifactError, match="not a folder"):
        pack(repo, sha, "phishing/triage.py")
    repo.close()


def test_store_put_get_prune(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    a, b = Artifact(b"one", "a" * 64), Artifact(b"two", "b" * 64)
    store.put("ns", "pb", a)
    store.put("ns", "pb", b)
    assert store.get("ns", "pb", "a" * 64).read_bytes() == b"one"
    assert store.get("ns", "pb", "../../etc") is None
    assert store.get("../x", "pb", "a" * 64) is None
    store.prune("ns", "pb", keep={"b" * 64})
    assert store.get("ns", "pb", "a" * 64) is None and store.get("ns", "pb", "b" * 64)


def test_signatures_bind_tenant_name_digest_and_expiry() -> None:
    signer = Signer(b"k" * 32)
    sig = signer.signature("ns", "pb", "d" * 64, 2000)
    assert signer.verify("ns", "pb", "d" * 64, 2000, sig, now=1000)
    assert not signer.verify("ns", "pb", "d" * 64, 2000, sig, now=2000)  # expired
    assert not signer.verify("other", "pb", "d" * 64, 2000, sig, now=1000)  # another tenant
    assert not signer.verify("ns", "pb", "e" * 64, 2000, sig, now=1000)
    assert not signer.verify("ns", "pb", "d" * 64, 3000, sig, now=1000)  # extended expiry
    assert not Signer(b"x" * 32).verify("ns", "pb", "d" * 64, 2000, sig, now=1000)


def test_urls_are_stable_within_a_window() -> None:
    signer = Signer(b"k" * 32)
    ttl = 3600
    assert signer.url("http://h", "ns", "pb", "d" * 64, ttl_seconds=ttl, now=7200) == signer.url(
        "http://h", "ns", "pb", "d" * 64, ttl_seconds=ttl, now=7200 + ttl - 1
    )
    expiry = window_expiry(7300, ttl)
    assert 7300 + ttl <= expiry <= 7300 + 2 * ttl


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, Signer, ArtifactStore]]:
    store, signer = ArtifactStore(tmp_path), Signer(b"s" * 32)
    runner, port = await artifact_server.start(store, signer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}", signer, store
    finally:
        await runner.cleanup()


async def test_server_serves_signed_urls_only(served: tuple[str, Signer, ArtifactStore]) -> None:
    base, signer, store = served
    artifact = Artifact(b"tarball-bytes", hashlib.sha256(b"tarball-bytes").hexdigest())
    store.put("tenant-a", "pb", artifact)
    store.put("tenant-b", "pb", artifact)
    url = signer.url(base, "tenant-a", "pb", artifact.digest)
    query = parse_qs(urlsplit(url).query)
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == 200 and await response.read() == b"tarball-bytes"
            # The Playbook's runtime caller token travels with its code, and only with it.
            token = response.headers["X-Kubesoar-Caller-Token"]
            assert token == signer.caller_token("tenant-a", "pb")
            assert token != signer.caller_token("tenant-b", "pb")
        # The same signature does not open another tenant's copy.
        other = url.replace("/tenant-a/", "/tenant-b/")
        async with session.get(other) as response:
            assert response.status == 403
            assert "X-Kubesoar-Caller-Token" not in response.headers
            assert (await response.json())["error"] == "forbidden"
        tampered = url.replace(query["sig"][0], "0" * 64)
        async with session.get(tampered) as response:
            assert response.status == 403
        expired_sig = signer.signature("tenant-a", "pb", artifact.digest, 10)
        expired = (
            f"{base}/artifacts/tenant-a/pb/{artifact.digest}.tar.gz?expires=10&sig={expired_sig}"
        )
        async with session.get(expired) as response:
            assert response.status == 403
        async with session.get(
            f"{base}/artifacts/tenant-a/pb/{artifact.digest}.tar.gz"
        ) as response:
            assert response.status == 403
        async with session.get(
            f"{base}/artifacts/tenant-a/pb/notadigest.zip?expires=1"
        ) as response:
            assert response.status == 400
        missing = signer.url(base, "tenant-a", "pb", "f" * 64)
        async with session.get(missing) as response:
            assert response.status == 404


def test_a_folder_over_the_limits_is_refused_before_its_blobs_are_read(
    git_server: GitHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sizes come from the object headers: a huge (but well-compressed) file is refused
    with the limit named, without the operator ever holding it in memory."""
    monkeypatch.setattr(artifacts, "MAX_UNPACKED_BYTES", 1024 * 1024)
    big = "0" * (8 * 1024 * 1024)
    work = git_server.create_repo("huge", {"pb/triage.py": "X = 1\n", "pb/blob.txt": big})
    repo = git.Repo(work.bare)
    tracemalloc.start()
    try:
        with pytest.raises(ArtifactTooLarge, match=r"limit of 1 MiB.*pb/blob.txt"):
            pack(repo, work.head(), "pb/")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        repo.close()
    assert peak < 4 * 1024 * 1024  # the 8 MiB blob was never read


def test_a_folder_with_too_many_files_is_refused(
    git_server: GitHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifacts, "MAX_FILES", 3)
    work = git_server.create_repo("many", {f"pb/m{i}.py": "X = 1\n" for i in range(5)})
    repo = git.Repo(work.bare)
    with pytest.raises(ArtifactTooLarge, match="5 files; the limit is 3"):
        pack(repo, work.head(), "pb")
    repo.close()
