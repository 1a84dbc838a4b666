"""Durable ingest end to end: alert → committed → dispatched → run finished and recorded.

    .venv/bin/python bench/durable/bench.py all --seconds 10            # next to the floor
    .venv/bin/python bench/durable/bench.py all --seconds 10 --uvloop   # speed-ups, see speedups.py
    .venv/bin/python bench/durable/bench.py profile /tmp/prof --seconds 10
    .venv/bin/python bench/durable/bench.py slice --alerts 200 --database-url-file F --json

Each its own process on loopback: a durable PostgreSQL (hack/localcluster/postgres.py,
fsync and synchronous_commit on), a runtime with a no-op playbook, a router with the
system of record (router_main.py; the dispatcher reports to its own URL), and the load
generator (loadgen.py). Before each load the tables are emptied; the load runs for
`--seconds`; then the bench waits until every accepted run is final in the database
(the drain, bounded). It reports per load:

- accepted: alerts answered 202 per second, p50/p99 of their latency, other answers;
- finished: runs final in the database (succeeded, failed, dead) — per second during
  the load, and over the whole span (first commit to last finish); the drain time after
  the load stopped; alert → finished latency (runs.created_at → finished_at);
- CPU per accepted alert of the router, the runtime and PostgreSQL (postmaster and
  every backend, /proc), from the start of the load to the end of the drain, and of
  the load generator (not counted in the sum);
- missing: accepted alerts without a final run (must be 0).

The durable floor (bench/durable_floor/floor.py: a bare handler that group-commits the
alert row and answers 202) runs against the same server, closed loop at the same
connection counts, so the two sets of figures come from the same machine state.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import database  # noqa: E402
import slice_check  # noqa: E402
import speedups  # noqa: E402
import stack  # noqa: E402

from hack.localcluster.postgres import LocalPostgres  # noqa: E402

DRAIN_LIMIT_SECONDS = 300.0


def _floor() -> Any:
    spec = importlib.util.spec_from_file_location(
        "durable_floor", REPO / "bench/durable_floor/floor.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


floor = _floor()


# --- one load ---------------------------------------------------------------------
def run_load(url: str, mode: str, value: int, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(HERE / "loadgen.py"), url, mode, str(value), str(seconds)],
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def measure(
    servers: stack.Stack, db_url: str, postmaster: int, mode: str, value: int, seconds: float
) -> dict[str, Any]:
    asyncio.run(database.empty_tables(db_url))
    load_avg = Path("/proc/loadavg").read_text().split()[0]
    pids = servers.pids
    cpu_before = {name: floor.process_cpu(pid) for name, pid in pids.items()}
    pg_before = floor.postgres_cpu(postmaster)
    load = run_load(servers.ingest_url, mode, value, seconds)
    load_ended = datetime.now().astimezone()
    drain = asyncio.run(database.wait_final(db_url, DRAIN_LIMIT_SECONDS))
    cpu = {name: floor.process_cpu(pid) - cpu_before[name] for name, pid in pids.items()}
    cpu["postgres"] = floor.postgres_cpu_between(pg_before, floor.postgres_cpu(postmaster))
    stored = asyncio.run(database.tally(db_url, load_ended))
    accepted = max(1, load["accepted"])
    per_alert_us = {name: seconds_ / accepted * 1e6 for name, seconds_ in cpu.items()}
    return {
        "mode": mode,
        "value": value,
        "load_average": load_avg,
        **load,
        **stored,
        "drain_s": drain,
        "finished_per_s_during_load": stored["finished_during_load"] / load["seconds"],
        "finished_per_s_end_to_end": stored["finished"] / max(stored["span_s"], 1e-9),
        "missing": load["accepted"] - stored["finished"],
        "cpu_us_per_alert": per_alert_us,
        "cpu_us_per_alert_total": sum(per_alert_us.values()),
        "loadgen_cpu_us_per_alert": load["loadgen_cpu_s"] / accepted * 1e6,
    }


# --- the floor ---------------------------------------------------------------------
_FLOOR_RATE = re.compile(r"([\d,]+) alerts/s; p50 ([\d.]+) ms, p99 ([\d.]+) ms; errors (\d+)")
_FLOOR_CPU = re.compile(r"handler (\d+) µs \+ PostgreSQL (\d+) µs = (\d+) µs")


def run_floor(url_file: Path, connections: int, alerts: int) -> dict[str, Any]:
    load_avg = Path("/proc/loadavg").read_text().split()[0]
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench/durable_floor/floor.py"),
            "--database-url-file",
            str(url_file),
            "--client",
            "raw",
            "--concurrency",
            str(connections),
            "--alerts",
            str(alerts),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    rate, cpu = _FLOOR_RATE.search(out), _FLOOR_CPU.search(out)
    if rate is None or cpu is None:
        raise RuntimeError(f"unexpected floor output: {out}")
    return {
        "connections": connections,
        "load_average": load_avg,
        "accepted_per_s": float(rate[1].replace(",", "")),
        "p50_ms": float(rate[2]),
        "p99_ms": float(rate[3]),
        "errors": int(rate[4]),
        "cpu_us_per_alert": {"handler": int(cpu[1]), "postgres": int(cpu[2])},
        "cpu_us_per_alert_total": int(cpu[3]),
    }


# --- printing ----------------------------------------------------------------------
def print_durable(label: str, r: dict[str, Any]) -> None:
    cpu = r["cpu_us_per_alert"]
    others = {k: v for k, v in r["statuses"].items() if k != "202"}
    print(
        f"{label:<22} accepted {r['accepted_per_s']:>6,.0f}/s p50 {r['p50_ms']:6.1f} "
        f"p99 {r['p99_ms']:7.1f} ms | finished {r['finished_per_s_during_load']:>6,.0f}/s "
        f"during load, {r['finished_per_s_end_to_end']:>6,.0f}/s end to end, drain "
        f"{max(0.0, r['last_finish_after_load_s']):5.1f} s, alert→finished p50 "
        f"{r['alert_to_finished_p50_ms']:,.0f} p99 {r['alert_to_finished_p99_ms']:,.0f} ms | "
        f"CPU µs/alert router {cpu['router']:.0f} + runtime {cpu['runtime']:.0f} + "
        f"postgres {cpu['postgres']:.0f} = {r['cpu_us_per_alert_total']:.0f} "
        f"(load gen {r['loadgen_cpu_us_per_alert']:.0f}) | accepted {r['accepted']:,} "
        f"finished {r['finished']:,} missing {r['missing']} other answers {others or 0} | "
        f"load {r['load_average']}",
        flush=True,
    )


def print_floor(r: dict[str, Any]) -> None:
    cpu = r["cpu_us_per_alert"]
    print(
        f"{'floor closed ' + str(r['connections']):<22} accepted {r['accepted_per_s']:>6,.0f}/s "
        f"p50 {r['p50_ms']:6.1f} p99 {r['p99_ms']:7.1f} ms | CPU µs/alert handler "
        f"{cpu['handler']} + postgres {cpu['postgres']} = {r['cpu_us_per_alert_total']} | "
        f"errors {r['errors']} | load {r['load_average']}",
        flush=True,
    )


# --- modes -------------------------------------------------------------------------
LOADS = ("closed:16", "closed:64", "open:1500")


def parse_load(text: str) -> tuple[str, int]:
    mode, _, value = text.partition(":")
    if mode not in ("closed", "open") or not value.isdigit():
        raise argparse.ArgumentTypeError(f"a load is closed:CONNECTIONS or open:RATE, not {text}")
    return mode, int(value)


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"durable": {}, "floor": {}}
    with tempfile.TemporaryDirectory(prefix="kubesoar-durable-bench-pg-") as state:
        server = LocalPostgres(Path(state), durable=True)
        server.up()
        try:
            url = server.database_url
            url_file = Path(state) / "bench-database-url"
            url_file.touch(mode=0o600)
            url_file.write_text(url)
            asyncio.run(database.prepare(url))
            # The postmaster, found as a backend's parent; prints fsync and synchronous_commit.
            postmaster = asyncio.run(floor.postmaster_pid(url))
            if not args.no_floor:
                for connections in (16, 64):
                    result = run_floor(url_file, connections, args.floor_alerts)
                    results["floor"][f"closed {connections}"] = result
                    print_floor(result)
            servers = stack.start(url, speedups=speedups_of(args))
            print(f"speed-ups: {', '.join(speedups_of(args)) or 'none'}")
            try:
                for mode, value in args.loads:
                    label = f"closed {value}" if mode == "closed" else f"open {value}/s"
                    result = measure(servers, url, postmaster, mode, value, args.seconds)
                    results["durable"][label] = result
                    print_durable(f"durable {label}", result)
                results["router_warnings"] = len(servers.log_records("router", "warning"))
                results["errors_logged"] = len(
                    servers.log_records("router", "error", "critical")
                ) + len(servers.log_records("runtime", "error", "critical"))
            finally:
                servers.stop()
        finally:
            server.down()
    print(
        f"log records: router warnings {results['router_warnings']}, "
        f"errors (router + runtime) {results['errors_logged']}"
    )
    return results


def run_profile(args: argparse.Namespace) -> None:
    """cProfile the router and the runtime under closed loop at 16 connections and print
    where each spends its time. The profiler slows both: its alerts/s are not figures."""
    import pstats

    out_dir = Path(args.args[0]) if args.args else Path(tempfile.mkdtemp())
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kubesoar-durable-bench-pg-") as state:
        server = LocalPostgres(Path(state), durable=True)
        server.up()
        try:
            url = server.database_url
            asyncio.run(database.prepare(url))
            postmaster = asyncio.run(floor.postmaster_pid(url))
            servers = stack.start(
                url,
                speedups=speedups_of(args),
                profile_dir=out_dir,
            )
            try:
                result = measure(servers, url, postmaster, "closed", 16, args.seconds)
                print_durable("under the profiler", result)
            finally:
                servers.stop()
        finally:
            server.down()
    for name in ("router", "runtime"):
        path = out_dir / f"{name}.prof"
        print(f"\n===== {name} ({path}) =====")
        stats = pstats.Stats(str(path))
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(50)


def speedups_of(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(name for name in ("uvloop", "orjson") if getattr(args, name))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["all", "profile", "slice"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load")
    parser.add_argument(
        "--loads",
        type=lambda text: [parse_load(part) for part in text.split(",")],
        default=[parse_load(load) for load in LOADS],
        help=f"comma-separated, default {','.join(LOADS)}",
    )
    parser.add_argument("--floor-alerts", type=int, default=20_000)
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument("--alerts", type=int, default=200, help="slice: alerts to send")
    parser.add_argument("--database-url-file", type=Path, help="slice: a migrated database")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    speedups.add_flags(parser)
    args = parser.parse_args()
    if args.what == "all":
        results = run_all(args)
    elif args.what == "profile":
        run_profile(args)
        return
    else:
        if args.database_url_file is None:
            parser.error("slice needs --database-url-file")
        url = args.database_url_file.read_text().strip()
        servers = stack.start(url, speedups=speedups_of(args))
        try:
            results = asyncio.run(slice_check.run(servers, url, args.alerts))
        finally:
            servers.stop()
    if args.json:
        print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
