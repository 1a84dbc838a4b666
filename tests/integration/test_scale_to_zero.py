"""Scale to zero and back, end to end on the local cluster with its PostgreSQL.

A Playbook with `spec.scaling: {minReplicas: 0}` starts one pod to learn its entry
points, goes to zero once idle, and an alert sent while it is at zero is queued in the
system of record, wakes a pod (the operator's poll of the queue), runs there and
succeeds; then the Playbook goes back to zero, Ready all along. The operator and router are real
processes, the runtime pods real processes run by the node agent.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from kubesoar.contracts.kube import runtime_selector_labels
from kubesoar_store.url import resolve_url
from support.cluster import ClusterHandle
from support.git_http import GitHTTPServer
from support.stack import (
    KubesoarStack,
    apply_crds,
    condition,
    delete_namespace,
    kubectl_json,
    signed_source,
)
from support.stack import wait_for as wait_until

pytestmark = pytest.mark.cluster

TOKEN, HMAC_KEY = "scale-ingest-token-7c1e", "scale-hmac-key-0d4b"
CODE = """
from kubesoar import Alert, playbook


@playbook(trigger="webhook", conditions={"severity": "high"})
async def triage(alert: Alert) -> dict:
    return {"title": alert.title}
"""


class ScaleWorld:
    def __init__(self, cluster: ClusterHandle, workdir: Path) -> None:
        if cluster.database_url_file is None:
            pytest.skip("the local cluster runs no PostgreSQL (an external cluster)")
        self.cluster = cluster
        self.namespace = f"scale-{uuid.uuid4().hex[:6]}"
        self.git = GitHTTPServer(workdir / "git").start()
        self.repo = self.git.create_repo("playbooks", {"triage/triage.py": CODE})
        self.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace,
             "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
        )  # fmt: skip
        self.database_url = resolve_url(url_file=cluster.database_url_file)
        self.stack = KubesoarStack(
            kubeconfig=cluster.kubeconfig,
            namespaces=[self.namespace],
            workdir=workdir,
            database_url_file=cluster.database_url_file,
        ).start()

    def apply(self, *objects: dict[str, Any]) -> None:
        ns_args = ["-n", self.namespace] if objects[0]["kind"] != "Namespace" else []
        self.cluster.kubectl("apply", *ns_args, "-f", "-", input=yaml.safe_dump_all(objects))

    def deploy(self, scaling: dict[str, Any]) -> None:
        self.apply(
            *signed_source(TOKEN, HMAC_KEY),
            {"apiVersion": "kubesoar.dev/v1alpha1", "kind": "Playbook",
             "metadata": {"name": "triage"},
             "spec": {"source": {"git": {"url": self.git.url("playbooks"),
                                         "ref": {"branch": "main"}},
                                 "path": "triage/", "interval": "10m"},
                      "module": "triage", "scaling": scaling}},
        )  # fmt: skip

    def playbook(self) -> dict[str, Any]:
        found: dict[str, Any] = kubectl_json(
            self.cluster.kubectl, "-n", self.namespace, "get", "playbook", "triage"
        )
        return found

    def pods(self) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in runtime_selector_labels("triage").items())
        found = kubectl_json(
            self.cluster.kubectl, "-n", self.namespace, "get", "pods", "-l", selector
        )
        return list(found["items"])

    def deployment_replicas(self) -> int:
        found = kubectl_json(
            self.cluster.kubectl, "-n", self.namespace, "get", "deployment", "triage-runtime"
        )
        return int(found["spec"]["replicas"])

    def at_zero(self) -> dict[str, Any] | None:
        """The Playbook once its Deployment asks for no pod, none is left, and its status
        says so."""
        pb = self.playbook()
        status = pb.get("status", {})
        scale = status.get("scale", {})
        if scale.get("desired") != 0 or scale.get("reason") != "Idle" or status.get("replicas"):
            return None
        if self.deployment_replicas() != 0 or self.pods():
            return None
        return pb

    def run_row(self, run_id: str) -> dict[str, Any] | None:
        async def read() -> dict[str, Any] | None:
            conn = await asyncpg.connect(self.database_url)
            try:
                row = await conn.fetchrow(
                    "SELECT status, attempt, result FROM runs WHERE id = $1", uuid.UUID(run_id)
                )
            finally:
                await conn.close()
            return dict(row) if row is not None else None

        return asyncio.run(read())

    def close(self) -> None:
        try:
            delete_namespace(self.cluster.kubectl, self.namespace)
        finally:
            self.stack.stop()
            self.git.close()


@pytest.fixture
def world(local_cluster: ClusterHandle, tmp_path: Path) -> Iterator[ScaleWorld]:
    apply_crds(local_cluster.kubectl)
    world = ScaleWorld(local_cluster, tmp_path)
    try:
        yield world
    finally:
        world.close()


def test_an_alert_wakes_a_playbook_at_zero_which_returns_to_zero(world: ScaleWorld) -> None:
    world.deploy({"minReplicas": 0, "maxReplicas": 2, "idleSeconds": 3})

    # One pod learns the commit's entry points (the router routes on them), then goes.
    head = world.repo.head()
    pb = wait_until("the entry points learned", lambda: _learned(world.playbook(), head), 90)
    assert [e["name"] for e in pb["status"]["playbooks"]] == ["triage"]
    pb = wait_until("the Playbook at zero", world.at_zero, 60)
    ready = condition(pb, "Ready")
    assert ready is not None and ready["status"] == "True", ready
    assert pb["status"]["scale"]["entryPointsCommit"] == head
    assert pb["status"]["readyReplicas"] == 0

    answer = world.stack.send_alert(
        world.namespace, "siem", {"title": "beacon", "severity": "high"},
        token=TOKEN, hmac_key=HMAC_KEY,
    )  # fmt: skip
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["deliveries"][0]["runId"]

    row = wait_until(
        "the run to succeed in a pod started for it",
        lambda: (r := world.run_row(run_id)) is not None and r["status"] == "succeeded" and r,
        60,
    )
    assert row["attempt"] == 1  # waiting for the pod cost the run no attempt
    assert '"beacon"' in row["result"]

    wait_until("the Playbook back at zero", world.at_zero, 60)
    # status.runs follows the database at most every 5 s (runcounts.py): it can trail the
    # scale-down by a refresh, so wait for the count rather than read the same snapshot.
    pb = wait_until(
        "the run counted in status.runs",
        lambda: (p := world.at_zero()) and p["status"].get("runs", {}).get("succeeded") == 1 and p,
        30,
    )
    assert pb["status"]["runs"]["succeeded"] == 1
    # Scaling up and down at a known commit is no rollout: Ready never went False.
    assert condition(pb, "Ready") == ready
    assert pb["status"]["scale"]["lastActiveTime"].endswith("Z")


def _learned(pb: dict[str, Any], head: str) -> dict[str, Any] | None:
    status = pb.get("status", {})
    known = status.get("scale", {}).get("entryPointsCommit") == head
    return pb if known and status.get("playbooks") else None
