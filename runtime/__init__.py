"""kubesoar: code-first security playbooks on Kubernetes.

The SDK playbooks import::

    from kubesoar import playbook, action, Alert, RunContext
"""

from kubesoar._alert import Alert, IOCs, Severity, normalize_severity
from kubesoar._conditions import Condition, ConditionError, compile_conditions
from kubesoar._context import RunContext, current_context
from kubesoar._sdk import action, playbook
from kubesoar._secrets import SecretNotFound, Secrets

__version__ = "0.1.0"

__all__ = [
    "Alert",
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
