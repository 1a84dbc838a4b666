"""Ingest benchmark: router -> runtime -> no-op playbook, next to a bare two-hop floor.

    .venv/bin/python bench/ingest/bench.py all [--seconds 10]
    .venv/bin/python bench/ingest/bench.py match

Every server and the load generator run as separate processes on loopback
(127.0.0.1 / 127.0.0.x). The floor is the same number of aiohttp hops doing no
work: a forwarder (aiohttp client, same pool settings) in front of an echo server.
Load: closed loop at 16 and 64 connections, open loop at 2,000 alerts/s over at most
64 connections (KUBESOAR_BENCH_OPEN_CONNECTIONS), from a minimal HTTP/1.1 client
(`--client aiohttp` for aiohttp's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from yarl import URL

TOKEN = "bench-token"
NOOP_PLAYBOOK = """
from kubesoar import playbook, Alert

@playbook(trigger="webhook", conditions={"severity": ["high", "critical"]})
async def noop(alert: Alert) -> None:
    return None
"""
BODY_PAD = "x" * 700  # ~1 KB alerts, as in the design's measured floor
OPEN_LOOP_CONNECTIONS = int(os.environ.get("KUBESOAR_BENCH_OPEN_CONNECTIONS", "64"))


# --- servers -----------------------------------------------------------------
def serve_echo(host: str, port: int) -> None:
    async def echo(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"runId": "r", "accepted": ["noop"]}, status=202)

    app = web.Application()
    app.router.add_post("/{tail:.*}", echo)
    web.run_app(app, host=host, port=port, print=None, access_log=None)


def serve_forwarder(host: str, port: int, target: str) -> None:
    from kubesoar_router.delivery import make_session

    async def start(app: web.Application):  # type: ignore[no-untyped-def]
        app["session"] = make_session()
        yield
        await app["session"].close()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        async with request.app["session"].post(target, data=body) as response:
            answer = await response.read()
        return web.Response(body=answer, status=response.status, content_type="application/json")

    app = web.Application()
    app.cleanup_ctx.append(start)
    app.router.add_post("/{tail:.*}", forward)
    web.run_app(app, host=host, port=port, print=None, access_log=None)


def serve_router(host: str, port: int, runtime_host: str, runtime_port: int) -> None:
    import base64

    from kubesoar_router import app as router_app
    from kubesoar_router import logs
    from kubesoar_router.app import create_ingest_app
    from kubesoar_router.ingest import Router
    from kubesoar_router.snapshot import Snapshot, build_namespace

    snapshot = Snapshot()
    snapshot.put(
        build_namespace(
            "bench",
            alertsources=[
                {
                    "metadata": {"name": "siem"},
                    "spec": {
                        "auth": {"bearer": {"secretRef": {"name": "s", "key": "token"}}},
                        "dedup": {"windowSeconds": 0},
                    },
                }
            ],
            secrets={"s": {"token": TOKEN.encode()}},
            playbooks=[
                {
                    "metadata": {"name": "noop"},
                    "spec": {},
                    "status": {
                        "conditions": [{"type": "Ready", "status": "True"}],
                        "playbooks": [
                            {
                                "name": "noop",
                                "trigger": "webhook",
                                "conditions": {"severity": ["high", "critical"]},
                            }
                        ],
                    },
                }
            ],
            endpointslices=[
                {
                    "metadata": {"labels": {"kubesoar.dev/playbook": "noop"}},
                    "ports": [{"name": "http", "port": runtime_port}],
                    "endpoints": [{"addresses": [runtime_host], "conditions": {"ready": True}}],
                }
            ],
        )
    )
    snapshot.synced = True
    app = create_ingest_app(Router(snapshot=snapshot))
    _ = base64
    # As `kubesoar router` runs: JSON logs at INFO, no access log, GC tuned after start-up.
    logs.configure("INFO")

    async def started(app: web.Application) -> None:
        # Older commits (measured with PYTHONPATH pointing at their tree) have no tune_gc.
        tune_gc = getattr(router_app, "tune_gc", None)
        if tune_gc is not None:
            tune_gc()

    app.on_startup.append(started)
    web.run_app(app, host=host, port=port, print=None, access_log=None)


# --- load --------------------------------------------------------------------
def alert_body(index: int) -> bytes:
    return json.dumps(
        {
            "title": f"bench {index}",
            "severity": "high",
            "source_id": f"b-{index}-{random.random()}",
            "description": BODY_PAD,
        }
    ).encode()


class _RawConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of the load generator: writes a request,
    resolves `waiter` with the status once the whole answer (Content-Length) is in."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        length = 0
        for line in bytes(self.buffer[:end]).split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return
        status = int(self.buffer[9:12])
        del self.buffer[: end + 4 + length]
        self.waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))


class RawClient:
    """A minimal keep-alive HTTP/1.1 client for the load generator (as `wrk` would be):
    it takes a fraction of the CPU of aiohttp's client, and the load generator shares
    the machine's 2 cores with the servers it measures. At most `limit` connections."""

    def __init__(self, url: str, limit: int) -> None:
        parsed = URL(url)
        self.host, self.port = parsed.host or "127.0.0.1", parsed.port or 80
        self.head = (
            f"POST {parsed.raw_path_qs} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
            "Content-Length: "
        ).encode()
        self.idle: list[_RawConnection] = []
        self.slots = asyncio.Semaphore(limit)

    async def post(self, body: bytes) -> int:
        async with self.slots:
            loop = asyncio.get_running_loop()
            while self.idle:
                connection = self.idle.pop()
                if not connection.closed:
                    break
            else:
                _, connection = await loop.create_connection(_RawConnection, self.host, self.port)
            assert connection.transport is not None
            connection.waiter = loop.create_future()
            connection.transport.write(self.head + b"%d\r\n\r\n" % len(body) + body)
            try:
                status = await connection.waiter
            except BaseException:
                connection.transport.abort()
                raise
            self.idle.append(connection)
            return status

    def close(self) -> None:
        for connection in self.idle:
            if connection.transport is not None:
                connection.transport.close()


