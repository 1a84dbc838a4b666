"""A local Kubernetes control plane on loopback, plus a node agent that runs pods as processes.

    python hack/localcluster/cluster.py up|down|status|env [--purge]

`up` builds missing binaries (build.sh), then starts etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and the node agent, each in its own
process group with a pid file and a log under the state directory
($KUBESOAR_CLUSTER_DIR, default ~/.cache/kubesoar/cluster). It returns once the
API server is ready, the node is Ready and the controllers work. A healthy
running cluster is reused. `down` stops everything (the node agent first, so
that it stops its pods); `down --purge` also deletes the state directory.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `hack.localcluster` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hack.localcluster import pki, processes
from hack.localcluster.postgres import LocalPostgres, PostgresError

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# The node agent needs aiohttp, and it runs `kubesoar` pods with its own Python:
# the repository's virtualenv when there is one, whatever runs `up` otherwise.
_VENV_PYTHON = REPO / ".venv" / "bin" / "python"
AGENT_PYTHON = str(_VENV_PYTHON) if _VENV_PYTHON.exists() else sys.executable
NODE_NAME = "kubesoar-node"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

ADMIN = pki.ClientIdentity("admin", "kubernetes-admin", ("system:masters",))
CONTROLLER_MANAGER = pki.ClientIdentity("controller-manager", "system:kube-controller-manager")
SCHEDULER = pki.ClientIdentity("scheduler", "system:kube-scheduler")
NODE = pki.ClientIdentity("node", f"system:node:{NODE_NAME}", ("system:nodes",))
ENDPOINTSLICES = pki.ClientIdentity("endpointslices", "kubesoar:loopback-endpointslices")
IDENTITIES = (ADMIN, CONTROLLER_MANAGER, SCHEDULER, NODE, ENDPOINTSLICES)

# What the loopback EndpointSlice controller (endpointslices.py) may do.
ENDPOINTSLICES_RBAC = (
    (
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        {
            "metadata": {"name": "kubesoar:loopback-endpointslices"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["services", "pods"],
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                },
            ],
        },
    ),
    (
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        {
            "metadata": {"name": "kubesoar:loopback-endpointslices"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "kubesoar:loopback-endpointslices",
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "User",
                    "name": ENDPOINTSLICES.common_name,
                }
            ],
        },
    ),
)

# Start order; `down` stops in reverse, so the node agent stops its pods first.
COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "endpointslices",
    "nodeagent",
)


class ClusterError(RuntimeError):
    """The cluster could not be started or did not become healthy in time."""


def default_state_dir() -> Path:
    env = os.environ.get("KUBESOAR_CLUSTER_DIR")
    return Path(env) if env else Path.home() / ".cache" / "kubesoar" / "cluster"


def default_cache_dir() -> Path:
    env = os.environ.get("KUBESOAR_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "kubesoar"


def read_versions() -> dict[str, str]:
    versions = {}
    for line in (HERE / "versions.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip()
    return versions


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int


class LocalCluster:
    """Lifecycle of the local cluster; see the module docstring."""

    def __init__(self, state_dir: Path | None = None, cache_dir: Path | None = None) -> None:
        self.state_dir = (state_dir or default_state_dir()).expanduser().resolve()
        self.cache_dir = (cache_dir or default_cache_dir()).expanduser().resolve()
        self.versions = read_versions()
        self.pki_dir = self.state_dir / "pki"
        self.log_dir = self.state_dir / "logs"
        self.run_dir = self.state_dir / "run"
        self.kubeconfig = self.state_dir / "kubeconfig"
        self.node_name = NODE_NAME
        # The system of record, started and stopped with the cluster (state in postgres/).
        self.postgres = LocalPostgres(self.state_dir / "postgres")

    # -- paths ---------------------------------------------------------------

    @property
    def bin_dir(self) -> Path:
        """Stable names (kubectl, helm, ...) linked to the versioned binaries."""
        return self.state_dir / "bin"

    def binary(self, tool: str) -> Path:
        version = (
            self.versions["ETCD_VERSION"]
            if tool == "etcd"
            else self.versions["HELM_VERSION"]
            if tool == "helm"
            else self.versions["KUBERNETES_VERSION"]
        )
        return self.cache_dir / "bin" / f"{tool}-{version}"

    @property
    def helm_bin(self) -> Path:
        return self.bin_dir / "helm"

    @property
    def kubectl_bin(self) -> Path:
        return self.bin_dir / "kubectl"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports().apiserver}"

    def pid_file(self, component: str) -> Path:
        return self.run_dir / f"{component}.pid"

    def log_file(self, component: str) -> Path:
        return self.log_dir / f"{component}.log"

    # -- public operations ---------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialises up/down across processes (several pytest sessions share one cluster)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def up(self, timeout: float = 180.0) -> None:
        with self._locked():
            self._up(timeout)
            try:
                self.postgres.up()
            except PostgresError as exc:
                raise ClusterError(f"postgres: {exc}") from exc

    def _up(self, timeout: float) -> None:
        if self.is_healthy():
            return
        # A second look before restarting anything others may be using.
        time.sleep(0.5)
        if self.is_healthy():
            return
        deadline = time.monotonic() + timeout
        if self._storage_and_api_alive():
            # Only something downstream died (a node agent, say): restart just
            # that, so that pods of other components keep running.
            ports = self.ports()
        else:
            # Restart all of it from a clean slate of processes (etcd data,
            # certificates and ports are kept).
            self.stop_processes()
            self.ensure_binaries()
            self.ensure_pki()
            ports = self.ports(allocate=True)
            self._start_etcd(ports)
            self._wait(
                "etcd",
                lambda: self._http_ok(f"http://127.0.0.1:{ports.etcd_client}/health"),
                deadline,
            )
            self._start_apiserver(ports)
            self._wait("kube-apiserver /readyz", lambda: self._api_ok("/readyz"), deadline)
            for path, body in ENDPOINTSLICES_RBAC:
                self.api_create(path, body)
        starters = {
            "kube-controller-manager": lambda: self._start_controller_manager(ports),
            "kube-scheduler": lambda: self._start_scheduler(ports),
            "endpointslices": self._start_endpointslices,
            "nodeagent": self._start_node_agent,
        }
        for component, start in starters.items():
            if not processes.pid_file_alive(self.pid_file(component)):
                processes.stop_pid_file(self.pid_file(component))
                start()
        self._wait("node Ready", self.node_ready, deadline)
        self._wait(
            "controllers (default service account)",
            lambda: self._api_ok("/api/v1/namespaces/default/serviceaccounts/default"),
            deadline,
        )
        self._wait(
            "kube-scheduler",
            lambda: self._http_ok(f"https://127.0.0.1:{ports.scheduler}/healthz", insecure=True),
            deadline,
        )

    def _storage_and_api_alive(self) -> bool:
        return (
            self.kubeconfig.exists()
            and (self.state_dir / "ports.json").exists()
            and processes.pid_file_alive(self.pid_file("etcd"))
            and processes.pid_file_alive(self.pid_file("kube-apiserver"))
            and self._api_ok("/readyz")
        )

    def down(self, purge: bool = False) -> None:
        with self._locked():
            self.stop_processes()
            self.postgres.down()
        if purge:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def stop_processes(self) -> None:
        for component in reversed(COMPONENTS):
            processes.stop_pid_file(self.pid_file(component), grace_seconds=15.0)
        # Pods of a node agent that died without cleaning up.
        sweep = subprocess.run(
            [
                AGENT_PYTHON,
                str(HERE / "nodeagent.py"),
                "--sweep",
                "--state-dir",
                str(self.state_dir),
            ],
            check=False,
        )
        if sweep.returncode != 0:
            print("cluster: sweeping leftover pod processes failed", file=sys.stderr)

    def is_healthy(self) -> bool:
        if not self.kubeconfig.exists() or not (self.state_dir / "ports.json").exists():
            return False
        if not all(processes.pid_file_alive(self.pid_file(c)) for c in COMPONENTS):
            return False
        return self._api_ok("/readyz") and self.node_ready()

    def status(self) -> dict[str, Any]:
        running = {c: processes.pid_file_alive(self.pid_file(c)) for c in COMPONENTS}
        healthy = all(running.values()) and self._api_ok("/readyz")
        return {
            "stateDir": str(self.state_dir),
            "kubeconfig": str(self.kubeconfig),
            "server": self.server if (self.state_dir / "ports.json").exists() else None,
            "processes": running,
            "apiserverReady": healthy,
            "nodeReady": healthy and self.node_ready(),
        }

    def node_ready(self) -> bool:
        node = self.api_get(f"/api/v1/nodes/{self.node_name}")
        if node is None:
            return False
        conditions = node.get("status", {}).get("conditions", [])
        # A new node carries the not-ready taint until the node lifecycle
        # controller has seen it Ready; pods would not schedule before that.
        if any(t.get("effect") == "NoSchedule" for t in node.get("spec", {}).get("taints") or []):
            return False
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    # -- binaries, certificates, kubeconfigs, ports ---------------------------

    def ensure_binaries(self) -> None:
        tools = (
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubectl",
            "helm",
        )
        if not all(os.access(self.binary(t), os.X_OK) for t in tools):
            env = {**os.environ, "KUBESOAR_CACHE": str(self.cache_dir)}
            subprocess.run(["bash", str(HERE / "build.sh")], check=True, env=env)
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        for tool in tools:
            link = self.bin_dir / tool
            link.unlink(missing_ok=True)
            link.symlink_to(self.binary(tool))

    def ensure_pki(self) -> None:
        pki.ensure_ca(self.pki_dir)
        pki.ensure_serving_cert(self.pki_dir)
        pki.ensure_service_account_keys(self.pki_dir)
        pki.ensure_front_proxy(self.pki_dir)
        for identity in IDENTITIES:
            pki.ensure_client_cert(self.pki_dir, identity)

    def ports(self, allocate: bool = False) -> Ports:
        """Ports from ports.json; with `allocate`, any taken one is replaced by a free one."""
        path = self.state_dir / "ports.json"
        saved: dict[str, int] = json.loads(path.read_text()) if path.exists() else {}
        if not allocate:
            if not saved:
                raise ClusterError(f"no cluster state in {self.state_dir}: run `cluster.py up`")
            return Ports(**saved)
        chosen = {}
        for field in Ports.__dataclass_fields__:
            port = saved.get(field)
            chosen[field] = (
                port if port and processes.port_is_free(port) else processes.free_loopback_port()
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(chosen, indent=2) + "\n")
        ports = Ports(**chosen)
        # The kubeconfigs embed the API server port.
        self._write_kubeconfigs(ports)
        return ports

    def _write_kubeconfigs(self, ports: Ports) -> None:
        server = f"https://127.0.0.1:{ports.apiserver}"
        targets = {
            ADMIN: self.kubeconfig,
            CONTROLLER_MANAGER: self.state_dir / "kubeconfigs" / "controller-manager.kubeconfig",
            SCHEDULER: self.state_dir / "kubeconfigs" / "scheduler.kubeconfig",
            NODE: self.state_dir / "kubeconfigs" / "node.kubeconfig",
            ENDPOINTSLICES: self.state_dir / "kubeconfigs" / "endpointslices.kubeconfig",
        }
        for identity, path in targets.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self._kubeconfig_text(server, identity))
            path.chmod(0o600)

    def _kubeconfig_text(self, server: str, identity: pki.ClientIdentity) -> str:
        def b64(name: str) -> str:
            return base64.b64encode((self.pki_dir / name).read_bytes()).decode()

        # JSON is valid YAML, and every client reads it.
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kubesoar-local",
                    "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")},
                }
            ],
            "users": [
                {
                    "name": identity.common_name,
                    "user": {
                        "client-certificate-data": b64(f"{identity.file_stem}.crt"),
                        "client-key-data": b64(f"{identity.file_stem}.key"),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "kubesoar-local",
                    "context": {"cluster": "kubesoar-local", "user": identity.common_name},
                }
            ],
            "current-context": "kubesoar-local",
        }
        return json.dumps(config, indent=2) + "\n"

    # -- components ----------------------------------------------------------

    def _start(self, component: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.log_file(component).parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file(component), "a") as log:
            log.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {component}\n")
        processes.start_detached(
            argv,
            log_path=self.log_file(component),
            pid_path=self.pid_file(component),
            env=env,
            cwd=self.state_dir,
        )

    def _start_etcd(self, ports: Ports) -> None:
        client = f"http://127.0.0.1:{ports.etcd_client}"
        peer = f"http://127.0.0.1:{ports.etcd_peer}"
        self._start(
            "etcd",
            [
                str(self.binary("etcd")),
                "--name=local",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=local={peer}",
                "--log-level=warn",
                # A disposable test cluster: durability is not worth the fsync latency.
                "--unsafe-no-fsync",
                "--auto-compaction-retention=1h",
            ],
        )

    def _start_apiserver(self, ports: Ports) -> None:
        p = self.pki_dir
        self._start(
            "kube-apiserver",
            [
                str(self.binary("kube-apiserver")),
                f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports.apiserver}",
                # Loopback is what clients use, but Endpoints may not hold a
                # loopback address, so the `kubernetes` Service gets no
                # endpoints at all (nothing here reaches the API through it).
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--client-ca-file={p / 'ca.crt'}",
                f"--tls-cert-file={p / 'apiserver.crt'}",
                f"--tls-private-key-file={p / 'apiserver.key'}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={p / 'sa.pub'}",
                f"--service-account-signing-key-file={p / 'sa.key'}",
                "--authorization-mode=Node,RBAC",
                # Defaults (PodSecurity included) plus what a kubeadm cluster adds.
                "--enable-admission-plugins=NodeRestriction",
                # Privileged pods are allowed by the API so that PodSecurity is
                # what rejects them in restricted namespaces.
                "--allow-privileged=true",
                "--profiling=false",
                f"--cert-dir={p}",
                # API aggregation (kubesoar's runs.kubesoar.dev is served by the router):
                # the aggregator proxies with the front-proxy client certificate and the
                # user in X-Remote-* headers, and dials the Service's endpoint address (a
                # loopback pod address here, which no ClusterIP would route to).
                f"--requestheader-client-ca-file={p / (pki.FRONT_PROXY_CA + '.crt')}",
                f"--requestheader-allowed-names={pki.FRONT_PROXY_CLIENT}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={p / (pki.FRONT_PROXY_CLIENT + '.crt')}",
                f"--proxy-client-key-file={p / (pki.FRONT_PROXY_CLIENT + '.key')}",
                "--enable-aggregator-routing=true",
            ],
        )

    def _start_controller_manager(self, ports: Ports) -> None:
        self._start(
            "kube-controller-manager",
            [
                str(self.binary("kube-controller-manager")),
                f"--kubeconfig={self.state_dir / 'kubeconfigs' / 'controller-manager.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports.controller_manager}",
                f"--service-account-private-key-file={self.pki_dir / 'sa.key'}",
                f"--root-ca-file={self.pki_dir / 'ca.crt'}",
                "--use-service-account-credentials=true",
                # The endpoint controllers cannot publish loopback pod addresses
                # (the API rejects them); endpointslices.py does that instead.
                "--controllers=*,-endpointslice-controller,-endpoints-controller",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # As a large cluster runs it (the defaults, 20 QPS / burst 30 and 5 syncs,
                # pace 1,000 Deployments at ~5/s): see hack/README.md.
                "--kube-api-qps=100",
                "--kube-api-burst=200",
                "--concurrent-deployment-syncs=50",
                "--concurrent-replicaset-syncs=50",
                # One instance: a held lease from a previous run would only delay start.
                "--leader-elect=false",
                "--profiling=false",
            ],
        )

    def _start_scheduler(self, ports: Ports) -> None:
        self._start(
            "kube-scheduler",
            [
                str(self.binary("kube-scheduler")),
                f"--kubeconfig={self.state_dir / 'kubeconfigs' / 'scheduler.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports.scheduler}",
                "--leader-elect=false",
                "--profiling=false",
            ],
        )

    def _python_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _start_endpointslices(self) -> None:
        kubeconfig = self.state_dir / "kubeconfigs" / "endpointslices.kubeconfig"
        self._start(
            "endpointslices",
            [AGENT_PYTHON, str(HERE / "endpointslices.py"), f"--kubeconfig={kubeconfig}"],
            env=self._python_env(),
        )

    def _start_node_agent(self) -> None:
        env = self._python_env()
        self._start(
            "nodeagent",
            [
                AGENT_PYTHON,
                str(HERE / "nodeagent.py"),
                f"--kubeconfig={self.state_dir / 'kubeconfigs' / 'node.kubeconfig'}",
                f"--node-name={self.node_name}",
                f"--state-dir={self.state_dir}",
            ],
            env=env,
        )

    # -- health checks -------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        ctx.load_cert_chain(str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key"))
        return ctx

    def api_get(self, path: str) -> dict[str, Any] | None:
        """GET as the admin; None on any error (used for polling)."""
        try:
            url = f"https://127.0.0.1:{self.ports().apiserver}{path}"
            with urllib.request.urlopen(url, timeout=5, context=self._ssl_context()) as resp:
                body = resp.read()
        except (OSError, ClusterError, urllib.error.URLError, ssl.SSLError):
            return None
        try:
            parsed = json.loads(body)
        except ValueError:
            return {"raw": body.decode(errors="replace")}
        return parsed if isinstance(parsed, dict) else {"raw": parsed}

    def api_create(self, path: str, body: dict[str, Any]) -> None:
        """POST as the admin; an object that already exists is fine."""
        url = f"https://127.0.0.1:{self.ports().apiserver}{path}"
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10, context=self._ssl_context()):
                pass
        except urllib.error.HTTPError as exc:
            if exc.code != 409:
                raise ClusterError(f"POST {path}: HTTP {exc.code} {exc.read()[:300]!r}") from exc

    def _api_ok(self, path: str) -> bool:
        return self.api_get(path) is not None

    @staticmethod
    def _http_ok(url: str, insecure: bool = False) -> bool:
        ctx = None
        if insecure:  # the scheduler's self-signed serving cert; it is our own process
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _wait(self, what: str, check: Any, deadline: float) -> None:
        seen_dead: set[str] = set()
        while time.monotonic() < deadline:
            if check():
                return
            for component in COMPONENTS:
                pid_file = self.pid_file(component)
                if not pid_file.exists() or processes.pid_file_alive(pid_file):
                    seen_dead.discard(component)
                    continue
                # Twice in a row, so that one odd read of /proc does not abort `up`.
                if component not in seen_dead:
                    seen_dead.add(component)
                else:
                    raise ClusterError(
                        f"{component} exited while waiting for {what}; "
                        f"see {self.log_file(component)}:\n{self._log_tail(component)}"
                    )
            time.sleep(0.25)
        raise ClusterError(f"timed out waiting for {what}; logs in {self.log_dir}")

    def _log_tail(self, component: str, lines: int = 15) -> str:
        try:
            return "\n".join(
                self.log_file(component).read_text(errors="replace").splitlines()[-lines:]
            )
        except OSError:
            return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument(
        "--purge", action="store_true", help="down: also delete the state directory"
    )
    args = parser.parse_args(argv)
    cluster = LocalCluster()
    if args.command == "up":
        started = time.monotonic()
        try:
            cluster.up()
        except ClusterError as exc:
            print(f"cluster: {exc}", file=sys.stderr)
            return 1
        print(
            f"cluster ready in {time.monotonic() - started:.1f}s: {cluster.server}", file=sys.stderr
        )
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        print(f"export KUBESOAR_DATABASE_URL_FILE={cluster.postgres.database_url_file}")
    elif args.command == "down":
        cluster.down(purge=args.purge)
    elif args.command == "status":
        status = cluster.status()
        print(json.dumps(status, indent=2))
        return 0 if status["nodeReady"] else 1
    else:
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        print(f"export PATH={cluster.bin_dir}:$PATH")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
