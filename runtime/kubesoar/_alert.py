"""The `Alert` model playbooks receive, with severity normalised.

Field names follow OpenSOAR (snake_case); camelCase aliases are accepted on
input because that is what other JSON producers tend to send. Unknown fields
are kept (they are matchable by conditions) rather than dropped.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "OPENSOAR_SEVERITY",
    "Alert",
    "IOCs",
    "Severity",
    "normalize_severity",
    "opensoar_severity",
]

Severity = Literal["info", "low", "medium", "high", "critical"]

# Common vocabularies of SIEMs and EDRs, folded onto five levels.
_SEVERITY_WORDS: Final[dict[str, Severity]] = {
    "info": "info",
    "informational": "info",
    "information": "info",
    "none": "info",
    "low": "low",
    "medium": "medium",
    "moderate": "medium",
    "warning": "medium",
    "high": "high",
    "error": "high",
    "critical": "critical",
    "crit": "critical",
    "fatal": "critical",
    "emergency": "critical",
}
_SEVERITY_NUMBERS: Final[tuple[Severity, ...]] = ("info", "low", "medium", "high", "critical")


def normalize_severity(value: Any) -> Severity:
    """Fold a severity word or a 0-4 number onto info/low/medium/high/critical."""
    if isinstance(value, bool):
        raise ValueError(f"unknown severity {value!r}")
    if isinstance(value, int | float):
        index = int(value)
        if 0 <= index:
            return _SEVERITY_NUMBERS[min(index, 4)]
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _SEVERITY_WORDS:
            return _SEVERITY_WORDS[word]
        if word.isdigit():
            return normalize_severity(int(word))
    raise ValueError(
        f"unknown severity {value!r} (expected one of {list(_SEVERITY_NUMBERS)} or 0-4)"
    )


# Validation context that folds severity as OpenSOAR does (`kubesoar run` uses
# it for modules whose entry points come through the `opensoar` alias).
OPENSOAR_SEVERITY: Final = {"severity": "opensoar"}

# OpenSOAR's vocabulary: four levels; `info` is `low`; anything unknown or
# missing is `medium`; numbers 0-1 low, 2 medium, 3 high, 4 and up critical.
_OPENSOAR_WORDS: Final[dict[str, Severity]] = {
    "critical": "critical",
    "crit": "critical",
    "high": "high",
    "error": "high",
    "medium": "medium",
    "med": "medium",
    "warning": "medium",
    "warn": "medium",
    "low": "low",
    "info": "low",
    "informational": "low",
}


def opensoar_severity(value: Any) -> Severity:
    """Fold a severity as OpenSOAR's ingestion does (never fails)."""
    if value is None:
        return "medium"
    word = str(value).strip().lower()
    if word in _OPENSOAR_WORDS:
        return _OPENSOAR_WORDS[word]
    try:
        number = int(word)
    except ValueError:
        return "medium"
    if number >= 4:
        return "critical"
    if number == 3:
        return "high"
    return "medium" if number == 2 else "low"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class IOCs(_Model):
    """Indicators of compromise extracted from the alert."""

    ips: list[str] = Field(default_factory=list)
    domains: list[str] = Field(default_factory=list)
    hashes: list[str] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)


class Alert(_Model):
    """A normalised security alert."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    source: str = "generic"
    source_id: str | None = None
    title: str = ""
    description: str = ""
    severity: Severity = "medium"
    status: str = "new"
    source_ip: str | None = None
    dest_ip: str | None = None
    hostname: str | None = None
    rule_name: str | None = None
    iocs: IOCs = Field(default_factory=IOCs)
    tags: list[str] = Field(default_factory=list)
    raw: dict[str, Any] = Field(default_factory=dict)
    received_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    tenant: str | None = None

    @field_validator("severity", mode="before")
    @classmethod
    def _fold_severity(cls, value: Any, info: ValidationInfo) -> Severity:
        if info.context and info.context.get("severity") == "opensoar":
            return opensoar_severity(value)
        return normalize_severity(value)

    def as_match_dict(self) -> dict[str, Any]:
        """The JSON form conditions are matched against (snake_case keys)."""
        return self.model_dump(mode="json")
