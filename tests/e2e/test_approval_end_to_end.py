"""Human approval end to end on the real control plane, decided by people with kubectl.

A Playbook from a Git repository served over HTTP runs on a runtime pod (a process of
the node agent); its entry point calls the action `collect`, then `ctx.approval(...)`,
then the action `isolate`. Both actions post to a "sink" HTTP server standing in for
the integrations, which is how the tests count what each run did. The router runs
with the runs API (`runs.kubesoar.dev`) registered with the kube-apiserver's
aggregator, so users reach it as they would in a real install: alice holds the
built-in `edit` role, victor `view` (the chart's aggregated ClusterRoles). The tests
prove that an approved run resumes on a pod without repeating `collect` and runs
`isolate` once, and that an approval nobody decides ends the run `denied` (Expired)
without `isolate`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import runsapi
from support.cluster import ClusterHandle
from support.git_http import GitHTTPServer
from support.sink import RecordingSink
from support.stack import (
    KubesoarStack,
    apply_crds,
    condition,
    delete_namespace,
    free_port,
    kubectl_json,
    signed_source,
    wait_for,
)

pytestmark = pytest.mark.cluster

GIT_USER, GIT_PASSWORD = "soc", "approval-e2e-git-password-8d2e"
TOKEN, HMAC_KEY = "approval-e2e-ingest-token-41c7", "approval-e2e-hmac-key-93fa"
TITLE = "Isolate web-1?"
TERMINAL = {"succeeded", "failed", "dead", "denied"}

# The TTL comes from the alert (`raw` keeps the payload whole), so one Playbook and one
# pod serve both the approved and the expiring run.
PLAYBOOK_CODE = '''
"""Contain: collect evidence, ask a person, then isolate the host."""
import os

import httpx
from kubesoar import Alert, action, playbook
from opensoar import playbook as opensoar_playbook, resolve_current_alert


async def tell_sink(step: str, alert_id: str) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.post(os.environ["SINK_URL"], json={"step": step, "alertId": alert_id})
        answer.raise_for_status()


@action(timeout=10)
async def collect(alert_id: str) -> dict:
    await tell_sink("collect", alert_id)
    return {"evidence": "web-1 beacons to 203.0.113.7"}


@action(timeout=10)
async def isolate(alert_id: str) -> dict:
    await tell_sink("isolate", alert_id)
    return {"isolated": "web-1"}


@playbook(trigger="webhook", conditions={"severity": ["high", "critical"]})
async def contain(alert: Alert, ctx) -> dict:
    evidence = await collect(alert.id)
    decision = await ctx.approval(
        "Isolate web-1?", {"host": "web-1", **evidence},
        ttl_seconds=float(alert.raw.get("approval_ttl_seconds", 600)),
    )
    return {**await isolate(alert.id), "approvedBy": decision.decided_by}


@opensoar_playbook(trigger="webhook", conditions={"severity": ["low"]})
async def close_scanner(alert):
    """A migrated OpenSOAR playbook closing its own alert."""
    return await resolve_current_alert(determination="benign", reason="known scanner")
'''


class StepSink(RecordingSink):
    """Counts the steps ({"step", "alertId"}) runs post to it."""

    def count(self, alert_id: str, step: str) -> int:
        return sum(
            1 for r in list(self.records) if (r.get("alertId"), r.get("step")) == (alert_id, step)
        )


@dataclass
class Bed:
    cluster: ClusterHandle
    namespace: str
    stack: KubesoarStack
    sink: StepSink
    kubeconfigs: dict[str, Path]

    def kubectl_as(self, user: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.cluster.kubectl_bin), f"--kubeconfig={self.kubeconfigs[user]}", *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    def run_as(self, user: str, run_id: str) -> dict[str, Any]:
        shown = self.kubectl_as(user, "get", "run", run_id, "-n", self.namespace, "-o", "json")
        assert shown.returncode == 0, shown.stderr
        run: dict[str, Any] = json.loads(shown.stdout)
        return run

    def kubesoar(self, verb: str, user: str, run_id: str, *extra: str) -> Any:
        """`kubesoar approve|deny RUN` as `user`: the CLI shelling out to kubectl."""
        return subprocess.run(
            [sys.executable, "-m", "kubesoar", verb, run_id, "-n", self.namespace,
             f"--kubeconfig={self.kubeconfigs[user]}",
             f"--kubectl={self.cluster.kubectl_bin}", *extra],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    def send(self, **extra: Any) -> tuple[str, str]:
        """A signed high-severity alert; (alert id, run id) from the router's receipt."""
        alert = {"title": "beacon from web-1", "severity": "high", "hostname": "web-1", **extra}
        answer = self.stack.send_alert(
            self.namespace, "siem", alert, token=TOKEN, hmac_key=HMAC_KEY
        )
        assert answer.status_code == 202, answer.text
        receipt = answer.json()
        [delivery] = receipt["deliveries"]
        return receipt["alertId"], delivery["runId"]

    def wait_phase(self, run_id: str, phases: set[str], timeout: float) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            run = self.run_as("alice", run_id)
            return run if run["status"].get("phase") in phases else None

        try:
            return wait_for(f"run {run_id} to be {sorted(phases)}", reached, timeout=timeout)
        except TimeoutError:
            print(self.stack.logs()[-6000:])
            raise


