"""The durable bench's servers, each its own process on loopback: a runtime (no-op
playbook, caller authentication on, as in a pod) and a router with the system of record
(router_main.py) in front of it. PostgreSQL is started by the caller (bench.py starts a
durable one; the test slice uses the suite's).
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import router_main  # noqa: E402

NOOP_PLAYBOOK = """
from kubesoar import playbook, Alert

@playbook(trigger="webhook", conditions={"severity": ["high", "critical"]})
async def noop(alert: Alert) -> None:
    return None
"""
RUNTIME_HOST = "127.0.0.2"


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _private(path: Path, text: str) -> Path:
    path.touch(mode=0o600)
    path.write_text(text)
    return path


@dataclass
class Stack:
    workspace: Path
    router_port: int
    runtime: subprocess.Popen[bytes]
    router: subprocess.Popen[str]
    logs: dict[str, Path] = field(default_factory=dict)

    @property
    def ingest_url(self) -> str:
        return (
            f"http://127.0.0.1:{self.router_port}/v1/namespaces/{router_main.NAMESPACE}"
            f"/sources/{router_main.SOURCE}/alerts"
        )

    @property
    def pids(self) -> dict[str, int]:
        return {"router": self.router.pid, "runtime": self.runtime.pid}

    def log_records(self, name: str, *levels: str) -> list[dict[str, Any]]:
        """The records of a server's JSON log at `levels` (e.g. "warning", "error")."""
        records = []
        for line in self.logs[name].read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                record = {"level": "error", "message": line}  # not JSON: a traceback, say
            if isinstance(record, dict) and record.get("level") in levels:
                records.append(record)
        return records

    def stop(self) -> None:
        # SIGTERM, so a process under cProfile writes its profile on the way out.
        for proc in (self.router, self.runtime):
            if proc.poll() is None:
                proc.terminate()
        for proc in (self.router, self.runtime):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _profiled(profile_dir: Path | None, name: str) -> list[str]:
    if profile_dir is None:
        return [sys.executable]
    return [sys.executable, "-m", "cProfile", "-o", str(profile_dir / f"{name}.prof")]


def start(
    database_url: str,
    *,
    speedups: tuple[str, ...] = (),
    profile_dir: Path | None = None,
    workspace: Path | None = None,
) -> Stack:
    """Start the runtime, then the router; return once both answer."""
    from kubesoar.contracts import caller

    workspace = workspace or Path(tempfile.mkdtemp(prefix="kubesoar-durable-bench-"))
    (workspace / "src").mkdir(parents=True, exist_ok=True)
    (workspace / "src" / "noopbook.py").write_text(NOOP_PLAYBOOK)
    caller_key = secrets.token_hex(32)
    key_file = _private(workspace / "caller-key", caller_key)
    _private(
        workspace / caller.TOKEN_FILE,
        caller.caller_token(caller_key.encode(), router_main.NAMESPACE, router_main.PLAYBOOK),
    )
    flags = [f"--{name}" for name in speedups]
    logs = {name: workspace / f"{name}.log" for name in ("runtime", "router")}
    runtime_port = free_port(RUNTIME_HOST)
    runtime_env = {
        **os.environ,
        "KUBESOAR_POD_IP": RUNTIME_HOST,
        "KUBESOAR_PORT": str(runtime_port),
        "KUBESOAR_WORKSPACE": str(workspace),
        "KUBESOAR_MODULE": "noopbook",
        "KUBESOAR_QUEUE_SIZE": "10000",
        "KUBESOAR_CONCURRENCY": "256",
        "KUBESOAR_DRAIN_SECONDS": "1",
        caller.AUTH_ENV: "required",
    }
    with logs["runtime"].open("wb") as runtime_log:
        runtime = subprocess.Popen(
            [*_profiled(profile_dir, "runtime"), str(HERE / "runtime_main.py"), *flags],
            env=runtime_env,
            stdout=runtime_log,
            stderr=subprocess.STDOUT,
        )
    router_port = free_port("127.0.0.1")
    with logs["router"].open("wb") as router_log:
        router = subprocess.Popen(
            [
                *_profiled(profile_dir, "router"),
                str(HERE / "router_main.py"),
                str(router_port),
                RUNTIME_HOST,
                str(runtime_port),
                str(key_file),
                *flags,
            ],
            env={**os.environ, "BENCH_DATABASE_URL": database_url},
            stdout=subprocess.PIPE,
            stderr=router_log,
            text=True,
        )
    stack = Stack(workspace, router_port, runtime, router, logs)
    try:
        _wait_ready(runtime, f"http://{RUNTIME_HOST}:{runtime_port}/readyz", logs["runtime"])
        _wait_line(router, "ready", logs["router"])
    except BaseException:
        stack.stop()
        raise
    return stack


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"runtime exited with {proc.returncode}: {_tail(log)}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"runtime not ready within {timeout:.0f}s: {_tail(log)}")


def _wait_line(proc: subprocess.Popen[str], line: str, log: Path, timeout: float = 60) -> None:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if selector.select(timeout) and proc.stdout.readline().strip() == line:
            return
    raise RuntimeError(f"router did not start (exit {proc.poll()}): {_tail(log)}")


def _tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