async def load(
    url: str, mode: str, value: int, seconds: float, client_kind: str = "raw"
) -> dict[str, float]:
    cpu_started = time.process_time()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    latencies: list[float] = []
    errors = 0
    counter = 0
    # Open loop: a sender's pool of OPEN_LOOP_CONNECTIONS; a request that finds them all
    # busy waits in the generator, and that wait counts in its latency.
    limit = value if mode == "closed" else OPEN_LOOP_CONNECTIONS
    raw = RawClient(url, limit)
    connector = aiohttp.TCPConnector(limit=limit)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            nonlocal errors, counter
            counter += 1
            body = alert_body(counter)
            started = time.perf_counter()
            try:
                if client_kind == "raw":
                    status = await raw.post(body)
                else:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        status = response.status
            except (aiohttp.ClientError, OSError):
                errors += 1
                return
            if status != 202:
                errors += 1
                return
            latencies.append(time.perf_counter() - started)

        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        if mode == "closed":

            async def worker() -> None:
                while time.perf_counter() < deadline:
                    await one()

            await asyncio.gather(*(worker() for _ in range(value)))
        else:
            interval = 1.0 / value
            pending: set[asyncio.Task[None]] = set()
            next_at = started
            while next_at < deadline:
                now = time.perf_counter()
                while next_at <= now and len(pending) < 2000:
                    task = asyncio.create_task(one())
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            if pending:
                await asyncio.wait(pending, timeout=10)
        elapsed = time.perf_counter() - started
    raw.close()
    latencies.sort()
    pick = (
        (lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000)
        if latencies
        else (lambda q: 0.0)
    )
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": pick(0.5),
        "p99_ms": pick(0.99),
        "errors": errors,
        "ok": len(latencies),
        # The load generator's own CPU: it shares the 2 cores with the servers.
        "loadgen_cpu_s": time.process_time() - cpu_started,
    }


def run_load(
    url: str, mode: str, value: int, seconds: float, client_kind: str = "raw"
) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "load", url, mode, str(value), str(seconds), client_kind],
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    return json.loads(out.stdout)


# --- orchestration -------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def wait_port(host: str, port: int, path: str = "/", timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{host}:{port} did not open")


