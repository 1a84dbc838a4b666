"""The Helm chart rendered by the real helm CLI, without a cluster.

Covers: default and non-default values (namespaced RBAC with two tenants,
ingress, ServiceMonitor), the schema rejecting unknown or invalid values,
the operator's and router's namespace arguments agreeing with the RBAC scope,
the restricted security context, labels and names, and that every value in
values.yaml is commented and described by the schema.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
import yaml
from packaging_support import CHART, KUBE_VERSION, HelmError, container, find, one, run_helm

TWO_TENANTS = {"rbac": {"scope": "namespaced", "tenantNamespaces": ["tenant-a", "tenant-b"]}}


def kinds(objects: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    return sorted(
        (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) for o in objects
    )


def test_default_values_render_the_expected_objects(chart):
    objects = chart()
    assert kinds(objects) == sorted(
        [
            ("ServiceAccount", "ks-kubesoar-operator", "kubesoar-system"),
            ("ServiceAccount", "ks-kubesoar-router", "kubesoar-system"),
            ("Secret", "ks-kubesoar-signing-key", "kubesoar-system"),
            ("ClusterRole", "ks-kubesoar-operator-discovery", None),
            ("ClusterRoleBinding", "ks-kubesoar-operator-discovery", None),
            ("ClusterRole", "ks-kubesoar-operator", None),
            ("ClusterRoleBinding", "ks-kubesoar-operator", None),
            ("ClusterRole", "ks-kubesoar-router", None),
            ("ClusterRoleBinding", "ks-kubesoar-router", None),
            ("Deployment", "ks-kubesoar-operator", "kubesoar-system"),
            ("Service", "ks-kubesoar-operator", "kubesoar-system"),
            ("Deployment", "ks-kubesoar-router", "kubesoar-system"),
            ("Service", "ks-kubesoar-router", "kubesoar-system"),
            ("PodDisruptionBudget", "ks-kubesoar-router", "kubesoar-system"),
            ("NetworkPolicy", "ks-kubesoar-operator", "kubesoar-system"),
            ("NetworkPolicy", "ks-kubesoar-router", "kubesoar-system"),
            # The `helm test` hook (templates/tests/): rendered, run only by `helm test`.
            ("Pod", "ks-kubesoar-test-ready", "kubesoar-system"),
        ]
    )
    for o in objects:
        labels = o["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "kubesoar"
        assert labels["app.kubernetes.io/instance"] == "ks"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_operator_deployment_is_single_recreate_and_hardened(chart):
    dep = one(chart(), "Deployment", "-operator")
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == "ks-kubesoar-operator"
    c = container(dep)
    assert c["image"] == "ghcr.io/kubesoar/kubesoar:0.1.0"
    assert c["command"] == ["kubesoar"]
    assert c["args"][0] == "operator"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "--liveness=http://0.0.0.0:8080/healthz" in c["args"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {
        "http-artifacts": 8090,
        "health": 8080,
        "metrics": 9090,
    }
    assert c["resources"]["limits"]["memory"]
    assert c["resources"]["requests"]["cpu"]


@pytest.mark.parametrize("component", ["operator", "router"])
def test_pods_meet_the_restricted_pod_security_standard(chart, component):
    dep = one(chart(), "Deployment", f"-{component}")
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(dep)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    # A read-only root needs a writable /tmp.
    mounts = {m["mountPath"] for m in container(dep)["volumeMounts"]}
    assert "/tmp" in mounts


def test_service_accounts_do_not_automount_tokens_for_other_pods(chart):
    for sa in find(chart(), "ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False


def test_artifact_url_points_at_the_operator_service(chart):
    objects = chart(namespace="soar")
    svc = one(objects, "Service", "-operator")
    port = {p["name"]: p["port"] for p in svc["spec"]["ports"]}["http-artifacts"]
    args = container(one(objects, "Deployment", "-operator"))["args"]
    assert f"--artifact-url=http://{svc['metadata']['name']}.soar.svc:{port}" in args
    assert "--artifact-listen=0.0.0.0:8090" in args
    assert "--system-namespace=soar" in args
    assert (
        svc["spec"]["selector"]
        == one(objects, "Deployment", "-operator")["spec"]["selector"]["matchLabels"]
    )


def test_signing_key_is_generated_or_taken_from_an_existing_secret(chart):
    objects = chart()
    secret = one(objects, "Secret", "-signing-key")
    assert len(base64.b64decode(secret["data"]["signing-key"])) >= 32
    # Random per render (only `helm install/upgrade` can look up the old one).
    assert one(chart(), "Secret", "-signing-key")["data"] != secret["data"]
    volumes = one(objects, "Deployment", "-operator")["spec"]["template"]["spec"]["volumes"]
    assert [v["secret"]["secretName"] for v in volumes if "secret" in v] == [
        "ks-kubesoar-signing-key"
    ]
    args = container(one(objects, "Deployment", "-operator"))["args"]
    assert "--signing-key-file=/var/run/kubesoar/signing-key/signing-key" in args

    # The router holds the same key: runtime caller tokens derive from it.
    router = one(objects, "Deployment", "-router")["spec"]["template"]["spec"]
    assert [v["secret"]["secretName"] for v in router["volumes"] if "secret" in v] == [
        "ks-kubesoar-signing-key"
    ]
    assert (
        "--caller-key-file=/var/run/kubesoar/signing-key/signing-key"
        in container(one(objects, "Deployment", "-router"))["args"]
    )

    objects = chart({"operator": {"signingKey": {"existingSecret": "my-key"}}})
    assert not find(objects, "Secret")
    for component in ("-operator", "-router"):
        volumes = one(objects, "Deployment", component)["spec"]["template"]["spec"]["volumes"]
        assert [v["secret"]["secretName"] for v in volumes if "secret" in v] == ["my-key"]


def test_cluster_scope_serves_all_namespaces(chart):
    objects = chart()
    operator_args = container(one(objects, "Deployment", "-operator"))["args"]
    assert "--all-namespaces" in operator_args
    assert not [a for a in operator_args if a.startswith("--namespace")]
    router_args = container(one(objects, "Deployment", "-router"))["args"]
    assert [a for a in router_args if a.startswith("--namespace")] == ["--namespace=all"]


@pytest.mark.parametrize("values", [{}, TWO_TENANTS], ids=["cluster", "namespaced"])
def test_rendered_args_parse_with_the_real_command_lines(chart, values):
    """The chart's args are accepted by `kubesoar operator` / `kubesoar router` as written."""
    from kubesoar_operator import cli as operator_cli
    from kubesoar_router import cli as router_cli

    objects = chart(values)
    op = operator_cli.parse_args(container(one(objects, "Deployment", "-operator"))["args"][1:])
    rt = router_cli.parse_args(container(one(objects, "Deployment", "-router"))["args"][1:])
    if values:
        assert op.namespaces == rt.namespace == ["tenant-a", "tenant-b"]
        assert not op.all_namespaces
    else:
        assert op.all_namespaces and op.namespaces is None
        assert rt.namespace == ["all"]
    assert op.artifact_listen == ("0.0.0.0", 8090)
    assert op.artifact_url == "http://ks-kubesoar-operator.kubesoar-system.svc:8090"
    assert str(op.signing_key_file) == "/var/run/kubesoar/signing-key/signing-key"
    assert op.system_namespace == "kubesoar-system"
    assert op.runtime_image == "ghcr.io/kubesoar/kubesoar:0.1.0"
    assert op.metrics_port == 9090
    assert op.liveness == "http://0.0.0.0:8080/healthz"
    assert not op.peering, "one replica, kopf peering off"
    assert rt.listen == "0.0.0.0:8081"
    assert rt.metrics_port == 9090
    assert rt.log_level == "INFO"


