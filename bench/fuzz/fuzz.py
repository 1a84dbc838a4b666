"""Hostile-input fuzzer for the router's ingest API and the runtime's API, on real servers.

Starts, in this process and on loopback, the router's ingest app (a bearer AlertSource
and an HMAC AlertSource of tenant `acme`) and a runtime server (caller authentication
on, a small playbook), then sends N generated requests over raw keep-alive HTTP/1.1
connections: random and mutated JSON (huge integers, NaN/Infinity/1e400, deep nesting,
lone surrogates, wrong types), non-UTF-8 and oversized header values, made-up paths,
bad timestamps and signatures, and some valid requests. It reports counts by status,
5xx answers, dropped connections, ERROR log records, and any planted secret found in a
response or a log line. The bar: 0 x 5xx, 0 crashes, 0 secrets found.

    .venv/bin/python bench/fuzz/fuzz.py --requests 100000      # the full run (bench/README.md)
    .venv/bin/python bench/fuzz/fuzz.py --requests 2000 --json  # a short slice (the test suite)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web
from kubesoar._logs import JsonFormatter, RedactingFilter
from kubesoar._server import RuntimeServer
from kubesoar._settings import RuntimeSettings
from kubesoar.contracts.http import ingest_path
from kubesoar_router.app import create_ingest_app
from kubesoar_router.auth import sign
from kubesoar_router.ingest import Router
from kubesoar_router.snapshot import Snapshot, build_namespace

BEARER = "planted-bearer-token-7c41"
HMAC_KEY = "planted-hmac-key-2be9"
CALLER = "planted-caller-token-55d0"
SECRETS = (BEARER, HMAC_KEY, CALLER)

PLAYBOOK = """
from kubesoar import playbook

@playbook(trigger="webhook")
async def noop(alert):
    return {"ok": True}
"""


class Capture(logging.Handler):
    """Every log line the servers write, formatted, plus a count of ERROR records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        # As the servers log in their pods: JSON lines through the redaction filter.
        self.setFormatter(JsonFormatter())
        self.addFilter(RedactingFilter())
        self.lines: list[str] = []
        self.errors = 0
        self.error_samples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.levelno >= logging.ERROR:
            self.errors += 1
            if len(self.error_samples) < 5:
                self.error_samples.append(text[:600])
        if len(self.lines) < 200_000:
            self.lines.append(text)


def _secret_data(**values: str) -> dict[str, bytes]:
    return {k: v.encode() for k, v in values.items()}


def _router() -> Router:
    snapshot = Snapshot()
    snapshot.synced = True
    auth = {"bearer": {"secretRef": {"name": "ingest", "key": "token"}}}
    hmac_auth = {"hmac": {"secretRef": {"name": "ingest", "key": "hmac"}}}
    snapshot.put(
        build_namespace(
            "acme",
            alertsources=[
                {"metadata": {"name": "siem", "generation": 1}, "spec": {"auth": auth}},
                {"metadata": {"name": "signed", "generation": 1}, "spec": {"auth": hmac_auth}},
            ],
            secrets={"ingest": _secret_data(token=BEARER, hmac=HMAC_KEY)},
        )
    )
    return Router(snapshot=snapshot, max_body_bytes=64 * 1024)


# --- generators -----------------------------------------------------------------------
def _scalar(rng: random.Random) -> bytes:
    return rng.choice(
        [
            b"1",
            b"-0",
            b"1e400",
            b"-1e400",
            b"NaN",
            b"Infinity",
            b"-Infinity",
            b"9" * rng.choice([10, 400, 4300, 5000]),
            b'"\\ud800"',
            b'"\\udfff x"',
            b'"ok"',
            b"true",
            b"null",
            b'"' + "é".encode() * rng.randint(1, 50) + b'"',
            b"0." + b"1" * 500,
        ]
    )


def _nested(rng: random.Random) -> bytes:
    depth = rng.choice([10, 63, 64, 65, 100, 1000, 20000])
    opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
    return opener * depth + _scalar(rng) + closer * depth


def _alert(rng: random.Random) -> bytes:
    fields: list[bytes] = []
    for key in rng.sample(
        [b"title", b"severity", b"source_ip", b"raw", b"iocs", b"tags", b"id", b"description"],
        rng.randint(0, 6),
    ):
        value = rng.choice([_scalar(rng), _nested(rng), b'"high"', b"[]", b"{}", b'["x"]'])
        fields.append(b'"' + key + b'":' + value)
    body = b"{" + b",".join(fields) + b"}"
    roll = rng.random()
    if roll < 0.1:
        body = body[: rng.randint(0, len(body))]  # truncated
    elif roll < 0.2:
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))  # noise
    elif roll < 0.25:
        body = b'{"title": "x", "pad": "' + b"a" * 70_000 + b'"}'  # over the limit
    return body


def _valid_alert(rng: random.Random) -> bytes:
    return json.dumps(
        {"title": f"alert {rng.random()}", "severity": rng.choice(["high", "low", "weird"])}
    ).encode()


def _header_value(rng: random.Random, good: str) -> bytes:
    return rng.choice(
        [
            good.encode(),
            good.encode() + b"\x01",
            b"\xff\xfe" + good.encode(),
            good.encode() + b"\xc3\x28",
            b"x" * rng.choice([10, 5000, 9000]),
            b"",
            bytes(rng.getrandbits(8) | 0x80 for _ in range(20)),
        ]
    )


