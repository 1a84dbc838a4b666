"""`helm install` on the local cluster: the chart's own pods, end to end, upgraded, uninstalled.

Nothing runs outside the chart but the control plane (with its node agent, which
runs the chart's pods from this checkout's installed package), a Git server on
loopback, and a "sink" HTTP server in this process standing in for the ticketing
API a playbook calls; it records every alert a run handled, so the test can count
that every alert the router accepted was run. Then:

- `helm install --wait` brings the operator and the router to Ready. Each pod runs
  as its own ServiceAccount: the token the agent mounted is bound to that pod, the
  process reads it from the in-cluster folder, and no other credential reaches it.
- `helm test` (templates/tests/) passes on the fresh install.
- A tenant (a user with a Role in its namespace only) applies a Playbook and an
  AlertSource; an alert posted to a router pod (its address from the router
  Service's EndpointSlices, never a ClusterIP) runs, and the run record says so.
- `helm upgrade` with a changed value rolls both Deployments while alerts keep
  coming: every accepted alert runs, and one sent after the roll too.
- `helm uninstall` leaves nothing of the release but the CRDs; what tenants made
  (their Playbooks and the runtime pods those own) stays until they delete it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from packaging_support import CHART, Kubectl
from support.git_http import GitHTTPServer
from support.sink import RecordingSink
from support.stack import find_run

pytestmark = pytest.mark.cluster

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
TENANT_USER = "tenant-alice"
INGEST_TOKEN = "chart-install-ingest-token-7d1e"
KUBESOAR_CRDS = {"playbooks.kubesoar.dev", "alertsources.kubesoar.dev"}

PLAYBOOK_MODULE = """\
import os

import asyncpg
import httpx
from kubesoar import Alert, playbook


@playbook(trigger="webhook", conditions={"severity": ["high", "critical"]})
async def triage(alert: Alert) -> dict:
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.post(os.environ["SINK_URL"], json={"alertId": alert.id})
        answer.raise_for_status()
    return {"seen": alert.title}
"""


class Sink(RecordingSink):
    """Records the alert ids runs post to it (stands in for a ticketing API)."""

    @property
    def ids(self) -> set[str]:
        return {str(r.get("alertId")) for r in list(self.records)}


def wait_for(what: str, check: Callable[[], Any], timeout: float, logs: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}\n{logs()}")


class Release:
    """One release of the chart on the local cluster, driven with the real helm CLI."""

    def __init__(self, helm: Path, kubectl: Kubectl, cluster: Any, name: str, ns: str) -> None:
        self.helm_bin, self.kubectl, self.cluster = helm, kubectl, cluster
        self.name, self.namespace = name, ns
        self.installed = False

    def helm(self, *args: str, values: dict[str, Any] | None = None) -> str:
        cmd = [str(self.helm_bin), *args, f"--kubeconfig={self.kubectl.kubeconfig}"]
        cmd += [f"--namespace={self.namespace}"]
        if values is not None:
            cmd += ["--values", "-"]
        proc = subprocess.run(
            cmd, input=yaml.safe_dump(values or {}), capture_output=True, text=True, timeout=400
        )
        assert proc.returncode == 0, f"helm {args[0]}: {proc.stdout}\n{proc.stderr}\n{self.logs()}"
        return proc.stdout

    def component(self, component: str) -> str:
        return f"{self.name}-kubesoar-{component}"

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl.run("get", *args, "-o", "json").stdout)

    def pods(self, component: str) -> list[dict[str, Any]]:
        selector = f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component={component}"
        pods: list[dict[str, Any]] = self.json(
            "pods", f"--namespace={self.namespace}", f"--selector={selector}"
        )["items"]
        return pods

    def logs(self) -> str:
        """The last lines of every operator and router container, for failure messages."""
        out = []
        for component in ("operator", "router"):
            for pod in self.pods(component):
                name = pod["metadata"]["name"]
                text = self.cluster.pod_log(self.namespace, name, component)
                out.append(f"--- {name}\n{text[-3000:]}")
        return "\n".join(out)

    def router_addresses(self) -> list[str]:
        """host:port of each ready router pod, from the router Service's EndpointSlices."""
        slices = self.json(
            "endpointslices",
            f"--namespace={self.namespace}",
            f"--selector=kubernetes.io/service-name={self.component('router')}",
        )["items"]
        addresses = []
        for item in slices:
            port = next(p["port"] for p in item.get("ports") or [] if p.get("name") == "http")
            for endpoint in item.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready"):
                    addresses += [f"{address}:{port}" for address in endpoint["addresses"]]
        return addresses


