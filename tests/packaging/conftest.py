"""Fixtures of the packaging tests: the helm CLI, a chart renderer and kubectl."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from packaging_support import Kubectl, helm_path, render


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
