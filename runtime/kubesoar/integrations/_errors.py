"""What integration calls raise.

    RuntimeError
    └── IntegrationError              any integration failure
        ├── IntegrationHTTPError      the vendor answered with an error status
        └── NotConnected              an OpenSOAR-style client used before connect()

Messages never carry credentials: they pass through `kubesoar._redact`
with every secret value the run has read, and the credentials the client was
given explicitly.
"""

from __future__ import annotations

from typing import Any

__all__ = ["IntegrationError", "IntegrationHTTPError", "NotConnected"]


class IntegrationError(RuntimeError):
    """An integration call failed (after its retries)."""


class IntegrationHTTPError(IntegrationError):
    def __init__(self, message: str, *, status: int, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body  # the decoded JSON answer, or None


class NotConnected(IntegrationError):
    def __init__(self) -> None:
        super().__init__("Not connected")
