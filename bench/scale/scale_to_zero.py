"""Scale-to-zero bench (issue 16 item 4): an alert for a Playbook at zero, and idle cost.

    export KUBESOAR_CLUSTER_DIR=/tmp/kubesoar-cluster-scale    # a cluster of your own
    .venv/bin/python bench/scale/scale_to_zero.py [--tries 20] [--count 100] [--json]

Against the local cluster (`hack/localcluster`, started or reused) and its PostgreSQL,
with `kubesoar operator` and `kubesoar router` as processes on the database
(`tests/support/stack.py`, `--status-interval 10`) and a Git smart-HTTP server on loopback:

1. **wake-up**: one Playbook with `scaling: {minReplicas: 0, maxReplicas: 1,
   idleSeconds: 2}` and an AlertSource. `--tries` times: wait until it is at zero (no pod,
   status says so), send a signed alert, then read the run in PostgreSQL every 50 ms:
   seconds from sending to the run's `started_at` (the dispatcher leased it to the new
   pod) and to `finished_at` (succeeded).
2. **idle cost**: `--count` Playbooks over `--namespaces` namespaces with `minReplicas: 0`
   (`idleSeconds` 90): each starts one pod to learn its entry points; when all have,
   the runtime pods' RSS and PSS are summed (what always-on pods cost); once all are
   back at zero, the pods left, and the operator's and router's RSS and CPU per minute
   over `--steady-seconds`, next to the same before the Playbooks were created.

Each phase comes with the load average at its start: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import asyncpg  # noqa: E402
import yaml  # noqa: E402
from kubesoar.contracts.kube import runtime_selector_labels  # noqa: E402
from kubesoar_store.url import resolve_url  # noqa: E402
from support.cluster import ClusterHandle, start_cluster  # noqa: E402
from support.git_http import GitHTTPServer  # noqa: E402
from support.stack import (  # noqa: E402
    KubesoarStack,
    apply_crds,
    delete_namespace,
    kubectl_json,
    signed_source,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")
TOKEN, HMAC_KEY = "bench-ingest-token", "bench-hmac-key"
CODE = (
    "from kubesoar import playbook\n\n\n"
    "@playbook('webhook')\nasync def triage(alert, ctx):\n    return {'ok': True}\n"
)


def load() -> float:
    return round(os.getloadavg()[0], 1)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / CLK_TCK


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of `pid` in MiB."""
    rss = pss = 0.0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Pss:"):
            pss = int(line.split()[1]) / 1024
    return rss, pss


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.cluster: ClusterHandle = start_cluster()
        if self.cluster.database_url_file is None:
            raise SystemExit("the local cluster runs no PostgreSQL")
        apply_crds(self.cluster.kubectl)
        self.database_url = resolve_url(url_file=self.cluster.database_url_file)
        self.git = GitHTTPServer(work / "git").start()
        self.repo = self.git.create_repo("playbooks", {"pb/triage.py": CODE})
        suffix = uuid.uuid4().hex[:5]
        self.wake_ns = f"stz-wake-{suffix}"
        self.idle_ns = [f"stz-{i}-{suffix}" for i in range(args.namespaces)]
        for ns in [self.wake_ns, *self.idle_ns]:
            self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        self.stack = KubesoarStack(
            kubeconfig=self.cluster.kubeconfig,
            namespaces=[self.wake_ns, *self.idle_ns],
            workdir=work,
            status_interval=10.0,
            database_url_file=self.cluster.database_url_file,
        ).start()
        self.results: dict[str, Any] = {}

    def record(self, key: str, value: Any) -> None:
        self.results[key] = value
        print(json.dumps({key: value}), file=sys.stderr, flush=True)

    def apply(self, *objects: dict[str, Any], namespace: str | None = None) -> None:
        ns_args = ["-n", namespace] if namespace else []
        self.cluster.kubectl("apply", *ns_args, "-f", "-", input=yaml.safe_dump_all(objects))

    def playbook(self, name: str, idle_seconds: int) -> dict[str, Any]:
        return {
            "apiVersion": "kubesoar.dev/v1alpha1", "kind": "Playbook",
            "metadata": {"name": name},
            "spec": {"source": {"git": {"url": self.git.url("playbooks"),
                                        "ref": {"branch": "main"}},
                                "path": "pb/", "interval": "10m"},
                     "module": "triage",
                     "scaling": {"minReplicas": 0, "maxReplicas": 1,
                                 "idleSeconds": idle_seconds}},
        }  # fmt: skip

    def get(self, namespace: str, *what: str) -> Any:
        return kubectl_json(self.cluster.kubectl, "-n", namespace, "get", *what)

    def pods(self, namespace: str, name: str | None = None) -> list[dict[str, Any]]:
        selector = (
            ",".join(f"{k}={v}" for k, v in runtime_selector_labels(name).items())
            if name
            else "app.kubernetes.io/component=runtime"
        )
        return list(self.get(namespace, "pods", "-l", selector)["items"])

    def at_zero(self, namespace: str, name: str) -> bool:
        status = self.get(namespace, "playbook", name).get("status", {})
        scale = status.get("scale", {})
        return (
            scale.get("desired") == 0
            and bool(scale.get("entryPointsCommit"))
            and not status.get("replicas")
            and not self.pods(namespace, name)
        )

    def wait(self, what: str, probe: Any, timeout: float, interval: float = 0.5) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if probe():
                return
            time.sleep(interval)
        print(self.stack.logs()[-6000:], file=sys.stderr)
        raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")

    async def run_times(self, run_id: str, sent: float) -> tuple[float, float]:
        conn = await asyncpg.connect(self.database_url)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                row = await conn.fetchrow(
                    "SELECT status, extract(epoch FROM started_at) AS started,"
                    " extract(epoch FROM finished_at) AS finished FROM runs WHERE id = $1",
                    uuid.UUID(run_id),
                )
                if row is not None and row["status"] in ("succeeded", "failed", "dead"):
                    if row["status"] != "succeeded":
                        raise SystemExit(f"run {run_id} ended {row['status']}")
                    return float(row["started"]) - sent, float(row["finished"]) - sent
                await asyncio.sleep(0.05)
        finally:
            await conn.close()
        raise SystemExit(f"run {run_id} did not finish in 120 s")

    # --- phase 1 -------------------------------------------------------------------
    def wake_up(self) -> None:
        ns = self.wake_ns
        self.apply(
            *signed_source(TOKEN, HMAC_KEY),
            self.playbook("wake", idle_seconds=2),
            namespace=ns,
        )  # fmt: skip
        started_load = load()
        to_start, to_finish = [], []
        for attempt in range(self.args.tries):
            self.wait("the Playbook at zero", lambda: self.at_zero(ns, "wake"), 180)
            time.sleep(0.5)  # the router's view of the endpoints follows
            sent = time.time()
            answer = self.stack.send_alert(
                ns, "siem", {"title": f"try {attempt}"}, token=TOKEN, hmac_key=HMAC_KEY
            )
            if answer.status_code != 202:
                raise SystemExit(f"alert refused: {answer.status_code} {answer.text}")
            run_id = answer.json()["deliveries"][0]["runId"]
            start, finish = asyncio.run(self.run_times(run_id, sent))
            to_start.append(start)
            to_finish.append(finish)
            print(f"try {attempt}: run started {start:.2f} s, finished {finish:.2f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
        self.record(
            "wake_up",
            {
                "tries": len(to_start),
                "load_at_start": started_load,
                "load_at_end": load(),
                "to_run_start_p50": round(statistics.median(to_start), 2),
                "to_run_start_p99": round(percentile(to_start, 99), 2),
                "to_run_start_min": round(min(to_start), 2),
                "to_run_finish_p50": round(statistics.median(to_finish), 2),
                "to_run_finish_p99": round(percentile(to_finish, 99), 2),
            },
        )
        delete_namespace(self.cluster.kubectl, ns)

    # --- phase 2 -------------------------------------------------------------------
    def component(self, name: str, seconds: float) -> dict[str, float]:
        popen = self.stack._processes[name].popen
        assert popen is not None
        before = cpu_seconds(popen.pid)
        time.sleep(seconds)
        rss, pss = memory_mib(popen.pid)
        per_minute = (cpu_seconds(popen.pid) - before) * 60 / seconds
        return {"rss_mib": round(rss, 1), "pss_mib": round(pss, 1),
                "cpu_s_per_min": round(per_minute, 2)}  # fmt: skip

    def steady(self, seconds: float) -> dict[str, Any]:
        with ThreadPoolExecutor(2) as pool:
            operator = pool.submit(self.component, "operator", seconds)
            router = pool.submit(self.component, "router", seconds)
            return {"load": load(), "operator": operator.result(), "router": router.result()}

    def runtime_memory(self) -> dict[str, Any]:
        total_rss = total_pss = 0.0
        counted = 0
        for ns in self.idle_ns:
            for pod in self.pods(ns):
                pid = self.cluster.container_pid(ns, pod["metadata"]["name"], "runtime")
                if pid is None:
                    continue
                try:
                    rss, pss = memory_mib(pid)
                except OSError:
                    continue
                total_rss, total_pss, counted = total_rss + rss, total_pss + pss, counted + 1
        return {"pods": counted, "rss_mib": round(total_rss, 1), "pss_mib": round(total_pss, 1)}

    def idle_cost(self) -> None:
        count = self.args.count
        self.record("before_playbooks", self.steady(self.args.steady_seconds))
        names = [(self.idle_ns[i % len(self.idle_ns)], f"pb-{i}") for i in range(count)]
        created = time.monotonic()
        for ns in self.idle_ns:
            mine = [self.playbook(n, idle_seconds=90) for space, n in names if space == ns]
            self.apply(*mine, namespace=ns)

        def all_learned() -> bool:
            learned = 0
            for ns in self.idle_ns:
                for pb in self.get(ns, "playbooks")["items"]:
                    learned += bool(pb.get("status", {}).get("scale", {}).get("entryPointsCommit"))
            return learned == count

        self.wait("every Playbook's entry points", all_learned, 900, interval=2)
        self.record("learned_all_seconds", round(time.monotonic() - created, 1))
        self.record("runtime_pods_while_learning", self.runtime_memory())

        def all_at_zero() -> bool:
            for ns in self.idle_ns:
                if self.pods(ns):
                    return False
                for pb in self.get(ns, "playbooks")["items"]:
                    status = pb.get("status", {})
                    if status.get("scale", {}).get("desired") != 0 or status.get("replicas"):
                        return False
            return True

        self.wait("every Playbook at zero", all_at_zero, 900, interval=2)
        self.record("all_at_zero_seconds", round(time.monotonic() - created, 1))
        time.sleep(15)  # the last status writes and watch events pass
        self.record("idle_at_zero", {**self.steady(self.args.steady_seconds),
                                     "runtime": self.runtime_memory()})  # fmt: skip

    def close(self) -> None:
        for ns in self.idle_ns:
            delete_namespace(self.cluster.kubectl, ns, timeout=300)
        self.stack.stop()
        self.git.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    parser.add_argument("--skip-wake-up", action="store_true")
    parser.add_argument("--skip-idle", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-stz-") as tmp:
        bench = Bench(args, Path(tmp))
        try:
            if not args.skip_wake_up:
                bench.wake_up()
            if not args.skip_idle:
                bench.idle_cost()
        finally:
            bench.close()
    if args.json:
        print(json.dumps(bench.results, indent=2))


if __name__ == "__main__":
    main()
