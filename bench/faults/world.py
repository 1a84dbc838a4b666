"""The world a fault scenario runs in, on the local cluster (hack/README.md).

One tenant namespace (Pod Security `restricted`) with a bearer AlertSource and one
Playbook of 2 runtime pods, its code served from a Git repository over HTTP; the
operator and **two router replicas** on one PostgreSQL (`KubesoarStack`). The playbook
calls one journaled `@action` that appends a line to a side-effects file — run id,
attempt, the runtime's pid, the code version — and then holds the run for a moment, so
that a fault can land mid-run after the side effect. Counting those lines per run is how
the ledger proves an action ran at most once.

The side-effects file lives under /var/tmp: the node agent rewrites every path of a
pod's environment that starts with one of its mount paths, and runtime pods mount /tmp.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
for path in (REPO, REPO / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from kubesoar.contracts.http import ingest_path  # noqa: E402
from kubesoar.contracts.kube import LABEL_PLAYBOOK  # noqa: E402
from support.cluster import ClusterHandle  # noqa: E402
from support.git_http import GitHTTPServer  # noqa: E402
from support.stack import (  # noqa: E402
    KubesoarStack,
    apply_crds,
    condition,
    delete_namespace,
    free_port,
    kubectl_json,
    wait_for,
)

__all__ = ["INGEST_TOKEN", "FaultWorld", "WorldSettings", "free_port", "wait_for"]

PLAYBOOK = "triage"
SOURCE = "siem"
CONTAINER = "runtime"
GIT_USER, GIT_PASSWORD = "soc", "faults-git-password-8c1e"
INGEST_TOKEN = "faults-ingest-token-4d7a"

PLAYBOOK_CODE = '''
"""Faults: one journaled side effect per run, then hold the run for a moment."""
import asyncio
import os

from kubesoar import Alert, action, current_context, playbook

VERSION = "{version}"


@action(timeout=10)
async def record(alert_id: str) -> dict:
    ctx = current_context()
    line = f"{{ctx.run_id}} {{alert_id}} {{ctx.attempt}} {{os.getpid()}} {{VERSION}}\\n"
    # One write(2) with O_APPEND: lines of both pods never interleave.
    fd = os.open(os.environ["SIDE_EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return {{"recorded": alert_id}}


@playbook(trigger="webhook", conditions={{"severity": ["high", "critical"]}}, order=10)
async def triage(alert: Alert) -> dict:
    done = await record(alert.id)
    await asyncio.sleep(float(os.environ.get("HOLD_SECONDS", "0")))
    return {{**done, "version": VERSION}}
'''


@dataclass(frozen=True)
class WorldSettings:
    lease_seconds: float = 15.0
    """The routers' --lease-seconds: how soon a run of a killed pod is redelivered."""
    hold_seconds: float = 0.2
    """How long a run stays open after its side effect (the window a fault lands in)."""
    concurrency: int = 16
    queue_size: int = 100
    max_attempts: int = 3
    replicas: int = 2
    routers: int = 2


