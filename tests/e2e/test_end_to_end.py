"""End to end on the real control plane: commit → Playbook → pods → signed alert → run → status.

Everything is real: the API server and etcd, the node agent running the runtime
pods as processes, a Git repository served over smart HTTP with basic auth, the
operator and router as subprocesses, HTTP between router and runtime, and a
"sink" HTTP server standing in for the integration a playbook calls, which
records every alert a run handled. The sink is how the tests prove that every
alert the router acknowledged was executed.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from support.cluster import ClusterHandle
from support.git_http import GitHTTPServer
from support.gitops_health import health
from support.sink import RecordingSink
from support.stack import (
    KubesoarStack,
    apply_crds,
    condition,
    delete_namespace,
    find_run,
    kubectl_json,
    signed_source,
    wait_for,
)

pytestmark = pytest.mark.cluster

GIT_USER, GIT_PASSWORD = "soc", "e2e-git-password-3f9c"
HMAC_KEY = "e2e-hmac-key-6b1d"
TICKETING_KEY = "e2e-ticketing-api-key-5e2a"
TENANTS = ("acme", "globex")

PLAYBOOK_CODE = '''
"""Triage: record each high-severity alert at the sink (stands in for a ticketing API)."""
import os

import hashlib

import httpx
from kubesoar import Alert, action, current_context, playbook

VERSION = "{version}"


@action(timeout=10, retries=3, retry_backoff=1.5)
async def record(alert: Alert) -> int:
    # The ticketing credential, read from the Secret mounted for this Playbook; only its
    # digest leaves the pod, so the test can prove the pod read the right value.
    api_key = current_context().secret("ticketing", "apiKey")
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.post(
            os.environ["SINK_URL"],
            json={{"alertId": alert.id, "tenant": alert.tenant, "version": VERSION,
                   "title": alert.title,
                   "secretDigest": hashlib.sha256(api_key.encode()).hexdigest()}},
        )
        answer.raise_for_status()
        return answer.status_code


@playbook(trigger="webhook", conditions={{"severity": ["high", "critical"]}}, order=10)
async def triage(alert: Alert) -> dict:
    await record(alert)
    return {{"version": VERSION}}
'''

BROKEN_CODE = """
from kubesoar import playbook

@playbook(trigger="webhook")
async def broken(alert):
    return {}

