"""A drain window that ends with runs still queued or running does not lose
them silently: each is marked `abandoned` in its run record, counted in the
report and in `kubesoar_runs_total{status="abandoned"}`, and named in a
WARNING log line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from kubesoar._engine import ABANDONED_ERROR
from kubesoar._server import RuntimeServer
from kubesoar._settings import RuntimeSettings

STUCK_MODULE = """\
import asyncio
from kubesoar import playbook

gate = asyncio.Event()

@playbook("webhook")
async def stuck(alert):
    await gate.wait()  # never set: the drain window ends first
"""


async def test_runs_left_when_the_drain_window_ends_are_abandoned_loudly(
    tmp_path: Path,
    write_module: Callable[[str, str], Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    write_module("drain_stuck", STUCK_MODULE)
    settings = RuntimeSettings.from_env(
        {
            "KUBESOAR_WORKSPACE": str(tmp_path),
            "KUBESOAR_MODULE": "drain_stuck",
            "KUBESOAR_PORT": "0",
            "KUBESOAR_CONCURRENCY": "1",
            "KUBESOAR_QUEUE_SIZE": "5",
            "KUBESOAR_DRAIN_SECONDS": "0.01",  # the gate never opens
        }
    )
    server = RuntimeServer(settings)
    await server.start()
    assert server.service is not None
    service = server.service
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        ids = []
        for index in range(3):
            body = {"idempotencyKey": f"stuck-{index}", "alert": {}}
            answer = await client.post("/v1/runs", json=body)
            assert answer.status_code == 202
            ids.append(answer.json()["runId"])
        for _ in range(500):  # the single worker picks up the first run
            if (await client.get(f"/v1/runs/{ids[0]}")).json()["status"] == "running":
                break
            await asyncio.sleep(0.01)
        assert (await client.get(f"/v1/runs/{ids[0]}")).json()["status"] == "running"

    caplog.set_level(logging.INFO, logger="kubesoar")
    unfinished = await server.stop()

    assert unfinished == 3
    for run_id in ids:
        run = service.engine.get(run_id)
        assert run is not None and run.status == "abandoned" and run.done
        assert run.error == ABANDONED_ERROR
        assert run.finished is not None
    assert service.engine.get(ids[0]).started is not None  # type: ignore[union-attr]
    assert service.engine.get(ids[2]).started is None  # type: ignore[union-attr]
    runs = service.report()["runs"]
    assert runs["total"] == 3 and runs["failed"] == 3 and runs["abandoned"] == 3
    assert runs["succeeded"] == 0 and runs["lastError"] == ABANDONED_ERROR
    assert 'kubesoar_runs_total{status="abandoned"} 3.0' in service.metrics.render().decode()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for run_id in ids:
        assert sum(run_id in message and "abandoned" in message for message in warnings) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "drain timed out: 3 accepted runs did not finish" in errors


async def test_no_abandoned_key_until_a_run_is_abandoned(
    tmp_path: Path, write_module: Callable[[str, str], Path]
) -> None:
    write_module("drain_idle", STUCK_MODULE)
    settings = RuntimeSettings.from_env(
        {"KUBESOAR_WORKSPACE": str(tmp_path), "KUBESOAR_MODULE": "drain_idle", "KUBESOAR_PORT": "0"}
    )
    server = RuntimeServer(settings)
    await server.start()
    assert await server.stop() == 0
    assert server.service is not None
    assert "abandoned" not in server.service.report()["runs"]
