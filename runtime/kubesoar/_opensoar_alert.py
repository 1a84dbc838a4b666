"""The alert as OpenSOAR's playbooks see it: an object with the attributes
of OpenSOAR's alert record, built from kubesoar's `Alert`.

OpenSOAR hands entry points its database row (attributes, not a dict), and
matches conditions against the row's `normalized` dict. `OpenSOARAlert` is
that row's shape: `normalized`, `iocs` and `raw_payload` are plain dicts
(fresh for each entry point, so a playbook may mutate them as OpenSOAR's
do), `iocs` keeps only non-empty lists (as OpenSOAR extracts them),
`severity` uses OpenSOAR's four levels (`info` is `low`), and `.get()` works
as on the dict OpenSOAR passes for manual runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Final

from kubesoar._alert import Alert, opensoar_severity
from kubesoar._conditions import Condition, compile_conditions

__all__ = [
    "NORMALIZED_KEYS",
    "OpenSOARAlert",
    "OpenSOARCondition",
    "current_view",
    "opensoar_fields",
]

# The keys of OpenSOAR's `normalized` dict (what its conditions see).
NORMALIZED_KEYS: Final = (
    "source",
    "source_id",
    "title",
    "description",
    "severity",
    "status",
    "source_ip",
    "dest_ip",
    "hostname",
    "rule_name",
    "iocs",
    "tags",
    "partner",
)

_current: ContextVar[OpenSOARAlert | None] = ContextVar("kubesoar_opensoar_alert", default=None)


def current_view() -> OpenSOARAlert | None:
    """The alert view of the OpenSOAR-style entry point this coroutine serves."""
    return _current.get()


def opensoar_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """kubesoar's match dict (`Alert.as_match_dict()`) with OpenSOAR's names
    and values: what OpenSOAR-style conditions are matched against. kubesoar's
    own keys stay (dotted paths into `raw` keep working)."""
    out = dict(fields)
    out["severity"] = opensoar_severity(fields.get("severity"))
    iocs = fields.get("iocs")
    out["iocs"] = {k: list(v) for k, v in iocs.items() if v} if isinstance(iocs, Mapping) else {}
    out["partner"] = fields.get("partner", fields.get("tenant"))
    out["raw_payload"] = fields.get("raw_payload", fields.get("raw") or {})
    out.setdefault("determination", "unknown")
    return out


class OpenSOARCondition(Condition):
    """A compiled condition that first maps kubesoar's fields to OpenSOAR's."""

    __slots__ = ()

    @classmethod
    def compile(cls, spec: dict[str, Any] | None) -> OpenSOARCondition:
        inner = compile_conditions(spec)
        return cls(inner.spec, inner._root, inner._anchors)

    def anchors(self) -> list[tuple[str, frozenset[Any]]]:
        # Anchors name values of OpenSOAR's fields; an index keyed by kubesoar's would
        # miss (an `info` alert is OpenSOAR's `low`): match these routes on every alert.
        return []

    def matches(self, alert: Mapping[str, Any]) -> bool:
        return super().matches(opensoar_fields(alert))

    def explain(self, alert: Mapping[str, Any]) -> list[str]:
        return super().explain(opensoar_fields(alert))


class OpenSOARAlert:
    """OpenSOAR's alert record, as far as a playbook can tell."""

    def __init__(self, alert: Alert, *, correlation_id: str | None = None) -> None:
        fields = opensoar_fields(alert.as_match_dict())
        self.id: str = alert.id
        self.source: str = alert.source
        self.source_id: str | None = alert.source_id
        self.title: str = alert.title
        self.description: str | None = alert.description
        self.severity: str = fields["severity"]
        self.status: str = alert.status
        self.raw_payload: dict[str, Any] = dict(fields["raw_payload"])
        self.source_ip: str | None = alert.source_ip
        self.dest_ip: str | None = alert.dest_ip
        self.hostname: str | None = alert.hostname
        self.rule_name: str | None = alert.rule_name
        self.iocs: dict[str, list[str]] = fields["iocs"]
        self.tags: list[str] = list(alert.tags)
        self.partner: str | None = fields["partner"]
        self.determination: str = str(fields["determination"])
        self.correlation_id: str | None = fields.get("correlation_id") or correlation_id
        self.duplicate_count: int = int(fields.get("duplicate_count") or 1)
        self.resolved_at: datetime | None = None
        self.resolve_reason: str | None = None
        self.assigned_to: str | None = None
        self.assigned_username: str | None = None
        self.archived_at: datetime | None = None
        self.created_at: datetime = alert.received_at
        self.updated_at: datetime = alert.received_at
        self.normalized: dict[str, Any] = {key: fields.get(key) for key in NORMALIZED_KEYS}
        self.normalized["iocs"] = {k: list(v) for k, v in self.iocs.items()}
        self.normalized["tags"] = list(self.tags)

    def get(self, key: str, default: Any = None) -> Any:
        """Dict-style access, as OpenSOAR's manual-run payload offers."""
        if key in vars(self):
            return vars(self)[key]
        return self.normalized.get(key, default)

    def __getitem__(self, key: str) -> Any:
        marker = object()
        value = self.get(key, marker)
        if value is marker:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, _ABSENT) is not _ABSENT

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def activate(self) -> Any:
        return _current.set(self)

    @staticmethod
    def deactivate(token: Any) -> None:
        _current.reset(token)

    def __repr__(self) -> str:
        return f"<Alert {self.id} {self.severity} {self.title!r}>"


_ABSENT: Final = object()
