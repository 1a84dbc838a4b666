"""Fixtures of the packaging tests: the helm CLI, a chart renderer and kubectl."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging_support import CHART, RBAC_KINDS, Kubectl, helm_path, render


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
def kubectl(local_cluster: Any) -> Kubectl:
    return Kubectl(Path(local_cluster.kubectl_bin), Path(local_cluster.kubeconfig))


@pytest.fixture
def release_name() -> str:
    return f"ks{secrets.token_hex(3)}"


@pytest.fixture(scope="session")
def kubesoar_crds(kubectl: Kubectl) -> None:
    """The project's CRDs, installed (and left) so that can-i resolves their resources."""
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    for crd in ("playbooks.kubesoar.dev", "alertsources.kubesoar.dev"):
        kubectl.run("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")


@pytest.fixture
def applied_rbac(kubectl: Kubectl, kubesoar_crds: None) -> Iterator[Any]:
    """apply(objects): applies the RBAC objects for real; cluster-scoped ones are deleted after."""
    applied: list[dict[str, Any]] = []

    def _apply(objects: list[dict[str, Any]]) -> None:
        rbac = [o for o in objects if o["kind"] in RBAC_KINDS]
        kubectl.apply(rbac)
        applied.extend(rbac)

    yield _apply
    for o in applied:
        if o["kind"] in {"ClusterRole", "ClusterRoleBinding"}:
            kubectl.run("delete", o["kind"].lower(), o["metadata"]["name"], "--ignore-not-found")