def post_alert(release: Release, tenant: str, alert: dict[str, Any]) -> dict[str, Any] | None:
    """POST to a ready router pod; the receipt on 202, None when no router took it."""
    for address in release.router_addresses():
        try:
            answer = httpx.post(
                f"http://{address}/v1/namespaces/{tenant}/sources/siem/alerts",
                json=alert,
                headers={"Authorization": f"Bearer {INGEST_TOKEN}"},
                timeout=10,
            )
        except httpx.HTTPError:
            continue  # the pod is going away; the next address (or attempt) takes it
        if answer.status_code == 202:
            receipt: dict[str, Any] = answer.json()
            return receipt
        # Not synced yet or shutting down: the router says so, a sender retries.
        assert answer.status_code in (404, 429, 503), answer.text
    return None


def stored_status(database_url: str, run_ids: list[str]) -> dict[str, str]:
    """The status of each run the database holds, by run id."""

    async def read() -> dict[str, str]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT id::text, status FROM runs WHERE id = ANY($1::uuid[])", run_ids
            )
        finally:
            await conn.close()
        return {row["id"]: row["status"] for row in rows}

    return asyncio.run(read())


def high_alert(title: str) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "title": title, "severity": "high"}


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in raw if b"=" in entry)


def assert_runs_as_its_own_service_account(release: Release, component: str) -> None:
    """The pod's process reads the token the agent mounted for that pod, and nothing else."""
    pods = release.pods(component)
    assert pods
    for pod in pods:
        name = pod["metadata"]["name"]
        assert pod["spec"]["serviceAccountName"] == release.component(component)
        pid = release.cluster.container_pid(release.namespace, name, component)
        assert pid is not None, f"{name} has no running {component} process"
        env = environ(pid)
        folder = Path(env["KUBESOAR_SERVICE_ACCOUNT_DIR"])
        pod_dir = release.cluster.pod_dir(release.namespace, name)
        assert pod_dir in folder.parents, folder
        claims = jwt_claims((folder / "token").read_text())
        account = f"system:serviceaccount:{release.namespace}:{release.component(component)}"
        assert claims["sub"] == account
        assert claims["kubernetes.io"]["pod"]["name"] == name  # bound to this very pod
        assert (folder / "namespace").read_text() == release.namespace
        assert env["KUBERNETES_SERVICE_HOST"].startswith("127.")  # the API server, not a ClusterIP
        kubeconfig = env.get("KUBECONFIG")  # the agent's, holding this pod's token, if any
        assert kubeconfig is None or pod_dir in Path(kubeconfig).parents, kubeconfig


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink()
    yield server
    server.close()


@pytest.fixture
def git(tmp_path: Path) -> Iterator[GitHTTPServer]:
    server = GitHTTPServer(tmp_path / "git").start()
    yield server
    server.close()


def tenant_access(tenant: str) -> list[dict[str, Any]]:
    """What the tenant's user may do in its own namespace, and nowhere else."""
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "playbook-author", "namespace": tenant},
            "rules": [
                {
                    "apiGroups": ["kubesoar.dev"],
                    "resources": ["playbooks", "alertsources"],
                    "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
                },
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "patch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "playbook-author", "namespace": tenant},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "playbook-author",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": TENANT_USER}
            ],
        },
    ]


def tenant_objects(tenant: str, git_url: str, sink_url: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "ingest", "namespace": tenant},
            "stringData": {"token": INGEST_TOKEN},
        },
        {
            "apiVersion": "kubesoar.dev/v1alpha1",
            "kind": "AlertSource",
            "metadata": {"name": "siem", "namespace": tenant},
            "spec": {
                "format": "generic",
                "auth": {"bearer": {"secretRef": {"name": "ingest", "key": "token"}}},
            },
        },
        {
            "apiVersion": "kubesoar.dev/v1alpha1",
            "kind": "Playbook",
            "metadata": {"name": "triage", "namespace": tenant},
            "spec": {
                "source": {"git": {"url": git_url, "ref": {"branch": "main"}}},
                "module": "triage",
                "replicas": 1,
                "runtime": {"env": [{"name": "SINK_URL", "value": sink_url}]},
            },
        },
    ]


