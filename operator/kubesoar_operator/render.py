"""Child objects of a Playbook, as pure functions returning manifests (dicts).

Nothing here talks to the API server; `children.py` applies what these build.
Every runtime pod passes the Pod Security Standard `restricted` and gets no
service account token: a playbook has no business calling the Kubernetes API.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kubesoar.contracts import caller, http, kube

from kubesoar_operator.spec import PlaybookSpec

DEFAULT_IMAGE = "ghcr.io/kubesoar/kubesoar:0.1.0"
RUNTIME_PORT = 8080
ROUTER_PORT = 8081  # the router pods' ingest port: pods report dispatched runs there
WORKSPACE_DIR = "/workspace"
SECRETS_DIR = "/var/run/kubesoar/secrets"
TMP_DIR = "/tmp"  # noqa: S108 - an emptyDir mounted in the pod, not the operator's /tmp
RUNTIME_UID = 65532
# A drain longer than an hour holds node drains and upgrades hostage; past it, runs
# still queued are abandoned (and counted, see docs/playbooks.md).
MAX_DRAIN_SECONDS = 3600
DRAIN_MARGIN_SECONDS = 10
DEFAULT_REQUESTS = {"cpu": "50m", "memory": "64Mi"}
DEFAULT_LIMITS = {"cpu": "500m", "memory": "256Mi"}


@dataclass(frozen=True)
class RenderContext:
    """Everything the manifests depend on; same input, same manifests."""

    name: str
    namespace: str
    spec: PlaybookSpec
    commit: str
    revision: str
    digest: str  # hex sha256 of the artifact
    artifact_url: str
    system_namespace: str = "kubesoar-system"
    artifact_port: int = 8090
    router_port: int = ROUTER_PORT
    default_image: str = DEFAULT_IMAGE
    # What the autoscaler asks for (autoscale.py); None: the spec's fixed `replicas`.
    replicas: int | None = None


def runtime_name(name: str) -> str:
    """Name of the ServiceAccount, Deployment and NetworkPolicy (the Service has `name`)."""
    return f"{name}-runtime"


def _meta(ctx: RenderContext, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": ctx.namespace, "labels": kube.runtime_labels(ctx.name)}


def service_account(ctx: RenderContext) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(ctx, runtime_name(ctx.name)),
        "automountServiceAccountToken": False,
    }


def drain_seconds(spec: PlaybookSpec) -> int:
    """How long SIGTERM waits for accepted runs: long enough for every accepted one.

    A pod holds at most `queueSize` waiting runs plus `concurrency` running ones,
    run `concurrency` at a time, each within `timeoutSeconds`; so the last one
    accepted ends within ceil((Q + C) / C) timeouts. The pod exits as soon as it
    is idle, so a long window costs nothing unless the pod is busy.
    """
    runtime = spec.runtime
    waves = math.ceil((runtime.queue_size + runtime.concurrency) / runtime.concurrency)
    return int(min(waves * runtime.timeout_seconds, MAX_DRAIN_SECONDS))


def _container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUNTIME_UID,
        "runAsGroup": RUNTIME_UID,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _resources(spec: PlaybookSpec) -> dict[str, Any]:
    wanted = spec.runtime.resources
    return {
        "requests": {**DEFAULT_REQUESTS, **wanted.requests},
        "limits": {**DEFAULT_LIMITS, **wanted.limits},
    }


def _env(ctx: RenderContext) -> list[dict[str, Any]]:
    spec = ctx.spec
    plain = {
        "KUBESOAR_WORKSPACE": WORKSPACE_DIR,
        "KUBESOAR_MODULE": spec.module,
        "KUBESOAR_COMMIT": ctx.commit,
        "KUBESOAR_REVISION": ctx.revision,
        "KUBESOAR_PLAYBOOK": ctx.name,
        "KUBESOAR_NAMESPACE": ctx.namespace,
        "KUBESOAR_PORT": str(RUNTIME_PORT),
        "KUBESOAR_CONCURRENCY": str(spec.runtime.concurrency),
        "KUBESOAR_QUEUE_SIZE": str(spec.runtime.queue_size),
        "KUBESOAR_TIMEOUT_SECONDS": str(spec.runtime.timeout_seconds),
        "KUBESOAR_SECRETS_DIR": SECRETS_DIR,
        "KUBESOAR_DRAIN_SECONDS": str(drain_seconds(spec)),
        caller.AUTH_ENV: "required",
        "TMPDIR": TMP_DIR,
    }
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in plain.items()]
    env.append(
        {"name": "KUBESOAR_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    )
    env += [{"name": e.name, "value": e.value} for e in spec.runtime.env]
    return env


def _fetch_env(ctx: RenderContext) -> list[dict[str, Any]]:
    return [
        {"name": "KUBESOAR_ARTIFACT_URL", "value": ctx.artifact_url},
        {"name": "KUBESOAR_ARTIFACT_SHA256", "value": ctx.digest},
        {"name": "KUBESOAR_WORKSPACE", "value": WORKSPACE_DIR},
        {"name": "TMPDIR", "value": TMP_DIR},
    ]


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def deployment(ctx: RenderContext) -> dict[str, Any]:
    spec = ctx.spec
    image = spec.runtime.image or ctx.default_image
    workspace_mount = {"name": "workspace", "mountPath": WORKSPACE_DIR}
    tmp_mount = {"name": "tmp", "mountPath": TMP_DIR}
    secret_mounts = [
        {"name": f"secret-{s.name}", "mountPath": f"{SECRETS_DIR}/{s.name}", "readOnly": True}
        for s in spec.runtime.secrets
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "workspace", "emptyDir": {"sizeLimit": "256Mi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ] + [
        {
            "name": f"secret-{s.name}",
            "secret": {"secretName": s.secret_ref.name, "defaultMode": 0o440},
        }
        for s in spec.runtime.secrets
    ]
    pod_spec: dict[str, Any] = {
        "serviceAccountName": runtime_name(ctx.name),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": drain_seconds(spec) + DRAIN_MARGIN_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNTIME_UID,
            "runAsGroup": RUNTIME_UID,
            "fsGroup": RUNTIME_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [
            {
                "name": "fetch",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["kubesoar", "fetch"],
                "env": _fetch_env(ctx),
                "resources": _resources(spec),
                "securityContext": _container_security(),
                "volumeMounts": [workspace_mount, tmp_mount],
            }
        ],
        "containers": [
            {
                "name": "runtime",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["kubesoar", "runtime"],
                "ports": [{"name": "http", "containerPort": RUNTIME_PORT, "protocol": "TCP"}],
                "env": _env(ctx),
                "resources": _resources(spec),
                "securityContext": _container_security(),
                "readinessProbe": _probe(http.READYZ_PATH, 2, 2),
                "livenessProbe": _probe(http.HEALTHZ_PATH, 10, 3),
                "volumeMounts": [{**workspace_mount, "readOnly": True}, tmp_mount, *secret_mounts],
            }
        ],
        "volumes": volumes,
    }
    if spec.runtime.runtime_class_name:
        pod_spec["runtimeClassName"] = spec.runtime.runtime_class_name
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(ctx, runtime_name(ctx.name)),
        "spec": {
            "replicas": spec.replicas if ctx.replicas is None else ctx.replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": kube.runtime_selector_labels(ctx.name)},
            # Keep capacity during a rollout: a new pod must be ready before an old one goes.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": kube.runtime_labels(ctx.name),
                    # A new commit or artifact changes the template, which rolls the pods.
                    "annotations": {
                        kube.ANNOTATION_COMMIT: ctx.commit,
                        kube.ANNOTATION_DIGEST: ctx.digest,
                        kube.ANNOTATION_REVISION: ctx.revision,
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def service(ctx: RenderContext) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(ctx, ctx.name),
        "spec": {
            "type": "ClusterIP",
            "selector": kube.runtime_selector_labels(ctx.name),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _from_system(ctx: RenderContext, component: str) -> dict[str, Any]:
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ctx.system_namespace}},
        "podSelector": {"matchLabels": {kube.LABEL_COMPONENT: component}},
    }


def network_policy(ctx: RenderContext) -> dict[str, Any]:
    dns_ports = [{"protocol": p, "port": 53} for p in ("UDP", "TCP")]
    egress: list[dict[str, Any]] = [
        {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
         "ports": dns_ports},
        {"to": [_from_system(ctx, kube.COMPONENT_OPERATOR)],
         "ports": [{"protocol": "TCP", "port": ctx.artifact_port}]},
        # Reports of runs dispatched from the system of record (POST /v1/runs/{id}/...).
        {"to": [_from_system(ctx, kube.COMPONENT_ROUTER)],
         "ports": [{"protocol": "TCP", "port": ctx.router_port}]},
    ]  # fmt: skip
    for rule in ctx.spec.network.egress:
        entry: dict[str, Any] = {"to": [{"ipBlock": {"cidr": rule.cidr}}]}
        if rule.ports:
            entry["ports"] = [{"protocol": p.protocol, "port": p.port} for p in rule.ports]
        egress.append(entry)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(ctx, runtime_name(ctx.name)),
        "spec": {
            "podSelector": {"matchLabels": kube.runtime_selector_labels(ctx.name)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [
                        _from_system(ctx, kube.COMPONENT_ROUTER),
                        _from_system(ctx, kube.COMPONENT_OPERATOR),
                    ],
                    "ports": [{"protocol": "TCP", "port": RUNTIME_PORT}],
                }
            ],
            "egress": egress,
        },
    }


def children(ctx: RenderContext) -> list[dict[str, Any]]:
    """All child objects, in the order they are applied (the ServiceAccount before pods)."""
    return [service_account(ctx), service(ctx), network_policy(ctx), deployment(ctx)]


def endpoint(name: str, namespace: str) -> str:
    return f"http://{name}.{namespace}.svc:80"
