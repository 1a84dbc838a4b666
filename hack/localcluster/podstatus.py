"""Pod and container status documents, as the kubelet writes them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

# Conditions the agent owns; any other condition on the pod (PodScheduled,
# DisruptionTarget, readiness gates) is carried over unchanged.
OWNED_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"waiting": {"reason": reason, **({"message": message} if message else {})}}


def running() -> dict[str, Any]:
    return {"running": {"startedAt": now()}}


def terminated(
    exit_code: int, started_at: str, reason: str = "", message: str = ""
) -> dict[str, Any]:
    state: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": reason or ("Completed" if exit_code == 0 else "Error"),
        "startedAt": started_at,
        "finishedAt": now(),
    }
    if exit_code > 128:
        state["signal"] = exit_code - 128
    if message:
        state["message"] = message
    return {"terminated": state}


@dataclass
class ContainerRecord:
    """What the agent knows about one container of a pod."""

    name: str
    image: str
    state: dict[str, Any] = field(default_factory=lambda: waiting("ContainerCreating"))
    last_state: dict[str, Any] = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    restart_count: int = 0
    container_id: str = ""

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status

    @property
    def exit_code(self) -> int | None:
        term = self.state.get("terminated")
        return None if term is None else int(term["exitCode"])


class Conditions:
    """Pod conditions with lastTransitionTime kept across updates."""

    def __init__(self) -> None:
        self._current: dict[str, dict[str, Any]] = {}

    def set(self, kind: str, ok: bool, reason: str = "", message: str = "") -> None:
        status = "True" if ok else "False"
        previous = self._current.get(kind)
        since = (
            previous["lastTransitionTime"] if previous and previous["status"] == status else now()
        )
        condition: dict[str, Any] = {
            "type": kind,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": since,
        }
        if not ok and reason:
            condition["reason"] = reason
        if not ok and message:
            condition["message"] = message
        self._current[kind] = condition

    def merged_with(self, existing: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept = [c for c in existing if c.get("type") not in OWNED_CONDITIONS]
        return kept + [self._current[k] for k in OWNED_CONDITIONS if k in self._current]


def names_where(records: list[ContainerRecord], predicate: Any) -> str:
    return " ".join(r.name for r in records if predicate(r))
