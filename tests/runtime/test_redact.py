"""Credentials never reach run records, the report or logs: the redaction
helper on its own, and a playbook whose action fails with a secret-bearing
URL and a secret value in its message, served by an in-process runtime."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubesoar._context import CorrelationFilter
from kubesoar._logs import JsonFormatter
from kubesoar._redact import MASK, clean_url, redact, redact_urls
from kubesoar._server import RuntimeServer
from kubesoar._settings import RuntimeSettings

SECRET = "vt-Secret-Key-0123456789"
PASSWORD = "hunter2-pass"


@pytest.mark.parametrize(
    ("text", "gone", "kept"),
    [
        (
            "GET https://bob:hunter2-pass@vt.example:8443/api/v3/ip?apikey=abc123&x=1#frag failed",
            ["hunter2-pass", "bob", "abc123", "frag"],
            ["https://vt.example:8443/api/v3/ip failed"],
        ),
        ("push to bob:hunter2-pass@git.example.com/a.git", ["hunter2-pass"], ["git.example.com"]),
        ("git@github.com:acme/playbooks.git", [], ["git@github.com:acme/playbooks.git"]),
        ("sent Authorization: Basic Ym9iOnB3ZA== to h", ["Ym9iOnB3ZA=="], ["Authorization: Basic"]),
        ("headers {'authorization': 'tok-abcdef'}", ["tok-abcdef"], ["authorization"]),
        ("401 for Bearer eyJhbGciOi.abc.def", ["eyJhbGciOi"], ["401 for Bearer ***"]),
        ("x-apikey: k-777777 rejected", ["k-777777"], ["x-apikey: ***"]),
        ('body {"access_token": "at-1234", "n": 1}', ["at-1234"], ['"n": 1']),
        ("https://[::1]:9000/p?q=1", ["q=1"], ["https://[::1]:9000/p"]),
        ("KeyError: 'password'", [], ["KeyError: 'password'"]),
    ],
)
def test_redact_strips_credentials(text: str, gone: list[str], kept: list[str]) -> None:
    out = redact(text)
    for value in gone:
        assert value not in out, out
    for value in kept:
        assert value in out, out


def test_redact_masks_known_secret_values_in_every_encoding() -> None:
    b64 = base64.b64encode(SECRET.encode()).decode()
    out = redact(f"key {SECRET} or {b64} in /path/{SECRET}/x; short ab", [SECRET, "ab", ""])
    assert SECRET not in out and b64 not in out
    assert out.count(MASK) == 3 and out.endswith("short ab")  # too short to mask


def test_clean_url_and_redact_urls() -> None:
    assert clean_url("https://u:p@h/a?b=c#d") == "https://h/a"
    assert clean_url("http://h:notaport/") == MASK
    assert redact_urls("no url here") == "no url here"


LEAKY_MODULE = f"""\
import httpx
from kubesoar import action, current_context, playbook

@action(name="vt.lookup", retries=1, retry_backoff=0.0)
async def lookup(ip):
    key = current_context().secret("vt", "api_key")
    raise httpx.ConnectError(
        f"connect failed: https://bob:{PASSWORD}@vt.example/api?apikey={{key}}&ip={{ip}} "
        f"(key {{key}}, Authorization: Bearer {{key}})"
    )

@playbook("webhook")
async def enrich(alert, ctx):
    key = ctx.secret("vt", "api_key")
    ctx.logger.info("calling https://vt.example/api?apikey=%s with %s", key, key)
    try:
        return await lookup("10.0.0.1")
    except httpx.ConnectError:
        ctx.logger.exception("lookup failed")
        raise
"""


@pytest.fixture
def json_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The runtime's JSON log lines (its formatter and filter), captured."""
    caplog.set_level(logging.INFO)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(CorrelationFilter())
    root = logging.getLogger()
    root.addHandler(handler)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line]

    yield lines
    root.removeHandler(handler)


@pytest.fixture
async def leaky_runtime(
    tmp_path: Path, write_module: Callable[[str, str], Path]
) -> AsyncIterator[httpx.AsyncClient]:
    write_module("leaky_playbook", LEAKY_MODULE)
    (tmp_path / "secrets" / "vt").mkdir(parents=True)
    (tmp_path / "secrets" / "vt" / "api_key").write_text(SECRET + "\n")
    settings = RuntimeSettings.from_env(
        {
            "KUBESOAR_WORKSPACE": str(tmp_path),
            "KUBESOAR_MODULE": "leaky_playbook",
            "KUBESOAR_PORT": "0",
            "KUBESOAR_SECRETS_DIR": str(tmp_path / "secrets"),
        }
    )
    server = RuntimeServer(settings)
    await server.start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client:
        yield client
    await server.stop()


async def test_no_secret_in_run_record_report_or_logs(
    leaky_runtime: httpx.AsyncClient, json_log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    client = leaky_runtime
    body = {"idempotencyKey": "leak-1", "alert": {"severity": "high"}}
    answer = await client.post("/v1/runs", json=body)
    assert answer.status_code == 202
    run_id = answer.json()["runId"]
    for _ in range(500):
        run = (await client.get(f"/v1/runs/{run_id}")).json()
        if run["status"] not in {"queued", "running"}:
            break
        await asyncio.sleep(0.01)
    assert run["status"] == "failed"
    assert [a["status"] for a in run["actions"]] == ["failed", "failed"]
    report = (await client.get("/v1/report")).json()
    last_error = report["runs"]["lastError"]
    # Still useful: what failed, and where it went.
    assert last_error.startswith("enrich: httpx.ConnectError: connect failed")
    assert "https://vt.example/api" in last_error
    lines = json_log_lines()
    assert any(line.get("exception") for line in lines), "the traceback is kept, redacted"
    assert any("calling https://vt.example/api with ***" in line["message"] for line in lines)
    texts = {
        "run record": json.dumps(run),
        "report": json.dumps(report),
        "logs": json.dumps(lines),
    }
    for where, text in texts.items():
        for leaked in (SECRET, PASSWORD, "apikey=", base64.b64encode(SECRET.encode()).decode()):
            assert leaked not in text, f"{leaked!r} in the {where}"


def test_the_log_filter_redacts_any_record_and_tolerates_bad_arguments() -> None:
    log_filter = CorrelationFilter()
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "GET %s", ("https://h/p?token=abc",), None
    )
    assert log_filter.filter(record) and record.getMessage() == "GET https://h/p"
    broken = logging.LogRecord("x", logging.INFO, __file__, 1, "%s %s", ("one",), None)
    assert log_filter.filter(broken)  # the handler reports the bad format, not the filter
    try:
        raise RuntimeError("https://u:pw-9999@h/x")
    except RuntimeError:
        failing = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", None, sys.exc_info())
    assert log_filter.filter(failing)
    assert failing.exc_info is None and failing.exc_text is not None
    assert "pw-9999" not in failing.exc_text and "RuntimeError: https://h/x" in failing.exc_text
    assert "pw-9999" not in logging.Formatter().format(failing)
