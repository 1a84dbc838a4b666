"""How the operator authenticates: one source of credentials for kopf and the API client.

`--kubeconfig PATH` means that file and nothing else; without it, the pod's
service account, then `$KUBECONFIG` or `~/.kube/config` read at call time. The
client library reads `$KUBECONFIG` once, when it is imported, so it is never
relied upon; and kopf's own login handlers (which log an error before falling
back, and read the environment) are not used: a registered `@kopf.on.login`
handler replaces them all.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import kopf
from kubernetes import client, config
from kubernetes.config.incluster_config import InClusterConfigLoader

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def load_configuration(kubeconfig: str | None) -> client.Configuration:
    """A fresh client configuration (tokens and certificates loaded now)."""
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
        return configuration
    # The token and CA folder may be moved (KUBESOAR_SERVICE_ACCOUNT_DIR): the local
    # node agent runs pods as processes that cannot see the fixed path.
    folder = os.environ.get("KUBESOAR_SERVICE_ACCOUNT_DIR", SERVICE_ACCOUNT_DIR)
    try:
        InClusterConfigLoader(  # type: ignore[no-untyped-call]
            token_filename=f"{folder}/token", cert_filename=f"{folder}/ca.crt"
        ).load_and_set(configuration)
    except config.ConfigException:
        default = os.environ.get("KUBECONFIG") or "~/.kube/config"
        config.load_kube_config(config_file=default, client_configuration=configuration)  # type: ignore[no-untyped-call]
    return configuration


def connection_info(configuration: client.Configuration) -> kopf.ConnectionInfo:
    """kopf's view of a client configuration (as kopf's own client piggybacking maps it)."""
    # Since kubernetes 36 the bearer token sits under BearerToken, before under authorization.
    header = configuration.get_api_key_with_prefix(
        "BearerToken"
    ) or configuration.get_api_key_with_prefix("authorization")
    parts: Sequence[str] = header.split(" ", 1) if header else []
    scheme, token = (
        (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    )
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def register(kubeconfig: str | None, registry: kopf.OperatorRegistry) -> None:
    """Register the one login handler; kopf calls it again when credentials expire."""

    @kopf.on.login(registry=registry, id="kubeconfig" if kubeconfig else "default")
    def login(**_: object) -> kopf.ConnectionInfo:
        try:
            return connection_info(load_configuration(kubeconfig))
        except (config.ConfigException, OSError) as exc:
            raise kopf.LoginError(f"cannot load credentials: {exc}") from None
