"""The local Kubernetes cluster as test fixtures see it (logic behind tests/conftest.py).

`start_cluster()` starts hack/localcluster (building binaries if missing) or
reuses a running one; with KUBESOAR_KUBECONFIG set it uses that cluster as is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from hack.localcluster.cluster import LocalCluster  # noqa: E402

T = TypeVar("T")


@dataclass
class ClusterHandle:
    kubeconfig: Path
    server: str
    bin_dir: Path
    state_dir: Path
    node_name: str
    local: LocalCluster | None = field(default=None, repr=False)

    @property
    def database_url_file(self) -> Path | None:
        """The local test bed's PostgreSQL (started with the cluster), if it runs one."""
        if self.local is None:
            return None
        path = self.local.postgres.database_url_file
        return path if path.exists() else None

    @property
    def helm_bin(self) -> Path:
        return self.bin_dir / "helm"

    @property
    def kubectl_bin(self) -> Path:
        return self.bin_dir / "kubectl"

    def binary(self, tool: str) -> Path:
        return self.bin_dir / tool

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.kubectl_bin), f"--kubeconfig={self.kubeconfig}", *args],
            check=check,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )

    def pod_dir(self, namespace: str, pod: str) -> Path:
        uid = self.kubectl(
            "get", "pod", "-n", namespace, pod, "-o", "jsonpath={.metadata.uid}"
        ).stdout
        return self.state_dir / "pods" / uid

    def pod_log(self, namespace: str, pod: str, container: str) -> str:
        """What the container wrote to stdout/stderr (`kubectl logs` does not work here)."""
        path = self.pod_dir(namespace, pod) / "logs" / f"{container}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def container_pid(self, namespace: str, pod: str, container: str) -> int | None:
        """Pid of the container's running process, from the node agent's pid file."""
        path = self.pod_dir(namespace, pod) / "run" / f"{container}.pid"
        try:
            return int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


def start_cluster() -> ClusterHandle:
    external = os.environ.get("KUBESOAR_KUBECONFIG")
    local = LocalCluster()
    if external:
        config = yaml.safe_load(Path(external).read_text())
        context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
        cluster = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])
        local.ensure_binaries()  # kubectl and helm, built or linked
        return ClusterHandle(
            kubeconfig=Path(external),
            server=cluster["cluster"]["server"],
            bin_dir=local.bin_dir,
            state_dir=local.state_dir,
            node_name=local.node_name,
        )
    local.up()
    return ClusterHandle(
        kubeconfig=local.kubeconfig,
        server=local.server,
        bin_dir=local.bin_dir,
        state_dir=local.state_dir,
        node_name=local.node_name,
        local=local,
    )


def stop_cluster_if_asked(handle: ClusterHandle) -> None:
    """CI sets KUBESOAR_CLUSTER_TEARDOWN=1; developers keep the cluster for the next run."""
    if handle.local is not None and os.environ.get("KUBESOAR_CLUSTER_TEARDOWN") == "1":
        handle.local.down()


def wait_for(
    check: Callable[[], T | None], what: str, timeout: float = 60.0, interval: float = 0.2
) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")


def namespace_factory(api_client: Any) -> tuple[Callable[..., str], Callable[[], None]]:
    """(make_namespace, cleanup): namespaces are deleted without waiting for them to go."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)
    created: list[str] = []

    def make_namespace(prefix: str = "t", labels: Mapping[str, str] | None = None) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=dict(labels or {})))
        )
        created.append(name)

        # The ServiceAccount admission plugin rejects pods until the
        # controllers have created the namespace's `default` account.
        def has_default_account() -> bool:
            try:
                core.read_namespaced_service_account("default", name)
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            return True

        wait_for(has_default_account, f"serviceaccount default in {name}", timeout=30)
        return name

    def cleanup() -> None:
        for name in created:
            try:
                core.delete_namespace(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise

    return make_namespace, cleanup


def process_alive(pid: int) -> bool:
    """True while the pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
