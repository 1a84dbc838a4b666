"""The Playbook spec as a pydantic model, parsed once per reconcile.

The CRD schema rejects most bad input at admission; this model is the second
line (e.g. semver range syntax, which the schema cannot express) and the one
place the operator reads spec fields from. A `ValidationError` here becomes the
`Stalled` condition with reason `InvalidSpec`. `tests/operator/test_op_spec_schema.py`
keeps the fields and defaults in step with `crds/playbook.yaml`.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kubesoar_operator import semver

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
COMMIT_SHA = r"^[0-9a-f]{40}$"
GIT_URL = r"^(https?://|ssh://|git@)[^\s]+$"
DURATION = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
MODULE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
# A folder inside the repository: relative, no leading slash (`..` is refused apart).
REPO_PATH = r"^([A-Za-z0-9_.@+-]+/)*[A-Za-z0-9_.@+-]*$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration (`90s`, `1m30s`, `1h`)."""
    if not re.fullmatch(DURATION, text):
        raise ValueError(f"invalid duration {text!r}: use e.g. 30s, 1m, 1h30m")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


class _Model(BaseModel):
    # Unknown fields are refused: the CRD schema prunes them, so one reaching
    # here means the two disagree.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class LocalObjectReference(_Model):
    name: str = Field(pattern=DNS_SUBDOMAIN, max_length=253)


class GitRef(_Model):
    branch: str | None = Field(default=None, min_length=1, max_length=255)
    tag: str | None = Field(default=None, min_length=1, max_length=255)
    semver: str | None = Field(default=None, min_length=1, max_length=255)
    commit: str | None = Field(default=None, pattern=COMMIT_SHA)

    @model_validator(mode="after")
    def _exactly_one(self) -> GitRef:
        chosen = [k for k in ("branch", "tag", "semver", "commit") if getattr(self, k)]
        if len(chosen) != 1:
            raise ValueError("set exactly one of branch, tag, semver, commit")
        return self

    @field_validator("semver")
    @classmethod
    def _valid_range(cls, value: str | None) -> str | None:
        if value is not None:
            semver.parse_range(value)  # raises ValueError with the reason
        return value

    @property
    def kind(self) -> str:
        return next(k for k in ("branch", "tag", "semver", "commit") if getattr(self, k))

    @property
    def value(self) -> str:
        result: str = getattr(self, self.kind)
        return result


class GitSource(_Model):
    url: str = Field(pattern=GIT_URL, max_length=2048)
    ref: GitRef
    secret_ref: LocalObjectReference | None = Field(default=None, alias="secretRef")


class Source(_Model):
    git: GitSource
    path: str = Field(default="", pattern=REPO_PATH, max_length=1024)
    interval: str = Field(default="1m", pattern=DURATION)

    @field_validator("path")
    @classmethod
    def _inside_repo(cls, value: str) -> str:
        if ".." in value.split("/"):
            raise ValueError("path must stay inside the repository (no `..`)")
        return value

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)


class EnvVar(_Model):
    name: str = Field(pattern=ENV_NAME, max_length=256)
    value: str = Field(default="", max_length=32768)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.startswith("KUBESOAR_"):
            raise ValueError(f"env {value}: the KUBESOAR_ prefix is reserved for the runtime")
        return value


class NamedSecret(_Model):
    name: str = Field(pattern=DNS_LABEL, max_length=63)
    secret_ref: LocalObjectReference = Field(alias="secretRef")


class Resources(_Model):
    # Quantities may be written as numbers (`cpu: 1`), as in any Kubernetes object.
    requests: dict[str, int | str] = Field(default_factory=dict)
    limits: dict[str, int | str] = Field(default_factory=dict)


class Runtime(_Model):
    image: str = Field(default="", max_length=1024)
    resources: Resources = Field(default_factory=Resources)
    concurrency: int = Field(default=8, ge=1, le=1024)
    queue_size: int = Field(default=100, ge=0, le=100_000, alias="queueSize")
    timeout_seconds: int = Field(default=300, ge=1, le=86_400, alias="timeoutSeconds")
    env: tuple[EnvVar, ...] = ()
    secrets: tuple[NamedSecret, ...] = ()
    runtime_class_name: str = Field(default="", alias="runtimeClassName", max_length=253)

    @field_validator("secrets")
    @classmethod
    def _unique_secret_names(cls, value: tuple[NamedSecret, ...]) -> tuple[NamedSecret, ...]:
        names = [s.name for s in value]
        if len(names) != len(set(names)):
            raise ValueError("runtime.secrets: names must be unique (one folder per secret)")
        return value


class EgressPort(_Model):
    port: int = Field(ge=1, le=65535)
    protocol: str = Field(default="TCP", pattern=r"^(TCP|UDP|SCTP)$")


class EgressRule(_Model):
    cidr: str = Field(max_length=64)
    ports: tuple[EgressPort, ...] = ()


class Network(_Model):
    egress: tuple[EgressRule, ...] = ()


class Scaling(_Model):
    """Replicas that follow the Playbook's queue in the system of record (autoscale.py)."""

    min_replicas: int = Field(default=0, ge=0, le=100, alias="minReplicas")
    max_replicas: int = Field(default=1, ge=1, le=100, alias="maxReplicas")
    idle_seconds: int = Field(default=300, ge=1, le=86_400, alias="idleSeconds")
    # Unset: runtime.concurrency, the runs one pod works on at once.
    runs_per_replica: int | None = Field(default=None, ge=1, le=100_000, alias="runsPerReplica")

    @model_validator(mode="after")
    def _ordered(self) -> Scaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas ({self.min_replicas}) must not exceed "
                f"maxReplicas ({self.max_replicas})"
            )
        return self


class PlaybookSpec(_Model):
    source: Source
    module: str = Field(pattern=MODULE_NAME, max_length=255)
    max_attempts: int = Field(default=3, alias="maxAttempts", ge=1, le=20)
    # A fixed count; not used when `scaling` is set (as a Deployment's replicas are not
    # when an autoscaler owns them).
    replicas: int = Field(default=1, ge=0, le=100)
    scaling: Scaling | None = None
    suspend: bool = False
    runtime: Runtime = Field(default_factory=Runtime)
    network: Network = Field(default_factory=Network)


class InvalidSpec(ValueError):
    """The spec cannot be reconciled as written; the message says why."""


def parse_spec(raw: Any) -> PlaybookSpec:
    """Parse a Playbook's `spec`, turning pydantic's errors into one readable line."""
    try:
        return PlaybookSpec.model_validate(dict(raw or {}))
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(p) for p in err["loc"]) or "spec"
            problems.append(f"spec.{where}: {err['msg']}")
        raise InvalidSpec("; ".join(problems)) from None
