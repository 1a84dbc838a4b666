"""The operator against the real API server, node agent and runtime: Playbook → children →
Ready pods → status; new commits roll out; requestedAt acts at once; failures carry reasons
while other Playbooks stay Ready; credentials leak nowhere; deletion garbage-collects;
a restarted operator converges without duplicates; restricted namespaces admit the pods."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families
from support.cluster import ClusterHandle, wait_for
from support.git_http import GitHTTPServer, GitRepo
from support.gitops_health import health

pytestmark = pytest.mark.cluster

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD = REPO_ROOT / "crds" / "playbook.yaml"
KUBESOAR = Path(sys.executable).with_name("kubesoar")
PASSWORD = "planted-Cred-" + uuid.uuid4().hex[:12]
GROUP, VERSION, PLURAL = "kubesoar.dev", "v1alpha1", "playbooks"
STALL_AFTER_FAILURES = 3  # kubesoar_operator.conditions: Stalled from this attempt in a row

MODULE = '''
from kubesoar import Alert, playbook


@playbook(trigger="webhook", conditions={"severity": ["high", "critical"]}, order=10)
async def triage(alert: Alert) -> dict:
    """Triage phishing reports."""
    return {"verdict": "VERSION"}
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Operator:
    """`kubesoar operator` as a subprocess watching one namespace, logging to a file."""

    def __init__(self, cluster: ClusterHandle, namespace: str, state: Path) -> None:
        self.cluster, self.namespace, self.state = cluster, namespace, state
        self.log = state / "operator.log"
        self.port = _free_port()
        self.metrics_port = _free_port()
        self.key = state / "signing-key"
        self.key.write_text(uuid.uuid4().hex * 2)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [
            str(KUBESOAR), "operator", f"--kubeconfig={self.cluster.kubeconfig}",
            f"--namespace={self.namespace}", f"--artifact-listen=127.0.0.1:{self.port}",
            f"--artifact-url=http://127.0.0.1:{self.port}", f"--signing-key-file={self.key}",
            f"--state-dir={self.state / 'data'}", "--status-interval=1",
            "--system-namespace=kubesoar-system", "--runtime-image=ghcr.io/kubesoar/kubesoar:0.1.0",
            "--metrics-host=127.0.0.1", f"--metrics-port={self.metrics_port}",
        ]  # fmt: skip
        # Only --kubeconfig says where the cluster is: no $KUBECONFIG, no ~/.kube/config.
        home = self.state / "home"
        home.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env["HOME"] = str(home)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)

    def lines(self) -> list[dict[str, Any]]:
        """The JSON lines logged so far."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"level": "raw", "message": line})
        return out

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The samples of /metrics: (name, sorted labels) -> value."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as answer:
            text = answer.read().decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture(scope="module")
def crd(local_cluster: ClusterHandle) -> None:
    local_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    local_cluster.kubectl(
        "wait", "--for=condition=Established", "crd/playbooks.kubesoar.dev", "--timeout=60s"
    )


@pytest.fixture(scope="module")
def tenant(k8s_client: Any, crd: None) -> Iterator[str]:
    """A namespace enforcing the `restricted` Pod Security Standard."""
    core = client.CoreV1Api(k8s_client)
    name = f"op-{uuid.uuid4().hex[:6]}"
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    core.create_namespace({"metadata": {"name": name, "labels": labels}})
    wait_for(lambda: core.list_namespaced_service_account(name).items, "default SA", timeout=30)
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def git(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHTTPServer]:
    with GitHTTPServer(tmp_path_factory.mktemp("git"), username="bob", password=PASSWORD) as server:
        yield server


