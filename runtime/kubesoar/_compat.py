"""Lets playbooks written for OpenSOAR (`from opensoar import playbook,
action, Alert`) load unchanged.

The loader appends a finder to the *end* of `sys.meta_path`, so a real
`opensoar` package, when installed, always wins; otherwise `opensoar` resolves
to a module exposing kubesoar's public SDK. Only the top-level names are
provided (not `opensoar.core...`), and only in processes that load playbooks.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["ALIAS", "install_opensoar_alias"]

ALIAS = "opensoar"


class _AliasLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # default module creation

    def exec_module(self, module: ModuleType) -> None:
        import kubesoar

        for name in kubesoar.__all__:
            setattr(module, name, getattr(kubesoar, name))
        module.__all__ = list(kubesoar.__all__)  # type: ignore[attr-defined]
        module.__doc__ = "kubesoar's SDK, under OpenSOAR's name (kubesoar._compat)."


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != ALIAS:
            return None
        return importlib.machinery.ModuleSpec(ALIAS, _AliasLoader(), origin="kubesoar")


_FINDER = _AliasFinder()


def install_opensoar_alias() -> None:
    """Idempotent; see the module docstring for the scope."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.append(_FINDER)
