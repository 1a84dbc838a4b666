"""Listing 10,000 runs through `kubectl get runs` on the local cluster (runs.kubesoar.dev).

    KUBESOAR_CLUSTER_DIR=/tmp/kubesoar-cluster-x .venv/bin/python bench/api/bench.py
    .venv/bin/python bench/api/bench.py --runs 10000 --repeat 5

Starts (or reuses) the local cluster, seeds `--runs` runs (one alert each, one in ten
failed) into a fresh namespace of the test bed's PostgreSQL, starts a `kubesoar router`
serving the API and registers it with the aggregator (tests/support/runsapi.py), binds
a user to the built-in `edit` role there, then times, `--repeat` times each:

- kubectl as that user: the table (`kubectl get runs`, pages of 500 — kubectl's
  default chunk size), the full objects (`-o json`), a field selector
  (`--field-selector status=failed`), one run (`get run ID -o yaml`);
- the router directly (the front-proxy certificate and X-Remote-User, as the
  aggregator calls it): every page of 500 as a Table, to separate the router's share
  from kubectl's and the aggregator's.

Wall-clock seconds, median and worst of the repeats. Afterwards it removes the
APIService, the namespace and the seeded rows.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for path in (REPO, REPO / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import httpx  # noqa: E402
from support import runsapi  # noqa: E402
from support.cluster import ClusterHandle, start_cluster  # noqa: E402
from support.stack import KubesoarStack, apply_crds, free_port  # noqa: E402

from hack.localcluster import pki  # noqa: E402

PAGE = 500


async def seed(database_url: str, namespace: str, runs: int) -> None:
    from kubesoar_store import GroupCommitter, NewAlert, NewRun
    from kubesoar_store.pool import create_pool

    pool = await create_pool(database_url, min_size=1, max_size=4)
    try:
        async with GroupCommitter(pool) as committer:

            async def one(i: int) -> None:
                run = NewRun(playbook=f"pb-{i % 4}", idempotency_key=f"{uuid.uuid4()}:bench")
                alert = NewAlert(
                    namespace=namespace,
                    source="siem",
                    alert={"title": f"alert {i}", "severity": "high"},
                )
                await committer.submit(alert, [run])

            for start in range(0, runs, 1000):
                await asyncio.gather(*(one(i) for i in range(start, min(runs, start + 1000))))
        await pool.execute(
            "UPDATE runs SET status = 'failed', started_at = created_at, finished_at = now(),"
            " error = 'RuntimeError: bench' WHERE namespace = $1 AND random() < 0.1",
            namespace,
        )
        await pool.execute("ANALYZE runs")
    finally:
        await pool.close()


async def drop(database_url: str, namespace: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DELETE FROM alerts WHERE namespace = $1", namespace)
    finally:
        await conn.close()


def timed(repeat: int, action: Callable[[], int]) -> tuple[float, float, int]:
    """(median s, worst s, what the action counted) over `repeat` runs."""
    times, count = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        count = action()
        times.append(time.perf_counter() - started)
    return statistics.median(times), max(times), count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    cluster: ClusterHandle = start_cluster()
    assert cluster.local is not None and cluster.database_url_file is not None
    url = cluster.database_url_file.read_text().strip()
    apply_crds(cluster.kubectl)
    namespace = f"bench-runs-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    port = free_port()
    stack = KubesoarStack(
        kubeconfig=cluster.kubeconfig,
        namespaces=["default"],
        workdir=Path(f"/tmp/{namespace}"),
        database_url_file=cluster.database_url_file,
        router_args=runsapi.serving_cert(cluster).router_args(port),
    )
    stack.migrate()
    print(f"seeding {args.runs} runs into {namespace} ...", flush=True)
    asyncio.run(seed(url, namespace, args.runs))
    stack.start_router()
    try:
        runsapi.register(cluster, port)
        runsapi.apply(cluster, runsapi.binding(namespace, "bench-user", "edit"))
        kubeconfig = runsapi.user_kubeconfig(cluster, "bench-user")
        results = measure(cluster, kubeconfig, namespace, port, args.repeat)
    finally:
        runsapi.unregister(cluster)
        stack.stop()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        asyncio.run(drop(url, namespace))
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"\n{args.runs} runs, load average {load}, {args.repeat} repeats (median / worst s)\n")
    print("| what | median s | worst s | rows |")
    print("|---|---|---|---|")
    for what, (median, worst, rows) in results.items():
        print(f"| {what} | {median:.3f} | {worst:.3f} | {rows} |")
    return 0


def measure(
    cluster: ClusterHandle, kubeconfig: Path, namespace: str, port: int, repeat: int
) -> dict[str, tuple[float, float, int]]:
    def kubectl(*argv: str) -> str:
        return subprocess.run(
            [str(cluster.kubectl_bin), f"--kubeconfig={kubeconfig}", *argv],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout

    def table() -> int:
        return len(kubectl("get", "runs", "-n", namespace).splitlines()) - 1

    def full() -> int:
        return kubectl("get", "runs", "-n", namespace, "-o", "json").count('"kind": "Run"')

    def failed() -> int:
        out = kubectl("get", "runs", "-n", namespace, "--field-selector", "status=failed")
        return len(out.splitlines()) - 1

    pki_dir = cluster.state_dir / "pki"
    context = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    proxy = pki.FRONT_PROXY_CLIENT
    context.load_cert_chain(str(pki_dir / f"{proxy}.crt"), str(pki_dir / f"{proxy}.key"))
    client = httpx.Client(
        base_url=f"https://127.0.0.1:{port}",
        verify=context,
        timeout=60,
        headers={
            "X-Remote-User": "bench-user",
            "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io",
        },
    )

    path = f"/apis/runs.kubesoar.dev/v1alpha1/namespaces/{namespace}/runs"
    first = client.get(path, params={"limit": 1}).json()["rows"][0]["cells"][0]
    some_run = f"run/{first}"

    def one() -> int:
        return int(
            some_run.split("/")[1] in kubectl("get", some_run, "-n", namespace, "-o", "yaml")
        )

    def direct() -> int:
        rows, token = 0, ""
        while True:
            page = client.get(
                path, params={"limit": PAGE, **({"continue": token} if token else {})}
            )
            page.raise_for_status()
            body = page.json()
            rows += len(body["rows"])
            token = body["metadata"].get("continue", "")
            if not token:
                return rows

    def one_page() -> int:
        raw = f"{path}?limit={PAGE}"
        return kubectl("get", "--raw", raw).count('"kind": "Run"')

    try:
        return {
            "one page of 500 through the aggregator (`kubectl get --raw`)": timed(repeat, one_page),
            "`kubectl get runs` (table, pages of 500)": timed(repeat, table),
            "`kubectl get runs -o json` (full objects)": timed(repeat, full),
            "`kubectl get runs --field-selector status=failed`": timed(repeat, failed),
            "`kubectl get run ID -o yaml`": timed(repeat, one),
            "router directly, every page of 500 as a Table": timed(repeat, direct),
        }
    finally:
        client.close()


if __name__ == "__main__":
    raise SystemExit(main())
