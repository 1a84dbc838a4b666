"""A real `kubesoar runtime` subprocess for tests that need its process (logs on stderr,
signals): started with an environment, then waited for until `/readyz` answers 200."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx


def start_runtime_process(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "kubesoar", "runtime"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def wait_until_ready(client: httpx.AsyncClient, process: subprocess.Popen[bytes]) -> None:
    """Bounded (500 tries); a process that exits meanwhile fails with its stderr."""
    for _ in range(500):
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        await asyncio.sleep(0.02)
