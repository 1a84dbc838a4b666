"""Discovery: what the aggregator and kubectl read to learn the group and its resources.

Served to any request with a valid front-proxy certificate, without an access review:
it says only which resources exist, the same for everyone (the kube-apiserver grants
the same to every authenticated user through `system:discovery`).
"""

from __future__ import annotations

from typing import Any

from kubesoar.contracts import kube

GROUP_VERSION = f"{kube.RUNS_API_GROUP}/{kube.RUNS_API_VERSION}"
CATEGORIES = ["kubesoar"]

RESOURCES: list[dict[str, Any]] = [
    {
        "name": kube.RUNS_RESOURCE,
        "singularName": "run",
        "namespaced": True,
        "kind": "Run",
        "verbs": ["get", "list", "watch"],
        "categories": CATEGORIES,
    },
    {
        # POST …/runs/{name}/redeliver (kubectl create --raw): a failed or dead run again.
        "name": f"{kube.RUNS_RESOURCE}/redeliver",
        "singularName": "",
        "namespaced": True,
        "kind": "Run",
        "verbs": ["create"],
    },
    {
        # POST …/runs/{name}/approval {"approved": true|false, "comment": "…"}: decide a
        # waiting run. RBAC: the verb `approve` on `runs/approval`.
        "name": f"{kube.RUNS_RESOURCE}/approval",
        "singularName": "",
        "namespaced": True,
        "kind": "Run",
        "verbs": ["create"],
    },
    {
        "name": kube.ALERTS_RESOURCE,
        "singularName": "alert",
        "namespaced": True,
        "kind": "Alert",
        "verbs": ["get", "list", "watch", "patch", "update"],
        "categories": CATEGORIES,
    },
]


def _version() -> dict[str, str]:
    return {"groupVersion": GROUP_VERSION, "version": kube.RUNS_API_VERSION}


def api_group() -> dict[str, Any]:
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": kube.RUNS_API_GROUP,
        "versions": [_version()],
        "preferredVersion": _version(),
    }


def api_group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group()]}


def resource_list() -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": RESOURCES,
    }