raise RuntimeError("missing configuration: TICKET_QUEUE")
"""


class Sink(RecordingSink):
    """Records the JSON bodies playbooks post to it (stands in for a ticketing API)."""

    def ids(self, tenant: str | None = None) -> set[str]:
        """Alert ids recorded, all of them or those of one tenant (its namespace)."""
        return {r["alertId"] for r in list(self.records) if tenant in (None, r["tenant"])}


class World:
    """The shared setup: two tenant namespaces, a Git repo, a sink, operator and router."""

    def __init__(self, cluster: ClusterHandle, workdir: Path) -> None:
        self.cluster = cluster
        self.suffix = uuid.uuid4().hex[:6]
        self.namespaces = {t: f"e2e-{t}-{self.suffix}" for t in TENANTS}
        self.git = GitHTTPServer(workdir / "git", username=GIT_USER, password=GIT_PASSWORD)
        self.git.start()
        self.repo = self.git.create_repo(
            "playbooks",
            {
                "triage/triage.py": PLAYBOOK_CODE.format(version="v1"),
                "broken/broken.py": BROKEN_CODE,
            },
        )
        self.sink = Sink()
        for tenant, ns in self.namespaces.items():
            self.apply(
                {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": ns, "labels": {
                     "pod-security.kubernetes.io/enforce": "restricted", "e2e": tenant}}},
            )  # fmt: skip
        self.stack = KubesoarStack(
            kubeconfig=cluster.kubeconfig,
            namespaces=list(self.namespaces.values()),
            workdir=workdir,
            database_url_file=cluster.database_url_file,
        )
        self.stack.start()

    def apply(self, *objects: dict[str, Any], namespace: str | None = None) -> None:
        ns_args = ["-n", namespace] if namespace else []
        text = yaml.safe_dump_all(objects)
        self.cluster.kubectl("apply", *ns_args, "-f", "-", input=text)

    def deploy_tenant(self, tenant: str, *, token: str) -> None:
        """The AlertSource, its Secret, the Git Secret and the triage Playbook of a tenant."""
        ns = self.namespaces[tenant]
        self.apply(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "git-auth"},
             "stringData": {"username": GIT_USER, "password": GIT_PASSWORD}},
            *signed_source(token, HMAC_KEY),
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ticketing-api"},
             "stringData": {"apiKey": TICKETING_KEY}},
            self.playbook("triage", "triage/", "triage"),
            namespace=ns,
        )  # fmt: skip

    def playbook(self, name: str, path: str, module: str) -> dict[str, Any]:
        return {
            "apiVersion": "kubesoar.dev/v1alpha1",
            "kind": "Playbook",
            "metadata": {"name": name},
            "spec": {
                "source": {
                    "git": {
                        "url": self.git.url("playbooks"),
                        "ref": {"branch": "main"},
                        "secretRef": {"name": "git-auth"},
                    },
                    "path": path,
                    "interval": "10s",
                },
                "module": module,
                "replicas": 2,
                "runtime": {
                    "env": [{"name": "SINK_URL", "value": self.sink.url}],
                    "secrets": [{"name": "ticketing", "secretRef": {"name": "ticketing-api"}}],
                },
            },
        }

    def get(self, tenant: str, kind: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = kubectl_json(
            self.cluster.kubectl, "-n", self.namespaces[tenant], "get", kind, name
        )
        return result

    def wait_ready(self, tenant: str, name: str, revision_sha: str | None = None) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            pb = self.get(tenant, "playbook", name)
            cond = condition(pb, "Ready")
            revision = pb.get("status", {}).get("source", {}).get("revision", "")
            if cond and cond["status"] == "True" and (not revision_sha or revision_sha in revision):
                return pb
            return None

        try:
            return wait_for(f"playbook {tenant}/{name} Ready", ready, timeout=180)
        except TimeoutError:
            print(self.stack.logs()[-8000:])
            raise

    def send(
        self, tenant: str, alert: dict[str, Any], *, token: str, source_tenant: str | None = None
    ) -> httpx.Response:
        """POST a signed alert to `source_tenant`'s source path (default: the tenant's own)."""
        ns = self.namespaces[source_tenant or tenant]
        return self.stack.send_alert(ns, "siem", alert, token=token, hmac_key=HMAC_KEY)

    def close(self) -> None:
        for ns in self.namespaces.values():
            delete_namespace(self.cluster.kubectl, ns)
        self.stack.stop()
        self.sink.close()
        self.git.close()


TOKENS = {"acme": "acme-ingest-token-01", "globex": "globex-ingest-token-02"}


@pytest.fixture(scope="module")
def world(
    local_cluster: ClusterHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    apply_crds(local_cluster.kubectl)
    world = World(local_cluster, tmp_path_factory.mktemp("e2e"))
    try:
        for tenant in TENANTS:
            world.deploy_tenant(tenant, token=TOKENS[tenant])
        yield world
    finally:
        world.close()


def high_alert(title: str) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "title": title, "severity": "high", "source_ip": "203.0.113.7"}


def test_signed_alert_runs_the_playbook_and_status_counts_it(world: World) -> None:
    pb = world.wait_ready("acme", "triage", world.repo.head())
    assert health("Playbook", pb)["status"] == "Healthy"  # docs/gitops.md, as Argo CD runs it
    assert pb["status"]["source"]["revision"] == f"main@sha1:{world.repo.head()}"
    assert [e["name"] for e in pb["status"]["playbooks"]] == ["triage"]

    answer = world.send("acme", high_alert("ransomware beacon"), token=TOKENS["acme"])
    assert answer.status_code == 202, answer.text
    receipt = answer.json()
    assert [d["playbook"] for d in receipt["deliveries"]] == ["triage"]

    try:
        wait_for(
            "the run at the sink",
            lambda: receipt["alertId"] in world.sink.ids(world.namespaces["acme"]),
            60,
        )
    except TimeoutError:
        run_id = receipt["deliveries"][0]["runId"]
        print(
            json.dumps(
                find_run(
                    world.cluster.kubectl,
                    world.namespaces["acme"],
                    "triage",
                    run_id,
                    token=world.stack.caller_token(world.namespaces["acme"], "triage"),
                )
            )
        )
        raise

    # The run read the Playbook's Secret inside the pod (ctx.secret), the right value.
    record = next(r for r in world.sink.records if r["alertId"] == receipt["alertId"])
    assert record["secretDigest"] == hashlib.sha256(TICKETING_KEY.encode()).hexdigest()

    def counted() -> bool:
        runs = world.get("acme", "playbook", "triage")["status"].get("runs", {})
        return runs.get("succeeded", 0) >= 1 and runs.get("total", 0) >= 1

    wait_for("status.runs to count the run", counted, timeout=60)

    low = world.send("acme", {**high_alert("noise"), "severity": "low"}, token=TOKENS["acme"])
    assert low.status_code == 202 and low.json()["deliveries"] == []


def test_tenants_stay_isolated(world: World) -> None:
    world.wait_ready("acme", "triage")
    world.wait_ready("globex", "triage")

    # acme's token is not accepted at globex's source, even with the same source name.
    crossed = world.send("acme", high_alert("cross"), token=TOKENS["acme"], source_tenant="globex")
    assert crossed.status_code in (401, 403), crossed.text

    answer = world.send("globex", high_alert("globex only"), token=TOKENS["globex"])
    assert answer.status_code == 202, answer.text
    alert_id = answer.json()["alertId"]
    wait_for("globex's run", lambda: alert_id in world.sink.ids(world.namespaces["globex"]), 60)
    tenants = {r["tenant"] for r in world.sink.records if r["alertId"] == alert_id}
    assert tenants == {world.namespaces["globex"]}


def test_import_error_is_reported_and_others_are_unaffected(world: World) -> None:
    ns = world.namespaces["acme"]
    world.apply(world.playbook("broken", "broken/", "broken"), namespace=ns)

    def runtime_failed() -> dict[str, Any] | None:
        cond = condition(world.get("acme", "playbook", "broken"), "RuntimeReady")
        return (
            cond if cond and cond["status"] == "False" and "broken.py" in cond["message"] else None
        )

    cond = wait_for("RuntimeReady=False on the broken playbook", runtime_failed, timeout=180)
    assert "missing configuration: TICKET_QUEUE" in cond["message"]
    assert "broken.py:8" in cond["message"]

    world.wait_ready("acme", "triage")
    answer = world.send("acme", high_alert("still flowing"), token=TOKENS["acme"])
    assert answer.status_code == 202, answer.text
    assert [d["playbook"] for d in answer.json()["deliveries"]] == ["triage"]


def test_fix_commit_rolls_out_while_alerts_keep_flowing(world: World) -> None:
    world.wait_ready("acme", "triage")
    acknowledged: list[str] = []
    receipts: dict[str, list[dict[str, Any]]] = {}
    stop = threading.Event()

    def sender() -> None:
        # A sender retries a 503 as the router asks; every 202 is an acknowledgement.
        while not stop.is_set() and len(acknowledged) < 400:
            alert = high_alert(f"during rollout {len(acknowledged)}")
            for _ in range(20):
                answer = world.send("acme", alert, token=TOKENS["acme"])
                if answer.status_code == 202:
                    acknowledged.append(answer.json()["alertId"])
                    receipts[answer.json()["alertId"]] = answer.json()["deliveries"]
                    break
                assert answer.status_code in (429, 503), answer.text
                time.sleep(0.5)
            time.sleep(0.05)

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    try:
        new_sha = world.repo.commit({"triage/triage.py": PLAYBOOK_CODE.format(version="v2")}, "v2")
        world.cluster.kubectl(
            "-n", world.namespaces["acme"], "annotate", "--overwrite", "playbook/triage",
            f"kubesoar.dev/requestedAt={time.time()}",
        )  # fmt: skip
        world.wait_ready("acme", "triage", new_sha)

        def v2_ran() -> bool:
            return any(r["version"] == "v2" for r in list(world.sink.records))

        wait_for("a run of the new revision", v2_ran, timeout=120)
    finally:
        stop.set()
        thread.join(60)

    assert acknowledged, "no alert was acknowledged during the rollout"
    undelivered = [alert_id for alert_id, deliveries in receipts.items() if not deliveries]
    assert not undelivered, f"{len(undelivered)} of {len(receipts)} acknowledged with no delivery"
    missing = set(acknowledged) - world.sink.ids()
    if missing:
        wait_for(
            "every acknowledged alert to be executed",
            lambda: not (set(acknowledged) - world.sink.ids()),
            timeout=60,
        )
    assert not set(acknowledged) - world.sink.ids()


def test_no_credential_reaches_status_events_or_logs(world: World) -> None:
    world.wait_ready("acme", "triage")
    texts = [world.stack.logs()]
    for ns in world.namespaces.values():
        for kind in ("playbooks", "alertsources", "events"):
            texts.append(world.cluster.kubectl("-n", ns, "get", kind, "-o", "yaml").stdout)
    blob = "\n".join(texts)
    for secret in (GIT_PASSWORD, HMAC_KEY, TICKETING_KEY, *TOKENS.values()):
        assert secret not in blob


def test_alertsource_without_its_secret_is_stalled_with_an_event(world: World) -> None:
    ns = world.namespaces["acme"]
    world.apply(
        {"apiVersion": "kubesoar.dev/v1alpha1", "kind": "AlertSource",
         "metadata": {"name": "edr"},
         "spec": {"format": "defender",
                  "auth": {"bearer": {"secretRef": {"name": "edr-ingest", "key": "token"}}}}},
        namespace=ns,
    )  # fmt: skip

    def stalled() -> dict[str, Any] | None:
        cond = condition(world.get("acme", "alertsource", "edr"), "Ready")
        return cond if cond and cond["reason"] == "SecretNotFound" else None

    cond = wait_for("AlertSource edr to report its missing Secret", stalled, timeout=60)
    assert cond["status"] == "False" and "edr-ingest" in cond["message"]
    # Argo CD's view, with docs/gitops.md's health check as written, of the real object.
    assert health("AlertSource", world.get("acme", "alertsource", "edr"))["status"] == "Degraded"

    def warned() -> bool:
        events = kubectl_json(
            world.cluster.kubectl, "-n", ns, "get", "events",
            "--field-selector", "involvedObject.name=edr,involvedObject.kind=AlertSource",
        )  # fmt: skip
        return any(
            e["reason"] == "SecretNotFound" and e["type"] == "Warning" for e in events["items"]
        )

    wait_for("a SecretNotFound Warning Event", warned, timeout=30)

    # The router refuses the source until the Secret exists, never with a 202. Before
    # authentication the answer is the same as for a source that does not exist (401):
    # the AlertSource's status and Event above are where its owner learns why.
    answer = world.stack.send_alert(ns, "edr", high_alert("x"), token="t", hmac_key=HMAC_KEY)
    assert answer.status_code == 401, answer.text
    unknown = world.stack.send_alert(ns, "nope", high_alert("x"), token="t", hmac_key=HMAC_KEY)
    assert (unknown.status_code, unknown.json()) == (401, answer.json())
