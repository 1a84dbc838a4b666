"""A malformed request never puts its bearer token (or signature) in the logs.

aiohttp refuses a request with a folded `Authorization` header, a control
character after the token or a space before the colon, and logs "Error
handling request" (logger `aiohttp.server`) with the parser's BadHttpMessage,
which quotes the raw header bytes, token included. Each process's JSON
logging (runtime, router, operator) installs `RedactingFilter`; here a real
aiohttp server, with that logging, gets each malformed shape over a raw socket
and the captured log lines must not hold the planted credential, with aiohttp's
C parser and its pure-Python one."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator

import aiohttp.http_parser
import aiohttp.web_protocol
import pytest
from aiohttp import web
from kubesoar._logs import RedactingFilter, configure_json_logging
from kubesoar._redact import MASK, mask_raw_bytes, redact
from kubesoar_operator import jsonlog
from kubesoar_router import logs as router_logs

TOKEN = "kst-PLANTED.tok3n_9f2c7e1a"
SIGNATURE = "v1=5e1f0c9d8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e"
PLANTED = (TOKEN, SIGNATURE.removeprefix("v1="))

HEAD = b"GET /alerts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
SHAPES = {
    # obs-fold: the token alone on a continuation line, no header name beside it.
    "folded": HEAD + b"Authorization: Bearer\r\n " + TOKEN.encode() + b"\r\n\r\n",
    "control-char": HEAD + b"Authorization: Bearer " + TOKEN.encode() + b"\x01\r\n\r\n",
    "space-before-colon": HEAD + b"Authorization : Bearer " + TOKEN.encode() + b"\r\n\r\n",
    "folded-signature": HEAD + b"X-Hub-Signature-256:\r\n\t" + SIGNATURE.encode() + b"\r\n\r\n",
    "signature-space": HEAD + b"X-Signature : " + SIGNATURE.encode() + b"\r\n\r\n",
}

CONFIGURE: dict[str, Callable[[], None]] = {
    "runtime": configure_json_logging,
    "router": router_logs.configure,
    "operator": jsonlog.configure,
}
# Loggers whose level the configure functions set, restored after each test.
_TOUCHED = (
    "",
    "aiohttp.access",
    "kubernetes",
    "urllib3",
    "httpx",
    "httpcore",
    "git",
    "kopf.objects",
)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers = root.handlers[:]
    levels = {name: logging.getLogger(name).level for name in _TOUCHED}
    yield
    root.handlers[:] = handlers
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture(params=["c", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """aiohttp's C parser (the default when built) and its pure-Python one."""
    if request.param == "python":
        monkeypatch.setattr(
            aiohttp.web_protocol, "HttpRequestParser", aiohttp.http_parser.HttpRequestParserPy
        )
    elif aiohttp.web_protocol.HttpRequestParser is aiohttp.http_parser.HttpRequestParserPy:
        pytest.skip("aiohttp's C extension is not built here")
    return str(request.param)


@pytest.fixture
async def server(restore_logging: None) -> AsyncIterator[int]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/alerts", ok)
    runner = web.AppRunner(app, access_log=None)  # as the three servers run it
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield int(runner.addresses[0][1])
    await runner.cleanup()


def _capture(configure: Callable[[], None]) -> io.StringIO:
    """Configure logging as the process does, with its one handler writing to a buffer."""
    configure()
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler, logging.StreamHandler)
    assert any(isinstance(f, RedactingFilter) for f in handler.filters)
    buffer = io.StringIO()
    handler.setStream(buffer)
    return buffer


async def _send_raw(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=5)  # the server closes
    finally:
        writer.close()


@pytest.mark.parametrize("process", list(CONFIGURE))
@pytest.mark.parametrize("shape", list(SHAPES))
async def test_malformed_request_keeps_the_credential_out_of_the_logs(
    process: str, shape: str, parser: str, server: int
) -> None:
    buffer = _capture(CONFIGURE[process])
    response = await _send_raw(server, SHAPES[shape])
    assert response.startswith(b"HTTP/1.0 400 ") or response.startswith(b"HTTP/1.1 400 ")

    captured = buffer.getvalue()
    lines = [json.loads(line) for line in captured.splitlines()]
    # aiohttp did log the refusal (else there is nothing to prove): a client's mistake is
    # one INFO line naming the parser's error, not an ERROR with a traceback.
    refusals = [
        line
        for line in lines
        if line["logger"] == "aiohttp.server" and "malformed HTTP request" in line["message"]
    ]
    assert refusals, captured
    assert refusals[0]["level"] == "info" and "HTTP 400" in refusals[0]["message"]
    assert not [line for line in lines if line["level"] in ("error", "critical")], captured
    for planted in PLANTED:
        assert planted not in captured
        assert planted not in json.dumps(lines, ensure_ascii=False)


def test_filter_masks_quoted_raw_bytes_only_for_http_parser_errors() -> None:
    error = (
        "Traceback (most recent call last):\n"
        "aiohttp.http_exceptions.BadHttpMessage: 400, message:\n"
        "  Unexpected whitespace after header value:\n\n"
        f"    b' {TOKEN}'\n      ^"
    )
    record = logging.LogRecord("kubesoar.server", logging.ERROR, __file__, 1, "x", None, None)
    record.exc_text = error
    RedactingFilter().filter(record)
    assert record.exc_text is not None
    assert TOKEN not in record.exc_text
    assert f"b'{MASK}'" in record.exc_text
    # Other records keep their bytes, but still lose credentials.
    record = logging.LogRecord(
        "kubesoar.x", logging.INFO, __file__, 1, "read %r, Authorization: Bearer %s", None, None
    )
    record.args = (b"abc", TOKEN)
    RedactingFilter().filter(record)
    assert record.getMessage() == f"read b'abc', Authorization: Bearer {MASK}"


def test_redaction_helpers() -> None:
    assert mask_raw_bytes("x b'a\\'b' y b\"c'd\" z 'e'") == f"x b'{MASK}' y b'{MASK}' z 'e'"
    assert redact(f"X-Hub-Signature-256: sha256={SIGNATURE}") == f"X-Hub-Signature-256: {MASK}"
    assert redact(f"'x-signature': '{SIGNATURE}'") == f"'x-signature': '{MASK}'"
    assert redact("bad or expired signature") == "bad or expired signature"
    assert redact("signature_header=X-Signature") == "signature_header=X-Signature"
