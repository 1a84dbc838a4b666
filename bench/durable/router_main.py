"""The durable bench's router process: ingest with the system of record, as `kubesoar
router` serves it, with a snapshot built in-process instead of watched.

    BENCH_DATABASE_URL=postgresql://... python bench/durable/router_main.py PORT \
        RUNTIME_HOST RUNTIME_PORT CALLER_KEY_FILE [--uvloop] [--orjson]

One bearer AlertSource `bench/siem` (dedup off), one Playbook `noop` whose entry point
takes every high/critical alert, and one ready endpoint: the runtime process. The
dispatcher's report URL is this process's own (`http://127.0.0.1:PORT`), so the runtime
reports heartbeats and results here. The URL comes from the environment, never the
command line (it holds a password). SIGTERM or SIGINT stops it cleanly, which also lets
`python -m cProfile` write its profile.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

import speedups

NAMESPACE = "bench"
SOURCE = "siem"
PLAYBOOK = "noop"
TOKEN = "bench-token"


def bench_snapshot(runtime_host: str, runtime_port: int):  # type: ignore[no-untyped-def]
    from kubesoar_router.snapshot import Snapshot, build_namespace

    snapshot = Snapshot()
    snapshot.put(
        build_namespace(
            NAMESPACE,
            alertsources=[
                {
                    "metadata": {"name": SOURCE},
                    "spec": {
                        "auth": {"bearer": {"secretRef": {"name": "s", "key": "token"}}},
                        "dedup": {"windowSeconds": 0},
                    },
                }
            ],
            secrets={"s": {"token": TOKEN.encode()}},
            playbooks=[
                {
                    "metadata": {"name": PLAYBOOK},
                    "spec": {},
                    "status": {
                        "conditions": [{"type": "Ready", "status": "True"}],
                        "playbooks": [
                            {
                                "name": PLAYBOOK,
                                "trigger": "webhook",
                                "conditions": {"severity": ["high", "critical"]},
                            }
                        ],
                    },
                }
            ],
            endpointslices=[
                {
                    "metadata": {"labels": {"kubesoar.dev/playbook": PLAYBOOK}},
                    "ports": [{"name": "http", "port": runtime_port}],
                    "endpoints": [{"addresses": [runtime_host], "conditions": {"ready": True}}],
                }
            ],
        )
    )
    snapshot.synced = True
    return snapshot


async def serve(port: int, runtime_host: str, runtime_port: int, caller_key: bytes) -> None:
    from kubesoar_router import logs
    from kubesoar_router.app import create_ingest_app, tune_gc
    from kubesoar_router.durable import open_durable
    from kubesoar_router.ingest import Router

    # As `kubesoar router` runs: JSON logs at INFO, no access log, GC tuned after start-up.
    logs.configure("INFO")
    router = Router(snapshot=bench_snapshot(runtime_host, runtime_port))
    router.caller_key = caller_key
    async with open_durable(
        os.environ["BENCH_DATABASE_URL"],
        router.snapshot,
        report_url=f"http://127.0.0.1:{port}",
        caller_key=caller_key,
    ) as durable:
        router.durable = durable
        runner = web.AppRunner(create_ingest_app(router), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        tune_gc()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        print("ready", flush=True)
        await stop.wait()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("runtime_host")
    parser.add_argument("runtime_port", type=int)
    parser.add_argument("caller_key_file", type=Path)
    speedups.add_flags(parser)
    args = parser.parse_args()
    speedups.apply(args.uvloop, args.orjson, speedups.ROUTER_JSON)
    key = args.caller_key_file.read_bytes().strip()
    asyncio.run(serve(args.port, args.runtime_host, args.runtime_port, key))


if __name__ == "__main__":
    main()
