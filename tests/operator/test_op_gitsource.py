"""Git resolution against a real smart-HTTP server on loopback: branch, tag, semver, commit,
wrong URL, missing ref, basic and bearer auth, and bad credentials that never leak."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from kubesoar_operator import conditions as c
from kubesoar_operator.gitsource import Credentials, GitClient, Resolved, SourceError
from kubesoar_operator.spec import GitRef
from support.git_http import GitHTTPServer

PASSWORD = "planted-Pa55word-7f3a"
TOKEN = "planted-bearer-9c1d"


@pytest.fixture
def client(tmp_path: Path) -> GitClient:
    return GitClient(tmp_path / "cache", timeout_seconds=30)


def test_branch_tag_semver_and_commit(git_server: GitHTTPServer, client: GitClient) -> None:
    repo = git_server.create_repo("pb", {"a.py": "1\n"})
    first = repo.head()
    repo.tag("v1.0.0")
    second = repo.commit({"a.py": "2\n"})
    repo.tag("v1.1.0", annotated=True)
    third = repo.commit({"a.py": "3\n"})
    repo.tag("v2.0.0")
    url = git_server.url("pb")

    branch = client.resolve(url, GitRef(branch="main"))
    assert (branch.sha, branch.revision) == (third, f"main@sha1:{third}")
    assert client.resolve(url, GitRef(tag="v1.0.0")).sha == first
    annotated = client.resolve(url, GitRef(tag="v1.1.0"))
    assert annotated.sha == second  # peeled to the commit
    semver = client.resolve(url, GitRef(semver="^1"))
    assert (semver.sha, semver.ref_name) == (second, "v1.1.0")
    pinned = client.resolve(url, GitRef(commit=first))
    assert pinned.revision == f"sha1:{first}"

    cache = client.fetch(url, pinned)
    try:
        assert cache.commit(first).tree["a.py"].data_stream.read() == b"1\n"
    finally:
        cache.close()


def test_missing_refs(git_server: GitHTTPServer, client: GitClient) -> None:
    git_server.create_repo("pb")
    url = git_server.url("pb")
    for ref in (GitRef(branch="nope"), GitRef(tag="v9"), GitRef(semver=">=9")):
        with pytest.raises(SourceError) as info:
            client.resolve(url, ref)
        assert info.value.reason == c.REF_NOT_FOUND
    with pytest.raises(SourceError) as info:
        client.fetch(url, client.resolve(url, GitRef(commit="0" * 40)))
    assert info.value.reason == c.REF_NOT_FOUND


def test_wrong_url(git_server: GitHTTPServer, client: GitClient) -> None:
    """A repository the server does not have: persistent (Stalled after a few attempts)."""
    with pytest.raises(SourceError) as info:
        client.resolve(git_server.url("missing"), GitRef(branch="main"))
    assert info.value.reason == c.REPOSITORY_NOT_FOUND
    assert "missing.git" in info.value.message


def test_an_unreachable_server_is_a_transient_failure(client: GitClient) -> None:
    """Nothing listens on the port: may heal on its own, so never classified persistent."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before git connects: refused
    with pytest.raises(SourceError) as info:
        client.resolve(f"http://127.0.0.1:{port}/pb.git", GitRef(branch="main"))
    assert info.value.reason == c.GIT_OPERATION_FAILED
    assert info.value.reason not in c.PERSISTENT


def test_basic_auth(make_git_server: Callable[..., GitHTTPServer], client: GitClient) -> None:
    server = make_git_server(username="bob", password=PASSWORD)
    sha = server.create_repo("pb").head()
    good = Credentials(username="bob", password=PASSWORD)
    resolved = client.resolve(server.url("pb"), GitRef(branch="main"), good)
    assert resolved.sha == sha
    client.fetch(server.url("pb"), resolved, good).close()

    bad = Credentials(username="bob", password=PASSWORD + "-wrong")
    with pytest.raises(SourceError) as info:
        client.resolve(server.url("pb"), GitRef(branch="main"), bad)
    assert info.value.reason == c.AUTHENTICATION_FAILED
    assert PASSWORD not in str(info.value) and PASSWORD not in info.value.message
    with pytest.raises(SourceError) as info:
        client.resolve(server.url("pb"), GitRef(branch="main"))
    assert info.value.reason == c.AUTHENTICATION_FAILED


def test_a_cached_commit_is_not_served_without_the_servers_consent(
    make_git_server: Callable[..., GitHTTPServer], client: GitClient
) -> None:
    """Tenant A's private commit is in the cache; tenant B names the same URL and commit
    with no credentials or a wrong password: AuthenticationFailed, nothing from the cache."""
    server = make_git_server(username="alice", password=PASSWORD)
    sha = server.create_repo("private", {"secret_module.py": "A = 1\n"}).head()
    url = server.url("private")
    tenant_a = Credentials(username="alice", password=PASSWORD)
    client.fetch(url, client.resolve(url, GitRef(commit=sha), tenant_a), tenant_a).close()

    for tenant_b in (None, Credentials(username="alice", password="guessed")):
        with pytest.raises(SourceError) as info:
            client.resolve(url, GitRef(commit=sha), tenant_b)
        assert info.value.reason == c.AUTHENTICATION_FAILED
        # Even a caller that skips resolve gets no object fetched under A's credentials.
        with pytest.raises(SourceError) as info:
            client.fetch(url, Resolved(sha, ""), tenant_b)
        assert info.value.reason == c.AUTHENTICATION_FAILED


def test_bearer_auth(make_git_server: Callable[..., GitHTTPServer], client: GitClient) -> None:
    server = make_git_server(token=TOKEN)
    sha = server.create_repo("pb").head()
    creds = Credentials(bearer_token=TOKEN)
    assert client.resolve(server.url("pb"), GitRef(branch="main"), creds).sha == sha
    with pytest.raises(SourceError) as info:
        client.resolve(server.url("pb"), GitRef(branch="main"), Credentials(bearer_token="x" * 8))
    assert info.value.reason == c.AUTHENTICATION_FAILED


def test_credentials_in_the_url_never_reach_the_message(
    make_git_server: Callable[..., GitHTTPServer], client: GitClient
) -> None:
    server = make_git_server(username="bob", password=PASSWORD)
    server.create_repo("pb")
    url = server.url("missing").replace("http://", f"http://bob:{PASSWORD}@") + "?token=" + TOKEN
    with pytest.raises(SourceError) as info:
        client.resolve(url, GitRef(branch="main"))
    assert PASSWORD not in info.value.message and TOKEN not in info.value.message


def test_local_protocols_are_refused(tmp_path: Path, client: GitClient) -> None:
    # A tenant must not read the operator's own disk through a file:// URL.
    with pytest.raises(SourceError) as info:
        client.resolve(f"file://{tmp_path}", GitRef(branch="main"))
    assert info.value.reason == c.GIT_OPERATION_FAILED
