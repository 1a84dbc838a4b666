"""Who is asking: the aggregator's front-proxy client certificate, then its headers.

The kube-apiserver authenticates the user (client certificate, token, OIDC …) and
proxies the request here with its own client certificate (the front proxy's) and the
user in `X-Remote-User`, `X-Remote-Group` and `X-Remote-Extra-*`. Those headers are
believed only on a connection whose client certificate the requestheader CA signed
and whose common name the cluster allows (`requestheader-allowed-names`, empty: any):
the TLS handshake checks the CA (server.py asks for a certificate and verifies it
against that CA only), this module the name. Anything else is 401; a user's own
client certificate, signed by the cluster's client CA, is not accepted here at all.

The settings come from the `extension-apiserver-authentication` ConfigMap in
kube-system, which the kube-apiserver publishes — the same source every extension API
server (metrics-server included) reads. They are read once at start: a rotated
front-proxy CA needs a router restart.
"""

from __future__ import annotations

import json
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from kubesoar.contracts import kube

from kubesoar_router.api.status import ApiProblem
from kubesoar_router.kubeapi import KubeApi

CONFIGMAP_PATH = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"


@dataclass(frozen=True)
class FrontProxy:
    """The cluster's requestheader settings."""

    client_ca_pem: str
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = (kube.REMOTE_USER_HEADER,)
    group_headers: tuple[str, ...] = (kube.REMOTE_GROUP_HEADER,)
    extra_prefixes: tuple[str, ...] = (kube.REMOTE_EXTRA_HEADER_PREFIX,)

    @classmethod
    def from_configmap(cls, data: Mapping[str, str]) -> FrontProxy:
        pem = data.get("requestheader-client-ca-file")
        if not pem:
            raise ValueError(
                "the cluster publishes no requestheader-client-ca-file in kube-system/"
                "extension-apiserver-authentication: the kube-apiserver needs the "
                "--requestheader-client-ca-file flag (API aggregation) to serve runs.kubesoar.dev"
            )

        def names(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
            text = data.get(key)
            return tuple(json.loads(text)) if text else default

        return cls(
            client_ca_pem=pem,
            allowed_names=names("requestheader-allowed-names", ()),
            username_headers=names("requestheader-username-headers", cls.username_headers),
            group_headers=names("requestheader-group-headers", cls.group_headers),
            extra_prefixes=names("requestheader-extra-headers-prefix", cls.extra_prefixes),
        )

    @classmethod
    async def load(cls, api: KubeApi) -> FrontProxy:
        configmap = await api.get(CONFIGMAP_PATH)
        return cls.from_configmap(configmap.get("data") or {})


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def cache_key(self) -> tuple[Any, ...]:
        return (self.name, self.groups, tuple(sorted(self.extra.items())))


def _common_name(peercert: Mapping[str, Any] | None) -> str | None:
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def authenticate(request: web.Request, proxy: FrontProxy) -> User:
    """The user the aggregator vouches for; ApiProblem(401) when it did not."""
    transport = request.transport
    peercert = transport.get_extra_info("peercert") if transport is not None else None
    common_name = _common_name(peercert)
    if common_name is None:
        raise ApiProblem(401, "Unauthorized: no front-proxy client certificate")
    if proxy.allowed_names and common_name not in proxy.allowed_names:
        raise ApiProblem(401, "Unauthorized: this client certificate may not proxy users")
    name = next((v for h in proxy.username_headers for v in request.headers.getall(h, [])), "")
    if not name:
        raise ApiProblem(401, "Unauthorized: the proxy named no user")
    groups = tuple(g for h in proxy.group_headers for g in request.headers.getall(h, []))
    extra: dict[str, tuple[str, ...]] = {}
    for header, value in request.headers.items():
        for prefix in proxy.extra_prefixes:
            if header.lower().startswith(prefix.lower()):
                key = urllib.parse.unquote(header[len(prefix) :]).lower()
                extra[key] = (*extra.get(key, ()), value)
    return User(name, groups, extra)


def client_ca_context(context: ssl.SSLContext, proxy: FrontProxy) -> None:
    """Ask every client for a certificate and verify it against the requestheader CA only."""
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(cadata=proxy.client_ca_pem)
