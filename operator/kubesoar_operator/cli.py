"""`kubesoar operator`: the Playbook operator, its artifact server and metrics, in one process.

kubesoar operator [--kubeconfig PATH] (--namespace NS ... | --all-namespaces)
    --artifact-listen 127.0.0.1:8090 --artifact-url http://operator.kubesoar-system.svc:8090
    [--signing-key-file PATH] [--system-namespace NS] [--runtime-image IMAGE]
    [--metrics-port N] [--liveness http://0.0.0.0:8081/healthz] [--state-dir DIR]
    [--status-interval SECONDS] [--verbose]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import tempfile
from collections.abc import Sequence
from pathlib import Path

import httpx
import kopf
import prometheus_client
from kubernetes.config import ConfigException
from kubesoar_store.url import resolve_url

from kubesoar_operator import (
    alertsources,
    artifact_server,
    handlers,
    jsonlog,
    refresher,
    render,
)
from kubesoar_operator.artifacts import ArtifactStore
from kubesoar_operator.gitsource import GitClient
from kubesoar_operator.kube import Kube, make_api_client
from kubesoar_operator.reconcile import Reconciler, Settings
from kubesoar_operator.runcounts import RunCounts
from kubesoar_operator.signing import DEFAULT_TTL_SECONDS, Signer

log = logging.getLogger("kubesoar_operator")


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kubesoar operator", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube)")
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="serve Playbooks and AlertSources in NS (repeatable)",
    )
    scope.add_argument("--all-namespaces", action="store_true", help="serve every namespace")
    parser.add_argument(
        "--artifact-listen",
        type=_host_port,
        default=("0.0.0.0", 8090),
        metavar="HOST:PORT",
        help="where the artifact server listens (default 0.0.0.0:8090)",
    )
    parser.add_argument(
        "--artifact-url", required=True, help="base URL at which runtime pods reach the server"
    )
    parser.add_argument("--signing-key-file", type=Path, help="artifact URL key (default random)")
    parser.add_argument(
        "--system-namespace",
        default=os.environ.get("POD_NAMESPACE", "kubesoar-system"),
        help="namespace of the operator and router pods, the only ones runtime pods' "
        "NetworkPolicy admits (default: $POD_NAMESPACE, else kubesoar-system)",
    )
    parser.add_argument(
        "--runtime-image",
        default=render.DEFAULT_IMAGE,
        help=f"image of runtime pods whose Playbook names none (default {render.DEFAULT_IMAGE})",
    )
    parser.add_argument("--metrics-port", type=int, default=0, help="0 disables metrics")
    parser.add_argument(
        "--metrics-host", default="0.0.0.0", help="address of /metrics (default 0.0.0.0)"
    )
    parser.add_argument(
        "--liveness", help="kopf liveness endpoint, e.g. http://0.0.0.0:8081/healthz"
    )
    parser.add_argument(
        "--state-dir", type=Path, help="Git cache and artifacts (default a temp dir)"
    )
    parser.add_argument(
        "--status-interval", type=float, default=10.0,
        help="seconds between status refreshes of each Playbook",
    )  # fmt: skip
    parser.add_argument(
        "--url-ttl-seconds",
        type=int,
        default=DEFAULT_TTL_SECONDS,
        help=f"how long a signed artifact URL stays valid (default {DEFAULT_TTL_SECONDS})",
    )
    parser.add_argument(
        "--router-port",
        type=int,
        default=render.ROUTER_PORT,
        help="the router pods' port, which runtime pods' NetworkPolicy lets them report to",
    )
    parser.add_argument(
        "--database-url-file",
        type=Path,
        help="the system of record's postgresql:// URL (a mounted Secret): status.runs then "
        "counts every run on record, not what the pods remember, and spec.scaling follows "
        "each Playbook's queued runs",
    )
    parser.add_argument("--peering", action="store_true", help="use kopf peering (HA standby)")
    parser.add_argument("--verbose", action="store_true", help="log at DEBUG level")
    return parser.parse_args(list(argv))


async def run(args: argparse.Namespace) -> None:
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="kubesoar-operator-"))
    store = ArtifactStore(state_dir / "artifacts")
    signer = Signer.from_file(args.signing_key_file)
    if args.signing_key_file is None:
        log.warning("no --signing-key-file: a random key; artifact URLs change on restart")
    host, port = args.artifact_listen
    runner, bound = await artifact_server.start(store, signer, host, port)
    log.info("artifact server on %s:%d", host, bound)
    if args.metrics_port:
        prometheus_client.start_http_server(args.metrics_port, addr=args.metrics_host)
    try:
        api_client = make_api_client(args.kubeconfig)
        kube = Kube(api_client)
    except (ConfigException, OSError) as exc:
        # A missing or unusable kubeconfig is an operator error, not a crash worth a traceback.
        log.error("cannot load Kubernetes credentials: %s", exc)
        await runner.cleanup()
        raise SystemExit(2) from None
    settings = Settings(
        artifact_url=args.artifact_url,
        system_namespace=args.system_namespace,
        artifact_port=bound,
        router_port=args.router_port,
        runtime_image=args.runtime_image,
        url_ttl_seconds=args.url_ttl_seconds,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with httpx.Client(trust_env=False) as http:
        reconciler = Reconciler(kube, GitClient(state_dir / "git"), store, signer, settings, http)
        if args.database_url_file is not None:
            reconciler.use_database(RunCounts(resolve_url(url_file=args.database_url_file)))
        registry = handlers.register(
            reconciler, status_interval=args.status_interval, kubeconfig=args.kubeconfig
        )
        alertsources.register(kube, registry=registry)
        refreshing = asyncio.create_task(refresher.REFRESHER.run(stop))
        try:
            await kopf.operator(
                registry=registry,
                clusterwide=args.all_namespaces,
                namespaces=args.namespaces or (),
                standalone=not args.peering,
                liveness_endpoint=args.liveness,
                stop_flag=stop,
            )
        finally:
            stop.set()
            await refreshing
            await runner.cleanup()
            if reconciler.run_counts is not None:
                reconciler.run_counts.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv or [])
    jsonlog.configure(args.verbose)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))
    return 0