def _objects(namespace: str, git_url: str, sink_url: str) -> list[dict[str, Any]]:
    """The tenant's Secrets, its AlertSource and the Playbook (one replica)."""
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "git-auth"},
         "stringData": {"username": GIT_USER, "password": GIT_PASSWORD}},
        *signed_source(TOKEN, HMAC_KEY),
        {"apiVersion": "kubesoar.dev/v1alpha1", "kind": "Playbook",
         "metadata": {"name": "contain"},
         "spec": {
             "source": {"git": {"url": git_url, "ref": {"branch": "main"},
                                "secretRef": {"name": "git-auth"}},
                        "path": "contain/", "interval": "10s"},
             "module": "contain",
             "replicas": 1,
             "runtime": {"env": [{"name": "SINK_URL", "value": sink_url}]}}},
    ]  # fmt: skip


def _wait_ready(cluster: ClusterHandle, namespace: str, stack: KubesoarStack) -> None:
    def ready() -> bool:
        pb = kubectl_json(cluster.kubectl, "-n", namespace, "get", "playbook", "contain")
        cond = condition(pb, "Ready")
        return bool(cond and cond["status"] == "True")

    try:
        wait_for("Playbook contain Ready", ready, timeout=120)
    except TimeoutError:
        print(stack.logs()[-8000:])
        raise


