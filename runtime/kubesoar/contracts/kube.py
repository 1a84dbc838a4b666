"""Names kubesoar's parts agree on in the Kubernetes API: the CRDs, labels,
annotations.

The operator writes these names, the router selects by them, the chart and the CRD
manifests spell them in YAML; `tests/runtime/test_contracts.py` checks the YAML
against this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

API_GROUP: Final = "kubesoar.dev"
API_VERSION: Final = "v1alpha1"


@dataclass(frozen=True)
class Kind:
    """A kind of the `kubesoar.dev` group, with the plural its URLs use."""

    kind: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{API_GROUP}/{API_VERSION}"

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """`/apis/kubesoar.dev/v1alpha1[/namespaces/{ns}]/{plural}[/{name}]`."""
        scope = f"/namespaces/{namespace}" if namespace else ""
        tail = f"/{name}" if name else ""
        return f"/apis/{API_GROUP}/{API_VERSION}{scope}/{self.plural}{tail}"


PLAYBOOK: Final = Kind("Playbook", "playbooks")
ALERT_SOURCE: Final = Kind("AlertSource", "alertsources")

# --- labels every child object of a Playbook carries ------------------------
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_PLAYBOOK: Final = "kubesoar.dev/playbook"
"""The owning Playbook's name, on its Service, Deployment, pods and other children."""
LABEL_SERVICE_NAME: Final = "kubernetes.io/service-name"
"""Kubernetes' own label linking an EndpointSlice to its Service (the Playbook's name)."""

APP_NAME: Final = "kubesoar"
MANAGED_BY_OPERATOR: Final = "kubesoar-operator"
COMPONENT_RUNTIME: Final = "runtime"
COMPONENT_ROUTER: Final = "router"
COMPONENT_OPERATOR: Final = "operator"

RUNTIME_SELECTOR: Final = f"{LABEL_COMPONENT}={COMPONENT_RUNTIME}"
"""Label selector for every runtime pod and EndpointSlice, in every namespace."""


def runtime_selector_labels(playbook: str) -> dict[str, str]:
    """The labels selecting one Playbook's runtime pods (its Service's and Deployment's
    selector; a Deployment's selector is immutable, so this never changes)."""
    return {LABEL_NAME: APP_NAME, LABEL_COMPONENT: COMPONENT_RUNTIME, LABEL_PLAYBOOK: playbook}


def runtime_labels(playbook: str) -> dict[str, str]:
    """The labels of every child object of `playbook` (selector labels plus ownership)."""
    return {**runtime_selector_labels(playbook), LABEL_MANAGED_BY: MANAGED_BY_OPERATOR}


# --- annotations --------------------------------------------------------------
ANNOTATION_REQUESTED_AT: Final = "kubesoar.dev/requestedAt"
"""On a Playbook: any new value asks for an immediate reconcile (re-resolve the ref)."""
ANNOTATION_COMMIT: Final = "kubesoar.dev/commit"
"""On a runtime pod template: the commit its code was packed from."""
ANNOTATION_DIGEST: Final = "kubesoar.dev/digest"
"""On a runtime pod template: sha256 of the artifact."""
ANNOTATION_REVISION: Final = "kubesoar.dev/revision"
"""On a runtime pod template: `<ref>@sha1:<commit>`."""


# --- runs.kubesoar.dev: runs and alerts from the system of record --------------
# Served by the router through API aggregation (an APIService), never stored in etcd;
# the chart's RBAC names this group and these resources.
RUNS_API_GROUP: Final = "runs.kubesoar.dev"
RUNS_API_VERSION: Final = "v1alpha1"
RUNS_API_VERSION_PATH: Final = f"/apis/{RUNS_API_GROUP}/{RUNS_API_VERSION}"
RUNS_RESOURCE: Final = "runs"
ALERTS_RESOURCE: Final = "alerts"
LABEL_RUN_STATUS: Final = "runs.kubesoar.dev/status"
"""On a Run object of that API: the run's status (queued … dead), for `-l` selectors."""

# The aggregator's front-proxy headers (the kube-apiserver's --requestheader-* flags
# name them; the router reads the names from the extension-apiserver-authentication
# ConfigMap and falls back to these).
REMOTE_USER_HEADER: Final = "X-Remote-User"
REMOTE_GROUP_HEADER: Final = "X-Remote-Group"
REMOTE_EXTRA_HEADER_PREFIX: Final = "X-Remote-Extra-"