def test_namespaced_scope_binds_roles_per_tenant_and_passes_the_namespaces(chart):
    objects = chart(TWO_TENANTS)
    for component in ("operator", "router"):
        args = container(one(objects, "Deployment", f"-{component}"))["args"]
        assert "--all-namespaces" not in args
        assert [a for a in args if a.startswith("--namespace")] == [
            "--namespace=tenant-a",
            "--namespace=tenant-b",
        ]
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in find(objects, "Role")}
    assert roles == {
        (ns, f"ks-kubesoar-{c}") for ns in ("tenant-a", "tenant-b") for c in ("operator", "router")
    }
    for binding in find(objects, "RoleBinding"):
        component = binding["metadata"]["labels"]["app.kubernetes.io/component"]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": f"ks-kubesoar-{component}",
        }
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": f"ks-kubesoar-{component}",
                "namespace": "kubesoar-system",
            }
        ]
    # Only kopf's discovery stays cluster-scoped (CRDs, namespace names): no
    # Secrets, no writes.
    (cluster_role,) = find(objects, "ClusterRole")
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
    ]
    # NetworkPolicies only admit runtime pods of the tenant namespaces.
    np = one(objects, "NetworkPolicy", "-operator")
    peer = np["spec"]["ingress"][0]["from"][0]
    assert peer["namespaceSelector"]["matchExpressions"] == [
        {
            "key": "kubernetes.io/metadata.name",
            "operator": "In",
            "values": ["tenant-a", "tenant-b"],
        }
    ]


