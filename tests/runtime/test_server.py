"""The runtime server over real HTTP on loopback: the report and probes,
400s with reasons, idempotent replays, backpressure (429), load errors, and
SIGTERM draining of a real `python -m kubesoar runtime` subprocess with no
accepted run lost."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubesoar._idempotency import DEFAULT_MAX_ENTRIES, IdempotencyCache
from kubesoar._server import RuntimeServer
from kubesoar._settings import RuntimeSettings, SettingsError
from runtime_procs import start_runtime_process, wait_until_ready

GATED_MODULE = """\
import asyncio
from kubesoar import action, playbook

gate = asyncio.Event()
calls = []

@action(name="vt.lookup", retries=1, retry_backoff=0.0)
async def lookup(ip):
    if not calls.count(ip):
        calls.append(ip)
        raise ConnectionError("first try fails")
    return {"ip": ip, "malicious": False}

@playbook("webhook", conditions={"severity": ["high", "critical"]}, order=1,
          description="enrich high alerts")
async def enrich(alert, ctx):
    await gate.wait()
    return [await lookup(ip) for ip in alert.iocs.ips]

@playbook("webhook", conditions={"tags": "never"}, order=2)
async def unmatched(alert):
    return "ran"
"""


def _settings(tmp_path: Path, module: str, **overrides: Any) -> RuntimeSettings:
    env = {
        "KUBESOAR_WORKSPACE": str(tmp_path),
        "KUBESOAR_MODULE": module,
        "KUBESOAR_COMMIT": "abc123",
        "KUBESOAR_PORT": "0",
        "KUBESOAR_SECRETS_DIR": str(tmp_path / "secrets"),
        **{f"KUBESOAR_{k.upper()}": str(v) for k, v in overrides.items()},
    }
    return RuntimeSettings.from_env(env)


@pytest.fixture
async def start_runtime(
    tmp_path: Path, write_module: Callable[[str, str], Path]
) -> AsyncIterator[Callable[..., Any]]:
    servers: list[RuntimeServer] = []
    clients: list[httpx.AsyncClient] = []

    async def start(
        module: str, code: str, **overrides: Any
    ) -> tuple[RuntimeServer, httpx.AsyncClient]:
        write_module(module, code)
        server = RuntimeServer(_settings(tmp_path, module, **overrides))
        await server.start()
        servers.append(server)
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=10)
        clients.append(client)
        return server, client

    yield start
    for client in clients:
        await client.aclose()
    for server in servers:
        module = sys.modules.get(server.settings.module)
        if module is not None and hasattr(module, "gate"):
            module.gate.set()
        await server.stop()


def _run_body(key: str, **alert: Any) -> dict[str, Any]:
    return {
        "idempotencyKey": key,
        "correlationId": f"corr-{key}",
        "alert": {"severity": "high", "iocs": {"ips": ["10.0.0.1"]}, **alert},
        "playbooks": None,
    }


async def _wait_status(client: httpx.AsyncClient, run_id: str, wanted: set[str]) -> dict[str, Any]:
    for _ in range(500):
        run = (await client.get(f"/v1/runs/{run_id}")).json()
        if run["status"] in wanted:
            return run
        await asyncio.sleep(0.01)
    raise AssertionError(f"run {run_id} never reached {wanted}: {run}")


async def test_report_probes_and_a_full_run(start_runtime: Any) -> None:
    _, client = await start_runtime("served_ok", GATED_MODULE)
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
    report = (await client.get("/v1/report")).json()
    assert report == {
        "commit": "abc123",
        "module": "served_ok",
        "entryPoints": [
            {
                "name": "enrich",
                "trigger": "webhook",
                "conditions": {"severity": ["high", "critical"]},
                "order": 1,
                "priority": 0,
                "description": "enrich high alerts",
                "fields": "kubesoar",
            },
            {
                "name": "unmatched",
                "trigger": "webhook",
                "conditions": {"tags": "never"},
                "order": 2,
                "priority": 0,
                "description": "",
                "fields": "kubesoar",
            },
        ],
        "loadError": None,
        "runs": {"total": 0, "succeeded": 0, "failed": 0, "lastRunTime": None, "lastError": None},
    }
    sys.modules["served_ok"].gate.set()
    answer = await client.post("/v1/runs", json=_run_body("k1"))
    assert answer.status_code == 202
    accepted = answer.json()
    assert accepted["accepted"] == ["enrich"]
    run = await _wait_status(client, accepted["runId"], {"succeeded", "failed"})
    assert run["status"] == "succeeded"
    assert run["correlationId"] == "corr-k1"
    assert run["results"][0]["result"] == [{"ip": "10.0.0.1", "malicious": False}]
    assert [(a["action"], a["attempt"], a["status"]) for a in run["actions"]] == [
        ("vt.lookup", 1, "failed"),
        ("vt.lookup", 2, "succeeded"),
    ]
    # Nothing matches a low alert: accepted by nobody, no run.
    low = await client.post("/v1/runs", json=_run_body("k2", severity="low"))
    assert low.status_code == 202 and low.json() == {"runId": None, "accepted": []}
    # Named delivery runs exactly those entry points.
    named = await client.post("/v1/runs", json={**_run_body("k3"), "playbooks": ["unmatched"]})
    assert named.json()["accepted"] == ["unmatched"]
    await _wait_status(client, named.json()["runId"], {"succeeded"})
    report = (await client.get("/v1/report")).json()
    assert report["runs"]["total"] == 2 and report["runs"]["succeeded"] == 2
    metrics = (await client.get("/metrics")).text
    assert 'kubesoar_runs_total{status="succeeded"} 2.0' in metrics
    assert 'kubesoar_action_attempts_total{action="vt.lookup",status="failed"} 1.0' in metrics
    assert (await client.get("/v1/runs/nope")).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        (b"{not json", 400, "invalid_json", "invalid JSON at line 1"),
        (b"[]", 400, "invalid_body", "must be a JSON object"),
        (json.dumps({"alert": {}}).encode(), 400, "invalid_field", "idempotencyKey is required"),
        (
            json.dumps({"idempotencyKey": "k", "alert": "x"}).encode(),
            400,
            "invalid_field",
            "alert must be a JSON object",
        ),
        (
            json.dumps({"idempotencyKey": "k", "alert": {"severity": "urgent"}}).encode(),
            400,
            "invalid_alert",
            "alert.severity",
        ),
        (
            json.dumps({"idempotencyKey": "k", "alert": {}, "playbooks": "enrich"}).encode(),
            400,
            "invalid_field",
            "playbooks must be null or a list",
        ),
        (
            json.dumps({"idempotencyKey": "k", "alert": {}, "playbooks": ["ghost"]}).encode(),
            400,
            "unknown_playbooks",
            "unknown entry points: ghost",
        ),
        (
            json.dumps({"idempotencyKey": "k" * 300, "alert": {}}).encode(),
            400,
            "invalid_field",
            "idempotencyKey must be a string",
        ),
        (b"{" + b" " * 5000 + b"}", 413, "body_too_large", "larger than 4096 bytes"),
    ],
)
async def test_bad_requests_get_a_reason(
    start_runtime: Any, body: bytes, status: int, code: str, message: str
) -> None:
    _, client = await start_runtime("served_bad", GATED_MODULE, max_body_bytes=4096)
    answer = await client.post(
        "/v1/runs", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == status
    assert answer.json()["error"] == code
    assert message in answer.json()["message"]


async def test_replay_returns_first_answer_and_runs_once(start_runtime: Any) -> None:
    _, client = await start_runtime("served_replay", GATED_MODULE)
    module = sys.modules["served_replay"]
    first, second = await asyncio.gather(
        client.post("/v1/runs", json=_run_body("same")),
        client.post("/v1/runs", json=_run_body("same")),
    )
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    module.gate.set()
    await _wait_status(client, first.json()["runId"], {"succeeded"})
    third = await client.post("/v1/runs", json=_run_body("same", severity="critical"))
    assert third.json() == first.json()
    report = (await client.get("/v1/report")).json()
    assert report["runs"]["total"] == 1
    assert module.calls == ["10.0.0.1"]  # one run, not three


async def test_full_queue_is_429_with_retry_after(start_runtime: Any) -> None:
    _, client = await start_runtime("served_busy", GATED_MODULE, concurrency=1, queue_size=1)
    running = (await client.post("/v1/runs", json=_run_body("a"))).json()
    await _wait_status(client, running["runId"], {"running"})
    queued = await client.post("/v1/runs", json=_run_body("b"))
    assert queued.status_code == 202
    refused = await client.post("/v1/runs", json=_run_body("c"))
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["error"] == "queue_full"
    assert "kubesoar_queue_depth 1.0" in (await client.get("/metrics")).text
    # A refusal is not remembered: the retry is admitted once there is room.
    sys.modules["served_busy"].gate.set()
    await _wait_status(client, queued.json()["runId"], {"succeeded"})
    retried = await client.post("/v1/runs", json=_run_body("c"))
    assert retried.status_code == 202 and retried.json()["accepted"] == ["enrich"]


async def test_load_error_is_reported_and_not_ready(start_runtime: Any) -> None:
    _, client = await start_runtime("served_broken", "import os\n\nraise KeyError('API_URL')\n")
    ready = await client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["message"] == "module not loaded"
    report = (await client.get("/v1/report")).json()
    assert report["loadError"] == {
        "type": "KeyError",
        "message": "'API_URL'",
        "file": "served_broken.py",
        "line": 3,
    }
    assert report["entryPoints"] == []
    refused = await client.post("/v1/runs", json=_run_body("x"))
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"


DRAIN_MODULE = """\
import asyncio, os, pathlib
from kubesoar import playbook

