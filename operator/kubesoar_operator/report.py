"""Read `GET /v1/report` from each runtime pod and add the answers up.

Pods are found by label and read whether ready or not: a pod whose module
fails to import never turns ready, and its report is what explains why. Calls
are bounded: at most `MAX_PODS` pods, a short timeout, a capped body.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
from kubesoar.contracts import caller, http
from pydantic import ValidationError

log = logging.getLogger("kubesoar_operator.report")

MAX_PODS = 20
MAX_BODY_BYTES = 1024 * 1024
TIMEOUT = httpx.Timeout(2.0, connect=1.0)


@dataclass(frozen=True)
class PodState:
    """What the operator knows about one runtime pod."""

    name: str
    ip: str | None
    ready: bool
    commit: str | None  # from the pod template annotation
    problem: str | None = None  # a waiting/terminated container reason worth showing


@dataclass
class PodReport:
    pod: PodState
    report: http.Report | None = None
    error: str | None = None


@dataclass
class Summary:
    entry_points: list[dict[str, Any]] = field(default_factory=list)
    load_error: dict[str, Any] | None = None
    runs: dict[str, Any] = field(default_factory=dict)
    reports_at_commit: int = 0


def fetch_report(client: httpx.Client, pod: PodState, port: int, token: str = "") -> PodReport:
    if not pod.ip:
        return PodReport(pod, error="no pod IP yet")
    url = f"http://{pod.ip}:{port}{http.REPORT_PATH}"
    headers = {"Authorization": caller.authorization(token)} if token else {}
    try:
        with client.stream("GET", url, timeout=TIMEOUT, headers=headers) as response:
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    return PodReport(pod, error="report larger than 1 MiB")
            if response.status_code != 200:
                return PodReport(pod, error=f"report answered HTTP {response.status_code}")
    except httpx.HTTPError as exc:
        log.debug("report of pod %s unavailable: %s", pod.name, type(exc).__name__)
        return PodReport(pod, error=f"report unavailable ({type(exc).__name__})")
    try:
        return PodReport(pod, report=http.Report.model_validate_json(body))
    except ValidationError as exc:
        # Playbook code runs in that pod: its report is read, never trusted.
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "body"
        return PodReport(pod, error=f"report does not follow the contract ({where})")


def collect(
    client: httpx.Client, pods: Iterable[PodState], port: int, token: str = ""
) -> list[PodReport]:
    """Reports of up to MAX_PODS pods, presenting the Playbook's caller `token`."""
    chosen = list(pods)[:MAX_PODS]
    if not chosen:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(chosen))) as pool:
        return list(pool.map(lambda p: fetch_report(client, p, port, token), chosen))


def _entry_point(raw: http.EntryPointInfo) -> dict[str, Any]:
    """An entry point as `status.playbooks` shows it, strings bounded for the status."""
    entry: dict[str, Any] = {"name": raw.name[:253]}
    if raw.trigger is not None:
        entry["trigger"] = raw.trigger[:253]
    if raw.conditions is not None:
        entry["conditions"] = raw.conditions
    entry["order"] = raw.order
    entry["priority"] = raw.priority
    if raw.description:
        entry["description"] = raw.description[:1024]
    if raw.fields != "kubesoar":  # the router matches these on OpenSOAR's alert fields
        entry["fields"] = raw.fields
    return entry


def aggregate(reports: Iterable[PodReport], commit: str) -> Summary:
    """Entry points and load error from pods at `commit`; run counters from all pods."""
    summary = Summary(runs={"total": 0, "succeeded": 0, "failed": 0})
    last_time = ""
    for item in reports:
        report = item.report
        if report is None:
            continue
        runs = report.runs
        summary.runs["total"] += runs.total
        summary.runs["succeeded"] += runs.succeeded
        summary.runs["failed"] += runs.failed
        if runs.last_run_time is not None and runs.last_run_time > last_time:
            last_time = runs.last_run_time
            summary.runs["lastRunTime"] = runs.last_run_time
            if runs.last_error:
                summary.runs["lastError"] = runs.last_error[:1024]
            else:
                summary.runs.pop("lastError", None)
        if report.commit != commit:
            continue  # an old revision's pod, still draining
        summary.reports_at_commit += 1
        load_error = report.load_error
        if load_error is not None and summary.load_error is None:
            summary.load_error = {
                "type": load_error.type[:253],
                "message": load_error.message[:1024],
                "file": (load_error.file or "")[:1024],
                "line": load_error.line or 0,
            }
        if report.entry_points and not summary.entry_points:
            summary.entry_points = [_entry_point(e) for e in report.entry_points]
    return summary


def describe_load_error(load_error: Mapping[str, Any]) -> str:
    """`ImportError: no module named x (triage.py:3)`."""
    where = load_error.get("file") or ""
    if where and load_error.get("line"):
        where = f"{where}:{load_error['line']}"
    text = f"{load_error.get('type', 'Error')}: {load_error.get('message', '')}"
    return f"{text} ({where})" if where else text
