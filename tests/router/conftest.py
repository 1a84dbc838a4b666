"""Fixtures for the router tests: real runtime servers and a router on loopback.

`runtime_factory` starts `python -m kubesoar runtime` with a tiny playbook module
on its own 127.x address (as the local node agent would run a pod); `router_server`
serves an in-process router whose snapshot the test builds directly.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubesoar_router.app import create_ingest_app
from kubesoar_router.ingest import Router
from kubesoar_router.snapshot import Endpoint
from router_objects import TINY_PLAYBOOK, free_port, serve


@dataclass
class RuntimeProcess:
    host: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def report(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/v1/report", timeout=5).json()

    def runs_total(self) -> int:
        """Finished runs (the runtime counts a run when it ends; wait for yours first)."""
        return int(self.report()["runs"]["total"])

    def run(self, run_id: str) -> dict[str, Any] | None:
        """The run once it finished (polled, at most 10 s), or None if this runtime
        never had it."""
        deadline = time.monotonic() + 10
        while True:
            response = httpx.get(f"{self.url}/v1/runs/{run_id}", timeout=5)
            if response.status_code == 404:
                return None
            run: dict[str, Any] = response.json()
            if run["status"] in {"succeeded", "failed"} or time.monotonic() > deadline:
                return run
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


_next_host = iter(range(10, 250))


@pytest.fixture
def runtime_factory(tmp_path: Path) -> Iterator[Callable[..., RuntimeProcess]]:
    started: list[RuntimeProcess] = []

    def start(
        code: str = TINY_PLAYBOOK, *, queue_size: int = 100, env: dict[str, str] | None = None
    ) -> RuntimeProcess:
        host = f"127.0.{os.getpid() % 200 + 10}.{next(_next_host)}"
        workspace = tmp_path / f"ws-{host}"
        (workspace / "src").mkdir(parents=True)
        (workspace / "src" / "tinybook.py").write_text(textwrap.dedent(code))
        port = free_port(host)
        env = {
            **os.environ,
            "KUBESOAR_POD_IP": host,
            "KUBESOAR_PORT": str(port),
            "KUBESOAR_WORKSPACE": str(workspace),
            "KUBESOAR_MODULE": "tinybook",
            "KUBESOAR_QUEUE_SIZE": str(queue_size),
            "KUBESOAR_DRAIN_SECONDS": "1",
            **(env or {}),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "kubesoar", "runtime"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        runtime = RuntimeProcess(host, port, process)
        started.append(runtime)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"runtime exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{runtime.url}/readyz", timeout=1).status_code == 200:
                    return runtime
            time.sleep(0.1)
        raise RuntimeError("runtime did not become ready within 30s")

    yield start
    for runtime in started:
        runtime.stop()


@pytest.fixture
async def router_server() -> AsyncIterator[Callable[..., Any]]:
    """`await start(router)` -> base URL of a real aiohttp server for that router."""
    stack = contextlib.AsyncExitStack()

    async def start(router: Router) -> str:
        return await stack.enter_async_context(serve(create_ingest_app(router, serve_metrics=True)))

    async with stack:
        yield start
