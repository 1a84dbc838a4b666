"""The import rules of docs/architecture.md, checked: the SDK imports no other package,
the router and the operator never import each other (only the SDK with its contracts,
and the store they share), and the store imports neither service."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
# package folder -> packages it must never import
FORBIDDEN = {
    ROOT / "runtime" / "kubesoar": {"kubesoar_router", "kubesoar_operator", "kubesoar_store"},
    ROOT / "router" / "kubesoar_router": {"kubesoar_operator"},
    ROOT / "operator" / "kubesoar_operator": {"kubesoar_router"},
    ROOT / "router" / "kubesoar_store": {"kubesoar_router", "kubesoar_operator"},
}
# The `kubesoar` command names the services' CLI modules, imported only when run.
ALLOWED = {ROOT / "runtime" / "kubesoar" / "_cli.py"}


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN), ids=lambda p: p.name)
def test_a_package_imports_only_what_the_architecture_allows(package: Path) -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: imports {name}"
        for path in sorted(package.rglob("*.py"))
        if path not in ALLOWED
        for line, name in _imports(path)
        if name.split(".")[0] in FORBIDDEN[package]
    ]
    assert offenders == []