def leftovers(release: Release, namespaces: list[str]) -> list[str]:
    """Every object still labelled with the release, namespaced or cluster-scoped."""
    selector = f"--selector=app.kubernetes.io/instance={release.name}"
    kinds = "all,secrets,serviceaccounts,roles,rolebindings,networkpolicies,poddisruptionbudgets"
    found = []
    for ns in namespaces:
        proc = release.kubectl.run("get", kinds, f"--namespace={ns}", selector, "-o", "name")
        found += [f"{ns}/{line}" for line in proc.stdout.split()]
    proc = release.kubectl.run("get", "clusterroles,clusterrolebindings", selector, "-o", "name")
    return found + proc.stdout.split()


def test_chart_installs_runs_a_playbook_upgrades_and_uninstalls(
    helm_bin, kubectl, local_cluster, make_namespace, release_name, git, sink, empty_database_url
):
    system = make_namespace("kubesoar-system", labels=RESTRICTED)
    tenant = make_namespace("tenant", labels=RESTRICTED)
    release = Release(helm_bin, kubectl, local_cluster, release_name, system)
    # The system of record: an empty database the chart's hook Job migrates; its URL in a
    # Secret, as a CloudNativePG `-app` Secret or a managed service's would be.
    kubectl.apply(
        [{"apiVersion": "v1", "kind": "Secret",
          "metadata": {"name": "kubesoar-database", "namespace": system},
          "stringData": {"uri": empty_database_url}}]
    )  # fmt: skip
    values = {
        "rbac": {"scope": "namespaced", "tenantNamespaces": [tenant]},
        "database": {"existingSecret": "kubesoar-database", "urlKey": "uri"},
    }
    git.create_repo("playbooks", {"triage.py": PLAYBOOK_MODULE})
    kubectl.apply(tenant_access(tenant))
    as_tenant = f"--as={TENANT_USER}"
    try:
        # -- install: the chart's own pods become Ready, as their own ServiceAccounts.
        release.helm("install", release.name, str(CHART), "--wait", "--timeout=300s", values=values)
        release.installed = True
        for component, replicas in (("operator", 1), ("router", 2)):
            deployment = release.json("deployment", release.component(component), f"-n={system}")
            assert deployment["status"].get("readyReplicas") == replicas
            assert_runs_as_its_own_service_account(release, component)
        assert "Phase:          Succeeded" in release.helm("test", release.name, "--timeout=120s")

        # -- a tenant's Playbook and AlertSource; an alert runs through the chart's router.
        kubectl.apply(tenant_objects(tenant, git.url("playbooks"), sink.url), as_tenant)
        kubectl.run("wait", "playbook/triage", f"-n={tenant}", "--for=condition=Ready",
                    "--timeout=240s")  # fmt: skip
        first = high_alert("first alert through the chart")
        receipt = wait_for(
            "the chart's router to accept the alert",
            lambda: post_alert(release, tenant, first),
            timeout=120,
            logs=release.logs,
        )
        assert [d["playbook"] for d in receipt["deliveries"]] == ["triage"]
        key = base64.b64decode(
            release.json("secret", release.component("signing-key"), f"-n={system}")["data"][
                "signing-key"
            ]
        ).strip()
        from kubesoar.contracts.caller import caller_token

        token = caller_token(key, tenant, "triage")
        run_id = receipt["deliveries"][0]["runId"]

        def finished() -> dict[str, Any] | None:
            run = find_run(local_cluster.kubectl, tenant, "triage", run_id, token=token)
            return run if run and run.get("status") in ("succeeded", "failed") else None

        run = wait_for("the run to finish", finished, timeout=60, logs=release.logs)
        assert run["status"] == "succeeded", run
        assert receipt["alertId"] in sink.ids
        # The record is in the database, written by the pod's report through the router.
        recorded = wait_for(
            "the run's record in the database",
            lambda: stored_status(empty_database_url, [run_id]) == {run_id: "succeeded"},
            timeout=60,
            logs=release.logs,
        )
        assert recorded

        # -- upgrade with a changed value: both Deployments roll while alerts keep coming.
        before = {
            c: {p["metadata"]["name"] for p in release.pods(c)} for c in ("operator", "router")
        }
        accepted: list[str] = []
        receipts: list[list[dict[str, Any]]] = []
        stop = threading.Event()

        def sender() -> None:
            while not stop.is_set() and len(accepted) < 300:
                alert = high_alert(f"during the upgrade {len(accepted)}")
                for _ in range(40):  # a sender retries until a router takes it
                    taken = post_alert(release, tenant, alert)
                    if taken is not None:
                        accepted.append(taken["alertId"])
                        receipts.append(taken["deliveries"])
                        break
                    time.sleep(0.25)
                time.sleep(0.1)

        thread = threading.Thread(target=sender, daemon=True)
        thread.start()
        try:
            upgraded = {
                **values,
                "operator": {"logLevel": "debug"},
                "router": {"logLevel": "debug"},
            }
            release.helm("upgrade", release.name, str(CHART), "--wait", "--timeout=300s",
                         values=upgraded)  # fmt: skip

            def rolled() -> bool:
                now = {c: {p["metadata"]["name"] for p in release.pods(c)} for c in before}
                return all(now[c] and not now[c] & before[c] for c in before)

            wait_for("the old pods to go", rolled, timeout=120, logs=release.logs)
        finally:
            stop.set()
            thread.join(120)
        router_args = release.pods("router")[0]["spec"]["containers"][0]["args"]
        assert "--log-level=DEBUG" in router_args
        assert "--verbose" in release.pods("operator")[0]["spec"]["containers"][0]["args"]
        after = high_alert("after the upgrade")
        after_receipt = wait_for(
            "a router to accept an alert after the roll",
            lambda: post_alert(release, tenant, after),
            timeout=120,
            logs=release.logs,
        )
        expected = {*accepted, after_receipt["alertId"]}
        wait_for(
            "every accepted alert to run",
            lambda: expected <= sink.ids,
            timeout=120,
            logs=lambda: f"missing {len(expected - sink.ids)} of {len(expected)}",
        )
        assert accepted, "no alert was accepted while the chart rolled"
        # Every accepted alert has its run on record, finished (none missing, none stuck).
        run_ids = [d["runId"] for deliveries in receipts for d in deliveries]
        statuses = stored_status(empty_database_url, run_ids)
        assert len(statuses) == len(run_ids)
        assert set(statuses.values()) == {"succeeded"}, statuses
        assert_runs_as_its_own_service_account(release, "router")

        # -- uninstall: nothing of the release is left but the CRDs.
        release.helm("uninstall", release.name, "--wait", "--timeout=120s")
        release.installed = False
        wait_for(
            "the release's objects to go",
            lambda: not leftovers(release, [system, tenant]),
            timeout=120,
            logs=lambda: "\n".join(leftovers(release, [system, tenant])),
        )
        crds = {o["metadata"]["name"] for o in release.json("crds")["items"]}
        assert crds >= KUBESOAR_CRDS, "helm uninstall keeps the CRDs (docs/install.md)"
        # What tenants made stays: their Playbook (an instance of a CRD) and the runtime
        # Deployment and Service it owns, until they delete it. No finalizer of the
        # departed operator holds it, and its children go with it.
        runtime = "deployments,services"
        owned = kubectl.run("get", runtime, f"-n={tenant}", "-o", "name").stdout.split()
        assert sorted(owned) == ["deployment.apps/triage-runtime", "service/triage"]
        kubectl.run("delete", "playbook/triage", "alertsource/siem", f"-n={tenant}", as_tenant,
                    "--wait=true", "--timeout=60s")  # fmt: skip
        wait_for(
            "the runtime children to go with their Playbook",
            lambda: not kubectl.run("get", runtime, f"-n={tenant}", "-o", "name").stdout.strip(),
            timeout=120,
            logs=lambda: "",
        )
    finally:
        if release.installed:
            kubectl.run("delete", "playbooks,alertsources", "--all", f"-n={tenant}",
                        "--timeout=60s", check=False)  # fmt: skip
            release.helm("uninstall", release.name, "--wait", "--timeout=120s")
