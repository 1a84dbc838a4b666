"""`kubesoar router`: serve alert ingest for the AlertSources of one, some or all namespaces."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from kubesoar_router import logs, statuswriter
from kubesoar_router.app import create_ingest_app, create_metrics_app, tune_gc
from kubesoar_router.ingest import BODY_TIMEOUT_SECONDS, DEFAULT_MAX_BODY_BYTES, Router
from kubesoar_router.kubeapi import KubeApi
from kubesoar_router.snapshot import Snapshot
from kubesoar_router.watch import Watcher

logger = logging.getLogger("kubesoar.router")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kubesoar router", description=__doc__)
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster config)")
    parser.add_argument("--listen", default="0.0.0.0:8081", help="ingest address host:port")
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="namespace to serve (repeatable); omit or 'all' for every namespace",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=9090, help="port for /metrics (0: on the ingest port)"
    )
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=BODY_TIMEOUT_SECONDS,
        help="seconds a request body may take to arrive (then 408)",
    )
    parser.add_argument(
        "--status-interval",
        type=float,
        default=statuswriter.DEFAULT_INTERVAL_SECONDS,
        help="seconds between counter writes to AlertSource status (0 turns them off)",
    )
    parser.add_argument(
        "--caller-key-file",
        type=Path,
        help="the operator's signing key: runtime pods accept runs only with tokens made from it",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(list(argv))


def split_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"kubesoar router: --listen must be host:port, got {text!r}")
    return host.strip("[]"), int(port)


async def serve(args: argparse.Namespace) -> None:
    host, port = split_listen(args.listen)
    namespaces = [n for n in args.namespace if n != "all"] or None
    api = KubeApi.from_config(args.kubeconfig)
    router = Router(
        snapshot=Snapshot(), max_body_bytes=args.max_body_bytes, body_timeout=args.body_timeout
    )
    if args.caller_key_file is not None:
        router.caller_key = args.caller_key_file.read_bytes().strip()
    else:
        logger.warning("no --caller-key-file: runtime pods will refuse this router's runs")
    # No access log: a line per request (JSON-formatted) would cost more than routing the
    # alert; the metrics count requests and refusals are logged with their reason.
    runners = [
        web.AppRunner(
            create_ingest_app(router, serve_metrics=args.metrics_port == 0), access_log=None
        )
    ]
    if args.metrics_port:
        runners.append(web.AppRunner(create_metrics_app(router), access_log=None))
    for runner in runners:
        await runner.setup()
    await web.TCPSite(runners[0], host, port).start()
    if args.metrics_port:
        await web.TCPSite(runners[1], host, args.metrics_port).start()
    logger.info(
        "router listening", extra={"listen": args.listen, "namespaces": namespaces or "all"}
    )
    tune_gc()
    watcher = Watcher(api, router.snapshot, namespaces)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tasks = [asyncio.create_task(watcher.start())]
    if args.status_interval > 0:
        tasks.append(
            asyncio.create_task(statuswriter.run(api, router.counters, args.status_interval))
        )
    try:
        await stop.wait()
    finally:
        logger.info("router stopping")
        router.snapshot.synced = False  # turn unready first, so the Service stops sending
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await watcher.stop()
        if args.status_interval > 0:
            await statuswriter.flush(api, router.counters)
        for runner in runners:
            await runner.cleanup()
        await api.close()


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    logs.configure(args.log_level)
    asyncio.run(serve(args))
    return 0