@pytest.fixture(scope="module")
def bed(local_cluster: ClusterHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    if local_cluster.local is None or local_cluster.database_url_file is None:
        pytest.skip("needs the local test bed (its PKI and PostgreSQL)")
    apply_crds(local_cluster.kubectl)
    workdir = tmp_path_factory.mktemp("approval-e2e")
    namespace = f"e2e-approval-{uuid.uuid4().hex[:6]}"
    local_cluster.kubectl(
        "apply", "-f", "-",
        input=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": namespace, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}),
    )  # fmt: skip
    git = GitHTTPServer(workdir / "git", username=GIT_USER, password=GIT_PASSWORD)
    git.start()
    sink = StepSink()
    git.create_repo("playbooks", {"contain/contain.py": PLAYBOOK_CODE})
    port = free_port()
    stack = KubesoarStack(
        kubeconfig=local_cluster.kubeconfig,
        namespaces=[namespace],
        workdir=workdir,
        database_url_file=local_cluster.database_url_file,
        router_args=runsapi.serving_cert(local_cluster).router_args(port),
    )
    try:
        stack.start()
        local_cluster.kubectl(
            "-n", namespace, "apply", "-f", "-",
            input=yaml.safe_dump_all(_objects(namespace, git.url("playbooks"), sink.url)),
        )  # fmt: skip
        runsapi.register(local_cluster, port)
        runsapi.apply(
            local_cluster,
            runsapi.binding(namespace, "alice", "edit"),
            runsapi.binding(namespace, "victor", "view"),
        )
        kubeconfigs = {u: runsapi.user_kubeconfig(local_cluster, u) for u in ("alice", "victor")}
        _wait_ready(local_cluster, namespace, stack)
        yield Bed(local_cluster, namespace, stack, sink, kubeconfigs)
    finally:
        # The APIService first: one nobody serves blocks namespace deletion cluster-wide.
        runsapi.unregister(local_cluster)
        # Our objects first, while the operator runs to release their finalizers: seconds,
        # where waiting for the namespace controller to reach them takes about fifteen.
        local_cluster.kubectl(
            "-n", namespace, "delete", "playbooks,alertsources", "--all", "--timeout=60s",
            check=False,
        )  # fmt: skip
        delete_namespace(local_cluster.kubectl, namespace)
        stack.stop()
        sink.close()
        git.close()


def test_an_edit_user_approves_and_the_run_resumes_without_repeating_collect(bed: Bed) -> None:
    alert_id, run_id = bed.send()

    def listed_waiting() -> bool:
        waiting = bed.kubectl_as(
            "alice", "get", "runs", "-n", bed.namespace,
            "--field-selector", "status=waiting", "-o", "name",
        )  # fmt: skip
        return f"run.runs.kubesoar.dev/{run_id}" in waiting.stdout.split()

    try:
        wait_for("the run among alice's waiting runs", listed_waiting, timeout=60)
    except TimeoutError:
        shown = bed.kubectl_as("alice", "get", "run", run_id, "-n", bed.namespace, "-o", "yaml")
        print(shown.stdout, shown.stderr, bed.stack.logs()[-6000:])
        raise
    asked = bed.run_as("alice", run_id)["status"]["approval"]
    assert asked["title"] == TITLE
    assert asked["ttlSeconds"] == 600 and asked["expiresAt"] > asked["requestedAt"]
    assert asked["details"] == {"host": "web-1", "evidence": "web-1 beacons to 203.0.113.7"}
    assert "decision" not in asked
    assert bed.sink.count(alert_id, "collect") == 1
    assert bed.sink.count(alert_id, "isolate") == 0

    refused = bed.kubesoar("approve", "victor", run_id)
    assert refused.returncode != 0 and "Forbidden" in refused.stderr, refused.stderr
    assert bed.run_as("alice", run_id)["status"]["phase"] == "waiting"

    approved = bed.kubesoar("approve", "alice", run_id, "--comment", "contain it")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == f"run {run_id} approved by alice: contain it"

    run = bed.wait_phase(run_id, TERMINAL, timeout=60)
    assert run["status"]["phase"] == "succeeded", run["status"].get("error")
    [entry] = run["status"]["results"]
    assert entry["result"] == {"isolated": "web-1", "approvedBy": "alice"}
    decision = run["status"]["approval"]["decision"]
    assert (decision["approved"], decision["reason"]) == (True, "Approved")
    assert (decision["decidedBy"], decision["comment"]) == ("alice", "contain it")
    # collect ran before the wait and was replayed from the journal on resume.
    assert bed.sink.count(alert_id, "collect") == 1
    assert bed.sink.count(alert_id, "isolate") == 1


def test_an_approval_nobody_decides_expires_and_the_run_ends_denied(bed: Bed) -> None:
    alert_id, run_id = bed.send(approval_ttl_seconds=2)

    run = bed.wait_phase(run_id, TERMINAL, timeout=60)
    assert run["status"]["phase"] == "denied", run["status"].get("error")
    assert "expired undecided" in run["status"]["error"]
    decision = run["status"]["approval"]["decision"]
    assert (decision["approved"], decision["reason"]) == (False, "Expired")
    assert decision.get("decidedBy") is None
    assert bed.sink.count(alert_id, "collect") == 1
    assert bed.sink.count(alert_id, "isolate") == 0
    # Too late to decide: the run is no longer waiting.
    late = bed.kubesoar("approve", "alice", run_id)
    assert late.returncode != 0 and "only a waiting run" in late.stderr, late.stderr


def test_a_playbook_resolves_its_alert_and_kubectl_shows_it(bed: Bed) -> None:
    """OpenSOAR's `resolve_current_alert` in a run changes the stored alert, which the
    tenant's user then reads with kubectl, the run named as the actor."""
    alert_id, run_id = bed.send(severity="low", title="port scan from a known scanner")
    run = bed.wait_phase(run_id, TERMINAL, timeout=60)
    assert run["status"]["phase"] == "succeeded", run["status"].get("error")
    shown = bed.kubectl_as("alice", "get", "alert", alert_id, "-n", bed.namespace, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    alert = json.loads(shown.stdout)
    assert (alert["spec"]["status"], alert["spec"]["determination"]) == ("resolved", "benign")
    changes = {(a["kind"], a.get("to")) for a in alert["status"]["activity"]}
    assert {("status", "resolved"), ("determination", "benign")} <= changes
    assert {a["actor"] for a in alert["status"]["activity"]} == {f"run:{run_id}"}
    table = bed.kubectl_as("alice", "get", "alerts", "-n", bed.namespace)
    name = alert["metadata"]["name"]  # the stored id; the 202's `al-` id named the same alert
    [row] = [line for line in table.stdout.splitlines() if line.startswith(name)]
    assert "resolved" in row.split() and "benign" in row.split()
