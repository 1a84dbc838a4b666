"""The HTTP paths and headers kubesoar's parts serve and send, without the bodies.

Apart from `kubesoar.contracts.http` (which re-exports every name here) because that
module is pydantic models: code that only routes or probes (building a server's
routes, asking `/readyz`) need not import pydantic to know a path. Standard library
only; `tests/runtime/test_runtime_footprint.py` keeps it so.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CORRELATION_HEADER",
    "HEALTHZ_PATH",
    "METRICS_PATH",
    "READYZ_PATH",
    "REPORT_PATH",
    "RUNS_PATH",
    "ingest_path",
    "run_path",
]

RUNS_PATH: Final = "/v1/runs"
REPORT_PATH: Final = "/v1/report"
HEALTHZ_PATH: Final = "/healthz"
READYZ_PATH: Final = "/readyz"
METRICS_PATH: Final = "/metrics"
CORRELATION_HEADER: Final = "X-Correlation-Id"
"""Set by a sender (optional) or by the router; echoed on every ingest answer and log line."""


def run_path(run_id: str) -> str:
    return f"{RUNS_PATH}/{run_id}"


def ingest_path(namespace: str, source: str) -> str:
    """The URL path senders POST an AlertSource's alerts to; HMAC signatures cover it."""
    return f"/v1/namespaces/{namespace}/sources/{source}/alerts"
