"""The durable bench's load generator, a process of its own: bench/ingest's minimal
keep-alive HTTP/1.1 client (`RawClient`), closed or open loop for a bounded time.

    python bench/durable/loadgen.py URL closed 16 SECONDS
    python bench/durable/loadgen.py URL open 1500 SECONDS [--connections 64]

Prints one JSON line: answers by status, alerts/s accepted (202), p50/p99 latency of the
202s, and the generator's own CPU seconds (it shares the cores with the servers).
Open loop: alerts are due every 1/rate s whether or not earlier ones were answered, over
at most `--connections` connections (a sender's pool); waiting for a free connection
counts in the latency.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BODY_PAD = "x" * 700  # ~1 KB alerts, as bench/ingest sends


def _ingest_bench() -> Any:
    spec = importlib.util.spec_from_file_location("ingest_bench", REPO / "bench/ingest/bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def alert_body(index: int) -> bytes:
    return json.dumps(
        {
            "title": f"durable bench {index}",
            "severity": "high",
            "source_id": f"d-{index}-{random.random()}",
            "description": BODY_PAD,
        }
    ).encode()


async def drive(
    url: str, mode: str, value: int, seconds: float, connections: int
) -> dict[str, Any]:
    cpu_started = time.process_time()
    client = _ingest_bench().RawClient(url, value if mode == "closed" else connections)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    sent = 0

    async def one() -> None:
        nonlocal sent
        sent += 1
        body = alert_body(sent)
        started = time.perf_counter()
        try:
            status = await client.post(body)
        except OSError:
            statuses["dropped"] += 1
            return
        statuses[str(status)] += 1
        if status == 202:
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    deadline = started + seconds
    if mode == "closed":

        async def worker() -> None:
            while time.perf_counter() < deadline:
                await one()

        await asyncio.gather(*(worker() for _ in range(value)))
    else:
        interval = 1.0 / value
        pending: set[asyncio.Task[None]] = set()
        due = started
        while due < deadline:
            now = time.perf_counter()
            while due <= now and len(pending) < 20 * connections:
                task = asyncio.create_task(one())
                pending.add(task)
                task.add_done_callback(pending.discard)
                due += interval
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        if pending:
            await asyncio.wait(pending, timeout=30)
    elapsed = time.perf_counter() - started
    client.close()
    latencies.sort()

    def quantile(q: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {
        "sent": sent,
        "accepted": statuses.get("202", 0),
        "statuses": dict(statuses),
        "seconds": elapsed,
        "accepted_per_s": statuses.get("202", 0) / elapsed,
        "p50_ms": quantile(0.5),
        "p99_ms": quantile(0.99),
        "loadgen_cpu_s": time.process_time() - cpu_started,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("mode", choices=["closed", "open"])
    parser.add_argument("value", type=int, help="connections (closed) or alerts/s (open)")
    parser.add_argument("seconds", type=float)
    parser.add_argument("--connections", type=int, default=64, help="open loop's pool")
    args = parser.parse_args()
    result = asyncio.run(drive(args.url, args.mode, args.value, args.seconds, args.connections))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