@pytest.fixture(scope="module")
def operator(
    local_cluster: ClusterHandle, tenant: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    op = Operator(local_cluster, tenant, tmp_path_factory.mktemp("operator"))
    op.start()
    yield op
    op.stop()


@pytest.fixture(scope="module")
def api(k8s_client: Any) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(k8s_client)


@pytest.fixture(scope="module")
def git_secret(k8s_client: Any, tenant: str) -> str:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    client.CoreV1Api(k8s_client).create_namespaced_secret(
        tenant,
        {
            "metadata": {"name": "git-auth"},
            "data": {"username": b64("bob"), "password": b64(PASSWORD)},
        },
    )
    return "git-auth"


def _playbook(name: str, url: str, secret: str | None, **spec: Any) -> dict[str, Any]:
    git_spec: dict[str, Any] = {"url": url, "ref": {"branch": "main"}}
    if secret:
        git_spec["secretRef"] = {"name": secret}
    source = {"git": git_spec, "path": "pb/", "interval": "2s"}
    source.update(spec.pop("source", {}))
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Playbook",
        "metadata": {"name": name},
        "spec": {"source": source, "module": "triage", "replicas": 1, **spec},
    }


@pytest.fixture
def make_playbook(
    api: client.CustomObjectsApi, tenant: str, git: GitHTTPServer, git_secret: str
) -> Iterator[Callable[..., tuple[str, GitRepo]]]:
    created: list[str] = []

    def make(
        version: str = "v1", secret: str | None = "git-auth", **spec: Any
    ) -> tuple[str, GitRepo]:
        name = f"pb-{uuid.uuid4().hex[:6]}"
        repo = git.create_repo(name, {"pb/triage.py": MODULE.replace("VERSION", version)})
        url = spec.pop("url", git.url(name))
        api.create_namespaced_custom_object(
            GROUP, VERSION, tenant, PLURAL, _playbook(name, url, secret, **spec)
        )
        created.append(name)
        return name, repo

    yield make
    for name in created:
        try:
            api.delete_namespaced_custom_object(GROUP, VERSION, tenant, PLURAL, name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def _get(api: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    return obj


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return None


def _source_attempts(operator: Operator, namespace: str, name: str) -> int:
    """Attempts to resolve the source that failed, from the operator's own log line."""
    failed = f"source of {namespace}/{name} failed"
    return sum(1 for line in operator.lines() if failed in str(line.get("message")))


def _wait_condition(
    api: client.CustomObjectsApi, ns: str, name: str, type_: str, status: str,
    reason: str | None = None, timeout: float = 120,
) -> dict[str, Any]:  # fmt: skip
    def check() -> dict[str, Any] | None:
        obj = _get(api, ns, name)
        cond = _condition(obj, type_)
        if cond and cond["status"] == status and (reason is None or cond["reason"] == reason):
            return obj
        return None

    return wait_for(check, f"{name} {type_}={status} {reason or ''}", timeout=timeout)


def test_playbook_becomes_ready_with_restricted_children(
    local_cluster: ClusterHandle, operator: Operator, make_playbook: Any,
    api: client.CustomObjectsApi, k8s_client: Any, tenant: str,
) -> None:  # fmt: skip
    name, repo = make_playbook()
    obj = _wait_condition(api, tenant, name, "Ready", "True", timeout=180)
    status = obj["status"]
    assert status["source"]["revision"] == f"main@sha1:{repo.head()}"
    assert status["source"]["digest"].startswith("sha256:")
    assert status["readyReplicas"] == 1 and status["observedGeneration"] == 1
    assert [p["name"] for p in status["playbooks"]] == ["triage"]
    assert status["playbooks"][0]["conditions"] == {"severity": ["high", "critical"]}
    waited = local_cluster.kubectl(
        "-n", tenant, "wait", "--for=condition=Ready", f"playbook/{name}", "--timeout=30s"
    )
    assert "condition met" in waited.stdout

    apps, core = client.AppsV1Api(k8s_client), client.CoreV1Api(k8s_client)
    net = client.NetworkingV1Api(k8s_client)
    dep = apps.read_namespaced_deployment(f"{name}-runtime", tenant)
    assert dep.metadata.owner_references[0].name == name
    assert dep.metadata.labels["kubesoar.dev/playbook"] == name
    pod_spec = dep.spec.template.spec
    assert pod_spec.automount_service_account_token is False
    container = pod_spec.containers[0]
    assert container.security_context.read_only_root_filesystem is True
    assert container.security_context.capabilities.drop == ["ALL"]
    assert core.read_namespaced_service(name, tenant).spec.ports[0].port == 80
    assert core.read_namespaced_service_account(f"{name}-runtime", tenant)
    assert net.read_namespaced_network_policy(f"{name}-runtime", tenant)
    printed = local_cluster.kubectl("-n", tenant, "get", "pb", name).stdout
    assert "True" in printed and repo.head() in printed


def test_new_commit_rolls_out_and_requested_at_acts_at_once(
    operator: Operator, make_playbook: Any, api: client.CustomObjectsApi, tenant: str,
    k8s_client: Any,
) -> None:  # fmt: skip
    name, repo = make_playbook(source={"interval": "1h"})
    _wait_condition(api, tenant, name, "Ready", "True", timeout=180)
    new_sha = repo.commit({"pb/triage.py": MODULE.replace("VERSION", "v2")}, "v2")
    stamp = str(time.time())
    api.patch_namespaced_custom_object(
        GROUP, VERSION, tenant, PLURAL, name,
        {"metadata": {"annotations": {"kubesoar.dev/requestedAt": stamp}}},
    )  # fmt: skip

    def rolled() -> dict[str, Any] | None:
        obj = _get(api, tenant, name)
        cond = _condition(obj, "Ready")
        revision = (obj.get("status") or {}).get("source", {}).get("revision")
        if revision == f"main@sha1:{new_sha}" and cond and cond["status"] == "True":
            return obj
        return None

    # The interval is an hour: only the annotation can explain a prompt new revision.
    obj = wait_for(rolled, "new revision after requestedAt", timeout=180)
    assert obj["status"]["lastHandledReconcileAt"] == stamp
    dep = client.AppsV1Api(k8s_client).read_namespaced_deployment(f"{name}-runtime", tenant)
    assert dep.spec.template.metadata.annotations["kubesoar.dev/commit"] == new_sha


def test_branch_is_re_resolved_every_interval(
    operator: Operator, make_playbook: Any, api: client.CustomObjectsApi, tenant: str
) -> None:
    name, repo = make_playbook()
    _wait_condition(api, tenant, name, "Ready", "True", timeout=180)
    new_sha = repo.commit({"pb/triage.py": MODULE.replace("VERSION", "v3")}, "v3")
    wait_for(
        lambda: (
            (_get(api, tenant, name).get("status") or {}).get("source", {}).get("revision")
            == f"main@sha1:{new_sha}"
        ),
        "the new commit picked up by the interval",
        timeout=120,
    )
    _wait_condition(api, tenant, name, "Ready", "True", timeout=180)


def test_failures_have_reasons_and_never_leak_the_credential(
    operator: Operator, make_playbook: Any, api: client.CustomObjectsApi, tenant: str,
    k8s_client: Any, git: GitHTTPServer, local_cluster: ClusterHandle,
) -> None:  # fmt: skip
    good, _ = make_playbook()
    core = client.CoreV1Api(k8s_client)
    core.create_namespaced_secret(
        tenant,
        {
            "metadata": {"name": "wrong-auth"},
            "stringData": {"username": "bob", "password": PASSWORD + "x"},
        },
    )
    wrong_url, _ = make_playbook(url=git.url("does-not-exist"))
    bad_creds, _ = make_playbook(secret="wrong-auth")
    no_creds, _ = make_playbook(secret=None)
    invalid, _ = make_playbook(source={"git": {"url": git.url("x"), "ref": {"semver": ">=banana"}}})

    unreachable, _ = make_playbook(url=f"http://127.0.0.1:{_free_port()}/nothing-listens.git")

    _wait_condition(api, tenant, wrong_url, "SourceReady", "False", "RepositoryNotFound")
    _wait_condition(api, tenant, bad_creds, "SourceReady", "False", "AuthenticationFailed")
    _wait_condition(api, tenant, no_creds, "SourceReady", "False", "AuthenticationFailed")
    stalled = _wait_condition(api, tenant, invalid, "Stalled", "True", "InvalidSpec")
    assert "semver" in _condition(stalled, "Stalled")["message"]
    assert _condition(stalled, "Ready")["status"] == "False"
    assert _condition(stalled, "Reconciling") is None

    # Persistent failures (a repository that is not there, refused credentials) stall after
    # a few attempts, still retried: Argo CD shows Degraded, kstatus "Failed". Ready says
    # what is wrong.
    for name, reason in ((wrong_url, "RepositoryNotFound"), (bad_creds, "AuthenticationFailed")):
        obj = _wait_condition(api, tenant, name, "Stalled", "True", reason)
        assert _condition(obj, "Reconciling") is None
        ready = _condition(obj, "Ready")
        assert (ready["status"], ready["reason"]) == ("False", reason)
        assert reason in _condition(obj, "Stalled")["message"]
    # A transient one (nothing listens) stays in progress however often it is retried.
    attempts = STALL_AFTER_FAILURES + 1
    wait_for(
        lambda: _source_attempts(operator, tenant, unreachable) >= attempts,
        f"{attempts} attempts at an unreachable Git server",
        timeout=120,
    )
    obj = _wait_condition(api, tenant, unreachable, "Reconciling", "True", "ProgressingWithRetry")
    assert _condition(obj, "Stalled") is None
    assert _condition(obj, "Ready")["reason"] == "GitOperationFailed"
    waited = local_cluster.kubectl(
        "-n", tenant, "wait", "--for=condition=Ready", f"playbook/{bad_creds}", "--timeout=1s",
        check=False,
    )  # fmt: skip
    assert waited.returncode != 0
    wide = local_cluster.kubectl("-n", tenant, "get", "pb", bad_creds, "-o", "wide").stdout
    assert _condition(_get(api, tenant, bad_creds), "Ready")["message"] in wide  # Status column
    _wait_condition(api, tenant, good, "Ready", "True", timeout=180)

    # Nowhere: statuses, Events, the operator's log.
    for name in (good, wrong_url, bad_creds, no_creds, invalid, unreachable):
        assert PASSWORD not in json.dumps(_get(api, tenant, name))
    events = core.list_namespaced_event(tenant).items
    assert any(e.reason == "SourceFailed" for e in events)
    assert all(PASSWORD not in (e.message or "") for e in events)
    assert PASSWORD not in operator.log.read_text()


def test_a_wrong_git_password_stalls_within_bounded_time_and_heals_once_fixed(
    operator: Operator, make_playbook: Any, api: client.CustomObjectsApi, tenant: str,
    k8s_client: Any,
) -> None:  # fmt: skip
    """Issue 15: Argo CD and Flux must see a wrong password as Degraded/Failed, not as
    Progressing until they time out. Stalled comes after a bounded number of attempts
    (backoff 5 s, 10 s: about 15 s), and the attempts go on, so a fixed Secret heals it."""
    core = client.CoreV1Api(k8s_client)
    secret = f"wrong-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_secret(
        tenant,
        {"metadata": {"name": secret},
         "stringData": {"username": "bob", "password": PASSWORD + "-wrong"}},
    )  # fmt: skip
    name, repo = make_playbook(secret=secret)
    first = _wait_condition(api, tenant, name, "SourceReady", "False", "AuthenticationFailed")
    assert _condition(first, "Stalled") is None  # the first attempts are only retried
    # What Argo CD makes of each state, with docs/gitops.md's health check, as written.
    assert health("Playbook", first)["status"] == "Progressing"
    # Bounded: the backoff before the third attempt is 15 s; 90 s leaves slack for a
    # loaded machine.
    obj = _wait_condition(api, tenant, name, "Stalled", "True", "AuthenticationFailed", timeout=90)
    stalled = _condition(obj, "Stalled")
    assert stalled["message"].startswith(
        f"AuthenticationFailed on {STALL_AFTER_FAILURES} attempts in a row "
        "(still retried with backoff): "
    )
    assert _condition(obj, "Reconciling") is None
    assert (_condition(obj, "Ready")["status"], _condition(obj, "Ready")["reason"]) == (
        "False", "AuthenticationFailed",
    )  # fmt: skip
    assert _source_attempts(operator, tenant, name) >= STALL_AFTER_FAILURES
    assert PASSWORD not in json.dumps(obj)
    degraded = health("Playbook", obj)
    assert degraded["status"] == "Degraded" and "AuthenticationFailed" in degraded["message"]

    core.patch_namespaced_secret(secret, tenant, {"stringData": {"password": PASSWORD}})

    def healed() -> dict[str, Any] | None:
        obj = _get(api, tenant, name)
        ready = _condition(obj, "Ready")
        return obj if ready and ready["status"] == "True" else None

    # The next attempts come within the backoff (20 s, then 40 s): no touch of the Playbook.
    obj = wait_for(healed, "the Playbook Ready once the Secret is fixed", timeout=240)
    assert _condition(obj, "Stalled") is None and _condition(obj, "Reconciling") is None
    assert obj["status"]["source"]["revision"] == f"main@sha1:{repo.head()}"
    assert health("Playbook", obj)["status"] == "Healthy"


def test_load_error_is_shown_with_file_and_line(
    operator: Operator, make_playbook: Any, api: client.CustomObjectsApi, tenant: str
) -> None:
    name, repo = make_playbook()
    repo.commit({"pb/triage.py": "def broken(:\n    pass\n"}, "broken")
    obj = _wait_condition(api, tenant, name, "RuntimeReady", "False", "LoadFailed", timeout=180)
    message = _condition(obj, "RuntimeReady")["message"]
    assert "SyntaxError" in message and "triage.py" in message

    # Retrying the same commit cannot help: Stalled, not Reconciling (documented choice).
    obj = _wait_condition(api, tenant, name, "Stalled", "True", "LoadFailed")
    assert _condition(obj, "Reconciling") is None
    assert "SyntaxError" in _condition(obj, "Ready")["message"]
    # The branch is still re-resolved: a fixing commit heals it without touching the spec.
    fixed = repo.commit({"pb/triage.py": MODULE.replace("VERSION", "fixed")}, "fixed")

    def healed() -> dict[str, Any] | None:
        obj = _get(api, tenant, name)
        ready = _condition(obj, "Ready")
        revision = (obj.get("status") or {}).get("source", {}).get("revision")
        if revision == f"main@sha1:{fixed}" and ready and ready["status"] == "True":
            return obj
        return None

    obj = wait_for(healed, "the fixing commit Ready", timeout=180)
    assert _condition(obj, "Stalled") is None and _condition(obj, "Reconciling") is None


def test_delete_garbage_collects_children(
    operator: Operator, make_playbook: Any, api: client.CustomObjectsApi, tenant: str,
    k8s_client: Any,
) -> None:  # fmt: skip
    name, _ = make_playbook()
    _wait_condition(api, tenant, name, "Ready", "True", timeout=180)
    api.delete_namespaced_custom_object(GROUP, VERSION, tenant, PLURAL, name)
    apps, core = client.AppsV1Api(k8s_client), client.CoreV1Api(k8s_client)

    def gone() -> bool:
        deps = apps.list_namespaced_deployment(
            tenant, label_selector=f"kubesoar.dev/playbook={name}"
        )
        svcs = core.list_namespaced_service(tenant, label_selector=f"kubesoar.dev/playbook={name}")
        return not deps.items and not svcs.items

    wait_for(gone, "children garbage-collected", timeout=120)


def test_playbooks_carry_no_finalizer_so_they_delete_with_the_operator_down(
    operator: Operator, make_playbook: Any, api: client.CustomObjectsApi, tenant: str,
) -> None:  # fmt: skip
    # Nothing has to run before a Playbook goes (children go by garbage collection), so
    # no finalizer: a tenant namespace must delete even when the operator is not running.
    name, _ = make_playbook()
    obj = _wait_condition(api, tenant, name, "Ready", "True", timeout=180)
    assert not obj["metadata"].get("finalizers")
    operator.kill()
    try:
        api.delete_namespaced_custom_object(GROUP, VERSION, tenant, PLURAL, name)

        def gone() -> bool:
            try:
                _get(api, tenant, name)
            except ApiException as exc:
                return exc.status == 404
            return False

        wait_for(gone, "the Playbook deleted with no operator running", timeout=30)
    finally:
        operator.start()


def test_restart_mid_reconcile_makes_no_duplicates(
    operator: Operator, make_playbook: Any, api: client.CustomObjectsApi, tenant: str,
    k8s_client: Any,
) -> None:  # fmt: skip
    name, _ = make_playbook()
    apps = client.AppsV1Api(k8s_client)
    selector = f"kubesoar.dev/playbook={name}"
    wait_for(lambda: apps.list_namespaced_deployment(tenant, label_selector=selector).items,
             "the Deployment", timeout=60)  # fmt: skip
    operator.kill()  # mid-reconcile: pods are not ready yet
    operator.start()
    obj = _wait_condition(api, tenant, name, "Ready", "True", timeout=180)
    assert len(apps.list_namespaced_deployment(tenant, label_selector=selector).items) == 1
    replica_sets = apps.list_namespaced_replica_set(tenant, label_selector=selector).items
    assert len(replica_sets) == 1  # same template after the restart: no second rollout
    assert obj["status"]["readyReplicas"] == 1


def _events(core: client.CoreV1Api, ns: str, name: str) -> list[Any]:
    items = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
    return [e for e in items if e.involved_object.kind == "Playbook"]


def _patch_spec(api: client.CustomObjectsApi, ns: str, name: str, spec: dict[str, Any]) -> None:
    api.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, {"spec": spec})


