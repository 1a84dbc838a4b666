"""The AlertSource spec as a pydantic model, shared by the operator and the router.

The CRD schema (`crds/alertsource.yaml`) rejects most bad input at admission;
this model is the one place both sides read spec fields from, with the same
defaults. `tests/runtime/test_contracts_alertsource.py` keeps it in step with the schema.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
CONFIG_MAP_KEY = r"^[-._a-zA-Z0-9]+$"  # the pattern Secret and ConfigMap keys follow
HEADER_NAME = r"^[A-Za-z0-9][-A-Za-z0-9]*$"
DOTTED_PATH = r"^[^.\s]+(\.[^.\s]+)*$"

DEFAULT_SIGNATURE_HEADER = "X-Kubesoar-Signature"
DEFAULT_TIMESTAMP_HEADER = "X-Kubesoar-Timestamp"
DEFAULT_DEDUP_KEY = "source_id"


class Format(StrEnum):
    """Payload shapes the router can normalise (`kubesoar_router`'s normalizers)."""

    GENERIC = "generic"
    ELASTIC = "elastic"
    SPLUNK = "splunk"
    DEFENDER = "defender"


class _Model(BaseModel):
    # The CRD schema prunes unknown fields; one reaching here means they disagree.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class SecretKeyRef(_Model):
    name: str = Field(pattern=DNS_SUBDOMAIN, max_length=253)
    key: str = Field(pattern=CONFIG_MAP_KEY, max_length=253)


class BearerAuth(_Model):
    secret_ref: SecretKeyRef = Field(alias="secretRef")


class HmacAuth(_Model):
    secret_ref: SecretKeyRef = Field(alias="secretRef")
    signature_header: str = Field(
        default=DEFAULT_SIGNATURE_HEADER, alias="signatureHeader", pattern=HEADER_NAME
    )
    timestamp_header: str = Field(
        default=DEFAULT_TIMESTAMP_HEADER, alias="timestampHeader", pattern=HEADER_NAME
    )
    replay_window_seconds: int = Field(default=300, alias="replayWindowSeconds", ge=10, le=3600)


class Auth(_Model):
    bearer: BearerAuth | None = None
    hmac: HmacAuth | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> Auth:
        if self.bearer is None and self.hmac is None:
            raise ValueError("auth: set bearer, hmac or both")
        return self

    def secret_refs(self) -> list[SecretKeyRef]:
        return [m.secret_ref for m in (self.bearer, self.hmac) if m is not None]


class Dedup(_Model):
    key: str = Field(default=DEFAULT_DEDUP_KEY, pattern=DOTTED_PATH, max_length=256)
    keys: list[str] | None = Field(default=None, min_length=1, max_length=8)
    window_seconds: int = Field(default=300, alias="windowSeconds", ge=0, le=86400)

    @model_validator(mode="after")
    def _paths(self) -> Dedup:
        if self.keys is not None and self.key != DEFAULT_DEDUP_KEY:
            raise ValueError("dedup: set key or keys, not both")
        return self

    @property
    def paths(self) -> tuple[str, ...]:
        """The dotted paths (into the normalised alert) whose values form the key."""
        return tuple(self.keys) if self.keys else (self.key,)


class RateLimit(_Model):
    requests_per_second: float = Field(alias="requestsPerSecond", gt=0, le=100000)
    burst: int | None = Field(default=None, ge=1, le=1000000)

    @property
    def effective_burst(self) -> int:
        return self.burst if self.burst is not None else max(1, int(self.requests_per_second))


class AlertSourceSpec(_Model):
    format: Format = Format.GENERIC
    auth: Auth
    dedup: Dedup = Field(default_factory=Dedup)
    rate_limit: RateLimit | None = Field(default=None, alias="rateLimit")
    suspend: bool = False


def parse_spec(spec: dict[str, Any]) -> AlertSourceSpec:
    """Parse once; raises pydantic's `ValidationError` with the field path."""
    return AlertSourceSpec.model_validate(spec)