def ingest_request(rng: random.Random) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
    kind = rng.random()
    body = _valid_alert(rng) if kind < 0.15 else _alert(rng)
    if rng.random() < 0.5:
        path = ingest_path("acme", "siem").encode()
        headers = [(b"Authorization", _header_value(rng, f"Bearer {BEARER}"))]
    else:
        path = ingest_path("acme", "signed").encode()
        timestamp = rng.choice(
            [str(int(time.time())), "9" * 400, "-5", "abc", "", str(int(time.time()) - 10_000)]
        )
        signature = sign(HMAC_KEY.encode(), timestamp, body, path=path.decode())
        headers = [
            (b"X-Kubesoar-Timestamp", timestamp.encode()),
            (b"X-Kubesoar-Signature", _header_value(rng, signature)),
        ]
    if rng.random() < 0.1:
        path = rng.choice(
            [b"/v1/namespaces/nope/sources/siem/alerts", b"/v1/namespaces/acme/sources/x/alerts"]
        )
    if rng.random() < 0.05:
        headers.append((b"Authorization", b"Bearer " + BEARER.encode() + b"\r\n folded"))
    return b"POST", path, headers, body


def runtime_request(rng: random.Random) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
    auth = _header_value(rng, f"Bearer {CALLER}") if rng.random() < 0.8 else b""
    headers = [(b"Authorization", auth)] if auth else []
    if rng.random() < 0.15:
        return b"GET", rng.choice([b"/v1/report", b"/v1/runs/nope", b"/healthz"]), headers, b""
    alert = _valid_alert(rng) if rng.random() < 0.3 else _alert(rng)
    key = rng.choice([b'"k%d"' % rng.randint(0, 50), b"1", b"null", _scalar(rng)])
    body = b'{"idempotencyKey":' + key + b',"playbooks":null,"alert":' + alert + b"}"
    if rng.random() < 0.1:
        body = _alert(rng)
    return b"POST", b"/v1/runs", headers, body


# --- a minimal HTTP/1.1 client that sends bytes as given ------------------------------
async def send(
    port: int,
    request: tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes],
) -> tuple[int, bytes]:
    """(status, body); status 0 when the server closed without an answer."""
    method, path, headers, body = request
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = [method + b" " + path + b" HTTP/1.1", b"Host: fuzz", b"Connection: close"]
        head += [name + b": " + value for name, value in headers]
        head.append(b"Content-Length: %d" % len(body))
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout=30)
    except (ConnectionError, TimeoutError):
        return 0, b""
    finally:
        writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    parts = status_line.split(b" ")
    if len(parts) < 2 or not parts[1].isdigit():
        return 0, raw
    return int(parts[1]), rest


async def run(requests: int, seed: int, concurrency: int) -> dict[str, Any]:
    capture = Capture()
    root = logging.getLogger()
    root.handlers[:] = [capture]
    root.setLevel(logging.DEBUG)
    rng = random.Random(seed)

    router_runner = web.AppRunner(create_ingest_app(_router()), access_log=None)
    await router_runner.setup()
    router_site = web.TCPSite(router_runner, "127.0.0.1", 0)
    await router_site.start()
    router_port = router_runner.addresses[0][1]

    workspace = Path(tempfile.mkdtemp(prefix="kubesoar-fuzz-"))
    (workspace / "src").mkdir()
    (workspace / "src" / "fuzzed.py").write_text(PLAYBOOK)
    (workspace / "caller-token").write_text(CALLER)
    settings = RuntimeSettings.from_env(
        {
            "KUBESOAR_WORKSPACE": str(workspace),
            "KUBESOAR_MODULE": "fuzzed",
            "KUBESOAR_PORT": "0",
            "KUBESOAR_CALLER_AUTH": "required",
            "KUBESOAR_MAX_BODY_BYTES": str(64 * 1024),
            "KUBESOAR_QUEUE_SIZE": "1000",
        }
    )
    runtime = RuntimeServer(settings)
    await runtime.start()
    assert runtime.port is not None

    results: dict[str, Counter[int]] = {"router": Counter(), "runtime": Counter()}
    leaks: Counter[str] = Counter()
    queue: asyncio.Queue[tuple[str, int, Any]] = asyncio.Queue(maxsize=concurrency * 4)

    async def worker() -> None:
        while True:
            item = await queue.get()
            try:
                target, port, request = item
                status, answer = await send(port, request)
                results[target][status] += 1
                sent = b"".join(v for _, v in request[2]) + request[3]
                for secret in SECRETS:
                    # A secret the request did not carry must never come back.
                    if secret.encode() in answer and secret.encode() not in sent:
                        leaks[f"{target} answer"] += 1
            finally:
                queue.task_done()

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    started = time.monotonic()
    for i in range(requests):
        if i % 2 == 0:
            await queue.put(("router", router_port, ingest_request(rng)))
        else:
            await queue.put(("runtime", runtime.port, runtime_request(rng)))
    await queue.join()
    elapsed = time.monotonic() - started
    for task in workers:
        task.cancel()
    await runtime.stop()
    await router_runner.cleanup()
    for line in capture.lines:
        for secret in SECRETS:
            if secret in line:
                leaks["log"] += 1
    return {
        "requests": requests,
        "seconds": round(elapsed, 1),
        "by_status": {target: dict(sorted(counts.items())) for target, counts in results.items()},
        "5xx": sum(n for c in results.values() for s, n in c.items() if s >= 500),
        "crashes": sum(c[0] for c in results.values()),
        "error_log_records": capture.errors,
        "error_log_samples": capture.error_samples,
        "secrets_found": dict(leaks),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="print the report as JSON only")
    args = parser.parse_args()
    report = asyncio.run(run(args.requests, args.seed, args.concurrency))
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=2))
    bad = report["5xx"] or report["crashes"] or report["secrets_found"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