def test_suspend_holds_the_revision_and_resume_picks_it_up(
    operator: Operator, make_playbook: Any, api: client.CustomObjectsApi, tenant: str,
    k8s_client: Any, git: GitHTTPServer,
) -> None:  # fmt: skip
    name, repo = make_playbook()
    _wait_condition(api, tenant, name, "Ready", "True", "Succeeded", timeout=180)
    old_sha = repo.head()
    _patch_spec(api, tenant, name, {"suspend": True})
    obj = _wait_condition(api, tenant, name, "Ready", "True", "Suspended")
    assert "suspend" in _condition(obj, "Ready")["message"]
    assert _condition(obj, "Reconciling") is None and _condition(obj, "Stalled") is None
    core = client.CoreV1Api(k8s_client)
    wait_for(
        lambda: any(e.reason == "Suspended" for e in _events(core, tenant, name)),
        "a Suspended Event",
    )

    new_sha = repo.commit({"pb/triage.py": MODULE.replace("VERSION", "while-suspended")}, "v2")
    stamp = str(time.time())
    api.patch_namespaced_custom_object(
        GROUP, VERSION, tenant, PLURAL, name,
        {"metadata": {"annotations": {"kubesoar.dev/requestedAt": stamp}}},
    )  # fmt: skip
    # A control Playbook on the same repository and interval, not suspended: once it runs
    # the new commit, the suspended one has had every chance to pick it up too.
    control, _ = make_playbook(url=git.url(name))

    def control_rolled() -> bool:
        obj = _get(api, tenant, control)
        ready = _condition(obj, "Ready")
        revision = (obj.get("status") or {}).get("source", {}).get("revision")
        return revision == f"main@sha1:{new_sha}" and bool(ready and ready["status"] == "True")

    wait_for(control_rolled, "the control Playbook at the new commit", timeout=180)
    held = _get(api, tenant, name)
    assert held["status"]["source"]["revision"] == f"main@sha1:{old_sha}"
    assert _condition(held, "Ready")["reason"] == "Suspended"
    assert held["status"].get("lastHandledReconcileAt") != stamp
    dep = client.AppsV1Api(k8s_client).read_namespaced_deployment(f"{name}-runtime", tenant)
    assert dep.spec.template.metadata.annotations["kubesoar.dev/commit"] == old_sha

    _patch_spec(api, tenant, name, {"suspend": False})

    def resumed() -> dict[str, Any] | None:
        obj = _get(api, tenant, name)
        ready = _condition(obj, "Ready")
        revision = (obj.get("status") or {}).get("source", {}).get("revision")
        if revision == f"main@sha1:{new_sha}" and ready and ready["reason"] == "Succeeded":
            return obj
        return None

    obj = wait_for(resumed, "the new commit once resumed", timeout=180)
    assert obj["status"]["lastHandledReconcileAt"] == stamp
    wait_for(
        lambda: any(e.reason == "Resumed" for e in _events(core, tenant, name)),
        "a Resumed Event",
    )