OUT = pathlib.Path(os.environ["DRAIN_TEST_DIR"])

@playbook("webhook")
async def slow(alert):
    # Hold every run until the test releases them, so the drain has work.
    while not (OUT / "release").exists():
        await asyncio.sleep(0.02)
    (OUT / f"done-{alert.id}").write_text("ok")
    return alert.id
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_sigterm_drains_a_real_subprocess(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "drainer.py").write_text(DRAIN_MODULE)
    port = _free_port()
    env = {
        **os.environ,
        "KUBESOAR_WORKSPACE": str(tmp_path),
        "KUBESOAR_MODULE": "drainer",
        "KUBESOAR_POD_IP": "127.0.0.1",
        "KUBESOAR_PORT": str(port),
        "KUBESOAR_CONCURRENCY": "1",
        "KUBESOAR_QUEUE_SIZE": "10",
        "KUBESOAR_DRAIN_SECONDS": "30",
        "DRAIN_TEST_DIR": str(tmp_path),
    }
    process = start_runtime_process(env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            await wait_until_ready(client, process)
            accepted = []
            for index in range(3):
                body = {"idempotencyKey": f"d{index}", "alert": {"id": f"alert-{index}"}}
                answer = await client.post("/v1/runs", json=body)
                assert answer.status_code == 202
                accepted.append(answer.json()["runId"])
            process.send_signal(signal.SIGTERM)
            for _ in range(500):
                if (await client.get("/readyz")).status_code == 503:
                    break
                await asyncio.sleep(0.01)
            assert (await client.get("/readyz")).json()["message"] == "draining"
            late = await client.post("/v1/runs", json={"idempotencyKey": "late", "alert": {}})
            assert late.status_code == 503
            # A replay of an accepted key still gets its first answer.
            replay = await client.post("/v1/runs", json={"idempotencyKey": "d0", "alert": {}})
            assert replay.status_code == 202 and replay.json()["runId"] == accepted[0]
            (tmp_path / "release").write_text("go")
        returncode = await asyncio.to_thread(process.wait, 30)
        assert returncode == 0
        done = sorted(p.name for p in tmp_path.glob("done-*"))
        assert done == ["done-alert-0", "done-alert-1", "done-alert-2"]
        logs = process.stderr.read().decode() if process.stderr else ""
        lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
        assert any(line["message"].startswith("listening on 127.0.0.1") for line in lines)
        assert any(line.get("correlationId") for line in lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


LOGGED_MODULE = """\
from kubesoar import playbook

@playbook("webhook", conditions={"severity": "high"})
async def fine(alert):
    return "ok"

@playbook("webhook", conditions={"severity": "critical"})
async def broken(alert):
    raise RuntimeError("integration down")
"""


async def test_per_run_log_lines_are_debug_unless_a_run_fails(
    start_runtime: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """At the ingest rate a log line per run costs more than the run: a succeeded run
    writes nothing at INFO (it is counted, and kept in the history); a failed one does."""
    _, client = await start_runtime("logged", LOGGED_MODULE)
    caplog.set_level(logging.INFO, logger="kubesoar")
    ok = await client.post("/v1/runs", json=_run_body("ok-1"))
    await _wait_status(client, ok.json()["runId"], {"succeeded"})
    assert [r for r in caplog.records if ok.json()["runId"] in r.getMessage()] == []
    failed = await client.post("/v1/runs", json=_run_body("bad-1", severity="critical"))
    run = await _wait_status(client, failed.json()["runId"], {"failed"})
    assert run["error"].startswith("broken:")
    lines = [r for r in caplog.records if failed.json()["runId"] in r.getMessage()]
    assert [(r.levelno, r.name) for r in lines] == [(logging.INFO, "kubesoar.engine")]
    # At DEBUG every run is visible again: accepted, started, finished.
    caplog.set_level(logging.DEBUG, logger="kubesoar")
    again = await client.post("/v1/runs", json=_run_body("ok-2"))
    await _wait_status(client, again.json()["runId"], {"succeeded"})
    messages = [r.getMessage() for r in caplog.records if again.json()["runId"] in r.getMessage()]
    assert len(messages) == 3 and "succeeded" in messages[-1]


def test_idempotency_cache_bounds_by_entries_and_age() -> None:
    now = [0.0]
    cache = IdempotencyCache(max_entries=3, ttl_seconds=60, clock=lambda: now[0])
    for index in range(4):
        cache.put(f"k{index}", 202, (f"run-{index}", ("triage",)))
    assert len(cache) == 3 and cache.get("k0") is None  # the oldest went first
    assert cache.get("k3") == (202, ("run-3", ("triage",)))
    now[0] = 61.0
    assert cache.get("k3") is None
    # The default covers retries that come seconds later at the ingest rate.
    assert DEFAULT_MAX_ENTRIES >= 50_000


async def test_replay_answers_the_first_run_from_the_compact_record(start_runtime: Any) -> None:
    server, client = await start_runtime("replayed", LOGGED_MODULE)
    first = await client.post("/v1/runs", json=_run_body("same-key"))
    again = await client.post("/v1/runs", json=_run_body("same-key"))
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() == {"runId": first.json()["runId"], "accepted": ["fine"]}
    await _wait_status(client, first.json()["runId"], {"succeeded"})
    assert (await client.get("/v1/report")).json()["runs"]["total"] == 1
    assert len(server.service.idempotency) == 1


async def test_a_full_queue_still_replays_accepted_keys(start_runtime: Any) -> None:
    """The router fails over after an unsure attempt when the retry is refused (429/503):
    that is safe only because a runtime checks the key before its queue and its draining
    state, so a refusal proves it does not hold the key."""
    _, client = await start_runtime("served_full", GATED_MODULE, concurrency=1, queue_size=1)
    running = (await client.post("/v1/runs", json=_run_body("a"))).json()
    await _wait_status(client, running["runId"], {"running"})
    queued = await client.post("/v1/runs", json=_run_body("b"))
    assert (await client.post("/v1/runs", json=_run_body("c"))).status_code == 429
    for key, first in (("a", running), ("b", queued.json())):
        replay = await client.post("/v1/runs", json=_run_body(key))
        assert replay.status_code == 202 and replay.json() == first
    sys.modules["served_full"].gate.set()


async def _slow_chunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await asyncio.sleep(0.005)  # each chunk arrives on its own, as over a real network


async def test_a_large_body_sent_in_chunks_is_read_whole(start_runtime: Any) -> None:
    """~900 KB in 64 KB chunks: the runtime reads to the end (it used to read one chunk)."""
    _, client = await start_runtime("served_large", GATED_MODULE)
    body = _run_body("large", description="x" * 900_000)
    data = json.dumps(body).encode()
    answer = await client.post(
        "/v1/runs", content=_slow_chunks(data), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 202, answer.text
    sys.modules["served_large"].gate.set()
    await _wait_status(client, answer.json()["runId"], {"succeeded"})


@pytest.mark.parametrize(("extra", "status"), [(-1, 202), (0, 202), (1, 413)])
async def test_the_body_limit_is_exact(start_runtime: Any, extra: int, status: int) -> None:
    limit = 4096
    _, client = await start_runtime(f"served_limit_{extra + 1}", GATED_MODULE, max_body_bytes=limit)
    data = json.dumps(_run_body("edge")).encode()
    data = data[:-1] + b" " * (limit + extra - len(data)) + b"}"
    assert len(data) == limit + extra
    answer = await client.post(
        "/v1/runs", content=_slow_chunks(data, 1000), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == status, answer.text


@pytest.mark.parametrize(
    "alert",
    [
        b'{"title": "t", "n": ' + b"9" * 5000 + b"}",
        b'{"title": "t", "raw": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        b'{"title": "t", "severity": Infinity}',
        b'{"title": "t", "score": 1e400}',
        b'{"title": "\\ud800"}',
    ],
)
async def test_hostile_run_bodies_are_400(start_runtime: Any, alert: bytes) -> None:
    _, client = await start_runtime("served_hostile", GATED_MODULE)
    data = b'{"idempotencyKey": "k", "playbooks": null, "alert": ' + alert + b"}"
    answer = await client.post(
        "/v1/runs", content=data, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_json"


async def test_only_callers_with_the_playbooks_token_are_served(
    start_runtime: Any, tmp_path: Path
) -> None:
    """A pod the operator rendered (KUBESOAR_CALLER_AUTH=required) serves `/v1/...` only to
    holders of its token: another tenant's pod can neither plant a run nor read the report."""
    (tmp_path / "caller-token").write_text("the-playbooks-token\n")
    _, client = await start_runtime("served_auth", GATED_MODULE, caller_auth="required")
    good = {"Authorization": "Bearer the-playbooks-token"}
    for headers in ({}, {"Authorization": "Bearer guessed"}, {"Authorization": "Basic x"}):
        planted = await client.post("/v1/runs", json=_run_body("decoy"), headers=headers)
        assert planted.status_code == 401
        assert planted.json()["error"] == "unauthorized"
        assert (await client.get("/v1/report", headers=headers)).status_code == 401
    assert (await client.get("/healthz")).status_code == 200  # probes carry no token
    assert (await client.get("/readyz")).status_code == 200
    report = await client.get("/v1/report", headers=good)
    assert report.status_code == 200 and report.json()["runs"]["total"] == 0  # no decoy ran
    accepted = await client.post("/v1/runs", json=_run_body("real"), headers=good)
    assert accepted.status_code == 202


def test_a_required_token_that_is_missing_stops_the_runtime(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "whatever", caller_auth="required")
    with pytest.raises(SettingsError, match="caller-token"):
        settings.caller_token()


async def test_a_redelivered_attempt_runs_again_on_the_same_pod(start_runtime: Any) -> None:
    """A dispatched run's next attempt is a new run even where the first one went (that
    attempt's reports were lost); the same attempt again is a replay, not a second run."""
    server, client = await start_runtime("served_attempts", GATED_MODULE)
    sys.modules["served_attempts"].gate.set()

    def dispatched(attempt: int) -> dict[str, Any]:
        return {
            "idempotencyKey": "alert-1:triage",
            "runId": "0f0e0d0c-0000-4000-8000-000000000001",
            "attempt": attempt,
            # Nobody listens there: the reports are lost, as with a pod cut off its router.
            "report": {"url": "http://127.0.0.1:9", "token": "t" * 32, "heartbeatSeconds": 60},
            "alert": {"title": "t", "severity": "high"},
        }

    first = await client.post("/v1/runs", json=dispatched(1))
    again = await client.post("/v1/runs", json=dispatched(1))
    second = await client.post("/v1/runs", json=dispatched(2))
    assert first.status_code == again.status_code == second.status_code == 202
    assert first.json()["runId"] == again.json()["runId"] == second.json()["runId"]

    async def ran_twice() -> bool:
        return server.service.report()["runs"]["total"] == 2

    for _ in range(200):
        if await ran_twice():
            break
        await asyncio.sleep(0.05)
    assert server.service.report()["runs"]["total"] == 2  # attempts 1 and 2, not the replay
    run = (await client.get("/v1/runs/0f0e0d0c-0000-4000-8000-000000000001")).json()
    assert run["attempt"] == 2 and run["idempotencyKey"] == "alert-1:triage"


async def test_queue_size_zero_means_no_run_waits(start_runtime: Any) -> None:
    """`queueSize: 0` (the CRD allows it) admits only what an idle worker takes at once;
    it must not turn into an unbounded queue (asyncio.Queue's maxsize 0)."""
    _, client = await start_runtime("served_no_queue", GATED_MODULE, queue_size=0, concurrency=1)

    def body(key: str) -> dict[str, Any]:
        return {"idempotencyKey": key, "alert": {"title": "t", "severity": "high"}}

    first = await client.post("/v1/runs", json=body("k-1"))
    for _ in range(100):  # the worker takes it (and waits on the gate)
        if (await client.get("/metrics")).text.count("kubesoar_runs_in_flight 1.0"):
            break
        await asyncio.sleep(0.02)
    second = await client.post("/v1/runs", json=body("k-2"))
    assert first.status_code == 202
    assert second.status_code == 429 and second.json()["error"] == "queue_full"
    sys.modules["served_no_queue"].gate.set()
