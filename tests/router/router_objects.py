"""API objects (as the API server returns them) for building router snapshots, and
`serve`, an aiohttp app on loopback for the length of a block."""

from __future__ import annotations

import base64
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from kubesoar_router.ingest import Router
from kubesoar_router.snapshot import Snapshot

PAYLOADS = Path(__file__).parent / "payloads"

TINY_PLAYBOOK = """
from kubesoar import playbook, Alert

@playbook(trigger="webhook", conditions={"severity": ["high", "critical"]}, order=10)
async def triage(alert: Alert) -> dict:
    return {"title": alert.title, "tenant": alert.tenant}

@playbook(trigger="webhook", conditions={"tags": "phishing"}, order=20)
async def phishing(alert: Alert) -> dict:
    return {"phishing": True}
"""

# The same entry points as TINY_PLAYBOOK, as the operator would copy them into
# status.playbooks from the runtime's report.
TINY_ENTRY_POINTS = [
    {
        "name": "triage",
        "trigger": "webhook",
        "conditions": {"severity": ["high", "critical"]},
        "order": 10,
        "priority": 0,
        "description": "",
    },
    {
        "name": "phishing",
        "trigger": "webhook",
        "conditions": {"tags": "phishing"},
        "order": 20,
        "priority": 0,
        "description": "",
    },
]


def new_router(**kwargs: Any) -> Router:
    snapshot = Snapshot()
    snapshot.synced = True
    return Router(snapshot=snapshot, **kwargs)


def alertsource(name: str, *, spec: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    spec = dict(spec or {"auth": {"bearer": {"secretRef": {"name": "ingest", "key": "token"}}}})
    spec.update(fields)
    return {"metadata": {"name": name, "generation": 1}, "spec": spec}


def secret(name: str, **values: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
    }


def playbook(
    name: str,
    entry_points: list[dict[str, Any]],
    *,
    ready: bool = True,
    suspend: bool = False,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"suspend": suspend},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "playbooks": entry_points,
        },
    }


def endpointslice(
    playbook_name: str, address: str, port: int, *, ready: bool = True
) -> dict[str, Any]:
    """One slice with one endpoint (test runtimes each listen on their own port)."""
    return {
        "metadata": {
            "name": f"{playbook_name}-{address.replace('.', '-')}-{port}",
            "labels": {
                "kubernetes.io/service-name": playbook_name,
                "app.kubernetes.io/component": "runtime",
                "kubesoar.dev/playbook": playbook_name,
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": ready}}],
    }


@contextlib.asynccontextmanager
async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
