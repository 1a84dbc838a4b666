"""runs.kubesoar.dev through the real aggregator, as real users with kubectl.

alice has the built-in `edit` role in tenant A, victor `view` in tenant A, bob `edit`
in tenant B (the chart's ClusterRoles aggregate the API's rules into those roles). The
tests check what each may read and change, that the refusals come back as Kubernetes
403s, and that what kubectl prints is the record in the database.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import yaml
from api.conftest import PAGED_RUNS, RunsApi
from support.stack import wait_for

pytestmark = pytest.mark.cluster


def test_discovery_lists_runs_and_alerts(runs_api: RunsApi) -> None:
    out = runs_api.kubectl_as("alice", "api-resources", "--api-group=runs.kubesoar.dev").stdout
    names = {line.split()[0] for line in out.splitlines()[1:]}
    assert names == {"runs", "alerts"}


def test_edit_user_lists_her_namespaces_runs_as_a_table(runs_api: RunsApi) -> None:
    seeded = runs_api.seeded
    out = runs_api.kubectl_as("alice", "get", "runs", "-n", seeded.tenant_a).stdout
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "PLAYBOOK", "STATUS", "ATTEMPT", "AGE", "DURATION"]
    assert {row.split()[0] for row in rows} == set(seeded.run_ids[seeded.tenant_a])
    statuses = {row.split()[0]: row.split()[2] for row in rows}
    assert statuses[seeded.failed_run] == "failed"
    assert statuses[seeded.succeeded_run] == "succeeded"


def test_get_run_as_yaml_shows_the_whole_record(runs_api: RunsApi) -> None:
    seeded = runs_api.seeded
    failed = yaml.safe_load(
        runs_api.kubectl_as(
            "alice", "get", "run", seeded.failed_run, "-n", seeded.tenant_a, "-o", "yaml"
        ).stdout
    )
    assert failed["kind"] == "Run" and failed["metadata"]["name"] == seeded.failed_run
    assert failed["status"]["phase"] == "failed"
    assert failed["status"]["error"] == "KeyError: 'ip'"
    assert "triage.py" in failed["status"]["traceback"]
    ok = json.loads(
        runs_api.kubectl_as(
            "alice", "get", "run", seeded.succeeded_run, "-n", seeded.tenant_a, "-o", "json"
        ).stdout
    )
    assert ok["status"]["results"][0]["result"] == {"ok": 1}
    assert ok["status"]["actions"][0]["name"] == "isolate"
    assert ok["status"]["journal"][0]["result"] == {"isolated": "10.0.0.7"}


def test_field_and_label_selectors_filter(runs_api: RunsApi) -> None:
    seeded = runs_api.seeded
    failed = runs_api.kubectl_as(
        "alice",
        "get",
        "runs",
        "-n",
        seeded.tenant_a,
        "--field-selector",
        "status=failed",
        "-o",
        "name",
    ).stdout.split()
    assert failed == [f"run.runs.kubesoar.dev/{seeded.failed_run}"]
    enrich = runs_api.kubectl_as(
        "alice",
        "get",
        "runs",
        "-n",
        seeded.tenant_a,
        "-l",
        "kubesoar.dev/playbook=enrich",
        "-o",
        "name",
    ).stdout.split()
    assert enrich == [f"run.runs.kubesoar.dev/{seeded.run_ids[seeded.tenant_a][1]}"]
    by_label = runs_api.kubectl_as(
        "alice",
        "get",
        "runs",
        "-n",
        seeded.tenant_a,
        "-l",
        "runs.kubesoar.dev/status=failed",
        "-o",
        "name",
    ).stdout.split()
    assert by_label == failed
    refused = runs_api.kubectl_as(
        "alice",
        "get",
        "runs",
        "-n",
        seeded.tenant_a,
        "--field-selector",
        "spec.nope=1",
        check=False,
    )
    assert refused.returncode != 0 and "not supported" in refused.stderr
    for since, expected in (("since=1h", len(seeded.run_ids[seeded.tenant_a])),
                            ("since=2999-01-01T00:00:00Z", 0)):  # fmt: skip
        listed = runs_api.kubectl_as(
            "alice", "get", "runs", "-n", seeded.tenant_a, "--field-selector", since, "-o", "name"
        ).stdout.split()
        assert len(listed) == expected, since


def test_the_same_user_is_refused_in_another_namespace(runs_api: RunsApi) -> None:
    seeded = runs_api.seeded
    for resource in ("runs", "alerts"):
        refused = runs_api.kubectl_as("alice", "get", resource, "-n", seeded.tenant_b, check=False)
        assert refused.returncode != 0
        assert "Forbidden" in refused.stderr and 'User "alice" cannot list' in refused.stderr
    run_b = seeded.run_ids[seeded.tenant_b][0]
    refused = runs_api.kubectl_as("alice", "get", "run", run_b, "-n", seeded.tenant_b, check=False)
    assert "Forbidden" in refused.stderr
    # A run of B named in A's namespace is simply not there.
    missing = runs_api.kubectl_as("alice", "get", "run", run_b, "-n", seeded.tenant_a, check=False)
    assert "NotFound" in missing.stderr
    everywhere = runs_api.kubectl_as("alice", "get", "runs", "-A", check=False)
    assert "Forbidden" in everywhere.stderr


def test_edit_user_resolves_an_alert_and_the_activity_names_her(runs_api: RunsApi) -> None:
    seeded = runs_api.seeded
    alert = seeded.alert_ids[seeded.tenant_a][0]
    patch = {
        "spec": {
            "status": "resolved",
            "determination": "benign",
            "assignee": "alice",
            "comment": "known scanner",
        }
    }
    runs_api.kubectl_as(
        "alice",
        "patch",
        "alert",
        alert,
        "-n",
        seeded.tenant_a,
        "--type",
        "merge",
        "-p",
        json.dumps(patch),
    )
    after = json.loads(
        runs_api.kubectl_as(
            "alice", "get", "alert", alert, "-n", seeded.tenant_a, "-o", "json"
        ).stdout
    )
    assert after["spec"] == {"status": "resolved", "determination": "benign", "assignee": "alice"}
    assert after["status"]["resolvedTime"]
    changes = {(a["kind"], a.get("from"), a.get("to")) for a in after["status"]["activity"]}
    assert {("status", "new", "resolved"), ("determination", "unknown", "benign")} <= changes
    assert {a["actor"] for a in after["status"]["activity"]} == {"user:alice"}
    assert after["status"]["comments"][0]["text"] == "known scanner"
    resolved = runs_api.kubectl_as(
        "alice",
        "get",
        "alerts",
        "-n",
        seeded.tenant_a,
        "--field-selector",
        "spec.status=resolved",
        "-o",
        "name",
    ).stdout.split()
    assert resolved == [f"alert.runs.kubesoar.dev/{alert}"]
    invalid = runs_api.kubectl_as(
        "alice",
        "patch",
        "alert",
        alert,
        "-n",
        seeded.tenant_a,
        "--type",
        "merge",
        "-p",
        '{"spec":{"status":"closed"}}',
        check=False,
    )
    assert invalid.returncode != 0 and "spec.status: status must be one of" in invalid.stderr
    stale = json.dumps({"metadata": {"resourceVersion": "1"}, "spec": {"status": "new"}})
    conflict = runs_api.kubectl_as(
        "alice",
        "patch",
        "alert",
        alert,
        "-n",
        seeded.tenant_a,
        "--type",
        "merge",
        "-p",
        stale,
        check=False,
    )
    assert conflict.returncode != 0 and "Conflict" in conflict.stderr


def test_view_user_reads_but_cannot_change_an_alert(runs_api: RunsApi) -> None:
    seeded = runs_api.seeded
    alert = seeded.alert_ids[seeded.tenant_a][1]
    listed = runs_api.kubectl_as("victor", "get", "alerts", "-n", seeded.tenant_a, "-o", "name")
    assert len(listed.stdout.split()) == len(seeded.alert_ids[seeded.tenant_a])
    refused = runs_api.kubectl_as(
        "victor",
        "patch",
        "alert",
        alert,
        "-n",
        seeded.tenant_a,
        "--type",
        "merge",
        "-p",
        '{"spec":{"status":"resolved"}}',
        check=False,
    )
    assert refused.returncode != 0 and 'User "victor" cannot patch' in refused.stderr
    after = json.loads(
        runs_api.kubectl_as(
            "victor", "get", "alert", alert, "-n", seeded.tenant_a, "-o", "json"
        ).stdout
    )
    assert after["spec"]["status"] == "new" and after["status"]["activity"] == []


def test_kubectl_pages_through_every_run(runs_api: RunsApi) -> None:
    seeded = runs_api.seeded
    runs_api.kubectl_as("alice", "get", "namespace", seeded.paged, check=False)
    out = runs_api.cluster.kubectl(
        "get", "runs", "-n", seeded.paged, "--chunk-size=100", "-o", "name"
    ).stdout.split()
    assert len(out) == PAGED_RUNS == len(set(out))
    assert {name.rsplit("/", 1)[1] for name in out} == set(seeded.run_ids[seeded.paged])


class Lines:
    """What a running kubectl prints, line by line, read by a thread (never blocks a test)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.queue.put(line)

    def until(self, wanted: str, timeout: float = 30) -> str:
        """The first line containing `wanted`; AssertionError after `timeout` seconds."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                break
            seen.append(line)
            if wanted in line:
                return line
        raise AssertionError(f"no line with {wanted!r} within {timeout}s; got {seen}")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def test_kubectl_watch_reports_new_runs_and_alert_changes(runs_api: RunsApi) -> None:
    seeded = runs_api.seeded
    runs = Lines(
        runs_api.popen_as(
            "alice", "get", "runs", "-n", seeded.tenant_a, "-w", "--output-watch-events"
        )
    )
    alerts = Lines(
        runs_api.popen_as(
            "alice", "get", "alerts", "-n", seeded.tenant_a, "-w", "--output-watch-events"
        )
    )
    try:
        # The initial list first (the watch then starts from its resourceVersion).
        runs.until(seeded.failed_run)
        alerts.until(seeded.alert_ids[seeded.tenant_a][-1])
        new_run = runs_api.add_run(seeded.tenant_a, "triage")
        added = runs.until(new_run).split()
        assert added[:2] == ["ADDED", new_run] and "queued" in added
        alert = seeded.alert_ids[seeded.tenant_a][2]
        patch = '{"spec":{"status":"in_progress"}}'
        runs_api.kubectl_as(
            "alice", "patch", "alert", alert, "-n", seeded.tenant_a, "--type", "merge", "-p", patch
        )
        modified = alerts.until("MODIFIED").split()
        assert modified[:2] == ["MODIFIED", alert] and "in_progress" in modified
    finally:
        runs.stop()
        alerts.stop()
    refused = runs_api.kubectl_as(
        "alice", "get", "runs", "-n", seeded.tenant_b, "-w", "--request-timeout=20s", check=False
    )
    assert refused.returncode != 0 and "Forbidden" in refused.stderr


def test_kubectl_explain_describes_both_kinds(runs_api: RunsApi) -> None:
    # The aggregator reads the router's /openapi/v3 in the background after the
    # APIService turns Available; wait until the cluster's own index lists it.
    wait_for(
        "the cluster's /openapi/v3 to list runs.kubesoar.dev",
        lambda: (
            "apis/runs.kubesoar.dev/v1alpha1"
            in runs_api.cluster.kubectl("get", "--raw", "/openapi/v3").stdout
        ),
        timeout=120,
    )
    explained = runs_api.kubectl_as("alice", "explain", "runs.status.phase", check=False)
    assert explained.returncode == 0, explained.stderr
    runs = explained.stdout
    assert "KIND:" in runs and "Run" in runs and "succeeded" in runs
    alerts = runs_api.kubectl_as("alice", "explain", "alerts.spec").stdout
    assert "determination" in alerts and "assignee" in alerts


def test_edit_user_redelivers_a_failed_run_and_a_view_user_may_not(runs_api: RunsApi) -> None:
    seeded = runs_api.seeded
    path = (
        f"/apis/runs.kubesoar.dev/v1alpha1/namespaces/{seeded.tenant_a}/runs/"
        f"{seeded.failed_run}/redeliver"
    )
    refused = runs_api.kubectl_as(
        "victor", "create", "--raw", path, "-f", "-", check=False, input="{}"
    )
    assert refused.returncode != 0 and "Forbidden" in refused.stderr
    run = json.loads(
        runs_api.kubectl_as("alice", "create", "--raw", path, "-f", "-", input="{}").stdout
    )
    assert run["status"]["phase"] == "queued" and run["status"]["attempt"] == 2
    again = runs_api.kubectl_as(
        "alice", "create", "--raw", path, "-f", "-", check=False, input="{}"
    )
    assert again.returncode != 0 and "only failed or dead runs" in again.stderr


def test_edit_user_approves_a_waiting_run_and_a_view_user_may_not(runs_api: RunsApi) -> None:
    seeded = runs_api.seeded
    waiting = runs_api.kubectl_as(
        "alice",
        "get",
        "runs",
        "-n",
        seeded.tenant_a,
        "--field-selector",
        "status=waiting",
        "-o",
        "name",
    ).stdout.split()
    assert sorted(waiting) == sorted(f"run.runs.kubesoar.dev/{r}" for r in seeded.waiting_runs)
    first, second, _ = seeded.waiting_runs
    get = ("get", "run", first, "-n", seeded.tenant_a, "-o", "json")
    shown = json.loads(runs_api.kubectl_as("alice", *get).stdout)
    assert shown["status"]["approval"]["title"] == "Isolate host-0?"
    assert shown["status"]["approval"]["details"] == {"host": "host-0"}

    def decide(user: str, run: str, namespace: str, body: dict[str, object]) -> Any:
        path = f"/apis/runs.kubesoar.dev/v1alpha1/namespaces/{namespace}/runs/{run}/approval"
        return runs_api.kubectl_as(
            user, "create", "--raw", path, "-f", "-", check=False, input=json.dumps(body)
        )

    refused = decide("victor", first, seeded.tenant_a, {"approved": True})
    assert refused.returncode != 0 and "Forbidden" in refused.stderr
    assert 'resource "runs/approval"' in refused.stderr
    # Allowed to POST, but without the `approve` verb: the router refuses.
    unapproved = decide("carol", first, seeded.tenant_a, {"approved": True})
    assert 'User "carol" cannot approve resource "runs/approval"' in unapproved.stderr
    elsewhere = decide("bob", first, seeded.tenant_a, {"approved": True})
    assert elsewhere.returncode != 0 and "Forbidden" in elsewhere.stderr
    invalid = decide("alice", first, seeded.tenant_a, {"approved": "yes"})
    assert invalid.returncode != 0 and "approved" in invalid.stderr

    approved = decide("alice", first, seeded.tenant_a, {"approved": True, "comment": "contain it"})
    assert approved.returncode == 0, approved.stderr
    run = json.loads(approved.stdout)
    decision = run["status"]["approval"]["decision"]
    assert run["status"]["phase"] == "queued"
    assert (decision["approved"], decision["reason"]) == (True, "Approved")
    assert (decision["decidedBy"], decision["comment"]) == ("alice", "contain it")
    # The decision is in the run's journal, where the resumed playbook reads it.
    [entry] = run["status"]["journal"]
    assert entry["action"] == "kubesoar.approval" and entry["result"]["approved"] is True
    again = decide("alice", first, seeded.tenant_a, {"approved": False})
    assert again.returncode != 0 and "only a waiting run" in again.stderr

    # dana holds only the chart's approver role: she decides, and edits nothing else.
    denied = json.loads(decide("dana", second, seeded.tenant_a, {"approved": False}).stdout)
    assert denied["status"]["approval"]["decision"]["reason"] == "Denied"
    assert denied["status"]["approval"]["decision"]["decidedBy"] == "dana"
    patch = ("patch", "alert", seeded.alert_ids[seeded.tenant_a][0], "-n", seeded.tenant_a)
    no_edit = runs_api.kubectl_as(
        "dana", *patch, "--type", "merge", "-p", '{"spec":{"status":"resolved"}}', check=False
    )
    assert no_edit.returncode != 0 and "Forbidden" in no_edit.stderr


def test_kubesoar_approve_and_deny_go_through_kubectl_as_the_user(runs_api: RunsApi) -> None:
    seeded = runs_api.seeded
    run = seeded.waiting_runs[2]

    def kubesoar(verb: str, user: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kubesoar", verb, run, "-n", seeded.tenant_a,
             f"--kubeconfig={runs_api.kubeconfigs[user]}",
             f"--kubectl={runs_api.cluster.kubectl_bin}", *extra],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    refused = kubesoar("approve", "victor")
    assert refused.returncode != 0 and "Forbidden" in refused.stderr
    approved = kubesoar("approve", "alice", "--comment", "contain it")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == f"run {run} approved by alice: contain it"
    late = kubesoar("deny", "alice")
    assert late.returncode != 0 and "only a waiting run" in late.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "kubesoar", "deny", "../../secrets", "-n", "x"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "is not a run name" in bad.stderr