def test_no_rule_grants_pods_create_rbac_or_wildcards(chart):
    for values in ({}, TWO_TENANTS):
        for role in find(chart(values), "ClusterRole") + find(chart(values), "Role"):
            for rule in role["rules"]:
                assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
                assert "rbac.authorization.k8s.io" not in rule["apiGroups"]
                assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
                if "pods" in rule["resources"]:
                    assert rule["verbs"] == ["get", "list", "watch"]
                if "secrets" in rule["resources"]:
                    assert not {"create", "update", "patch", "delete"} & set(rule["verbs"])


def test_rbac_create_false_renders_no_rbac_but_keeps_namespace_args(chart):
    objects = chart({"rbac": {"create": False, **TWO_TENANTS["rbac"]}})
    rbac = [o for o in objects if o["apiVersion"].startswith("rbac.authorization.k8s.io")]
    assert rbac == []
    args = container(one(objects, "Deployment", "-router"))["args"]
    assert "--namespace=tenant-a" in args


def test_ingress_and_service_monitor(chart):
    values = {
        "router": {
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "hosts": ["alerts.example.com"],
                "tls": [{"secretName": "alerts-tls", "hosts": ["alerts.example.com"]}],
            }
        },
        "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
    }
    objects = chart(values)
    ingress = one(objects, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == values["router"]["ingress"]["tls"]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "alerts.example.com"
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/v1/"
    assert path["backend"]["service"] == {"name": "ks-kubesoar-router", "port": {"name": "http"}}

    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    # Both Services expose the port the ServiceMonitor scrapes.
    for svc in find(objects, "Service"):
        assert "metrics" in {p["name"] for p in svc["spec"]["ports"]}


def test_ingress_and_service_monitor_are_off_by_default(chart):
    objects = chart()
    assert not find(objects, "Ingress")
    assert not find(objects, "ServiceMonitor")


def test_router_deployment_replicas_probes_and_pdb(chart):
    objects = chart({"router": {"replicas": 3, "podDisruptionBudget": {"maxUnavailable": 2}}})
    dep = one(objects, "Deployment", "-router")
    assert dep["spec"]["replicas"] == 3
    c = container(dep)
    assert c["args"][0] == "router"
    assert "--listen=0.0.0.0:8081" in c["args"]
    assert c["livenessProbe"]["httpGet"]["port"] == "http"
    assert c["readinessProbe"]["httpGet"]["port"] == "http"
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 2
    assert pdb["spec"]["selector"] == dep["spec"]["selector"]
    assert not find(
        chart({"router": {"podDisruptionBudget": {"enabled": False}}}), "PodDisruptionBudget"
    )


def test_image_digest_pins_the_image(chart):
    digest = "sha256:" + "a" * 64
    objects = chart({"image": {"digest": digest}})
    for component in ("operator", "router"):
        image = container(one(objects, "Deployment", f"-{component}"))["image"]
        assert image == f"ghcr.io/kubesoar/kubesoar@{digest}"
    assert (
        f"--runtime-image=ghcr.io/kubesoar/kubesoar@{digest}"
        in container(one(objects, "Deployment", "-operator"))["args"]
    )


def test_long_release_names_keep_names_within_63_characters(chart):
    objects = chart(release="r" * 53)
    for o in objects:
        assert len(o["metadata"]["name"]) <= 63, o["metadata"]["name"]
    names = [o["metadata"]["name"] for o in find(objects, "Deployment")]
    assert len(set(names)) == 2 and all(n.endswith(("-operator", "-router")) for n in names)


def test_network_policy_can_be_narrowed_or_disabled(chart):
    values = {"networkPolicy": {"apiServer": {"cidrs": ["10.0.0.1/32"], "ports": [6443]}}}
    np = one(chart(values), "NetworkPolicy", "-router")
    api_rule = np["spec"]["egress"][1]
    assert api_rule == {
        "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
        "ports": [{"protocol": "TCP", "port": 6443}],
    }
    assert not find(chart({"networkPolicy": {"enabled": False}}), "NetworkPolicy")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"unknown": 1}, "additional properties 'unknown' not allowed"),
        ({"operator": {"replicas": 2}}, "additional properties 'replicas' not allowed"),
        ({"router": {"ingress": {"host": "x"}}}, "additional properties 'host' not allowed"),
        ({"rbac": {"scope": "everywhere"}}, "scope"),
        ({"rbac": {"scope": "namespaced"}}, "minItems"),
        ({"rbac": {"scope": "namespaced", "tenantNamespaces": ["Bad_Name"]}}, "tenantNamespaces"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"router": {"replicas": "two"}}, "replicas"),
    ],
)
def test_schema_rejects_unknown_and_invalid_values(helm_bin, values, message):
    for command in (
        ["template", "ks", str(CHART), "--kube-version", KUBE_VERSION],
        ["lint", str(CHART), "--kube-version", KUBE_VERSION],
    ):
        with pytest.raises(HelmError) as err:
            run_helm(helm_bin, *command, values=values)
        assert message in str(err.value)


