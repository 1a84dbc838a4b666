"""The local cluster works end to end: control plane, controllers, scheduler, node agent,
loopback EndpointSlices and PodSecurity admission.

Pure parts of hack/localcluster (image mapping, env expansion, path rewriting,
slice computation) are tested first, without a cluster. Then a Deployment of the
http-echo image becomes a ReplicaSet and a Pod on the agent's
node, the Pod turns Running and Ready, its EndpointSlice lists its address, the
address answers HTTP, and deleting the Deployment garbage-collects the Pod and
stops its process. Unknown images wait with a clear reason, and a restricted
namespace rejects a privileged pod but admits a compliant one.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from support.cluster import ClusterHandle, process_alive, wait_for

from hack.localcluster import endpointslices, images, podenv

ECHO_IMAGE = "kubesoar.dev/test/http-echo:1"


# -- pure parts, no cluster ------------------------------------------------------


def test_images_map_to_local_programs_and_nothing_else() -> None:
    assert (
        images.repository("ghcr.io/kubesoar/kubesoar:0.1.0@sha256:ab")
        == "ghcr.io/kubesoar/kubesoar"
    )
    assert (
        images.repository("localhost:5000/kubesoar/kubesoar") == "localhost:5000/kubesoar/kubesoar"
    )
    runtime = {"image": "ghcr.io/kubesoar/kubesoar:0.1.0", "command": ["kubesoar", "runtime"]}
    assert images.container_argv({**runtime, "args": ["-v"]}) == [
        sys.executable,
        "-m",
        "kubesoar",
        "runtime",
        "-v",
    ]
    entrypoint_only = {"image": "kubesoar/kubesoar", "args": ["fetch"]}
    assert images.container_argv(entrypoint_only) == [sys.executable, "-m", "kubesoar", "fetch"]
    assert images.container_argv({"image": ECHO_IMAGE})[1].endswith("echo_server.py")
    for image in ("evilkubesoar/kubesoar:1", "kubesoar/kubesoar-dev:1", "nginx"):
        with pytest.raises(images.ImageNotRunnable, match=image.split(":")[0]):
            images.container_argv({"image": image})


def test_env_expansion_and_path_rewriting() -> None:
    assert podenv.expand("$(A)-$(B)-$$(A)", {"A": "1"}) == "1-$(B)-$(A)"
    rewriter = podenv.PathRewriter([("/data", "/pod/data"), ("/data/sub/", "/pod/sub")])
    assert rewriter.rewrite("/data") == "/pod/data"
    assert rewriter.rewrite("/data/x/y") == "/pod/data/x/y"
    assert rewriter.rewrite("/data/sub/z") == "/pod/sub/z"  # the nested mount wins
    assert rewriter.rewrite("/database") == "/database"
    assert rewriter.rewrite("relative/data") == "relative/data"


def _pod(
    name: str, *, ready: bool = True, ip: str | None = "127.1.0.9", **extra: Any
) -> dict[str, Any]:
    meta = {"name": name, "uid": f"uid-{name}", "labels": extra.pop("labels", LABELS)}
    meta.update(extra.pop("meta", {}))
    port = extra.pop("port", 8080)
    return {
        "metadata": meta,
        "spec": {
            "nodeName": "n",
            "containers": [{"ports": [{"name": "http", "containerPort": port}]}],
        },
        "status": {
            "podIP": ip,
            "phase": extra.pop("phase", "Running"),
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_desired_slices_follow_the_endpointslice_controller() -> None:
    service = {
        "metadata": {"name": "svc", "namespace": "ns", "uid": "svc-uid", "labels": {"team": "x"}},
        "spec": {"selector": LABELS, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]},
    }
    pods = [
        _pod("ready"),
        _pod("unready", ready=False),
        _pod("leaving", meta={"deletionTimestamp": "2026-01-01T00:00:00Z"}),
        _pod("other-port", port=9090),
        _pod("done", phase="Succeeded"),
        _pod("no-ip", ip=None),
        _pod("other-app", labels={"app": "other"}),
    ]
    slices = endpointslices.desired_slices(service, pods)
    by_port = {s["ports"][0]["port"]: s for s in slices.values()}
    assert set(by_port) == {8080, 9090}
    main = by_port[8080]
    assert main["addressType"] == "FQDN"
    assert main["metadata"]["labels"] == {
        "team": "x",  # copied from the Service, as the kcm controller does
        "kubernetes.io/service-name": "svc",
        "endpointslice.kubernetes.io/managed-by": "loopback-endpointslices.kubesoar.dev",
    }
    assert main["metadata"]["ownerReferences"][0]["uid"] == "svc-uid"
    conditions = {e["targetRef"]["name"]: e["conditions"] for e in main["endpoints"]}
    assert conditions == {
        "ready": {"ready": True, "serving": True, "terminating": False},
        "unready": {"ready": False, "serving": False, "terminating": False},
        "leaving": {"ready": False, "serving": True, "terminating": True},
    }
    service["spec"]["publishNotReadyAddresses"] = True
    published = endpointslices.desired_slices(service, [_pod("unready", ready=False)])
    assert next(iter(published.values()))["endpoints"][0]["conditions"]["ready"] is True
    assert endpointslices.desired_slices({**service, "spec": {"ports": []}}, pods) == {}


LABELS = {"app": "echo"}


def echo_container(**extra: Any) -> dict[str, Any]:
    return {
        "name": "echo",
        "image": ECHO_IMAGE,
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "PORT", "value": "8080"},
        ],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
        **extra,
    }


def condition(obj: Any, kind: str) -> str | None:
    for cond in obj.status.conditions or []:
        if cond.type == kind:
            return str(cond.status)
    return None


@pytest.mark.cluster
def test_deployment_pod_endpointslice_http_and_garbage_collection(
    local_cluster: ClusterHandle, k8s_client: Any, namespace: str
) -> None:
    apps, core = client.AppsV1Api(k8s_client), client.CoreV1Api(k8s_client)
    discovery = client.DiscoveryV1Api(k8s_client)
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "echo"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": LABELS},
                "template": {
                    "metadata": {"labels": LABELS},
                    "spec": {"containers": [echo_container()]},
                },
            },
        },
    )
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "echo"},
            "spec": {"selector": LABELS, "ports": [{"port": 80, "targetPort": "http"}]},
        },
    )

    replica_set = wait_for(
        lambda: next(iter(apps.list_namespaced_replica_set(namespace).items), None),
        "the ReplicaSet",
    )
    assert replica_set.metadata.owner_references[0].name == "echo"

    def ready_pod() -> Any:
        pods = core.list_namespaced_pod(namespace).items
        return next((p for p in pods if condition(p, "Ready") == "True"), None)

    pod = wait_for(ready_pod, "a Ready echo pod")
    assert pod.metadata.owner_references[0].name == replica_set.metadata.name
    assert pod.spec.node_name == local_cluster.node_name
    assert pod.status.phase == "Running"
    # Each node agent owns a 127.N.0.0/16 with N >= 1; 127.0.0.x stays the host's.
    assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network("127.0.0.0/8")
    assert not pod.status.pod_ip.startswith("127.0.")
    assert pod.status.container_statuses[0].ready is True
    assert pod.status.container_statuses[0].state.running is not None

    def ready_address() -> str | None:
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=echo"
        ).items
        for endpoint_slice in slices:
            for endpoint in endpoint_slice.endpoints or []:
                if endpoint.conditions.ready and endpoint.target_ref.name == pod.metadata.name:
                    assert endpoint_slice.ports[0].port == 8080  # named targetPort resolved
                    return str(endpoint.addresses[0])
        return None

    address = wait_for(ready_address, "the pod's address, ready, in an EndpointSlice")
    assert address == pod.status.pod_ip

    with urllib.request.urlopen(f"http://{address}:8080/hello", timeout=5) as resp:
        assert resp.status == 200
        body = json.loads(resp.read())
    assert body["pod"] == pod.metadata.name
    assert body["path"] == "/hello"

    pid = local_cluster.container_pid(namespace, pod.metadata.name, "echo")
    assert pid is not None and process_alive(pid)
    assert "listening" in local_cluster.pod_log(namespace, pod.metadata.name, "echo")

    apps.delete_namespaced_deployment("echo", namespace, propagation_policy="Background")
    wait_for(
        lambda: not core.list_namespaced_pod(namespace).items or None,
        "the pod to be garbage-collected",
    )
    wait_for(lambda: not process_alive(pid), f"process {pid} to exit")
    wait_for(lambda: ready_address() is None or None, "the address to leave the EndpointSlice")


@pytest.mark.cluster
def test_unknown_image_waits_with_a_clear_reason(k8s_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s_client)
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "nginx"},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
        },
    )

    def waiting_state() -> Any:
        statuses = core.read_namespaced_pod("nginx", namespace).status.container_statuses or []
        return statuses[0].state.waiting if statuses and statuses[0].state.waiting else None

    waiting = wait_for(
        lambda: (w := waiting_state()) and w.reason == "ErrImageNeverPull" and w,
        "ErrImageNeverPull",
    )
    assert "nginx:1.27" in waiting.message
    assert core.read_namespaced_pod("nginx", namespace).status.phase == "Pending"


RESTRICTED_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@pytest.mark.cluster
def test_pod_security_restricted_namespace(k8s_client: Any, make_namespace: Any) -> None:
    core = client.CoreV1Api(k8s_client)
    namespace = make_namespace("psa", labels={"pod-security.kubernetes.io/enforce": "restricted"})

    privileged = {
        "metadata": {"name": "privileged"},
        "spec": {
            "containers": [
                {"name": "echo", "image": ECHO_IMAGE, "securityContext": {"privileged": True}}
            ]
        },
    }
    with pytest.raises(ApiException) as rejected:
        core.create_namespaced_pod(namespace, privileged)
    assert rejected.value.status == 403
    assert "violates PodSecurity" in rejected.value.body

    compliant = {
        "metadata": {"name": "restricted"},
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [echo_container(securityContext=RESTRICTED_SECURITY)],
        },
    }
    core.create_namespaced_pod(namespace, compliant)
    wait_for(
        lambda: (
            condition(core.read_namespaced_pod("restricted", namespace), "Ready") == "True" or None
        ),
        "the restricted pod to be Ready",
    )


# -- node agent behaviour the kubesoar pods rely on ----------------------------


def run_pod(core: Any, namespace: str, name: str, spec: dict[str, Any]) -> None:
    core.create_namespaced_pod(
        namespace, {"metadata": {"name": name, "labels": {"pod": name}}, "spec": spec}
    )


def shell(name: str, script: str, **extra: Any) -> dict[str, Any]:
    """A container of the echo image running a shell script (command overrides the entrypoint)."""
    return {"name": name, "image": ECHO_IMAGE, "command": ["sh", "-c", script], **extra}


@pytest.mark.cluster
def test_volumes_env_and_path_rewriting(
    local_cluster: ClusterHandle, k8s_client: Any, namespace: str
) -> None:
    core = client.CoreV1Api(k8s_client)
    core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "creds"}, "stringData": {"token": "s3cr3t", "user": "alice"}},
    )
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "settings"}, "data": {"level": "debug", "greeting": "hi"}}
    )
    mounts = [
        {"name": "work", "mountPath": "/workspace"},
        {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
        {"name": "settings", "mountPath": "/etc/settings"},
    ]
    script = (
        'cat "$WORK/init.txt"; cat "$CREDS/api/token"; echo; stat -c %a "$CREDS/api/token"; '
        'cat "$SETTINGS_DIR/greeting"; echo; '
        'echo "user=$FROM_SECRET level=$LEVEL ns=$MY_NS exp=$EXPANDED cm=$CM_greeting"; '
        'echo "work=$WORK"'
    )
    run_pod(
        core,
        namespace,
        "volumes",
        {
            "restartPolicy": "Never",
            "volumes": [
                {"name": "work", "emptyDir": {}},
                {
                    "name": "creds",
                    "secret": {
                        "secretName": "creds",
                        "items": [{"key": "token", "path": "api/token", "mode": 0o400}],
                    },
                },
                {"name": "settings", "configMap": {"name": "settings"}},
            ],
            "initContainers": [
                shell(
                    "prepare",
                    'echo "from init" > "$WORK/init.txt"',
                    env=[{"name": "WORK", "value": "/workspace"}],
                    volumeMounts=mounts[:1],
                )
            ],
            "containers": [
                shell(
                    "main",
                    script,
                    volumeMounts=mounts,
                    env=[
                        {"name": "WORK", "value": "/workspace"},
                        {"name": "CREDS", "value": "/etc/creds"},
                        {"name": "SETTINGS_DIR", "value": "/etc/settings"},
                        {
                            "name": "FROM_SECRET",
                            "valueFrom": {"secretKeyRef": {"name": "creds", "key": "user"}},
                        },
                        {
                            "name": "LEVEL",
                            "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}},
                        },
                        {
                            "name": "MY_NS",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                        },
                        {"name": "EXPANDED", "value": "$(LEVEL)-x"},
                    ],
                    envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "CM_"}],
                )
            ],
        },
    )
    wait_for(
        lambda: core.read_namespaced_pod("volumes", namespace).status.phase == "Succeeded" or None,
        "the pod to succeed",
    )
    pod = core.read_namespaced_pod("volumes", namespace)
    assert pod.status.init_container_statuses[0].state.terminated.reason == "Completed"
    lines = local_cluster.pod_log(namespace, "volumes", "main").splitlines()
    assert lines[:4] == ["from init", "s3cr3t", "400", "hi"]
    assert lines[4] == f"user=alice level=debug ns={namespace} exp=debug-x cm=hi"
    pod_root = local_cluster.state_dir / "pods" / pod.metadata.uid / "root"
    assert lines[5] == f"work={pod_root}/workspace"


@pytest.mark.cluster
def test_a_mount_over_the_agents_own_paths_rewrites_only_the_pod_spec(
    local_cluster: ClusterHandle, k8s_client: Any, namespace: str
) -> None:
    # Runtime pods mount an emptyDir at /tmp; a checkout (and so this Python) or the
    # state dir under /tmp must still run: only the pod spec's paths are rewritten.
    top = "/" + Path(sys.executable).parts[1]
    core = client.CoreV1Api(k8s_client)
    run_pod(
        core,
        namespace,
        "over",
        {
            "restartPolicy": "Never",
            "volumes": [{"name": "scratch", "emptyDir": {}}],
            "containers": [
                {
                    "name": "main",
                    "image": "ghcr.io/kubesoar/kubesoar:0.1.0",
                    "command": ["python", "-c",
                                "import os, sys; print(sys.executable); print(os.environ['S'])"],
                    "env": [{"name": "S", "value": f"{top}/x"}],
                    "volumeMounts": [{"name": "scratch", "mountPath": top}],
                }
            ],
        },
    )  # fmt: skip
    wait_for(
        lambda: core.read_namespaced_pod("over", namespace).status.phase == "Succeeded" or None,
        "the pod to succeed",
    )
    pod = core.read_namespaced_pod("over", namespace)
    pod_root = local_cluster.state_dir / "pods" / pod.metadata.uid / "root"
    python, rewritten = local_cluster.pod_log(namespace, "over", "main").splitlines()
    assert Path(python).resolve() == Path(sys.executable).resolve()  # the agent's own Python
    assert rewritten == f"{pod_root}{top}/x"  # the spec's path, mapped into the volume


@pytest.mark.cluster
def test_init_container_failure_fails_a_never_restarting_pod(
    k8s_client: Any, namespace: str
) -> None:
    core = client.CoreV1Api(k8s_client)
    run_pod(
        core,
        namespace,
        "init-fails",
        {
            "restartPolicy": "Never",
            "initContainers": [shell("setup", "exit 7")],
            "containers": [shell("main", "echo never")],
        },
    )
    wait_for(
        lambda: core.read_namespaced_pod("init-fails", namespace).status.phase == "Failed" or None,
        "the pod to fail",
    )
    status = core.read_namespaced_pod("init-fails", namespace).status
    terminated = status.init_container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (7, "Error")
    assert status.container_statuses[0].state.waiting.reason == "PodInitializing"
    assert condition(core.read_namespaced_pod("init-fails", namespace), "Initialized") == "False"


@pytest.mark.cluster
def test_crashing_container_restarts_with_its_last_state(k8s_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s_client)
    run_pod(core, namespace, "crasher", {"containers": [shell("main", "echo boom; exit 3")]})

    def restarted_twice() -> Any:
        statuses = core.read_namespaced_pod("crasher", namespace).status.container_statuses or []
        return statuses and statuses[0].restart_count >= 2 and statuses[0]

    status = wait_for(restarted_twice, "two restarts")
    assert status.last_state.terminated.exit_code == 3
    assert status.ready is False


@pytest.mark.cluster
def test_readiness_drives_pod_ready_and_the_endpointslice(
    local_cluster: ClusterHandle, k8s_client: Any, namespace: str
) -> None:
    core, discovery = client.CoreV1Api(k8s_client), client.DiscoveryV1Api(k8s_client)
    probe = {
        "exec": {"command": ["test", "-f", "/flags/ready"]},
        "periodSeconds": 1,
        "failureThreshold": 1,
    }
    run_pod(
        core,
        namespace,
        "toggle",
        {
            "volumes": [{"name": "flags", "emptyDir": {}}],
            "containers": [
                echo_container(
                    readinessProbe=probe, volumeMounts=[{"name": "flags", "mountPath": "/flags"}]
                )
            ],
        },
    )
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "toggle"},
            "spec": {"selector": {"pod": "toggle"}, "ports": [{"port": 8080}]},
        },
    )

    def endpoint_ready() -> bool | None:
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=toggle"
        ).items
        endpoints = [e for s in slices for e in s.endpoints or []]
        return endpoints[0].conditions.ready if endpoints else None

    pod = wait_for(
        lambda: (
            (p := core.read_namespaced_pod("toggle", namespace)).status.phase == "Running" and p
        ),
        "the pod to run",
    )
    assert condition(pod, "Ready") == "False"
    flag = local_cluster.state_dir / "pods" / pod.metadata.uid / "root" / "flags" / "ready"
    flag.touch()
    wait_for(
        lambda: condition(core.read_namespaced_pod("toggle", namespace), "Ready") == "True" or None,
        "Ready",
    )
    wait_for(lambda: endpoint_ready() is True or None, "a ready endpoint")
    flag.unlink()
    wait_for(
        lambda: (
            condition(core.read_namespaced_pod("toggle", namespace), "Ready") == "False" or None
        ),
        "unready",
    )
    wait_for(lambda: endpoint_ready() is False or None, "the endpoint to turn unready")


@pytest.mark.cluster
def test_failing_liveness_probe_restarts_the_container(k8s_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s_client)
    liveness = {
        "httpGet": {"path": "/healthz", "port": 8081},
        "periodSeconds": 1,
        "failureThreshold": 2,
    }
    run_pod(
        core,
        namespace,
        "unhealthy",
        {
            "terminationGracePeriodSeconds": 1,
            "containers": [echo_container(livenessProbe=liveness)],
        },
    )
    wait_for(
        lambda: (
            (
                (s := core.read_namespaced_pod("unhealthy", namespace).status.container_statuses)
                and s[0].restart_count >= 1
            )
            or None
        ),
        "a restart after failed liveness probes",
    )


@pytest.mark.cluster
def test_deletion_kills_a_process_that_ignores_sigterm(
    local_cluster: ClusterHandle, k8s_client: Any, namespace: str
) -> None:
    core = client.CoreV1Api(k8s_client)
    run_pod(
        core,
        namespace,
        "stubborn",
        {
            "terminationGracePeriodSeconds": 1,
            "containers": [shell("main", "trap '' TERM; sleep 300")],
        },
    )
    wait_for(
        lambda: core.read_namespaced_pod("stubborn", namespace).status.phase == "Running" or None,
        "running",
    )
    pid = wait_for(lambda: local_cluster.container_pid(namespace, "stubborn", "main"), "the pid")
    core.delete_namespaced_pod("stubborn", namespace)
    wait_for(lambda: not core.list_namespaced_pod(namespace).items or None, "the pod to be removed")
    assert not process_alive(pid)


@pytest.mark.cluster
def test_service_account_token_is_projected(
    local_cluster: ClusterHandle, k8s_client: Any, namespace: str
) -> None:
    core = client.CoreV1Api(k8s_client)
    run_pod(core, namespace, "with-token", {"containers": [echo_container()]})
    pod = wait_for(
        lambda: (
            (p := core.read_namespaced_pod("with-token", namespace)).status.phase == "Running" and p
        ),
        "running",
    )
    folder = local_cluster.state_dir / "pods" / pod.metadata.uid / "root"
    account = folder / "var/run/secrets/kubernetes.io/serviceaccount"
    assert (account / "namespace").read_text() == namespace
    assert (account / "ca.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert (account / "token").read_text().count(".") == 2  # a JWT


@pytest.mark.cluster
def test_in_cluster_clients_authenticate_as_the_pod_service_account(
    local_cluster: ClusterHandle, k8s_client: Any, namespace: str
) -> None:
    """In-cluster clients fall back to $KUBECONFIG, which carries the projected token."""
    core = client.CoreV1Api(k8s_client)
    script = (
        "import kubernetes as k; k.config.load_config(); "
        "print(k.client.AuthenticationV1Api().create_self_subject_review({}).status.user_info.username)"
    )
    run_pod(
        core,
        namespace,
        "whoami",
        {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": "ghcr.io/kubesoar/kubesoar:0.1.0",
                    "command": ["python", "-c", script],
                }
            ],
        },
    )
    wait_for(
        lambda: (
            core.read_namespaced_pod("whoami", namespace).status.phase in ("Succeeded", "Failed")
            or None
        ),
        "the pod to finish",
    )
    output = local_cluster.pod_log(namespace, "whoami", "main")
    assert output.strip().splitlines()[-1] == f"system:serviceaccount:{namespace}:default", output


@pytest.mark.cluster
def test_up_reuses_and_down_leaves_no_process(tmp_path: Any) -> None:
    """A cluster of its own: `up` twice reuses it; `down` stops every process, pods included."""
    from hack.localcluster import processes
    from hack.localcluster.cluster import COMPONENTS, LocalCluster

    cluster = LocalCluster(state_dir=tmp_path / "cluster")
    try:
        cluster.up()
        pids = {c: processes.read_pid_file(cluster.pid_file(c)) for c in COMPONENTS}
        cluster.up()  # healthy: nothing restarted
        assert {c: processes.read_pid_file(cluster.pid_file(c)) for c in COMPONENTS} == pids
        kubectl = [str(cluster.kubectl_bin), f"--kubeconfig={cluster.kubeconfig}"]
        subprocess.run(
            [
                *kubectl,
                "run",
                "forker",
                f"--image={ECHO_IMAGE}",
                "--command",
                "--",
                "sh",
                "-c",
                "sleep 300 & sleep 300",
            ],
            check=True,
            capture_output=True,
        )
        pod_pid = wait_for(
            lambda: next(
                (
                    int(p.read_text().split()[0])
                    for p in (cluster.state_dir / "pods").glob("*/run/forker.pid")
                    if p.exists()
                ),
                None,
            ),
            "the pod's process",
        )
        assert processes.group_alive(pod_pid)
    finally:
        cluster.down()
    for component, entry in pids.items():
        assert entry is not None
        assert not processes.group_alive(entry[0]), component
    assert not processes.group_alive(pod_pid)  # the pod and the child it forked
