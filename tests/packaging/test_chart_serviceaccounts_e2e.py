"""The operator and the router run with nothing but the chart's RBAC.

The chart is rendered for namespaced RBAC with one tenant; its ServiceAccounts,
Roles and bindings are applied for real; each process gets a kubeconfig with a
token of its ServiceAccount (TokenRequest API, `kubectl create token`) and the
arguments the chart renders for it (addresses moved to loopback). Then:
a Playbook in the tenant pointing at a real Git repository (smart HTTP on
loopback) becomes Ready with its children and a running runtime pod; an alert
posted to the router reaches that playbook; a Playbook outside the tenant is not
touched; and neither process logs a single Forbidden answer.

Cluster scope is not run this way on purpose: an operator serving every
namespace would reconcile other tests' Playbooks on the shared cluster. Its
RBAC is covered by the `kubectl auth can-i` tests.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging_support import Kubectl, container, one
from support.git_http import GitHTTPServer

pytestmark = pytest.mark.cluster

PLAYBOOK_MODULE = """\
from kubesoar import Alert, playbook


@playbook(trigger="webhook", conditions={"severity": ["high", "critical"]})
async def triage(alert: Alert) -> dict:
    return {"seen": alert.title}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def token_kubeconfig(kubectl: Kubectl, namespace: str, sa: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount with a bound token."""
    token = kubectl.run("create", "token", sa, f"--namespace={namespace}", "--duration=1h")
    admin = yaml.safe_load(kubectl.kubeconfig.read_text())
    cluster = next(c["cluster"] for c in admin["clusters"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": sa, "user": {"token": token.stdout.strip()}}],
        "contexts": [{"name": sa, "context": {"cluster": "local", "user": sa}}],
        "current-context": sa,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def with_overrides(args: list[str], overrides: dict[str, str]) -> list[str]:
    out = []
    for arg in args:
        flag = arg.split("=", 1)[0]
        out.append(f"{flag}={overrides.pop(flag)}" if flag in overrides else arg)
    assert not overrides, f"the chart no longer renders {sorted(overrides)}"
    return out


@pytest.fixture
def start_process(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], Path]]]:
    """start(name, argv, kubeconfig) -> (process, log path); stopped after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def _start(
        name: str, argv: list[str], kubeconfig: Path
    ) -> tuple[subprocess.Popen[bytes], Path]:
        log = tmp_path / f"{name}.log"
        # KUBECONFIG too: kopf logs in through the kubernetes client, which
        # reads the variable when it is imported, before --kubeconfig is seen.
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "kubesoar", *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp_path,
            )
        started.append(proc)
        return proc, log

    yield _start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(check: Callable[[], Any], what: str, timeout: float, logs: list[Path]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs)
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def conditions(kubectl: Kubectl, namespace: str, kind: str, name: str) -> dict[str, str]:
    proc = kubectl.run("get", kind, name, f"--namespace={namespace}", "-o", "json")
    status = json.loads(proc.stdout).get("status") or {}
    return {c["type"]: c["status"] for c in status.get("conditions") or []}


