"""Retries without waiting in tests: the `no_backoff` fixture and
`run_playbook(backoff=...)` replace the sleep actions take between attempts,
and record the schedule they asked for (`retry_backoff ** attempt`, capped
at a minute)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from kubesoar import Alert, action, playbook
from kubesoar._engine import Engine
from kubesoar._sdk import ENTRY_ATTRIBUTE, MAX_BACKOFF_SECONDS, backoff_delay
from kubesoar._server import RuntimeServer
from kubesoar._settings import RuntimeSettings
from kubesoar.testing import BackoffRecorder, assert_attempts, run_playbook

# A wait this long would hang the test, not slow it: nothing may sleep it.
HOUR = 3600.0


def _always_failing(retries: int, retry_backoff: float) -> Callable[..., object]:
    @action(name="flaky", retries=retries, retry_backoff=retry_backoff)
    async def flaky() -> None:
        raise ConnectionError("down")

    @playbook()
    async def entry(alert: Alert) -> None:
        await flaky()

    return entry


def test_backoff_delay_follows_opensoar_and_is_capped() -> None:
    assert [backoff_delay(2.0, attempt) for attempt in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert backoff_delay(10.0, 2) == MAX_BACKOFF_SECONDS == 60.0
    assert backoff_delay(0.0, 1) == 0.0


async def test_no_backoff_records_the_schedule_without_waiting(
    no_backoff: BackoffRecorder,
) -> None:
    run = await run_playbook(_always_failing(retries=3, retry_backoff=10.0), {})
    assert run.status == "failed"
    assert_attempts(run, "flaky", ["failed"] * 4)
    assert no_backoff.delays == [10.0, 60.0, 60.0]  # capped at a minute
    assert no_backoff.total == 130.0
    no_backoff.clear()
    assert no_backoff.delays == []


async def test_run_playbook_backoff_false_does_not_wait() -> None:
    run = await run_playbook(_always_failing(retries=1, retry_backoff=HOUR), {}, backoff=False)
    assert_attempts(run, "flaky", ["failed", "failed"])


async def test_run_playbook_takes_any_sleep_function() -> None:
    recorder = BackoffRecorder()
    run = await run_playbook(_always_failing(retries=2, retry_backoff=3.0), {}, backoff=recorder)
    assert_attempts(run, "flaky", ["failed", "failed", "failed"])
    assert recorder.delays == [3.0, 9.0]


async def test_an_engine_takes_a_sleep_function_and_it_wins_over_the_fixture(
    no_backoff: BackoffRecorder,
) -> None:
    mine = BackoffRecorder()
    entry = getattr(_always_failing(retries=1, retry_backoff=HOUR), ENTRY_ATTRIBUTE)
    engine = Engine([entry])
    engine.backoff_sleep = mine
    run = await engine.execute(engine.create_run(Alert(), engine.entry_points))
    assert run.status == "failed"
    assert mine.delays == [60.0] and no_backoff.delays == []


async def test_actions_outside_a_run_use_the_fixture_too(no_backoff: BackoffRecorder) -> None:
    calls: list[int] = []

    @action(retries=2, retry_backoff=HOUR)
    async def twice_broken() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("not yet")
        return "ok"

    assert await twice_broken() == "ok"
    assert no_backoff.delays == [60.0, 60.0]  # an hour, capped


FLAKY_MODULE = """\
from kubesoar import action, playbook

calls = []

@action(name="flaky", retries=2, retry_backoff=3600)
async def flaky():
    calls.append(1)
    if len(calls) < 3:
        raise ConnectionError("not yet")
    return "ok"

@playbook("webhook")
async def entry(alert):
    return await flaky()
"""


async def test_the_fixture_reaches_an_in_process_runtime(
    tmp_path: Path, write_module: Callable[[str, str], Path], no_backoff: BackoffRecorder
) -> None:
    write_module("backoff_served", FLAKY_MODULE)
    settings = RuntimeSettings.from_env(
        {
            "KUBESOAR_WORKSPACE": str(tmp_path),
            "KUBESOAR_MODULE": "backoff_served",
            "KUBESOAR_PORT": "0",
        }
    )
    server = RuntimeServer(settings)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            answer = await client.post("/v1/runs", json={"idempotencyKey": "b1", "alert": {}})
            assert answer.status_code == 202
        assert server.service is not None
        run = server.service.engine.get(answer.json()["runId"])
        assert run is not None
        for _ in range(500):
            if run.done:
                break
            await asyncio.sleep(0.01)
        assert run.status == "succeeded"
        assert no_backoff.delays == [60.0, 60.0]
        assert sys.modules["backoff_served"].calls == [1, 1, 1]
    finally:
        await server.stop()