def test_helm_lint_passes_with_defaults_and_with_two_tenants(helm_bin):
    for values in ({}, TWO_TENANTS):
        out = run_helm(
            helm_bin, "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, values=values
        )
        assert "1 chart(s) linted, 0 chart(s) failed" in out


def _undescribed(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths in `value` the schema does not describe (free-form maps describe their keys)."""
    if not isinstance(value, dict):
        return []
    missing = []
    for key, sub in value.items():
        props = schema.get("properties", {})
        if key in props:
            missing += _undescribed(sub, props[key], f"{path}{key}.")
        elif isinstance(schema.get("additionalProperties"), dict):
            missing += _undescribed(sub, schema["additionalProperties"], f"{path}{key}.")
        else:
            missing.append(f"{path}{key}")
    return missing


def test_every_value_is_commented_and_in_the_schema():
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert _undescribed(values, schema) == []
    # Each key has a comment right above it, unless it is part of a value
    # documented as a whole ("# --" above an ancestor key, as `resources`).
    lines = text.splitlines()
    stack: list[tuple[int, bool]] = []  # (indent, documents the whole value)
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)[A-Za-z][\w-]*:", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        block = []
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#"):
            block.insert(0, lines[j].strip())
            j -= 1
        assert block or any(doc for _, doc in stack), f"uncommented: {line!r}"
        stack.append((indent, bool(block) and block[0].startswith("# --")))


def test_every_schema_object_forbids_additional_properties():
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, path
            for key, sub in node.items():
                walk(sub, f"{path}/{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{path}/{i}")

    walk(schema, "")
