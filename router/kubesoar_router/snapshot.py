"""The router's in-memory view of one namespace, built from API objects.

`build_namespace` is pure: it takes the Playbooks, AlertSources, referenced
Secrets and runtime EndpointSlices of one namespace (as the API server returns
them, plain dicts) and returns an immutable `NamespaceState` the ingest path
reads without locks. The watch side rebuilds a namespace on every change; tests
build states directly.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubesoar.contracts import alertsource, kube
from pydantic import ValidationError

from kubesoar_router.auth import Credentials
from kubesoar_router.routes import Route, RouteIndex, routes_from_status

logger = logging.getLogger("kubesoar.router")


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class Source:
    """An AlertSource ready to serve, or the reason it cannot (`problem`)."""

    namespace: str
    name: str
    spec: alertsource.AlertSourceSpec | None
    credentials: Credentials = field(default_factory=Credentials)
    problem: str | None = None


@dataclass(frozen=True)
class NamespaceState:
    namespace: str
    sources: Mapping[str, Source] = field(default_factory=dict)
    index: RouteIndex = field(default_factory=RouteIndex)
    endpoints: Mapping[str, tuple[Endpoint, ...]] = field(default_factory=dict)
    # spec.maxAttempts of each Playbook that sets one (runs created for it carry it).
    max_attempts: Mapping[str, int] = field(default_factory=dict)


SecretData = Mapping[str, Mapping[str, bytes]]  # secret name -> key -> decoded value


def decode_secret(secret: Mapping[str, Any]) -> dict[str, bytes]:
    decoded: dict[str, bytes] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            decoded[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError):
            continue
    for key, value in (secret.get("stringData") or {}).items():
        decoded[key] = str(value).encode()
    return decoded


def referenced_secrets(alertsource: Mapping[str, Any]) -> set[str]:
    """Names of the Secrets an AlertSource object references (even if its spec is invalid)."""
    auth = (alertsource.get("spec") or {}).get("auth") or {}
    names = set()
    for method in ("bearer", "hmac"):
        ref = (auth.get(method) or {}).get("secretRef") or {}
        if isinstance(ref.get("name"), str):
            names.add(ref["name"])
    return names


def build_source(namespace: str, obj: Mapping[str, Any], secrets: SecretData) -> Source:
    name = obj["metadata"]["name"]
    try:
        spec = alertsource.parse_spec(obj.get("spec") or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return Source(namespace, name, None, problem=f"invalid spec: {where}: {first['msg']}")
    values: dict[str, bytes | None] = {}
    for method, config in (("bearer", spec.auth.bearer), ("hmac", spec.auth.hmac)):
        if config is None:
            values[method] = None
            continue
        ref = config.secret_ref
        value = (secrets.get(ref.name) or {}).get(ref.key)
        if not value:
            problem = f"secret {ref.name!r} or its key {ref.key!r} is missing"
            return Source(namespace, name, spec, problem=problem)
        values[method] = value
    return Source(namespace, name, spec, Credentials(values["bearer"], values["hmac"]))


def playbook_is_routable(obj: Mapping[str, Any]) -> bool:
    """A Playbook is routed unless suspended: its routes are those its runtime published.

    Not `Ready=True`: a Playbook is not Ready while a new revision rolls out or a
    Git fetch fails, yet its pods keep serving. Dropping its matches then would
    answer 202 for alerts that no playbook runs. Routing on published routes
    instead sends such alerts to the ready pods, or answers 503 (retryable) when
    there is none. A Playbook whose runtime never loaded has published no routes.
    """
    return not (obj.get("spec") or {}).get("suspend")


def playbook_routes(obj: Mapping[str, Any]) -> list[Route]:
    if not playbook_is_routable(obj):
        return []
    entries = (obj.get("status") or {}).get("playbooks") or []
    return routes_from_status(obj["metadata"]["name"], [e for e in entries if isinstance(e, dict)])


def slice_owner(obj: Mapping[str, Any]) -> str | None:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    owner = labels.get(kube.LABEL_PLAYBOOK) or labels.get(kube.LABEL_SERVICE_NAME)
    return owner if isinstance(owner, str) else None


def ready_endpoints(obj: Mapping[str, Any]) -> list[Endpoint]:
    """Ready endpoints of one EndpointSlice, on its port named `http` (else the first)."""
    ports = obj.get("ports") or []
    chosen = next((p for p in ports if p.get("name") == "http"), ports[0] if ports else None)
    if not chosen or not isinstance(chosen.get("port"), int):
        return []
    found = []
    for endpoint in obj.get("endpoints") or []:
        conditions = endpoint.get("conditions") or {}
        # A nil `ready` means unknown, which consumers treat as ready (API docs);
        # terminating endpoints are excluded even if still serving.
        if conditions.get("ready") is False or conditions.get("terminating") is True:
            continue
        for address in endpoint.get("addresses") or []:
            found.append(Endpoint(address, chosen["port"]))
    return found


def build_namespace(
    namespace: str,
    *,
    playbooks: Iterable[Mapping[str, Any]] = (),
    alertsources: Iterable[Mapping[str, Any]] = (),
    secrets: SecretData | None = None,
    endpointslices: Iterable[Mapping[str, Any]] = (),
) -> NamespaceState:
    secrets = secrets or {}
    routes: list[Route] = []
    max_attempts: dict[str, int] = {}
    for playbook in playbooks:
        routes.extend(playbook_routes(playbook))
        attempts = (playbook.get("spec") or {}).get("maxAttempts")
        if isinstance(attempts, int) and not isinstance(attempts, bool) and attempts >= 1:
            max_attempts[playbook["metadata"]["name"]] = attempts
    endpoints: dict[str, list[Endpoint]] = {}
    for endpoint_slice in endpointslices:
        owner = slice_owner(endpoint_slice)
        if owner is not None:
            endpoints.setdefault(owner, []).extend(ready_endpoints(endpoint_slice))
    sources = {
        obj["metadata"]["name"]: build_source(namespace, obj, secrets) for obj in alertsources
    }
    return NamespaceState(
        namespace=namespace,
        sources=sources,
        index=RouteIndex.build(routes),
        endpoints={
            name: tuple(sorted(set(eps), key=lambda e: (e.address, e.port)))
            for name, eps in endpoints.items()
        },
        max_attempts=max_attempts,
    )


class Snapshot:
    """All namespaces the router serves; each state is replaced whole on change."""

    def __init__(self) -> None:
        self._namespaces: dict[str, NamespaceState] = {}
        self.synced = False

    def get(self, namespace: str) -> NamespaceState | None:
        return self._namespaces.get(namespace)

    def put(self, state: NamespaceState) -> None:
        self._namespaces[state.namespace] = state

    def namespaces(self) -> list[str]:
        return sorted(self._namespaces)
