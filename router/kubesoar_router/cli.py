"""`kubesoar router`: serve alert ingest for the AlertSources of one, some or all namespaces."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web
from kubesoar_store import DatabaseUrlError, StoreError
from kubesoar_store.url import ENV_URL, ENV_URL_FILE, resolve_url

from kubesoar_router import logs, statuswriter
from kubesoar_router.app import create_ingest_app, create_metrics_app, tune_gc
from kubesoar_router.dispatcher import DispatchPolicy
from kubesoar_router.durable import DEFAULT_MAX_QUEUED_PER_PLAYBOOK, open_durable
from kubesoar_router.housekeeping import NamespaceRetention, Retention, parse_namespace_retention
from kubesoar_router.ingest import BODY_TIMEOUT_SECONDS, DEFAULT_MAX_BODY_BYTES, Router
from kubesoar_router.kubeapi import KubeApi
from kubesoar_router.snapshot import Snapshot
from kubesoar_router.watch import Watcher

logger = logging.getLogger("kubesoar.router")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


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
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help=f"largest alert body accepted, larger ones get 413 (default {DEFAULT_MAX_BODY_BYTES})",
    )
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
    database = parser.add_argument_group(
        "system of record",
        "with a database every accepted alert and run is kept in PostgreSQL and dispatched "
        "from there (docs/operations.md); without one, alerts go straight to runtime pods",
    )
    database.add_argument(
        "--database-url-file",
        type=Path,
        help=f"file holding the postgresql:// URL, e.g. a mounted Secret (or ${ENV_URL_FILE})",
    )
    database.add_argument(
        "--database-url",
        help=f"postgresql:// URL (visible in the process list: prefer the file; or ${ENV_URL})",
    )
    database.add_argument(
        "--advertise-url",
        help="this replica's base URL as runtime pods reach it, for their run reports "
        "(default: http://$KUBESOAR_POD_IP:<listen port>)",
    )
    database.add_argument(
        "--lease-seconds",
        type=float,
        default=DispatchPolicy.lease_seconds,
        help="a run whose pod neither heartbeats nor reports for this long is redelivered",
    )
    database.add_argument(
        "--database-wait-seconds",
        type=float,
        default=300.0,
        help="how long to wait at start for the database to be reachable and migrated",
    )
    database.add_argument(
        "--retention-days",
        type=float,
        default=Retention.retention_days,
        help="alerts and their runs older than this are deleted (0: none by age)",
    )
    database.add_argument(
        "--max-alerts-per-namespace",
        type=int,
        default=Retention.max_alerts_per_namespace,
        help="keep at most this many alerts (with their runs) per namespace (0: no limit)",
    )
    database.add_argument(
        "--namespace-retention",
        action="append",
        default=[],
        type=_namespace_retention,
        metavar="NS=DAYS[,MAX_ALERTS]",
        help="a namespace's own retention (repeatable), e.g. acme=90,50000; an empty part"
        " keeps the default, 0 means no limit",
    )
    database.add_argument(
        "--max-queued-per-playbook",
        type=int,
        default=DEFAULT_MAX_QUEUED_PER_PLAYBOOK,
        help="queued runs of one Playbook above which ingest answers 429",
    )
    runs_api = parser.add_argument_group(
        "runs API",
        "serve runs.kubesoar.dev (kubectl get runs/alerts) over HTTPS to the cluster's "
        "aggregator; needs the database (docs/operations.md)",
    )
    runs_api.add_argument("--api-listen", help="HTTPS address host:port, e.g. 0.0.0.0:8443")
    runs_api.add_argument("--api-tls-cert-file", type=Path, help="serving certificate (PEM)")
    runs_api.add_argument("--api-tls-key-file", type=Path, help="its private key (PEM)")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=LOG_LEVELS,
        help="DEBUG, INFO, WARNING or ERROR (default INFO)",
    )
    return parser.parse_args(list(argv))


def _namespace_retention(text: str) -> tuple[str, NamespaceRetention]:
    try:
        return parse_namespace_retention(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def split_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"kubesoar router: --listen must be host:port, got {text!r}")
    return host.strip("[]"), int(port)


def database_url(args: argparse.Namespace) -> str | None:
    """The configured database URL, or None when the router runs without one."""
    configured = (args.database_url, args.database_url_file)
    if configured == (None, None) and not (os.environ.get(ENV_URL) or os.environ.get(ENV_URL_FILE)):
        return None
    return resolve_url(args.database_url, args.database_url_file)


def advertise_url(args: argparse.Namespace, port: int) -> str:
    if args.advertise_url:
        return str(args.advertise_url).rstrip("/")
    pod_ip = os.environ.get("KUBESOAR_POD_IP")
    if not pod_ip:
        raise SystemExit(
            "kubesoar router: with a database, runtime pods report back to the router: "
            "pass --advertise-url or set KUBESOAR_POD_IP"
        )
    host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
    return f"http://{host}:{port}"


async def serve(args: argparse.Namespace) -> None:
    async with contextlib.AsyncExitStack() as stack:
        await _serve(args, stack)


async def _serve(args: argparse.Namespace, stack: contextlib.AsyncExitStack) -> None:
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
    url = database_url(args)
    if url is not None:
        router.durable = await stack.enter_async_context(
            open_durable(
                url,
                router.snapshot,
                report_url=advertise_url(args, port),
                caller_key=router.caller_key,
                policy=DispatchPolicy(lease_seconds=args.lease_seconds),
                max_queued_per_playbook=args.max_queued_per_playbook,
                retention=Retention(
                    retention_days=args.retention_days,
                    max_alerts_per_namespace=args.max_alerts_per_namespace,
                    namespaces=dict(args.namespace_retention),
                ),
                wait_seconds=args.database_wait_seconds,
                metrics=router.metrics,
            )
        )
        logger.info("system of record connected: alerts are committed before 202")
    else:
        logger.warning("no database: alerts go straight to runtime pods (not durable)")
    if args.api_listen:
        await _start_runs_api(args, api, router, stack)
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


async def _start_runs_api(
    args: argparse.Namespace, api: KubeApi, router: Router, stack: contextlib.AsyncExitStack
) -> None:
    from kubesoar_router.api import server  # only a router that serves the API needs it

    if router.durable is None:
        raise SystemExit(
            "kubesoar router: --api-listen serves the database: pass --database-url-file"
        )
    if args.api_tls_cert_file is None or args.api_tls_key_file is None:
        raise SystemExit(
            "kubesoar router: --api-listen needs --api-tls-cert-file and --api-tls-key-file"
        )
    host, port = split_listen(args.api_listen)
    runner = await server.start(
        router.durable.pool, api, host=host, port=port,
        cert_file=args.api_tls_cert_file, key_file=args.api_tls_key_file,
    )  # fmt: skip
    stack.push_async_callback(runner.cleanup)
    logger.info("runs API listening", extra={"listen": args.api_listen})


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    logs.configure(args.log_level)
    try:
        asyncio.run(serve(args))
    except StoreError as exc:
        # No database URL, the database unreachable or not migrated: one clear line
        # (URL passwords are scrubbed by the store), not a traceback.
        print(f"kubesoar router: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, DatabaseUrlError) else 1
    return 0
