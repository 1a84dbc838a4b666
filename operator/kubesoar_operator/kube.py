"""The few Kubernetes API calls the reconcile makes, returning plain dicts.

Child objects are written with server-side apply under one field manager, so
applying is idempotent, creates what is missing, and a restarted operator
converges on the same objects instead of duplicating them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubesoar_operator import login
from kubesoar_operator.spec import GROUP, PLURAL, VERSION

FIELD_MANAGER = "kubesoar-operator"
_APPLY = "application/apply-patch+yaml"


def make_api_client(kubeconfig: str | None) -> client.ApiClient:
    """From the kubeconfig file when given, else in-cluster, else the default kubeconfig."""
    return client.ApiClient(login.load_configuration(kubeconfig))


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
        try:
            secret = _json(
                self.core.read_namespaced_secret(name, namespace, _preload_content=False)
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
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
        try:
            return _json(
                self.apps.read_namespaced_deployment(name, namespace, _preload_content=False)
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def read_playbook(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _json(
                self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_pods(self, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        response = self.core.list_namespaced_pod(
            namespace, label_selector=label_selector, _preload_content=False
        )
        items: list[dict[str, Any]] = _json(response).get("items") or []
        return items

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": dict(status)},
            _content_type="application/merge-patch+json",
        )  # fmt: skip