def test_retries_post_a_bounded_number_of_events(
    operator: Operator, make_playbook: Any, api: client.CustomObjectsApi, tenant: str,
    k8s_client: Any, git: GitHTTPServer,
) -> None:  # fmt: skip
    name, _ = make_playbook(url=git.url("nowhere-to-be-found"))
    _wait_condition(api, tenant, name, "Reconciling", "True", "ProgressingWithRetry")

    def retries() -> int:
        return sum(
            1 for line in operator.lines()
            if line.get("object") == f"{tenant}/{name}"
            and "failed temporarily" in str(line.get("message"))
        )  # fmt: skip

    wait_for(lambda: retries() >= 3, "three retries of the failing reconcile", timeout=120)
    core = client.CoreV1Api(k8s_client)
    wait_for(
        lambda: any(e.reason == "SourceFailed" for e in _events(core, tenant, name)),
        "the SourceFailed Event",
    )
    events = _events(core, tenant, name)
    # One Event for the transition; none per retry (kopf's log lines stay in the log).
    assert [e.reason for e in events] == ["SourceFailed"], [(e.reason, e.message) for e in events]
    assert (events[0].count or 1) == 1


def test_metrics_count_reconciles_failures_and_playbooks(
    operator: Operator, make_playbook: Any, api: client.CustomObjectsApi, tenant: str,
    git: GitHTTPServer,
) -> None:  # fmt: skip
    def value(metrics: dict[Any, float], name: str, **labels: str) -> float:
        return metrics.get((name, tuple(sorted(labels.items()))), 0.0)

    before = wait_for(operator.metrics, "the metrics endpoint")
    good, _ = make_playbook()
    bad, _ = make_playbook(url=git.url("no-such-repository"))
    _wait_condition(api, tenant, good, "Ready", "True", timeout=180)
    _wait_condition(api, tenant, bad, "SourceReady", "False", "RepositoryNotFound")
    after = operator.metrics()

    reconciles = "kubesoar_operator_reconciles_total"
    failures = "kubesoar_operator_reconcile_failures_total"
    transitions = "kubesoar_operator_transitions_total"
    assert value(after, reconciles, result="succeeded") > value(
        before, reconciles, result="succeeded"
    )
    assert value(after, reconciles, result="failed") > value(before, reconciles, result="failed")
    assert value(after, failures, reason="RepositoryNotFound") > value(
        before, failures, reason="RepositoryNotFound"
    )
    for reason in ("NewRevision", "Ready", "SourceFailed"):
        assert value(after, transitions, reason=reason) > value(before, transitions, reason=reason)
    assert value(after, "kubesoar_operator_playbooks", ready="True") >= 1
    assert value(after, "kubesoar_operator_playbooks", ready="False") >= 1


