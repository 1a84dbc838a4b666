"""The few Kubernetes API calls the operator makes, returning plain dicts.

Child objects are written with server-side apply under one field manager, so
applying is idempotent, creates what is missing, and a restarted operator
converges on the same objects instead of duplicating them.

This is the only module that sees the client library's exceptions: an
`ApiException` leaves it as `ApiError` (`NotFound` for 404), whose text is short
and safe to show (the library's own text carries the response headers)::

    ApiError(status, reason, detail)
     └── NotFound
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubesoar.contracts.kube import (
    API_GROUP,
    API_VERSION,
    MANAGED_BY_OPERATOR,
    PLAYBOOK,
    Kind,
)

from kubesoar_operator import login, workers

FIELD_MANAGER = MANAGED_BY_OPERATOR  # server-side apply owner: the same name as the label
_APPLY = "application/apply-patch+yaml"


def make_api_client(
    kubeconfig: str | None, *, connections: int = workers.API_CONNECTIONS
) -> client.ApiClient:
    """From the kubeconfig file when given, else in-cluster, else the default kubeconfig;
    keeping up to `connections` connections, one for each thread that may call at once."""
    configuration = login.load_configuration(kubeconfig)
    configuration.connection_pool_maxsize = connections
    return client.ApiClient(configuration)


class ApiError(Exception):
    """The API server refused a call. `detail` is the server's own message (or the HTTP
    reason); `str()` is `API error <status> <reason>`, with no response headers."""

    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        super().__init__(f"API error {status} {reason}".rstrip())
        self.status, self.reason, self.detail = status, reason, detail or reason


class NotFound(ApiError):
    """404: the object (or its namespace) does not exist."""


def _translate(exc: ApiException) -> ApiError:
    status, reason = int(exc.status or 0), str(exc.reason or "")
    try:
        detail = str(json.loads(exc.body or "{}").get("message") or "")
    except (ValueError, AttributeError):
        detail = ""
    kind = NotFound if status == 404 else ApiError
    return kind(status, reason, detail)


@contextmanager
def _api_errors() -> Iterator[None]:
    try:
        yield
    except ApiException as exc:
        raise _translate(exc) from None


def _json(response: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.data)
    return data


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.net = client.NetworkingV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    def read_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's base64 `data`, or None when it does not exist."""
        secret = self._read(self.core.read_namespaced_secret, name, namespace)
        if secret is None:
            return None
        data: dict[str, str] = secret.get("data") or {}
        return data

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply `obj`, taking ownership of its fields."""
        appliers: dict[str, Callable[..., Any]] = {
            "ServiceAccount": self.core.patch_namespaced_service_account,
            "Service": self.core.patch_namespaced_service,
            "Deployment": self.apps.patch_namespaced_deployment,
            "NetworkPolicy": self.net.patch_namespaced_network_policy,
        }
        meta = obj["metadata"]
        with _api_errors():
            response = appliers[obj["kind"]](
                meta["name"],
                meta["namespace"],
                dict(obj),
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type=_APPLY,
                _preload_content=False,
            )
        return _json(response)

    def read_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read(self.apps.read_namespaced_deployment, name, namespace)

    def read_playbook(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.read_object(PLAYBOOK, namespace, name)

    def read_object(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        """A `kubesoar.dev` object, or None when it does not exist."""
        read = self.custom.get_namespaced_custom_object
        return self._read(read, API_GROUP, API_VERSION, namespace, kind.plural, name)

    def list_pods(self, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        with _api_errors():
            response = self.core.list_namespaced_pod(
                namespace, label_selector=label_selector, _preload_content=False
            )
        items: list[dict[str, Any]] = _json(response).get("items") or []
        return items

    def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any], *, kind: Kind = PLAYBOOK
    ) -> None:
        """Merge-patch the status of a `kubesoar.dev` object; `NotFound` when it is gone."""
        with _api_errors():
            self.custom.patch_namespaced_custom_object_status(
                API_GROUP, API_VERSION, namespace, kind.plural, name, {"status": dict(status)},
                _content_type="application/merge-patch+json",
            )  # fmt: skip

    @staticmethod
    def _read(call: Callable[..., Any], *args: str) -> dict[str, Any] | None:
        try:
            with _api_errors():
                return _json(call(*args, _preload_content=False))
        except NotFound:
            return None
