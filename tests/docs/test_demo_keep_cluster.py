"""`hack/demo.py --keep-cluster` leaves the demo running, and its printed stop command
stops it.

Runs the demo for real on a control plane of its own (a fresh
KUBESOAR_CLUSTER_DIR), then checks what the output promises: the tenant
namespace with a Ready Playbook, the operator, the router (answering, and
delivering the alert sent again with the printed `--send-alert` command), the
Git server and their logs. Then it runs the printed stop command exactly and
checks that the processes, the namespace's objects and the control plane are
gone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from hack.localcluster import processes  # noqa: E402
from hack.localcluster.cluster import LocalCluster  # noqa: E402

pytestmark = pytest.mark.cluster


def _shell(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=600
    )


def _printed(output: str, heading: str) -> list[str]:
    """The indented lines under a `==> heading` line of the demo's output."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in output.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith(f"==> {heading}"))
    block = []
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        block.append(line.strip())
    return block


def test_keep_cluster_keeps_the_demo_and_the_printed_command_stops_it(tmp_path: Path):
    state_dir = tmp_path / "cluster"
    env = {**os.environ, "KUBESOAR_CLUSTER_DIR": str(state_dir)}
    cluster = LocalCluster(state_dir=state_dir)
    work = state_dir / "demo"
    try:
        demo = subprocess.run(
            [sys.executable, str(REPO / "hack/demo.py"), "--keep-cluster"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
        reach = _printed(demo.stdout, "The demo keeps running")
        (stop,) = _printed(demo.stdout, "To stop it")
        assert stop.endswith("--stop") and str(state_dir) in stop

        # Everything it printed is there and answers.
        assert f"export KUBECONFIG={cluster.kubeconfig}" in reach
        for name in ("operator", "router", "git"):
            assert processes.pid_file_alive(work / "run" / f"{name}.pid"), name
            assert (work / f"{name}.log").stat().st_size > 0, name
        kubectl = [str(cluster.kubectl_bin), f"--kubeconfig={cluster.kubeconfig}"]
        playbook = json.loads(
            subprocess.run(
                [*kubectl, "-n", "demo-acme", "get", "playbook", "triage", "-o", "json"],
                capture_output=True, text=True, check=True, timeout=60,
            ).stdout
        )  # fmt: skip
        ready = [c for c in playbook["status"]["conditions"] if c["type"] == "Ready"]
        assert ready[0]["status"] == "True"
        (router_line,) = [line for line in reach if line.startswith("router:")]
        router = re.search(r"http://127\.0\.0\.1:\d+", router_line)
        assert router and httpx.get(f"{router.group(0)}/readyz", timeout=10).status_code == 200
        (again,) = [line for line in reach if line.startswith("send the alert again:")]
        sent = _shell(again.split(":", 1)[1].strip(), env)
        assert sent.returncode == 0 and sent.stdout.startswith("HTTP 202"), (
            sent.stdout + sent.stderr
        )
        answer = json.loads(sent.stdout.split(" ", 2)[2])
        # Sent again, the alert runs again: the demo's alerts have ids of their own, so
        # the router's dedup (which outlives a demo in the database) does not swallow it.
        assert answer["duplicate"] is False and answer["deliveries"][0]["runId"], answer

        # The printed command stops all of it.
        stopped = _shell(stop, env)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        for name in ("operator", "router", "git"):
            assert not processes.pid_file_alive(work / "run" / f"{name}.pid"), name
        assert not (work / "demo.json").exists()
        status = cluster.status()
        assert not any(status["processes"].values()), status
        assert (work / "operator.log").exists()  # the logs stay
    finally:
        if (work / "demo.json").exists():
            _shell(f"{sys.executable} {REPO / 'hack/demo.py'} --stop", env)
        cluster.down(purge=True)
