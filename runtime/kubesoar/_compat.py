"""The `opensoar` package, as kubesoar provides it: playbooks written for
OpenSOAR import it unchanged.

    opensoar                      playbook (OpenSOAR's), action, the lifecycle
                                  helpers, and kubesoar's SDK names
    opensoar.core.decorators      playbook, action
    opensoar.runtime              the lifecycle helpers
    opensoar.config               settings (from the Playbook's Secrets)
    opensoar.integrations.<vendor>.connector   OpenSOAR's client classes
    opensoar.integrations.base    IntegrationBase, HealthCheckResult, ActionDefinition
    opensoar.ai.client            LLMClient, LLMResponse
    opensoar.db, opensoar.models  fail to import, naming the replacement

The loader appends the finder to the *end* of `sys.meta_path`, so an
installed OpenSOAR would be found first; the loader refuses such a playbook
(`real_opensoar_in`) instead of finding no entry points in it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, Final

__all__ = ["ALIAS", "ALIAS_MARKER", "install_opensoar_alias", "is_alias", "real_opensoar_in"]

ALIAS: Final = "opensoar"
ALIAS_MARKER: Final = "__kubesoar_alias__"
GUIDE: Final = "docs/migrating-from-opensoar.md"

_NO_DATABASE: Final = (
    "{name} is OpenSOAR's database layer, which kubesoar does not have. Read the alert "
    "from the entry point's argument, change it with opensoar's update_current_alert / "
    "resolve_current_alert / assign_current_alert / add_current_alert_comment, and "
    "keep integration settings in the Playbook's Secrets (opensoar.config.settings, "
    f"kubesoar.integrations); see {GUIDE}"
)


class OpenSOARDatabaseUnavailable(ImportError):
    """`opensoar.db` / `opensoar.models` under kubesoar."""


def _top(module: ModuleType) -> None:
    import kubesoar
    from kubesoar import _opensoar_lifecycle, _opensoar_sdk

    for name in kubesoar.__all__:
        setattr(module, name, getattr(kubesoar, name))
    exported = [*kubesoar.__all__]
    for name in _opensoar_lifecycle.__all__:
        setattr(module, name, getattr(_opensoar_lifecycle, name))
        exported.append(name)
    module.playbook = _opensoar_sdk.playbook  # type: ignore[attr-defined]
    module.__version__ = "0.1.0+kubesoar"  # type: ignore[attr-defined]
    module.__all__ = sorted(set(exported))  # type: ignore[attr-defined]


def _decorators(module: ModuleType) -> None:
    from kubesoar import _opensoar_sdk, _sdk

    module.playbook = _opensoar_sdk.playbook  # type: ignore[attr-defined]
    module.action = _sdk.action  # type: ignore[attr-defined]


def _runtime(module: ModuleType) -> None:
    from kubesoar import _opensoar_lifecycle

    for name in _opensoar_lifecycle.__all__:
        setattr(module, name, getattr(_opensoar_lifecycle, name))


def _config(module: ModuleType) -> None:
    from kubesoar import _opensoar_settings

    module.settings = _opensoar_settings.settings  # type: ignore[attr-defined]
    module.Settings = _opensoar_settings.Settings  # type: ignore[attr-defined]


def _base(module: ModuleType) -> None:
    from kubesoar.integrations import _base, _types

    module.IntegrationBase = _base.Integration  # type: ignore[attr-defined]
    module.HealthCheckResult = _types.HealthCheckResult  # type: ignore[attr-defined]
    module.ActionDefinition = _types.ActionDefinition  # type: ignore[attr-defined]


def _connector(vendor: str) -> Callable[[ModuleType], None]:
    def fill(module: ModuleType) -> None:
        from kubesoar._opensoar_connectors import CONNECTORS

        for name, cls in CONNECTORS[vendor].items():
            setattr(module, name, cls)

    return fill


def _ai_client(module: ModuleType) -> None:
    from kubesoar.integrations import llm

    module.LLMClient = llm.LLMClient  # type: ignore[attr-defined]
    module.LLMResponse = llm.LLMResponse  # type: ignore[attr-defined]


def _nothing(module: ModuleType) -> None:
    return None


_VENDORS: Final = (
    "virustotal",
    "abuseipdb",
    "greynoise",
    "shodan",
    "slack",
    "email",
    "splunk",
    "elastic",
    "msdefender",
)

# module name -> (is a package, how to fill it)
_MODULES: dict[str, tuple[bool, Callable[[ModuleType], None]]] = {
    "opensoar": (True, _top),
    "opensoar.core": (True, _nothing),
    "opensoar.core.decorators": (False, _decorators),
    "opensoar.runtime": (False, _runtime),
    "opensoar.config": (False, _config),
    "opensoar.integrations": (True, _nothing),
    "opensoar.integrations.base": (False, _base),
    "opensoar.ai": (True, _nothing),
    "opensoar.ai.client": (False, _ai_client),
}
for _vendor in _VENDORS:
    _MODULES[f"opensoar.integrations.{_vendor}"] = (True, _nothing)
    _MODULES[f"opensoar.integrations.{_vendor}.connector"] = (False, _connector(_vendor))


def _refuse(name: str) -> Callable[[ModuleType], None]:
    def fail(module: ModuleType) -> None:
        root = ".".join(name.split(".")[:2])
        raise OpenSOARDatabaseUnavailable(_NO_DATABASE.format(name=root), name=name)

    return fail


def _unknown(name: str) -> Callable[[ModuleType], None]:
    def fail(module: ModuleType) -> None:
        raise ModuleNotFoundError(
            f"No module named {name!r}: kubesoar's opensoar compatibility provides "
            f"{', '.join(sorted(_MODULES))} (see {GUIDE})",
            name=name,
        )

    return fail


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, fill: Callable[[ModuleType], None], package: bool) -> None:
        self._fill = fill
        self._package = package

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # default module creation

    def exec_module(self, module: ModuleType) -> None:
        setattr(module, ALIAS_MARKER, True)
        module.__doc__ = "OpenSOAR's API on kubesoar (kubesoar._compat)."
        if self._package:
            module.__path__ = []
        self._fill(module)


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != ALIAS and not fullname.startswith(ALIAS + "."):
            return None
        parts = fullname.split(".")
        if fullname in _MODULES:
            package, fill = _MODULES[fullname]
        elif len(parts) >= 2 and parts[1] in {"db", "models"}:
            package, fill = parts[1] == "models" and len(parts) == 2, _refuse(fullname)
        else:
            package, fill = False, _unknown(fullname)
        spec = importlib.machinery.ModuleSpec(
            fullname, _AliasLoader(fill, package), origin="kubesoar", is_package=package
        )
        return spec


_FINDER = _AliasFinder()


def install_opensoar_alias() -> None:
    """Idempotent; see the module docstring for the scope."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.append(_FINDER)


def is_alias(module: Any) -> bool:
    return bool(getattr(module, ALIAS_MARKER, False))


def real_opensoar_in(modules: Sequence[ModuleType]) -> str | None:
    """Where the real OpenSOAR package lives when one of `modules` uses it
    (its decorators register with OpenSOAR, so kubesoar would see no entry
    points), else None."""
    real = sys.modules.get(ALIAS)
    if real is None or is_alias(real):
        return None
    for module in modules:
        for value in vars(module).values():
            owner = (
                value.__name__
                if isinstance(value, ModuleType)
                else getattr(value, "__module__", None)
            )
            if isinstance(owner, str) and (owner == ALIAS or owner.startswith(ALIAS + ".")):
                return str(getattr(real, "__file__", None) or "an installed package")
    return None
