"""Small result types OpenSOAR's integration interface returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ActionDefinition", "HealthCheckResult"]


@dataclass
class HealthCheckResult:
    healthy: bool
    message: str
    details: dict[str, Any] | None = None


@dataclass
class ActionDefinition:
    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)
    returns: dict[str, Any] = field(default_factory=dict)
