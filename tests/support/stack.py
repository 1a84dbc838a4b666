"""kubesoar's own processes (operator and router) against a cluster, for e2e tests and the demo.

`KubesoarStack` runs `kubesoar operator` and `kubesoar router` as real
subprocesses on loopback, talking to the API server through a kubeconfig,
exactly as they run in their pods. Logs go to files under `workdir` so a
failing test can show them and a test can assert that no credential reached
them.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 120.0, interval: float = 0.5
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except Exception as exc:  # the probe's own errors are retried until the deadline
            last_error = exc
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})"
    )


def kubectl_json(kubectl: Callable[..., subprocess.CompletedProcess[str]], *args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json").stdout)


def signed_source(token: str, hmac_key: str, name: str = "siem") -> list[dict[str, Any]]:
    """The Secret `ingest` and an AlertSource `name` (generic) that takes a bearer token
    and an HMAC signature from it: the source most cluster tests send alerts to."""
    ref = {"name": "ingest"}
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ingest"},
         "stringData": {"token": token, "hmac": hmac_key}},
        {"apiVersion": "kubesoar.dev/v1alpha1", "kind": "AlertSource", "metadata": {"name": name},
         "spec": {"format": "generic", "auth": {
             "bearer": {"secretRef": {**ref, "key": "token"}},
             "hmac": {"secretRef": {**ref, "key": "hmac"}}}}},
    ]  # fmt: skip


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in obj.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


@dataclass
class _Process:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, grace: float = 15.0) -> None:
        if not self.running():
            return
        assert self.popen is not None
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def kill(self) -> None:
        """SIGKILL the process group: no drain, no goodbye (a node lost, an OOM kill)."""
        if not self.running():
            return
        assert self.popen is not None
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class KubesoarStack:
    """Operator and router processes watching `namespaces` of the cluster behind `kubeconfig`."""

    kubeconfig: Path
    namespaces: list[str]
    workdir: Path
    artifact_port: int = field(default_factory=free_port)
    router_port: int = field(default_factory=free_port)
    liveness_port: int = field(default_factory=free_port)
    status_interval: float = 2.0
    # The system of record: with a database URL file, the router commits every alert
    # and dispatches runs from PostgreSQL (migrated first, as the chart's hook Job does).
    database_url_file: Path | None = None
    # Router replicas: each its own process and port, all on the same database (as the
    # chart's router Deployment with `replicas: N`). Replica 0 listens on `router_port`.
    router_replicas: int = 1
    router_args: list[str] = field(default_factory=list)
    """Extra `kubesoar router` flags for every replica (e.g. `--lease-seconds 5`)."""
    router_ports: list[int] = field(default_factory=list)
    _processes: dict[str, _Process] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.router_replicas < 1:
            raise ValueError("router_replicas must be at least 1")
        if not self.router_ports:
            self.router_ports = [self.router_port]
        while len(self.router_ports) < self.router_replicas:
            self.router_ports.append(free_port())

    @property
    def router_url(self) -> str:
        return self.replica_url(0)

    @property
    def router_urls(self) -> list[str]:
        return [self.replica_url(i) for i in range(self.router_replicas)]

    def replica_url(self, replica: int) -> str:
        return f"http://127.0.0.1:{self.router_ports[replica]}"

    @staticmethod
    def router_name(replica: int) -> str:
        """The process name of a replica: "router", then "router-2", "router-3", ..."""
        return "router" if replica == 0 else f"router-{replica + 1}"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def caller_token(self, namespace: str, playbook: str) -> str:
        """The token the runtime pods of `playbook` accept (as the router derives it)."""
        from kubesoar.contracts.caller import caller_token

        return caller_token(self._signing_key().read_bytes().strip(), namespace, playbook)

    def _signing_key(self) -> Path:
        """One key for both, as the chart mounts one Secret into both (a restart keeps it)."""
        path = self.workdir / "signing-key"
        if not path.exists():
            self.workdir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_hex(32))
        return path

    def _scope_args(self) -> list[str]:
        args: list[str] = []
        for ns in self.namespaces:
            args += ["--namespace", ns]
        return args

    def start_operator(self) -> None:
        argv = [
            sys.executable, "-m", "kubesoar", "operator",
            "--kubeconfig", str(self.kubeconfig),
            *self._scope_args(),
            "--artifact-listen", f"127.0.0.1:{self.artifact_port}",
            "--artifact-url", f"http://127.0.0.1:{self.artifact_port}",
            "--liveness", f"http://127.0.0.1:{self.liveness_port}/healthz",
            "--state-dir", str(self.workdir / "operator-state"),
            "--status-interval", str(self.status_interval),
            "--signing-key-file", str(self._signing_key()),
        ]  # fmt: skip
        if self.database_url_file is not None:
            argv += ["--database-url-file", str(self.database_url_file)]  # status.runs
        if os.environ.get("KUBESOAR_OPERATOR_VERBOSE"):
            argv.append("--verbose")  # kopf's debug lines, to follow a handler's life
        proc = _Process("operator", argv, self.workdir / "operator.log")
        proc.start(self._env())
        self._processes["operator"] = proc
        wait_for(
            "the operator's liveness endpoint",
            lambda: self._alive(proc, f"http://127.0.0.1:{self.liveness_port}/healthz"),
            timeout=60,
        )

    def start_router(self, replica: int = 0, *, port: int | None = None) -> None:
        """Start router `replica`; `port` moves it to a new address (as a replacement pod
        gets a new IP), otherwise it keeps its port."""
        if port is not None:
            self.router_ports[replica] = port
            if replica == 0:
                self.router_port = port
        url = self.replica_url(replica)
        name = self.router_name(replica)
        argv = [
            sys.executable, "-m", "kubesoar", "router",
            "--kubeconfig", str(self.kubeconfig),
            *self._scope_args(),
            "--listen", f"127.0.0.1:{self.router_ports[replica]}",
            "--metrics-port", "0",
            "--status-interval", str(self.status_interval),
            "--caller-key-file", str(self._signing_key()),
            *self.router_args,
        ]  # fmt: skip
        if self.database_url_file is not None:
            self.migrate()
            argv += [
                "--database-url-file", str(self.database_url_file),
                # Runtime pods of the local test bed are processes on loopback.
                "--advertise-url", url,
            ]  # fmt: skip
        proc = _Process(name, argv, self.workdir / f"{name}.log")
        proc.start(self._env())
        self._processes[name] = proc
        wait_for(
            f"the {name} to sync",
            lambda: self._alive(proc, f"{url}/readyz"),
            timeout=60,
        )

    def migrate(self) -> None:
        """`kubesoar db migrate`, as the chart's pre-install/pre-upgrade hook runs it."""
        assert self.database_url_file is not None
        subprocess.run(
            [sys.executable, "-m", "kubesoar", "db", "migrate",
             "--database-url-file", str(self.database_url_file)],
            check=True, env=self._env(), capture_output=True, timeout=120,
        )  # fmt: skip

    def _alive(self, proc: _Process, url: str) -> bool:
        if not proc.running():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log_text()[-4000:]}")
        return httpx.get(url, timeout=2).status_code == 200

    def start(self) -> KubesoarStack:
        if self.database_url_file is not None:
            self.migrate()  # before the operator reads counters from it
        self.start_operator()
        for replica in range(self.router_replicas):
            self.start_router(replica)
        return self

    def pids(self) -> dict[str, int]:
        """The pid (also the process group) of each running process, for a caller that
        leaves them running after it exits (`hack/demo.py --keep-cluster`)."""
        return {
            name: proc.popen.pid
            for name, proc in self._processes.items()
            if proc.popen is not None and proc.running()
        }

    def stop(self, names: Iterable[str] | None = None) -> None:
        for name in list(names or self._processes):
            self._processes[name].stop()

    def kill(self, name: str) -> None:
        """SIGKILL process `name` ("operator", "router", "router-2", ...)."""
        self._processes[name].kill()

    def restart(self, name: str) -> None:
        self.stop([name])
        if name == "operator":
            self.start_operator()
        else:
            self.start_router(self._replica(name))

    def _replica(self, name: str) -> int:
        for replica in range(self.router_replicas):
            if self.router_name(replica) == name:
                return replica
        raise KeyError(f"no process {name!r}")

    def send_alert(
        self, namespace: str, source: str, alert: Any, *, token: str, hmac_key: str
    ) -> httpx.Response:
        """POST `alert` to the router as a sender would: bearer token and HMAC signature."""
        from kubesoar.contracts.http import ingest_path as alerts_path
        from kubesoar_router.auth import sign

        body = json.dumps(alert).encode()
        timestamp = str(int(time.time()))
        path = alerts_path(namespace, source)
        return httpx.post(
            f"{self.router_url}{path}",
            content=body,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {token}",
                "X-Kubesoar-Timestamp": timestamp,
                "X-Kubesoar-Signature": sign(hmac_key.encode(), timestamp, body, path=path),
            },
            timeout=30,
        )

    def logs(self) -> str:
        return "\n".join(
            f"===== {name} =====\n{proc.log_text()}" for name, proc in self._processes.items()
        )