def test_operator_and_router_work_with_the_chart_rbac_only(
    chart, kubectl, make_namespace, release_name, applied_rbac, start_process, tmp_path
):
    system = make_namespace("kubesoar-system")
    tenant = make_namespace("tenant")
    outsider = make_namespace("outsider")
    objects = chart(
        {"rbac": {"scope": "namespaced", "tenantNamespaces": [tenant]}},
        release=release_name,
        namespace=system,
    )
    applied_rbac(objects)
    operator_sa = f"{release_name}-kubesoar-operator"
    router_sa = f"{release_name}-kubesoar-router"

    git = GitHTTPServer(tmp_path / "git").start()
    try:
        git.create_repo("playbooks", {"triage.py": PLAYBOOK_MODULE})
        key_file = tmp_path / "signing-key"
        key_file.write_text(secrets.token_hex(32))
        artifact_port = free_port()
        operator_args = with_overrides(
            container(one(objects, "Deployment", "-operator"))["args"],
            {
                "--artifact-listen": f"127.0.0.1:{artifact_port}",
                "--artifact-url": f"http://127.0.0.1:{artifact_port}",
                "--signing-key-file": str(key_file),
                "--metrics-port": "0",
                "--liveness": f"http://127.0.0.1:{free_port()}/healthz",
            },
        )
        operator_kubeconfig = token_kubeconfig(
            kubectl, system, operator_sa, tmp_path / "operator.kubeconfig"
        )
        operator_args += [f"--kubeconfig={operator_kubeconfig}", f"--state-dir={tmp_path / 'op'}"]
        _, operator_log = start_process("operator", operator_args, operator_kubeconfig)

        router_port = free_port()
        router_args = with_overrides(
            container(one(objects, "Deployment", "-router"))["args"],
            {
                "--listen": f"127.0.0.1:{router_port}",
                "--metrics-port": "0",
                "--caller-key-file": str(key_file),
            },
        )
        router_kubeconfig = token_kubeconfig(
            kubectl, system, router_sa, tmp_path / "router.kubeconfig"
        )
        _, router_log = start_process(
            "router", [*router_args, f"--kubeconfig={router_kubeconfig}"], router_kubeconfig
        )
        logs = [operator_log, router_log]

        def playbook(namespace: str) -> dict[str, Any]:
            return {
                "apiVersion": "kubesoar.dev/v1alpha1",
                "kind": "Playbook",
                "metadata": {"name": "triage", "namespace": namespace},
                "spec": {
                    "source": {"git": {"url": git.url("playbooks"), "ref": {"branch": "main"}}},
                    "module": "triage",
                },
            }

        kubectl.apply([playbook(tenant), playbook(outsider)])
        wait_for(
            lambda: conditions(kubectl, tenant, "playbook", "triage").get("Ready") == "True",
            "the tenant's Playbook to become Ready",
            timeout=180,
            logs=logs,
        )
        children = kubectl.run(
            "get",
            "deployments,services,serviceaccounts,networkpolicies",
            f"--namespace={tenant}",
            "--selector=kubesoar.dev/playbook=triage",
            "-o",
            "json",
        )
        kinds = sorted(o["kind"] for o in json.loads(children.stdout)["items"])
        assert kinds == ["Deployment", "NetworkPolicy", "Service", "ServiceAccount"]

        # An alert through the router, authenticated by a tenant Secret.
        token = secrets.token_hex(16)
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "ingest", "namespace": tenant},
            "data": {"token": base64.b64encode(token.encode()).decode()},
        }
        source = {
            "apiVersion": "kubesoar.dev/v1alpha1",
            "kind": "AlertSource",
            "metadata": {"name": "siem", "namespace": tenant},
            "spec": {
                "format": "generic",
                "auth": {"bearer": {"secretRef": {"name": "ingest", "key": "token"}}},
            },
        }
        kubectl.apply([secret, source])
        url = f"http://127.0.0.1:{router_port}/v1/namespaces/{tenant}/sources/siem/alerts"
        body = json.dumps({"title": "ssh brute force", "severity": "high"}).encode()

        def post_alert() -> dict[str, Any] | None:
            request = urllib.request.Request(
                url,
                data=body,
                method="POST",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer: dict[str, Any] = json.loads(response.read())
                    return answer if response.status == 202 else None
            except (urllib.error.URLError, ConnectionError):
                return None  # not synced yet (404/401/503) or not listening yet

        answer = wait_for(post_alert, "the router to deliver the alert", timeout=90, logs=logs)
        assert [d["playbook"] for d in answer["deliveries"]] == ["triage"]

        # Outside the tenant nothing happened: no status, no children.
        assert conditions(kubectl, outsider, "playbook", "triage") == {}
        outside = kubectl.run("get", "deployments", f"--namespace={outsider}", "-o", "name")
        assert outside.stdout.strip() == ""
    finally:
        git.close()
    for log in logs:
        text = log.read_text()
        assert "Forbidden" not in text and "forbidden" not in text, f"{log.name}:\n{text[-3000:]}"
