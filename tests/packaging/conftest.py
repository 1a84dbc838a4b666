"""Fixtures of the packaging tests: the helm CLI, a chart renderer, kubectl and namespaces."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging_support import REPO, Kubectl, helm_path, render


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    return helm_path()


@pytest.fixture(scope="session")
def chart(helm_bin: Path) -> Callable[..., list[dict[str, Any]]]:
    """chart(values, release=..., namespace=..., crds=False) -> rendered objects."""

    def _render(values: dict[str, Any] | None = None, **kw: Any) -> list[dict[str, Any]]:
        return render(helm_bin, values, **kw)

    return _render


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Any:
    """The shared `local_cluster` fixture, or the local cluster started directly."""
    try:
        return request.getfixturevalue("local_cluster")
    except pytest.FixtureLookupError:
        sys.path.insert(0, str(REPO))
        from hack.localcluster.cluster import LocalCluster

        local = LocalCluster()
        local.up()
        return local


@pytest.fixture(scope="session")
def kubectl(cluster: Any) -> Kubectl:
    binary = getattr(cluster, "kubectl_bin", None)
    if binary is None or not Path(binary).exists():
        binary = cluster.binary("kubectl")
    return Kubectl(Path(binary), Path(cluster.kubeconfig))


@pytest.fixture
def namespaces(kubectl: Kubectl) -> Iterator[Callable[..., str]]:
    """namespaces(prefix, labels={}) -> name of a fresh namespace, deleted afterwards."""
    created: list[str] = []

    def _make(prefix: str, labels: dict[str, str] | None = None) -> str:
        name = f"{prefix}-{secrets.token_hex(3)}"
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        if labels:
            ns["metadata"]["labels"] = labels
        kubectl.apply([ns])
        created.append(name)
        return name

    yield _make
    for name in created:
        kubectl.run("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def release_name() -> str:
    return f"ks{secrets.token_hex(3)}"
