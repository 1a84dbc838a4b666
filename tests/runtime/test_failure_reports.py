"""What a user sees when a run fails, and the CLI's own errors.

A failed entry point's record (`GET /v1/runs/{id}` of a real `kubesoar runtime`
subprocess), its pod log line and `kubesoar run`'s output carry the redacted
traceback, the playbook's own frames first as `file:line in function`. `kubesoar
run` names the secrets folder it looked in and does not retry a missing secret;
`--playbook` with an unknown name lists the valid ones; `kubesoar --version`
reads the package metadata.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import httpx
from runtime_procs import start_runtime_process, wait_until_ready

SECRET = "s3cr3t-api-key-value"

FAILING_MODULE = """\
from kubesoar import action, playbook


def pick(fields, ctx):
    key = ctx.secret("vt", "api_key")
    return fields["nope " + key]


@action(name="enrich.lookup")
async def lookup(fields, ctx):
    return pick(fields, ctx)


@playbook("webhook")
async def triage(alert, ctx):
    return await lookup({}, ctx)
"""
PICK_LINE = 'return fields["nope " + key]'


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _write_workspace(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "triage.py").write_text(FAILING_MODULE)
    (tmp_path / "secrets" / "vt").mkdir(parents=True)
    (tmp_path / "secrets" / "vt" / "api_key").write_text(SECRET)


def _assert_playbook_frames_first(traceback: str) -> None:
    assert SECRET not in traceback and "***" in traceback
    lines = traceback.splitlines()
    assert lines[0] == "Playbook frames (most recent call last):"
    own = lines[1 : lines.index("Other frames (most recent call last):")]
    assert [line.strip() for line in own if not line.startswith("    ")] == [
        "triage.py:16 in triage",
        "triage.py:11 in lookup",
        "triage.py:6 in pick",
    ]
    assert own[-1].strip() == PICK_LINE
    assert lines[-1] == "KeyError: 'nope ***'"


async def test_failed_run_record_and_pod_log_carry_the_traceback(tmp_path: Path) -> None:
    _write_workspace(tmp_path)
    port = _free_port()
    env = {
        **os.environ,
        "KUBESOAR_WORKSPACE": str(tmp_path),
        "KUBESOAR_MODULE": "triage",
        "KUBESOAR_POD_IP": "127.0.0.1",
        "KUBESOAR_PORT": str(port),
        "KUBESOAR_SECRETS_DIR": str(tmp_path / "secrets"),
    }
    process = start_runtime_process(env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            await wait_until_ready(client, process)
            answer = await client.post("/v1/runs", json={"idempotencyKey": "k1", "alert": {}})
            assert answer.status_code == 202
            run_id = answer.json()["runId"]
            for _ in range(500):
                run = (await client.get(f"/v1/runs/{run_id}")).json()
                if run["status"] != "queued" and run["status"] != "running":
                    break
                await asyncio.sleep(0.01)
        assert run["status"] == "failed"
        (result,) = run["results"]
        assert result["error"] == "KeyError: 'nope ***'"
        assert result["where"] == "triage.py:6 in pick"
        _assert_playbook_frames_first(result["traceback"])
        assert run["error"] == "triage: KeyError: 'nope ***' (at triage.py:6 in pick)"
    finally:
        process.terminate()
        process.wait(30)
    logs = process.stderr.read().decode() if process.stderr else ""
    process.stderr.close() if process.stderr else None
    assert SECRET not in logs
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    (failure,) = [line for line in lines if line["logger"] == "kubesoar.playbook.triage"]
    assert failure["level"] == "warning" and failure["runId"] == run_id
    first, _, traceback = failure["message"].partition("\n")
    assert first == "entry point triage failed: KeyError: 'nope ***' (at triage.py:6 in pick)"
    _assert_playbook_frames_first(traceback)


def _kubesoar(*args: str, cwd: Path, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "kubesoar", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_kubesoar_run_shows_where_and_the_traceback(tmp_path: Path) -> None:
    _write_workspace(tmp_path)
    (tmp_path / "alert.json").write_text("{}")
    proc = _kubesoar(
        "run", "src/triage.py", "--alert", "alert.json", "--secrets-dir", "secrets", cwd=tmp_path
    )
    assert proc.returncode == 1
    assert "  error: KeyError: 'nope ***'\n  at: triage.py:6 in pick\n" in proc.stdout
    assert "Playbook frames (most recent call last):\n  triage.py:16 in triage" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr


MISSING_SECRET_MODULE = """\
from kubesoar import action, current_context, playbook


@action(name="vt.lookup", retries=2, retry_backoff=0.0)
async def lookup():
    return current_context().secret("virustotal", "api_key")


@playbook("webhook")
async def enrich(alert):
    return await lookup()
"""


def test_kubesoar_run_names_the_secrets_folder_and_does_not_retry(tmp_path: Path) -> None:
    (tmp_path / "enrich.py").write_text(MISSING_SECRET_MODULE)
    (tmp_path / "alert.json").write_text("{}")
    env = {k: v for k, v in os.environ.items() if k != "KUBESOAR_SECRETS_DIR"}
    proc = _kubesoar("run", "enrich.py", "--alert", "alert.json", "--json", cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stderr
    run = json.loads(proc.stdout)
    # No --secrets-dir: the pod's default folder, named in the error.
    expected = "/var/run/kubesoar/secrets/virustotal/api_key"
    assert [a["status"] for a in run["actions"]] == ["failed"]
    assert expected in run["actions"][0]["error"]
    assert expected in run["results"][0]["error"]
    help_text = _kubesoar("run", "--help", cwd=tmp_path).stdout
    assert "KUBESOAR_SECRETS_DIR" in help_text and "/var/run/kubesoar/secrets" in help_text


def test_unknown_playbook_lists_the_valid_entry_points(tmp_path: Path) -> None:
    _write_workspace(tmp_path)
    (tmp_path / "alert.json").write_text("{}")
    proc = _kubesoar(
        "run", "src/triage.py", "--alert", "alert.json", "--playbook", "nosuch", cwd=tmp_path
    )
    assert proc.returncode == 2
    assert "unknown entry points: nosuch; valid: triage" in proc.stderr


def test_version_comes_from_package_metadata(tmp_path: Path) -> None:
    for flag in ("--version", "-V"):
        proc = _kubesoar(flag, cwd=tmp_path)
        assert proc.returncode == 0
        assert proc.stdout == f"kubesoar {metadata.version('kubesoar')}\n"
    assert "kubesoar --version" in _kubesoar("--help", cwd=tmp_path).stdout
