"""The OpenSOAR-style playbooks (tests/runtime/opensoar_style/) on the local
cluster: committed to a Git repository, deployed as Playbooks with their
integrations' Secrets mounted, sent a signed alert through the router, and
run in runtime pods against the local vendor fakes; each run's results equal
`kubesoar run`'s (and so OpenSOAR's) for the same alert and answers."""

from __future__ import annotations

import asyncio
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.cluster import ClusterHandle
from support.git_http import GitHTTPServer
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integrations"))
from fakevendors import KEYS, FakeVendors, start
from test_opensoar_playbooks import PHISHING, PLAYBOOKS, expected_phishing_results

pytestmark = pytest.mark.cluster

GIT_USER, GIT_PASSWORD = "soc", "opensoar-git-password-71c2"
TOKEN, HMAC_KEY = "opensoar-ingest-token-01", "opensoar-hmac-key-9d1e"
ENTRY_POINTS = ("contain", "enrich_all", "phishing_ai")


class VendorThread:
    """The fake vendors on their own event loop, for a synchronous test."""

    def __init__(self) -> None:
        self.vendors = FakeVendors(
            llm_text='{"verdict": "benign", "confidence": 0.9, "reasoning": "internal test"}'
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner = asyncio.run_coroutine_threadsafe(start(self.vendors), self.loop).result(30)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _secrets(vendors: FakeVendors) -> dict[str, dict[str, str]]:
    return {
        "virustotal": {"api_key": KEYS["virustotal"], "base_url": vendors.url("vt/api/v3"),
                       "requests_per_minute": "600"},
        "abuseipdb": {"api_key": KEYS["abuseipdb"], "base_url": vendors.url("abuseipdb/api/v2")},
        "greynoise": {"api_key": KEYS["greynoise"], "base_url": vendors.url("greynoise")},
        "shodan": {"api_key": KEYS["shodan"], "base_url": vendors.url("shodan")},
        "splunk": {"url": vendors.url("splunk"), "token": KEYS["splunk"]},
        "elastic": {"url": vendors.url("elastic"), "api_key": KEYS["elastic"]},
        "msdefender": {"tenant_id": "tenant-1", "client_id": "client-1",
                       "client_secret": KEYS["defender_secret"],
                       "login_url": vendors.url("login"), "base_url": vendors.url("defender")},
        "openai": {"api_key": KEYS["openai"], "base_url": vendors.url("openai")},
    }  # fmt: skip


@pytest.fixture(scope="module")
def deployed(
    local_cluster: ClusterHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, KubesoarStack, FakeVendors]]:
    apply_crds(local_cluster.kubectl)
    workdir = tmp_path_factory.mktemp("opensoar-cluster")
    namespace = f"opensoar-{uuid.uuid4().hex[:6]}"
    fakes = VendorThread()
    git = GitHTTPServer(workdir / "git", username=GIT_USER, password=GIT_PASSWORD)
    git.start()
    files = {f"opensoar_style/{p.name}": p.read_text() for p in PLAYBOOKS.glob("*.py")}
    git.create_repo("playbooks", files)
    stack = KubesoarStack(kubeconfig=local_cluster.kubeconfig, namespaces=[namespace],
                          workdir=workdir)  # fmt: skip
    secrets = _secrets(fakes.vendors)
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "git-auth"},
         "stringData": {"username": GIT_USER, "password": GIT_PASSWORD}},
        *signed_source(TOKEN, HMAC_KEY),
    ]  # fmt: skip
    objects += [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"int-{name}"},
         "stringData": keys}
        for name, keys in secrets.items()
    ]  # fmt: skip
    objects += [
        {"apiVersion": "kubesoar.dev/v1alpha1", "kind": "Playbook",
         "metadata": {"name": module.replace("_", "-")},
         "spec": {"source": {"git": {"url": git.url("playbooks"), "ref": {"branch": "main"},
                                     "secretRef": {"name": "git-auth"}},
                             "path": "opensoar_style/", "interval": "1m"},
                  "module": module, "replicas": 1,
                  "runtime": {"secrets": [{"name": name, "secretRef": {"name": f"int-{name}"}}
                                          for name in secrets]}}}
        for module in ENTRY_POINTS
    ]  # fmt: skip
    try:
        local_cluster.kubectl(
            "apply", "-f", "-", input=yaml.safe_dump(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace,
                 "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}))  # fmt: skip
        stack.start()
        local_cluster.kubectl("apply", "-n", namespace, "-f", "-",
                              input=yaml.safe_dump_all(objects))  # fmt: skip
        for module in ENTRY_POINTS:
            name = module.replace("_", "-")

            def ready(name: str = name) -> bool:
                pb = kubectl_json(local_cluster.kubectl, "-n", namespace, "get", "playbook", name)
                cond = condition(pb, "Ready")
                return bool(cond and cond["status"] == "True")

            try:
                wait_for(f"playbook {name} Ready", ready, timeout=240)
            except TimeoutError:
                print(stack.logs()[-8000:])
                raise
        yield namespace, stack, fakes.vendors
    finally:
        delete_namespace(local_cluster.kubectl, namespace)
        stack.stop()
        git.close()
        fakes.close()


def test_opensoar_playbooks_in_runtime_pods(
    deployed: tuple[str, KubesoarStack, FakeVendors], local_cluster: ClusterHandle
) -> None:
    namespace, stack, _ = deployed
    answer = stack.send_alert(namespace, "siem", PHISHING, token=TOKEN, hmac_key=HMAC_KEY)
    assert answer.status_code == 202, answer.text
    receipt = answer.json()
    deliveries = {d["playbook"]: d["runId"] for d in receipt["deliveries"]}
    assert sorted(deliveries) == ["contain", "enrich-all", "phishing-ai"], receipt
    expected = expected_phishing_results(receipt["alertId"])
    for module in ENTRY_POINTS:
        playbook = module.replace("_", "-")
        token = stack.caller_token(namespace, playbook)

        def finished(playbook: str = playbook, token: str = token) -> dict[str, Any] | None:
            run = find_run(local_cluster.kubectl, namespace, playbook, deliveries[playbook],
                           token=token)  # fmt: skip
            return run if run and run["status"] not in {"queued", "running"} else None

        run = wait_for(f"the {playbook} run", finished, timeout=90)
        [result] = run["results"]
        assert result["status"] == "succeeded", run
        assert result["result"] == expected[module], module