class FaultWorld:
    """Everything a scenario needs; `close()` removes it (the cluster stays)."""

    def __init__(self, cluster: ClusterHandle, workdir: Path, settings: WorldSettings) -> None:
        if cluster.database_url_file is None:
            raise RuntimeError("the fault suite needs the test bed's PostgreSQL (cluster.py up)")
        self.cluster = cluster
        self.settings = settings
        self.workdir = workdir
        self.namespace = f"faults-{uuid.uuid4().hex[:6]}"
        self.effects_dir = Path(tempfile.mkdtemp(prefix="kubesoar-faults-", dir="/var/tmp"))
        self.side_effects = self.effects_dir / "side-effects.txt"
        self.side_effects.touch()
        self.git = GitHTTPServer(workdir / "git", username=GIT_USER, password=GIT_PASSWORD)
        self.stack = KubesoarStack(
            kubeconfig=cluster.kubeconfig,
            namespaces=[self.namespace],
            workdir=workdir,
            database_url_file=cluster.database_url_file,
            router_replicas=settings.routers,
            router_args=["--lease-seconds", str(settings.lease_seconds), "--log-level", "INFO"],
        )
        self.version = 0
        self.commit = ""

    # --- lifecycle ----------------------------------------------------------------
    def start(self) -> FaultWorld:
        apply_crds(self.cluster.kubectl)
        self.git.start()
        self.repo = self.git.create_repo(
            "playbooks", {"triage/triage.py": PLAYBOOK_CODE.format(version="v0")}
        )
        self.commit = self.repo.head()
        self.apply(
            {"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": self.namespace,
                          "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
        )  # fmt: skip
        self.stack.start()
        self.apply(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "git-auth"},
             "stringData": {"username": GIT_USER, "password": GIT_PASSWORD}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ingest"},
             "stringData": {"token": INGEST_TOKEN}},
            {"apiVersion": "kubesoar.dev/v1alpha1", "kind": "AlertSource",
             "metadata": {"name": SOURCE},
             "spec": {"format": "generic",
                      "auth": {"bearer": {"secretRef": {"name": "ingest", "key": "token"}}}}},
            self._playbook(),
            namespace=self.namespace,
        )  # fmt: skip
        self.wait_steady(timeout=240)
        return self

    def close(self) -> None:
        try:
            delete_namespace(self.cluster.kubectl, self.namespace, timeout=120)
        finally:
            self.stack.stop()
            self.git.close()
            shutil.rmtree(self.effects_dir, ignore_errors=True)

    def _playbook(self) -> dict[str, Any]:
        s = self.settings
        return {
            "apiVersion": "kubesoar.dev/v1alpha1",
            "kind": "Playbook",
            "metadata": {"name": PLAYBOOK},
            "spec": {
                "source": {
                    "git": {
                        "url": self.git.url("playbooks"),
                        "ref": {"branch": "main"},
                        "secretRef": {"name": "git-auth"},
                    },
                    "path": "triage/",
                    "interval": "30s",
                },
                "module": "triage",
                "replicas": s.replicas,
                "maxAttempts": s.max_attempts,
                "runtime": {
                    "concurrency": s.concurrency,
                    "queueSize": s.queue_size,
                    "env": [
                        {"name": "SIDE_EFFECTS", "value": str(self.side_effects)},
                        {"name": "HOLD_SECONDS", "value": str(s.hold_seconds)},
                    ],
                },
            },
        }

    def reconfigure(self, **changes: Any) -> None:
        """Change the Playbook's runtime settings (e.g. hold_seconds, concurrency) and wait
        until both pods run with them."""
        self.settings = dataclasses.replace(self.settings, **changes)
        self.apply(self._playbook(), namespace=self.namespace)
        self.wait_steady(timeout=240)

    def apply(self, *objects: dict[str, Any], namespace: str | None = None) -> None:
        ns_args = ["-n", namespace] if namespace else []
        self.cluster.kubectl("apply", *ns_args, "-f", "-", input=yaml.safe_dump_all(objects))

    # --- what senders and scenarios use ---------------------------------------------
    @property
    def ingest_path(self) -> str:
        return ingest_path(self.namespace, SOURCE)

    def new_commit(self) -> str:
        """Commit a new version of the playbook and ask for an immediate reconcile."""
        self.version += 1
        version = f"v{self.version}"
        self.commit = self.repo.commit(
            {"triage/triage.py": PLAYBOOK_CODE.format(version=version)}, version
        )
        self.cluster.kubectl(
            "-n", self.namespace, "annotate", "--overwrite", f"playbook/{PLAYBOOK}",
            f"kubesoar.dev/requestedAt={time.time()}",
        )  # fmt: skip
        return self.commit

    def runtime_pods(self) -> list[dict[str, Any]]:
        pods: list[dict[str, Any]] = kubectl_json(
            self.cluster.kubectl, "-n", self.namespace, "get", "pods",
            "-l", f"{LABEL_PLAYBOOK}={PLAYBOOK}",
        )["items"]  # fmt: skip
        return pods

    def runtime_pids(self) -> dict[int, str]:
        """Pid of each runtime pod's container process → the pod's name."""
        pids = {}
        for pod in self.runtime_pods():
            name = pod["metadata"]["name"]
            pid = self.cluster.container_pid(self.namespace, name, CONTAINER)
            if pid is not None:
                pids[pid] = name
        return pids

    def ready_endpoints(self) -> int:
        slices = kubectl_json(
            self.cluster.kubectl, "-n", self.namespace, "get", "endpointslices",
            "-l", f"kubernetes.io/service-name={PLAYBOOK}",
        )  # fmt: skip
        return sum(
            len(endpoint.get("addresses", []))
            for item in slices["items"]
            for endpoint in item.get("endpoints") or []
            if (endpoint.get("conditions") or {}).get("ready")
        )

    def steady(self) -> bool:
        """Routers ready, the Playbook Ready at the last commit, exactly `replicas` runtime
        pods running that commit and settings, all ready, none terminating, all published
        ready."""
        for url in self.stack.router_urls:
            if httpx.get(f"{url}/readyz", timeout=2).status_code != 200:
                return False
        playbook = kubectl_json(
            self.cluster.kubectl, "-n", self.namespace, "get", "playbook", PLAYBOOK
        )
        ready = condition(playbook, "Ready")
        revision = playbook.get("status", {}).get("source", {}).get("revision", "")
        if not ready or ready["status"] != "True" or self.commit not in revision:
            return False
        pods = self.runtime_pods()
        if len(pods) != self.settings.replicas:
            return False
        for pod in pods:
            if pod["metadata"].get("deletionTimestamp"):
                return False
            env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}
            if env != {**env, **self._expected_env()}:
                return False
            pod_ready = condition(pod, "Ready")
            if not pod_ready or pod_ready["status"] != "True":
                return False
        return self.ready_endpoints() == self.settings.replicas

    def _expected_env(self) -> dict[str, str]:
        return {
            "KUBESOAR_COMMIT": self.commit,
            "KUBESOAR_CONCURRENCY": str(self.settings.concurrency),
            "KUBESOAR_QUEUE_SIZE": str(self.settings.queue_size),
            "HOLD_SECONDS": str(self.settings.hold_seconds),
        }

    def wait_steady(self, timeout: float = 180) -> None:
        try:
            wait_for("the fault world to be steady", self.steady, timeout=timeout, interval=1.0)
        except TimeoutError:
            print(self.stack.logs()[-6000:], file=sys.stderr)
            raise

    def processes(self) -> dict[str, list[int]]:
        """Pids of the world's processes by part (for CPU accounting, cpu.py)."""
        from bench.faults.cpu import children

        stack = self.stack.pids()
        groups = {
            "routers": [pid for name, pid in stack.items() if name.startswith("router")],
            "runtimes": list(self.runtime_pids()),
            "operator": [pid for name, pid in stack.items() if name == "operator"],
            "postgres": [],
        }
        postmaster = self.cluster.local.postgres.pid() if self.cluster.local else None
        if postmaster is not None:
            groups["postgres"] = [postmaster, *children(postmaster)]
        return groups

    def database_url(self) -> str:
        assert self.cluster.database_url_file is not None
        return self.cluster.database_url_file.read_text().strip()
