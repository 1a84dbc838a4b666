"""Child manifests: restricted pod security, labels, env per CONTRACTS.md, owner references,
secrets mounts, rollout on a new revision, NetworkPolicy scope."""

from __future__ import annotations

from typing import Any

from kubesoar_operator import children, render
from kubesoar_operator.spec import parse_spec

LABELS = {
    "app.kubernetes.io/name": "kubesoar",
    "app.kubernetes.io/component": "runtime",
    "app.kubernetes.io/managed-by": "kubesoar-operator",
    "kubesoar.dev/playbook": "phish",
}


def _ctx(commit: str = "a" * 40, **spec_extra: Any) -> render.RenderContext:
    raw: dict[str, Any] = {
        "source": {"git": {"url": "https://g.example/a.git", "ref": {"branch": "main"}}},
        "module": "triage",
        **spec_extra,
    }
    return render.RenderContext(
        name="phish",
        namespace="tenant-a",
        spec=parse_spec(raw),
        commit=commit,
        revision=f"main@sha1:{commit}",
        digest="d" * 64,
        artifact_url="http://127.0.0.1:8090/artifacts/tenant-a/phish/x.tar.gz?expires=1&sig=s",
    )


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_every_child_carries_the_contract_labels() -> None:
    for obj in render.children(_ctx()):
        assert obj["metadata"]["labels"] == LABELS, obj["kind"]
        assert obj["metadata"]["namespace"] == "tenant-a"


def test_pods_are_restricted_and_get_no_token() -> None:
    dep = render.deployment(_ctx())
    pod = dep["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["initContainers"] + pod["containers"]:
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] and sc["runAsUser"] == 65532
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["resources"]["limits"]["memory"]
        assert container["resources"]["requests"]["cpu"]
    assert render.service_account(_ctx())["automountServiceAccountToken"] is False


def test_containers_commands_env_and_probes() -> None:
    pod = render.deployment(_ctx())["spec"]["template"]["spec"]
    fetch, runtime = pod["initContainers"][0], pod["containers"][0]
    assert fetch["command"] == ["kubesoar", "fetch"]
    assert runtime["command"] == ["kubesoar", "runtime"]
    fetch_env, env = _env(fetch), _env(runtime)
    assert fetch_env["KUBESOAR_ARTIFACT_SHA256"] == "d" * 64
    assert fetch_env["KUBESOAR_ARTIFACT_URL"].startswith("http://127.0.0.1:8090/artifacts/")
    assert env["KUBESOAR_MODULE"] == "triage" and env["KUBESOAR_COMMIT"] == "a" * 40
    assert env["KUBESOAR_POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["KUBESOAR_CONCURRENCY"] == "8" and env["KUBESOAR_QUEUE_SIZE"] == "100"
    assert int(env["KUBESOAR_DRAIN_SECONDS"]) < pod["terminationGracePeriodSeconds"]
    assert runtime["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert runtime["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert runtime["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_secrets_are_mounted_read_only_one_folder_each_and_user_env_appended() -> None:
    ctx = _ctx(
        runtime={
            "secrets": [{"name": "virustotal", "secretRef": {"name": "vt-api"}}],
            "env": [{"name": "LOG_LEVEL", "value": "debug"}],
            "runtimeClassName": "gvisor",
            "resources": {"limits": {"memory": "1Gi"}},
        }
    )
    pod = render.deployment(ctx)["spec"]["template"]["spec"]
    runtime = pod["containers"][0]
    mount = next(m for m in runtime["volumeMounts"] if m["name"] == "secret-virustotal")
    assert mount == {
        "name": "secret-virustotal",
        "mountPath": "/var/run/kubesoar/secrets/virustotal",
        "readOnly": True,
    }
    volume = next(v for v in pod["volumes"] if v["name"] == "secret-virustotal")
    assert volume["secret"]["secretName"] == "vt-api"
    assert _env(runtime)["LOG_LEVEL"] == "debug"
    assert pod["runtimeClassName"] == "gvisor"
    assert runtime["resources"]["limits"] == {"cpu": "500m", "memory": "1Gi"}
    # The init container has no business with integration secrets.
    assert all(m["name"] in {"workspace", "tmp"} for m in pod["initContainers"][0]["volumeMounts"])


def test_a_new_commit_changes_the_pod_template_and_nothing_else_does() -> None:
    first, same, second = (
        render.deployment(_ctx()),
        render.deployment(_ctx()),
        render.deployment(_ctx(commit="b" * 40)),
    )
    assert first == same
    annotations = second["spec"]["template"]["metadata"]["annotations"]
    assert annotations["kubesoar.dev/commit"] == "b" * 40
    assert first["spec"]["template"] != second["spec"]["template"]
    assert first["spec"]["selector"] == second["spec"]["selector"]


def test_service_and_network_policy() -> None:
    ctx = _ctx(network={"egress": [{"cidr": "203.0.113.0/24", "ports": [{"port": 443}]}]})
    svc = render.service(ctx)
    assert svc["metadata"]["name"] == "phish"
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    policy = render.network_policy(ctx)["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    sources = policy["ingress"][0]["from"]
    assert {s["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for s in sources} == {
        "router",
        "operator",
    }
    assert all(
        s["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kubesoar-system"}
        for s in sources
    )
    assert {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
            "ports": [{"protocol": "TCP", "port": 443}]} in policy["egress"]  # fmt: skip
    # Run reports go to the router pods' ingest port, nowhere else in the system namespace.
    system = {"matchLabels": {"kubernetes.io/metadata.name": "kubesoar-system"}}
    reports = {
        "to": [{"namespaceSelector": system,
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": "router"}}}],
        "ports": [{"protocol": "TCP", "port": 8081}],
    }  # fmt: skip
    assert reports in policy["egress"]
    assert len(policy["egress"]) == 4  # DNS, artifact server, run reports, the declared one


def test_children_are_owned_by_the_playbook() -> None:
    owner = {
        "apiVersion": "kubesoar.dev/v1alpha1",
        "kind": "Playbook",
        "metadata": {"name": "phish", "namespace": "tenant-a", "uid": "u-1"},
    }
    objs = children.owned_children(_ctx(), owner)
    assert [o["kind"] for o in objs] == ["ServiceAccount", "Service", "NetworkPolicy", "Deployment"]
    for obj in objs:
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref["uid"] == "u-1" and ref["kind"] == "Playbook" and ref["controller"] is True
    assert children.fingerprint(objs) == children.fingerprint(
        children.owned_children(_ctx(), owner)
    )


def _drain_and_grace(**runtime: Any) -> tuple[int, int]:
    deployment = render.deployment(_ctx(runtime=runtime))
    pod = deployment["spec"]["template"]["spec"]
    drain = int(_env(pod["containers"][0])["KUBESOAR_DRAIN_SECONDS"])
    return drain, pod["terminationGracePeriodSeconds"]


def test_the_drain_covers_every_accepted_run_and_the_grace_period_covers_the_drain() -> None:
    # 4 running + 8 queued, 4 at a time: the last accepted run ends within 3 timeouts.
    assert _drain_and_grace(concurrency=4, queueSize=8, timeoutSeconds=30) == (90, 100)
    # No queue: one timeout.
    assert _drain_and_grace(concurrency=8, queueSize=0, timeoutSeconds=60) == (60, 70)
    # The defaults (13 waves of 300 s) hit the one-hour cap.
    assert _drain_and_grace() == (render.MAX_DRAIN_SECONDS, render.MAX_DRAIN_SECONDS + 10)