def find_run(
    kubectl: Callable[..., subprocess.CompletedProcess[str]],
    namespace: str,
    playbook: str,
    run_id: str,
    *,
    token: str,
) -> dict[str, Any] | None:
    """`GET /v1/runs/{id}` from each runtime endpoint of `playbook` until one knows the run.

    Runtime pods are reached at their own addresses, found through the Playbook
    Service's EndpointSlices, as the router finds them, with the Playbook's caller
    `token` (`KubesoarStack.caller_token`): pods serve nobody else.
    """
    slices = kubectl_json(
        kubectl, "-n", namespace, "get", "endpointslices", "-l",
        f"kubernetes.io/service-name={playbook}",
    )  # fmt: skip
    for item in slices["items"]:
        port = next((p["port"] for p in item.get("ports") or [] if p.get("name") == "http"), None)
        for endpoint in item.get("endpoints") or []:
            for address in endpoint.get("addresses", []):
                reply = httpx.get(
                    f"http://{address}:{port}/v1/runs/{run_id}",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=5,
                )
                if reply.status_code == 200:
                    run: dict[str, Any] = reply.json()
                    return run
    return None


def delete_namespace(
    kubectl: Callable[..., subprocess.CompletedProcess[str]], namespace: str, timeout: float = 60
) -> None:
    """Delete `namespace` and wait until its kubesoar objects are gone.

    Call it while the operator still runs: it removes its finalizer from the
    Playbooks and AlertSources it deletes. Stopping the operator first would
    leave the namespace Terminating. Raises TimeoutError when they stay.
    """
    kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)

    def gone() -> bool:
        left = kubectl(
            "-n", namespace, "get", "playbooks,alertsources", "-o", "name", check=False
        )  # fmt: skip
        return left.returncode == 0 and not left.stdout.strip()

    wait_for(f"the kubesoar objects of {namespace} to be deleted", gone, timeout=timeout)


def apply_crds(kubectl: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """Install kubesoar's CRDs (server-side apply, idempotent) and wait until they are served."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/playbooks.kubesoar.dev", "crd/alertsources.kubesoar.dev",
    )  # fmt: skip
