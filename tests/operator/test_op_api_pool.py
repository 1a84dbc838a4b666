"""The operator's API client keeps a connection for every thread that may call the API at
once (issue 16: urllib3 "Connection pool is full, discarding connection" with a pool of
10 and 16 workers). A real HTTP/1.1 server on loopback holds every request until all of
them have arrived, so the calls are concurrent by construction, not by timing."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import kopf
import pytest
from kubesoar_operator import handlers, workers
from kubesoar_operator.kube import Kube, make_api_client
from kubesoar_operator.refresher import Refresher

SECRET = json.dumps({"kind": "Secret", "data": {"k": "dg=="}}).encode()


class _AllAtOnce(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=20)
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: connections go back to the client's pool
    server: _AllAtOnce

    def do_GET(self) -> None:
        self.server.barrier.wait()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(SECRET)))
        self.end_headers()
        self.wfile.write(SECRET)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Iterator[tuple[Path, _AllAtOnce]]:
    server = _AllAtOnce(workers.API_CONNECTIONS)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    yield path, server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _call_at_once(kube: Kube, threads: int) -> list[object]:
    results: list[object] = []

    def call() -> None:
        results.append(kube.read_secret_data("ns", "s"))

    pool = [threading.Thread(target=call) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=60)
    return results


def _pool_full(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "Connection pool is full" in r.getMessage()]


def test_every_worker_thread_keeps_its_connection(
    kubeconfig: tuple[Path, _AllAtOnce], caplog: pytest.LogCaptureFixture
) -> None:
    path, _ = kubeconfig
    caplog.set_level(logging.WARNING, logger="urllib3")
    api_client = make_api_client(str(path))
    try:
        results = _call_at_once(Kube(api_client), workers.API_CONNECTIONS)
    finally:
        api_client.close()
    assert results == [{"k": "dg=="}] * workers.API_CONNECTIONS
    assert _pool_full(caplog) == []


def test_a_pool_smaller_than_the_workers_discards_connections(
    kubeconfig: tuple[Path, _AllAtOnce], caplog: pytest.LogCaptureFixture
) -> None:
    """The control: the client library's default on a 2-core machine (10) does discard."""
    path, _ = kubeconfig
    caplog.set_level(logging.WARNING, logger="urllib3")
    api_client = make_api_client(str(path), connections=10)
    try:
        _call_at_once(Kube(api_client), workers.API_CONNECTIONS)
    finally:
        api_client.close()
    assert len(_pool_full(caplog)) == workers.API_CONNECTIONS - 10


def test_the_pool_is_sized_from_the_threads_that_call() -> None:
    settings = kopf.OperatorSettings()
    handlers.configure_settings(settings)
    assert settings.execution.max_workers == workers.HANDLER_WORKERS
    assert Refresher()._max_parallel == workers.REFRESH_WORKERS
    assert workers.API_CONNECTIONS >= workers.HANDLER_WORKERS + workers.REFRESH_WORKERS
