"""Scale bench (issue 16): N Playbooks over 10 namespaces on one repository and ref.

    KUBESOAR_CLUSTER_DIR=/tmp/kubesoar-cluster-scale .venv/bin/python bench/scale/bench.py \
        --count 100 [--namespaces 10] [--steady-seconds 60] [--interval-poll] [--json]
    PYTHONPATH=<tree of an older commit>/operator ... bench.py --count 100   # "before"

Against the local cluster (`hack/localcluster`, started or reused) and a real Git
smart-HTTP server on loopback (`tests/support/git_http.py`), with `kubesoar operator`
as its own process (`--all-namespaces`, `--status-interval 10`):

1. creates the namespaces and N Playbooks (`spec.replicas: 0`, interval 1m, same URL,
   branch and path), 16 at a time, and records for each when `SourceReady` and `Ready`
   first read True (polling the list once a second); times count from the first create;
2. once all are Ready, lets the operator settle (`--settle-seconds`), then measures the
   operator's and kube-apiserver's CPU (user + system, the operator's `git` children
   included) and RSS over `--steady-seconds`, with nothing else asking the API server;
3. pushes a commit and sets `kubesoar.dev/requestedAt` (one RFC 3339 timestamp) on every
   Playbook: time from the push until every `status.source.commit` is the new one; with
   `--interval-poll`, pushes another and waits for the interval alone;
4. deletes the namespaces and stops the operator.

Each number comes with the load average at its start: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import urllib3  # noqa: E402
from kubernetes import client, config  # noqa: E402
from kubesoar.contracts.kube import ANNOTATION_REQUESTED_AT, API_GROUP, API_VERSION  # noqa: E402
from kubesoar_operator import conditions as c  # noqa: E402
from support.git_http import GitHTTPServer  # noqa: E402
from support.stack import free_port  # noqa: E402

PLURAL = "playbooks"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PLAYBOOK_CODE = (
    "from kubesoar import playbook\n\n\n"
    "@playbook('webhook')\nasync def triage(alert, ctx):\n    return {'ok': True}\n"
)


def load() -> float:
    return os.getloadavg()[0]


def cpu_seconds(pid: int) -> float:
    """User + system time of `pid` and of its children it waited for (the `git` runs)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / CLK_TCK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cluster_up() -> tuple[Path, Path]:
    """Start or reuse the cluster; its kubeconfig and state folder."""
    subprocess.run(
        [sys.executable, str(ROOT / "hack/localcluster/cluster.py"), "up"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    state = Path(os.environ.get("KUBESOAR_CLUSTER_DIR", Path.home() / ".cache/kubesoar/cluster"))
    return state / "kubeconfig", state


def kubectl(state: Path, kubeconfig: Path, *args: str) -> None:
    subprocess.run(
        [str(state / "bin" / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def playbook(name: str, namespace: str, url: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "Playbook",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "source": {"git": {"url": url, "ref": {"branch": "main"}}, "path": "pb/"},
            "module": "triage",
            "replicas": 0,
        },
    }


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.kubeconfig, self.state = cluster_up()
        kubectl(self.state, self.kubeconfig, "apply", "-f", str(ROOT / "crds"))
        kubectl(
            self.state, self.kubeconfig, "wait", "--for=condition=Established",
            "--timeout=60s", "crd/playbooks.kubesoar.dev", "crd/alertsources.kubesoar.dev",
        )  # fmt: skip
        config.load_kube_config(str(self.kubeconfig))
        configuration = client.Configuration.get_default_copy()
        configuration.connection_pool_maxsize = 32
        self.api = client.ApiClient(configuration)
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.namespaces = [f"scale-{i}" for i in range(args.namespaces)]
        self.operator: subprocess.Popen[bytes] | None = None
        self.results: dict[str, Any] = {"count": args.count, "namespaces": args.namespaces}

    # --- processes -----------------------------------------------------------------
    def start_operator(self) -> None:
        port, liveness = free_port(), free_port()
        argv = [
            sys.executable, "-m", "kubesoar", "operator",
            "--kubeconfig", str(self.kubeconfig), "--all-namespaces",
            "--artifact-listen", f"127.0.0.1:{port}",
            "--artifact-url", f"http://127.0.0.1:{port}",
            "--liveness", f"http://127.0.0.1:{liveness}/healthz",
            "--state-dir", str(self.work / "operator-state"),
            "--status-interval", "10",
        ]  # fmt: skip
        log = (self.work / "operator.log").open("wb")
        self.operator = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.results["operator_log"] = str(self.work / "operator.log")

    def apiserver_pid(self) -> int:
        return int((self.state / "run" / "kube-apiserver.pid").read_text().split()[0])

    # --- API ---------------------------------------------------------------------
    def list_playbooks(self) -> list[dict[str, Any]]:
        for attempt in range(5):  # a list of 1,000 (3 MB) was once cut off mid-read
            try:
                response = self.custom.list_cluster_custom_object(
                    API_GROUP, API_VERSION, PLURAL, _preload_content=False
                )
                items: list[dict[str, Any]] = json.loads(response.data)["items"]
            except (urllib3.exceptions.HTTPError, client.ApiException, ValueError) as exc:
                print(f"listing failed ({exc!r}), again", file=sys.stderr)
                time.sleep(1.0 + attempt)
                continue
            return [p for p in items if p["metadata"]["namespace"] in self.namespaces]
        raise SystemExit("listing Playbooks kept failing")

    def record(self, key: str, value: Any) -> None:
        """Keep a result, and show it at once: a later phase's failure must not lose it."""
        self.results[key] = value
        print(json.dumps({key: value}), file=sys.stderr, flush=True)

    def create_all(self, url: str) -> None:
        for ns in self.namespaces:
            self.core.create_namespace({"metadata": {"name": ns}})
        bodies = [
            playbook(f"pb-{i}", self.namespaces[i % len(self.namespaces)], url)
            for i in range(self.args.count)
        ]
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda b: self.custom.create_namespaced_custom_object(
                        API_GROUP, API_VERSION, b["metadata"]["namespace"], PLURAL, b
                    ),
                    bodies,
                )
            )

    def annotate_all(self, value: str) -> None:
        patch = {"metadata": {"annotations": {ANNOTATION_REQUESTED_AT: value}}}
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda p: self.custom.patch_namespaced_custom_object(
                        API_GROUP,
                        API_VERSION,
                        p["metadata"]["namespace"],
                        PLURAL,
                        p["metadata"]["name"],
                        patch,
                    ),
                    self.list_playbooks(),
                )
            )

    def wait(
        self, checks: dict[str, Callable[[dict[str, Any]], bool]], since: float, timeout: float
    ) -> dict[str, list[float]]:
        """Poll once a second until every check holds for all; per check, the seconds from
        `since` at which each object was first seen passing it."""
        seen: dict[str, dict[str, float]] = {what: {} for what in checks}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = self.list_playbooks()
            now = time.monotonic()
            for item in items:
                key = f"{item['metadata']['namespace']}/{item['metadata']['name']}"
                for what, done in checks.items():
                    if key not in seen[what] and done(item):
                        seen[what][key] = now - since
            if all(len(times) >= self.args.count for times in seen.values()):
                return {what: sorted(times.values()) for what, times in seen.items()}
            time.sleep(1.0)
        counts = {what: len(times) for what, times in seen.items()}
        raise SystemExit(f"timed out: {counts} of {self.args.count}")

    # --- the run -----------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        server = GitHTTPServer(self.work / "git").start()
        try:
            repo = server.create_repo("playbooks", {"pb/triage.py": PLAYBOOK_CODE})
            self.start_operator()
            time.sleep(3)  # the operator's start is not what is measured
            self.results["load_at_create"] = load()
            started = time.monotonic()
            self.create_all(server.url("playbooks"))
            self.results["create_seconds"] = time.monotonic() - started
            times = self.wait(
                {
                    "source_ready": lambda p: _true(p, c.SOURCE_READY),
                    "ready": lambda p: _true(p, c.READY),
                },
                started,
                self.args.timeout,
            )
            self.record("source_ready", _spread(times["source_ready"]))
            self.record("ready", _spread(times["ready"]))
            self.steady()
            self.new_commit(repo, requested=True)
            if self.args.interval_poll:
                self.new_commit(repo, requested=False)
            requests = [p for p in server.requests if "info/refs" in p]
            self.results["git_handshakes_total"] = len(requests)
        finally:
            self.cleanup()
            server.close()
        return self.results

    def steady(self) -> None:
        assert self.operator is not None
        time.sleep(self.args.settle_seconds)
        operator, apiserver = self.operator.pid, self.apiserver_pid()
        load_start = load()
        before = (cpu_seconds(operator), cpu_seconds(apiserver))
        time.sleep(self.args.steady_seconds)
        after = (cpu_seconds(operator), cpu_seconds(apiserver))
        per_minute = 60.0 / self.args.steady_seconds
        self.record(
            "steady",
            {
                "seconds": self.args.steady_seconds,
                "load_at_start": load_start,
                "load_at_end": load(),
                "operator_cpu_s_per_min": round((after[0] - before[0]) * per_minute, 2),
                "apiserver_cpu_s_per_min": round((after[1] - before[1]) * per_minute, 2),
                "operator_rss_mib": round(rss_mib(operator), 1),
                "apiserver_rss_mib": round(rss_mib(apiserver), 1),
            },
        )

    def new_commit(self, repo: Any, *, requested: bool) -> None:
        code = PLAYBOOK_CODE + f"\n# {time.time()}\n"
        load_start = load()
        pushed = time.monotonic()
        sha = repo.commit({"pb/triage.py": code}, "new commit")
        if requested:
            moment = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
            self.annotate_all(moment)
        seen = self.wait(
            {"commit": lambda p: (p.get("status") or {}).get("source", {}).get("commit") == sha},
            pushed,
            self.args.timeout,
        )
        key = "new_commit_requested" if requested else "new_commit_interval"
        self.record(key, {**_spread(seen["commit"]), "load_at_start": load_start})

    def cleanup(self) -> None:
        for ns in self.namespaces:
            try:
                self.core.delete_namespace(ns)
            except client.ApiException:
                pass
        if self.operator is not None:
            self.operator.terminate()
            try:
                self.operator.wait(30)
            except subprocess.TimeoutExpired:
                self.operator.kill()
                self.operator.wait(10)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # the next run needs the names free
            names = {n.metadata.name for n in self.core.list_namespace().items}
            if not names & set(self.namespaces):
                break
            time.sleep(2)


def _true(item: dict[str, Any], kind: str) -> bool:
    for cond in (item.get("status") or {}).get("conditions") or ():
        if cond.get("type") == kind:
            return bool(cond.get("status") == "True")
    return False


def _spread(seconds: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(seconds), 1), "last": round(max(seconds), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--settle-seconds", type=float, default=20.0)
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="per phase")
    parser.add_argument("--interval-poll", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kubesoar-scale-") as folder:
        results = Bench(args, Path(folder)).run()
    results.pop("operator_log", None)
    print(json.dumps(results, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
