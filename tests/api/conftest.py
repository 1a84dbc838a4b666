"""The runs.kubesoar.dev API on the local cluster, reached the way users reach it.

`runs_api` (module scope) seeds the test bed's PostgreSQL with alerts and runs in two
tenant namespaces (through the store's own group committer and dispatch calls, so the
records are what a runtime pod reports), starts a real `kubesoar router` serving the
API on 127.0.0.1 over HTTPS and registers it with the kube-apiserver's aggregator
(tests/support/runsapi.py: APIService with a verified caBundle, the chart's RBAC).
Users are real: client certificates from the cluster CA, kubeconfigs of their own,
RoleBindings to the built-in `edit` and `view` roles.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support import runsapi
from support.cluster import ClusterHandle
from support.stack import KubesoarStack, apply_crds, free_port

PAGED_RUNS = 250


@dataclass
class Seeded:
    """What the database holds for the tests, by namespace."""

    tenant_a: str
    tenant_b: str
    paged: str
    alert_ids: dict[str, list[str]] = field(default_factory=dict)
    run_ids: dict[str, list[str]] = field(default_factory=dict)
    failed_run: str = ""
    succeeded_run: str = ""
    waiting_runs: list[str] = field(default_factory=list)


@dataclass
class RunsApi:
    cluster: ClusterHandle
    seeded: Seeded
    kubeconfigs: dict[str, Path]
    stack: KubesoarStack
    api_port: int

    def kubectl_as(
        self, user: str, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.cluster.kubectl_bin), f"--kubeconfig={self.kubeconfigs[user]}", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
            input=input,
        )

    def popen_as(self, user: str, *args: str) -> subprocess.Popen[str]:
        """kubectl as `user`, left running (a watch); the caller kills it."""
        return subprocess.Popen(
            [str(self.cluster.kubectl_bin), f"--kubeconfig={self.kubeconfigs[user]}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def add_run(self, namespace: str, playbook: str) -> str:
        """A new queued run (and its alert) committed as ingest commits them; its id."""
        assert self.cluster.database_url_file is not None
        url = self.cluster.database_url_file.read_text().strip()
        return asyncio.run(_add_run(url, namespace, playbook))


async def _add_run(database_url: str, namespace: str, playbook: str) -> str:
    from kubesoar_store import GroupCommitter, NewAlert, NewRun
    from kubesoar_store.pool import create_pool

    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        async with GroupCommitter(pool) as committer:
            run = NewRun(playbook=playbook, idempotency_key=f"{uuid.uuid4()}:{playbook}")
            await committer.submit(NewAlert(namespace=namespace, source="siem", alert={}), [run])
            return str(run.id)
    finally:
        await pool.close()


async def _seed(database_url: str, seeded: Seeded) -> None:
    from kubesoar_store import (
        GroupCommitter,
        NewAlert,
        NewRun,
        RunRecord,
        approvals,
        dispatch,
        journal,
    )
    from kubesoar_store.pool import create_pool

    pool = await create_pool(database_url, min_size=1, max_size=4)
    try:
        async with GroupCommitter(pool) as committer:
            for namespace, count in (
                (seeded.tenant_a, 3),
                (seeded.tenant_b, 1),
                (seeded.paged, PAGED_RUNS),
            ):
                for i in range(count):
                    playbook = "triage" if i % 2 == 0 else "enrich"
                    run = NewRun(
                        playbook=playbook,
                        idempotency_key=f"{uuid.uuid4()}:{playbook}",
                        entry_points=("main",),
                    )
                    alert = NewAlert(
                        namespace=namespace,
                        source="siem",
                        alert={"title": f"alert {i}", "severity": "high"},
                        correlation_id=f"corr-{namespace}-{i}",
                    )
                    accepted = await committer.submit(alert, [run])
                    seeded.alert_ids.setdefault(namespace, []).append(str(accepted.alert_id))
                    seeded.run_ids.setdefault(namespace, []).append(str(run.id))
        # Two runs of tenant A end as a runtime pod would report them.
        claimed = await dispatch.claim(
            pool, "tests", limit=2, lease_seconds=60, namespaces=[seeded.tenant_a]
        )
        ok, bad = claimed
        await journal.put(
            pool,
            ok.id,
            ok.token,
            0,
            action="isolate",
            status="succeeded",
            result={"isolated": "10.0.0.7"},
        )
        await dispatch.complete(
            pool,
            ok.id,
            ok.token,
            RunRecord(
                status="succeeded",
                result={
                    "results": [{"name": "main", "status": "succeeded", "result": {"ok": 1}}],
                    "actions": [{"name": "isolate", "status": "succeeded", "attempt": 1}],
                },
            ),
        )
        await dispatch.complete(
            pool,
            bad.id,
            bad.token,
            RunRecord(
                status="failed",
                error="KeyError: 'ip'",
                traceback="File \"triage.py\", line 12, in main\nKeyError: 'ip'",
            ),
        )
        seeded.succeeded_run, seeded.failed_run = str(ok.id), str(bad.id)
        # Three runs wait for a person, as a runtime pod parks them at `ctx.approval`.
        for i in range(3):
            alert = NewAlert(namespace=seeded.tenant_a, source="siem", alert={"title": "x"})
            run = NewRun(playbook="contain", idempotency_key=f"{uuid.uuid4()}:contain")
            async with GroupCommitter(pool) as committer:
                accepted = await committer.submit(alert, [run])
            seeded.alert_ids[seeded.tenant_a].append(str(accepted.alert_id))
            [parked] = await dispatch.claim(
                pool,
                "tests",
                limit=1,
                lease_seconds=60,
                namespaces=[seeded.tenant_a],
                playbook="contain",
            )
            waiting = approvals.Waiting(
                seq=0, title=f"Isolate host-{i}?", details={"host": f"host-{i}"}, ttl_seconds=3600
            )
            await approvals.suspend(pool, parked.id, parked.token, waiting, RunRecord("waiting"))
            seeded.waiting_runs.append(str(parked.id))
            seeded.run_ids[seeded.tenant_a].append(str(parked.id))
    finally:
        await pool.close()


def _create_only_approval(namespace: str, user: str) -> list[dict[str, Any]]:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "post-approval-only", "namespace": namespace},
        "rules": [
            {
                "apiGroups": ["runs.kubesoar.dev"],
                "resources": ["runs/approval"],
                "verbs": ["create"],
            }
        ],
    }
    binding = runsapi.binding(namespace, user, "post-approval-only")
    binding["roleRef"]["kind"] = "Role"
    return [role, binding]


@pytest.fixture(scope="module")
def runs_api(
    local_cluster: ClusterHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunsApi]:
    if local_cluster.local is None or local_cluster.database_url_file is None:
        pytest.skip("needs the local test bed (its PKI and PostgreSQL)")
    apply_crds(local_cluster.kubectl)  # the router watches Playbooks and AlertSources
    suffix = uuid.uuid4().hex[:6]
    seeded = Seeded(f"tenant-a-{suffix}", f"tenant-b-{suffix}", f"paged-{suffix}")
    for namespace in (seeded.tenant_a, seeded.tenant_b, seeded.paged):
        local_cluster.kubectl("create", "namespace", namespace)
    port = free_port()
    stack = KubesoarStack(
        kubeconfig=local_cluster.kubeconfig,
        # The router's ingest/dispatch scope: not the seeded namespaces, so its dispatcher
        # leaves their queued runs alone; the API serves every namespace's records.
        namespaces=["default"],
        workdir=tmp_path_factory.mktemp("runs-api"),
        database_url_file=local_cluster.database_url_file,
        router_args=runsapi.serving_cert(local_cluster).router_args(port),
    )
    stack.migrate()
    asyncio.run(_seed(local_cluster.database_url_file.read_text().strip(), seeded))
    stack.start_router()
    try:
        runsapi.register(local_cluster, port)
        runsapi.apply(
            local_cluster,
            runsapi.binding(seeded.tenant_a, "alice", "edit"),
            runsapi.binding(seeded.tenant_a, "victor", "view"),
            runsapi.binding(seeded.tenant_b, "bob", "edit"),
            # dana may read and approve, nothing else (the chart's approver role).
            runsapi.binding(seeded.tenant_a, "dana", "kubesoar-runs-approve"),
            # carol may POST runs/approval (the kube-apiserver's check) but lacks the
            # router's `approve` verb.
            *_create_only_approval(seeded.tenant_a, "carol"),
        )
        users = ("alice", "victor", "bob", "dana", "carol")
        kubeconfigs = {user: runsapi.user_kubeconfig(local_cluster, user) for user in users}
        yield RunsApi(local_cluster, seeded, kubeconfigs, stack, port)
    finally:
        runsapi.unregister(local_cluster)
        stack.stop()
        for namespace in (seeded.tenant_a, seeded.tenant_b, seeded.paged):
            local_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