def free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def runtime_env(workspace: Path, host: str, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "KUBESOAR_POD_IP": host,
        "KUBESOAR_PORT": str(port),
        "KUBESOAR_WORKSPACE": str(workspace),
        "KUBESOAR_MODULE": "noopbook",
        "KUBESOAR_QUEUE_SIZE": "100000",
        "KUBESOAR_CONCURRENCY": "256",
        "KUBESOAR_RUN_HISTORY": "1000",
    }


def bench_workspace() -> Path:
    workspace = Path(tempfile.mkdtemp(prefix="kubesoar-bench-"))
    (workspace / "src").mkdir()
    (workspace / "src" / "noopbook.py").write_text(NOOP_PLAYBOOK)
    return workspace


def run_all(seconds: float, client_kind: str = "raw") -> None:
    procs: list[subprocess.Popen[bytes]] = []
    workspace = bench_workspace()
    try:
        rt_host, rt_port = "127.0.0.2", free_port("127.0.0.2")
        env = runtime_env(workspace, rt_host, rt_port)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "kubesoar", "runtime"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        r_port = free_port("127.0.0.1")
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "router", str(r_port), rt_host, str(rt_port)],
                stderr=subprocess.DEVNULL,
            )
        )
        e_port, f_port = free_port("127.0.0.1"), free_port("127.0.0.1")
        procs.append(subprocess.Popen([sys.executable, __file__, "echo", str(e_port)]))
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "forwarder",
                    str(f_port),
                    f"http://127.0.0.1:{e_port}/v1/runs",
                ]
            )
        )
        for host, port in (
            (rt_host, rt_port),
            ("127.0.0.1", r_port),
            ("127.0.0.1", e_port),
            ("127.0.0.1", f_port),
        ):
            wait_port(host, port)
        time.sleep(1)
        router_url = f"http://127.0.0.1:{r_port}/v1/namespaces/bench/sources/siem/alerts"
        floor_url = f"http://127.0.0.1:{f_port}/v1/namespaces/bench/sources/siem/alerts"
        # CPU per alert of the two server processes of each path (hop 1 + hop 2):
        # a figure that depends less on what else runs on the machine than alerts/s.
        servers = {
            floor_url: (procs[3].pid, procs[2].pid),
            router_url: (procs[1].pid, procs[0].pid),
        }
        print(
            f"{'load':<18} {'path':<28} {'alerts/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
            f" {'cpu µs/alert hop1+hop2 (+load gen)':>34} {'load avg':>8}"
        )
        for mode, value, label in (
            ("closed", 16, "closed 16 conns"),
            ("closed", 64, "closed 64 conns"),
            ("open", 2000, "open 2,000/s"),
        ):
            for name, url in (
                ("floor (2 bare hops)", floor_url),
                ("router->runtime->playbook", router_url),
            ):
                loadavg = load_average()
                before = [cpu_seconds(pid) for pid in servers[url]]
                result = run_load(url, mode, value, seconds, client_kind)
                used = [cpu_seconds(pid) - b for pid, b in zip(servers[url], before, strict=True)]
                sent = max(1, result["ok"] + result["errors"])
                per = [f"{u / sent * 1e6:.0f}" for u in used]
                cpu = f"{' + '.join(per)} (+{result['loadgen_cpu_s'] / sent * 1e6:.0f})"
                print(
                    f"{label:<18} {name:<28} {result['rps']:>9.0f} {result['p50_ms']:>8.2f} "
                    f"{result['p99_ms']:>8.2f} {result['errors']:>7} {cpu:>34}"
                    f" {loadavg:>8}",
                    flush=True,
                )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def run_profile(seconds: float, out_dir: Path) -> None:
    """cProfile the router and the runtime (each its own process) under closed-loop
    load at 16 connections, then print where each spends its time. Bench only: the
    profiler slows both processes, so the alerts/s printed here are not figures."""
    import pstats
    import signal

    out_dir.mkdir(parents=True, exist_ok=True)
    workspace = bench_workspace()
    rt_host, rt_port = "127.0.0.2", free_port("127.0.0.2")
    r_port = free_port("127.0.0.1")

    def profiler(path: Path) -> list[str]:
        return [sys.executable, "-m", "cProfile", "-o", str(path)]

    profiles = {"runtime": out_dir / "runtime.prof", "router": out_dir / "router.prof"}
    procs = [
        subprocess.Popen(
            [*profiler(profiles["runtime"]), "-m", "kubesoar", "runtime", "--log-level", "WARNING"],
            env=runtime_env(workspace, rt_host, rt_port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [*profiler(profiles["router"]), __file__, "router", str(r_port), rt_host, str(rt_port)],
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        wait_port(rt_host, rt_port)
        wait_port("127.0.0.1", r_port)
        time.sleep(1)
        url = f"http://127.0.0.1:{r_port}/v1/namespaces/bench/sources/siem/alerts"
        print("under the profiler:", run_load(url, "closed", 16, seconds))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    for name, path in profiles.items():
        print(f"\n===== {name} ({path}) =====")
        stats = pstats.Stats(str(path))
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)


def run_match(count: int = 1000, alerts: int = 20000) -> None:
    from kubesoar._conditions import compile_conditions
    from kubesoar_router.routes import Route, RouteIndex

    rng = random.Random(1)
    sev = ["info", "low", "medium", "high", "critical"]
    routes = []
    for index in range(count):
        kind = index % 4
        if kind == 0:
            spec = {"rule_name": f"rule-{index}"}
        elif kind == 1:
            spec = {
                "rule_name": [f"rule-{index}", f"alt-{index}"],
                "severity": ["high", "critical"],
            }
        elif kind == 2:
            spec = {"tags": f"tag-{index}", "hostname": {"$regex": "^web"}}
        else:
            spec = {"source_id": {"$in": [f"id-{index}"]}, "severity": {"$gte": "medium"}}
        routes.append(Route(f"pb-{index}", "main", "webhook", compile_conditions(spec)))
    index_ = RouteIndex.build(routes)
    sample = [
        {
            "source": "elastic",
            "severity": rng.choice(sev),
            "rule_name": f"rule-{rng.randrange(count * 2)}",
            "hostname": "web-1",
            "tags": [f"tag-{rng.randrange(count * 2)}"],
            "source_id": f"id-{rng.randrange(count)}",
            "iocs": {"ips": ["1.2.3.4"]},
        }
        for _ in range(1000)
    ]
    started = time.perf_counter()
    matched = 0
    for i in range(alerts):
        matched += len(index_.match(sample[i % 1000]))
    per_alert = (time.perf_counter() - started) / alerts * 1e6
    started = time.perf_counter()
    for i in range(2000):
        [r for r in routes if r.condition.matches(sample[i % 1000])]
    brute = (time.perf_counter() - started) / 2000 * 1e6
    print(
        f"matching, {count} routes: {per_alert:.1f} µs/alert with the index "
        f"({matched / alerts:.2f} matches/alert); {brute:.0f} µs/alert testing every route"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "what", choices=["all", "match", "profile", "router", "echo", "forwarder", "load"]
    )
    parser.add_argument("args", nargs="*")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--client",
        choices=["raw", "aiohttp"],
        default="raw",
        help="load generator's HTTP client (raw: minimal keep-alive HTTP/1.1, the default)",
    )
    ns = parser.parse_args()
    if ns.what == "all":
        run_all(ns.seconds, ns.client)
    elif ns.what == "match":
        run_match()
    elif ns.what == "profile":
        run_profile(ns.seconds, Path(ns.args[0]) if ns.args else Path(tempfile.mkdtemp()))
    elif ns.what == "router":
        serve_router("127.0.0.1", int(ns.args[0]), ns.args[1], int(ns.args[2]))
    elif ns.what == "echo":
        serve_echo("127.0.0.1", int(ns.args[0]))
    elif ns.what == "forwarder":
        serve_forwarder("127.0.0.1", int(ns.args[0]), ns.args[1])
    elif ns.what == "load":
        url, mode, value, seconds, client_kind = ns.args
        print(json.dumps(asyncio.run(load(url, mode, int(value), float(seconds), client_kind))))


if __name__ == "__main__":
    main()
