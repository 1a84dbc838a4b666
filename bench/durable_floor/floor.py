"""The durable floor: the least an ingest that writes before it answers can cost.

    .venv/bin/python bench/durable_floor/floor.py --alerts 20000 --concurrency 64
    .venv/bin/python bench/durable_floor/floor.py --database-url-file PATH   # an existing server

A bare aiohttp handler on 127.0.0.1 (its own process) reads the alert, group-commits
its row with the store's GroupCommitter (asyncpg; one INSERT statement per batch, the
answer only after COMMIT) and answers 202. A bounded aiohttp client load (this
process) sends `--alerts` ~1 KB alerts over `--concurrency` connections, closed
loop. Without --database-url-file a fresh durable PostgreSQL is started for the run
(hack/localcluster/postgres.py: fsync on, synchronous_commit on, the defaults) and
stopped after.

Printed: alerts/s, p50/p99 latency, and CPU per alert of the handler process and of
PostgreSQL (postmaster + every backend and helper process, from /proc), then the
sum. The row count is checked against the 202s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from kubesoar_store import GroupCommitter, NewAlert, NewRun, migrate  # noqa: E402
from kubesoar_store.pool import create_pool  # noqa: E402

from hack.localcluster.postgres import LocalPostgres  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


# -- the handler (a process of its own) ---------------------------------------


async def serve(port: int, url: str, runs_per_alert: int, pool_size: int) -> None:
    pool = await create_pool(url, min_size=pool_size, max_size=pool_size)
    committer = GroupCommitter(pool)
    await committer.start()

    async def ingest(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        alert = NewAlert(namespace="bench", source="floor", alert=body)
        runs = [NewRun(f"pb{i}", f"{alert.id}:pb{i}") for i in range(runs_per_alert)]
        accepted = await committer.submit(alert, runs)
        return web.json_response({"id": str(accepted.alert_id)}, status=202)

    app = web.Application()
    app.router.add_post("/alerts", ingest)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(15, stop.set)
    await stop.wait()
    await runner.cleanup()
    await committer.close()
    await pool.close()


# -- measuring -----------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_cpu(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICKS


def postgres_cpu(postmaster: int) -> dict[int, float]:
    """CPU seconds per process of the server: the postmaster with its reaped children
    (cutime/cstime), and each live child (backends, WAL writer, checkpointer, ...)."""
    fields = _stat(postmaster)
    seconds = {postmaster: sum(int(f) for f in fields[11:15]) / TICKS}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            child = _stat(int(entry.name))
            if int(child[1]) == postmaster:
                seconds[int(entry.name)] = (int(child[11]) + int(child[12])) / TICKS
    return seconds


def postgres_cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def alert_body(i: int) -> bytes:
    return json.dumps(
        {
            "title": f"Suspicious PowerShell on host-{i % 500}",
            "severity": "high",
            "source_ref": f"evt-{i}",
            "description": "Encoded command line spawned by winword.exe " + "x" * 600,
            "iocs": {"ips": [f"10.0.{i % 250}.{i % 200}"], "hashes": ["ab" * 32]},
            "raw": {"rule": "ps-encoded", "host": f"host-{i % 500}", "user": "alice"},
        }
    ).encode()


def raw_client(url: str, limit: int) -> Any:
    """bench/ingest's minimal HTTP/1.1 client (far less CPU than aiohttp's, on shared cores)."""
    spec = importlib.util.spec_from_file_location("ingest_bench", REPO / "bench/ingest/bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RawClient(url, limit)


async def drive(
    url: str, alerts: int, concurrency: int, client: str
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    next_index = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Content-Type": "application/json"}
    raw = raw_client(url, concurrency) if client == "raw" else None
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(body: bytes) -> int:
            if raw is not None:
                status: int = await raw.post(body)
                return status
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status

        async def worker() -> None:
            nonlocal errors, next_index
            while next_index < alerts:
                next_index += 1
                body = alert_body(next_index)
                started = time.perf_counter()
                if await post(body) != 202:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if raw is not None:
        raw.close()
    return latencies, errors, elapsed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def prepare(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate.migrate(conn)
        await conn.execute("TRUNCATE alerts CASCADE; TRUNCATE dedup_keys")
    finally:
        await conn.close()


async def count_rows(url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(url)
    try:
        return (
            await conn.fetchval("SELECT count(*) FROM alerts"),
            await conn.fetchval("SELECT count(DISTINCT xmin::text) FROM alerts"),
        )
    finally:
        await conn.close()


async def postmaster_pid(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        backend: int = await conn.fetchval("SELECT pg_backend_pid()")
        settings = await conn.fetch(
            "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit')"
        )
        print("postgres:", ", ".join(f"{r['name']}={r['setting']}" for r in settings))
        return int(_stat(backend)[1])  # the backend's parent, while the backend lives
    finally:
        await conn.close()


def run(args: argparse.Namespace, url: str) -> None:
    asyncio.run(prepare(url))
    port = free_port()
    env = dict(os.environ, FLOOR_DATABASE_URL=url)
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "serve",
            "--port",
            str(port),
            "--runs-per-alert",
            str(args.runs_per_alert),
            "--pool-size",
            str(args.pool_size),
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("the handler did not start")
        postmaster = asyncio.run(postmaster_pid(url))
        target = f"http://127.0.0.1:{port}/alerts"
        asyncio.run(drive(target, min(2000, args.alerts), args.concurrency, args.client))  # warm-up
        load = Path("/proc/loadavg").read_text().split()[0]
        server_before, pg_before = process_cpu(server.pid), postgres_cpu(postmaster)
        client_before = time.process_time()
        latencies, errors, elapsed = asyncio.run(
            drive(target, args.alerts, args.concurrency, args.client)
        )
        client_cpu = time.process_time() - client_before
        server_cpu = process_cpu(server.pid) - server_before
        pg_cpu = postgres_cpu_between(pg_before, postgres_cpu(postmaster))
    finally:
        server.terminate()
        server.wait(timeout=30)
    rows, transactions = asyncio.run(count_rows(url))
    ok = len(latencies)
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1e3
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3
    print(
        f"closed {args.concurrency}, {args.alerts} alerts, {args.runs_per_alert} run(s) each, "
        f"{args.client} client (load average {load} at start)\n"
        f"  {ok / elapsed:,.0f} alerts/s; p50 {p50:.1f} ms, p99 {p99:.1f} ms; errors {errors}\n"
        f"  CPU per alert: handler {server_cpu / ok * 1e6:.0f} µs + PostgreSQL "
        f"{pg_cpu / ok * 1e6:.0f} µs = {(server_cpu + pg_cpu) / ok * 1e6:.0f} µs "
        f"(load generator {client_cpu / ok * 1e6:.0f} µs, not counted)\n"
        f"  rows committed {rows:,} (warm-up included) in {transactions:,} transactions"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "serve"])
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--runs-per-alert", type=int, default=0, help="runs written per alert")
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument(
        "--client", choices=["aiohttp", "raw"], default="aiohttp", help="load generator's client"
    )
    parser.add_argument("--database-url-file", type=Path)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    if args.mode == "serve":
        url = os.environ["FLOOR_DATABASE_URL"]
        asyncio.run(serve(args.port, url, args.runs_per_alert, args.pool_size))
        return 0
    if args.database_url_file:
        run(args, args.database_url_file.read_text().strip())
        return 0
    with tempfile.TemporaryDirectory(prefix="kubesoar-floor-pg-") as state:
        server = LocalPostgres(Path(state), durable=True)
        server.up()
        try:
            run(args, server.database_url)
        finally:
            server.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
