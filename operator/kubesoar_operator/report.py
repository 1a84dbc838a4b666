"""Read `GET /v1/report` from each runtime pod and add the answers up.

Pods are found by label and read whether ready or not: a pod whose module
fails to import never turns ready, and its report is what explains why. Calls
are bounded: at most `MAX_PODS` pods, a short timeout, a capped body.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
from kubesoar import _caller as caller

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
    report: Mapping[str, Any] | None = None
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
    url = f"http://{pod.ip}:{port}/v1/report"
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
        data = json.loads(body)
    except (httpx.HTTPError, ValueError) as exc:
        log.debug("report of pod %s unavailable: %s", pod.name, type(exc).__name__)
        return PodReport(pod, error=f"report unavailable ({type(exc).__name__})")
    if not isinstance(data, dict):
        return PodReport(pod, error="report is not a JSON object")
    return PodReport(pod, report=data)


def collect(
    client: httpx.Client, pods: Iterable[PodState], port: int, token: str = ""
) -> list[PodReport]:
    """Reports of up to MAX_PODS pods, presenting the Playbook's caller `token`."""
    chosen = list(pods)[:MAX_PODS]
    if not chosen:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(chosen))) as pool:
        return list(pool.map(lambda p: fetch_report(client, p, port, token), chosen))


def _entry_point(raw: Mapping[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": str(raw.get("name", ""))[:253]}
    if raw.get("trigger") is not None:
        entry["trigger"] = str(raw["trigger"])[:253]
    if isinstance(raw.get("conditions"), Mapping):
        entry["conditions"] = dict(raw["conditions"])
    for key in ("order", "priority"):
        value = raw.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            entry[key] = value
        elif isinstance(value, str) and key == "priority":
            entry[key] = value[:63]
    if raw.get("description"):
        entry["description"] = str(raw["description"])[:1024]
    return entry


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def aggregate(reports: Iterable[PodReport], commit: str) -> Summary:
    """Entry points and load error from pods at `commit`; run counters from all pods."""
    summary = Summary(runs={"total": 0, "succeeded": 0, "failed": 0})
    last_time = ""
    for item in reports:
        report = item.report
        if report is None:
            continue
        raw_runs = report.get("runs")
        runs: Mapping[str, Any] = raw_runs if isinstance(raw_runs, Mapping) else {}
        for key in ("total", "succeeded", "failed"):
            summary.runs[key] += _int(runs.get(key))
        run_time = runs.get("lastRunTime")
        if isinstance(run_time, str) and run_time > last_time:
            last_time = run_time
            summary.runs["lastRunTime"] = run_time
            if runs.get("lastError"):
                summary.runs["lastError"] = str(runs["lastError"])[:1024]
            else:
                summary.runs.pop("lastError", None)
        if report.get("commit") != commit:
            continue  # an old revision's pod, still draining
        summary.reports_at_commit += 1
        load_error = report.get("loadError")
        if isinstance(load_error, Mapping) and summary.load_error is None:
            summary.load_error = {
                "type": str(load_error.get("type", "Error"))[:253],
                "message": str(load_error.get("message", ""))[:1024],
                "file": str(load_error.get("file") or "")[:1024],
                "line": _int(load_error.get("line")),
            }
        entries = report.get("entryPoints")
        if isinstance(entries, list) and not summary.entry_points:
            summary.entry_points = [_entry_point(e) for e in entries if isinstance(e, Mapping)]
    return summary


def describe_load_error(load_error: Mapping[str, Any]) -> str:
    """`ImportError: no module named x (triage.py:3)`."""
    where = load_error.get("file") or ""
    if where and load_error.get("line"):
        where = f"{where}:{load_error['line']}"
    text = f"{load_error.get('type', 'Error')}: {load_error.get('message', '')}"
    return f"{text} ({where})" if where else text
