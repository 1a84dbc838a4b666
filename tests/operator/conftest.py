"""Fixtures of the operator's tests: a real Git smart-HTTP server on loopback, and a
Reconciler wired to the fake Kube and Git clients of op_fakes.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubesoar_operator.artifacts import ArtifactStore
from kubesoar_operator.reconcile import Reconciler, Settings
from kubesoar_operator.signing import Signer
from op_fakes import FakeGit, FakeKube
from support.git_http import GitHTTPServer


@pytest.fixture
def make_git_server(tmp_path: Path) -> Iterator[Callable[..., GitHTTPServer]]:
    """make_git_server(username=, password=, token=) -> a started server, closed after."""
    servers: list[GitHTTPServer] = []

    def make(**auth: Any) -> GitHTTPServer:
        server = GitHTTPServer(tmp_path / f"git-{len(servers)}", **auth).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def git_server(make_git_server: Callable[..., GitHTTPServer]) -> GitHTTPServer:
    """A Git server without auth."""
    return make_git_server()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False) as client:
        yield client


@pytest.fixture
def make_reconciler(tmp_path: Path, http: httpx.Client) -> Callable[[Any, FakeKube], Reconciler]:
    """make(git_client, kube) -> a Reconciler on those clients, a real artifact store and
    signer, and no runtime pod to report (reports are refused at once)."""

    def make(git_client: Any, kube: FakeKube) -> Reconciler:
        return Reconciler(
            kube,  # type: ignore[arg-type]
            git_client,
            ArtifactStore(tmp_path / "artifacts"),
            Signer(b"k" * 32),
            Settings(artifact_url="http://127.0.0.1:9"),
            http,
        )

    return make


@pytest.fixture
def parts(
    tmp_path: Path, make_reconciler: Callable[[Any, FakeKube], Reconciler]
) -> tuple[Reconciler, FakeKube, FakeGit]:
    kube, fake_git = FakeKube(), FakeGit(tmp_path / "repo")
    return make_reconciler(fake_git, kube), kube, fake_git