def test_kubeconfig_flag_alone_logs_in_cleanly(
    local_cluster: ClusterHandle, make_namespace: Callable[..., str], crd: None,
    api: client.CustomObjectsApi, k8s_client: Any, git: GitHTTPServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    """`--kubeconfig` with no $KUBECONFIG and no ~/.kube/config: no error, and it reconciles."""
    namespace = make_namespace("op-login")
    client.CoreV1Api(k8s_client).create_namespaced_secret(
        namespace, {"metadata": {"name": "git-auth"},
                    "stringData": {"username": "bob", "password": PASSWORD}},
    )  # fmt: skip
    op = Operator(local_cluster, namespace, tmp_path_factory.mktemp("operator-login"))
    op.start()
    try:
        name = f"pb-{uuid.uuid4().hex[:6]}"
        git.create_repo(name, {"pb/triage.py": MODULE.replace("VERSION", "login")})
        api.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, _playbook(name, git.url(name), "git-auth")
        )
        _wait_condition(api, namespace, name, "Ready", "True", timeout=180)
    finally:
        op.stop()
    lines = op.lines()
    assert not [x for x in lines if x.get("level") in ("error", "critical", "raw")], lines[:20]
    messages = [str(x.get("message")) for x in lines]
    assert "Initial authentication has finished." in messages
    assert not [m for m in messages if "authentication has failed" in m.lower()]
    assert "Activity 'kubeconfig' succeeded." in messages
