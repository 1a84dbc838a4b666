"""kubesoar: code-first security playbooks on Kubernetes.

The SDK playbooks import::

    from kubesoar import playbook, action, Alert, RunContext

Names are imported on first use, so `kubesoar fetch` (an init container) and
the pytest plugin (`kubesoar.testing`, loaded by every test session) do not
pay for pydantic and httpx unless they need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubesoar._alert import Alert, IOCs, Severity, normalize_severity
    from kubesoar._approval import Approval, ApprovalDenied, ApprovalUnavailable
    from kubesoar._conditions import Condition, ConditionError, compile_conditions
    from kubesoar._context import RunContext, current_context
    from kubesoar._sdk import action, playbook
    from kubesoar._secrets import SecretNotFound, Secrets

__version__ = "0.1.0"

_HOMES = {
    "Approval": "kubesoar._approval",
    "ApprovalDenied": "kubesoar._approval",
    "ApprovalUnavailable": "kubesoar._approval",
    "IOCs": "kubesoar._alert",
    "Alert": "kubesoar._alert",
    "Severity": "kubesoar._alert",
    "normalize_severity": "kubesoar._alert",
    "Condition": "kubesoar._conditions",
    "ConditionError": "kubesoar._conditions",
    "compile_conditions": "kubesoar._conditions",
    "RunContext": "kubesoar._context",
    "current_context": "kubesoar._context",
    "action": "kubesoar._sdk",
    "playbook": "kubesoar._sdk",
    "SecretNotFound": "kubesoar._secrets",
    "Secrets": "kubesoar._secrets",
}

__all__ = [
    "Alert",
    "Approval",
    "ApprovalDenied",
    "ApprovalUnavailable",
    "Condition",
    "ConditionError",
    "IOCs",
    "RunContext",
    "SecretNotFound",
    "Secrets",
    "Severity",
    "action",
    "compile_conditions",
    "current_context",
    "normalize_severity",
    "playbook",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'kubesoar' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
