"""`make demo`: a playbook catching an alert, on a local control plane, in one command.

What it does, and says as it goes:
  1. starts the local control plane and node agent (hack/localcluster), installs the CRDs;
  2. runs the operator and the router as local processes;
  3. creates a Git repository holding the demo playbook (hack/demo/triage.py) and serves
     it over smart HTTP with basic auth on loopback;
  4. applies a tenant namespace (restricted Pod Security), its Secrets, an AlertSource and
     a Playbook, and waits for the Playbook to be Ready;
  5. sends an HMAC-signed alert, prints the router's answer and the run's result, and
     `kubectl get playbooks,alertsources`;
  6. cleans up on exit (Ctrl-C included): processes, namespace, Git server, and the local
     control plane unless --keep-cluster.

With --kubeconfig it targets that cluster instead: it installs the Helm chart (image
--image) and prints the resources to apply; see docs/install.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import yaml  # noqa: E402
from support.git_http import GitHTTPServer  # noqa: E402
from support.stack import (  # noqa: E402
    KubesoarStack,
    apply_crds,
    condition,
    delete_namespace,
    find_run,
    wait_for,
)

from hack.localcluster.cluster import LocalCluster  # noqa: E402

NAMESPACE = "demo-acme"
DEMO_ALERT = {
    "id": "EDR-4711",
    "title": "Cobalt Strike beacon on finance-laptop-07",
    "severity": "critical",
    "hostname": "finance-laptop-07",
    "source_ip": "10.20.30.40",
    "iocs": {"ips": ["203.0.113.66"], "domains": ["c2.example.net"], "hashes": []},
    "tags": ["edr", "c2"],
}


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m", flush=True)


def kubectl_runner(kubectl: Path, kubeconfig: Path) -> Any:
    def run(
        *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(kubectl), f"--kubeconfig={kubeconfig}", *args],
            input=input, capture_output=True, text=True, check=check, timeout=120,
        )  # fmt: skip

    return run


def tenant_objects(
    git_url: str, git_user: str, git_password: str, token: str, key: str
) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "git-auth"},
         "stringData": {"username": git_user, "password": git_password}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "siem-ingest"},
         "stringData": {"token": token, "hmac": key}},
        {"apiVersion": "kubesoar.dev/v1alpha1", "kind": "AlertSource", "metadata": {"name": "siem"},
         "spec": {"format": "generic", "auth": {
             "bearer": {"secretRef": {"name": "siem-ingest", "key": "token"}},
             "hmac": {"secretRef": {"name": "siem-ingest", "key": "hmac"}}}}},
        {"apiVersion": "kubesoar.dev/v1alpha1", "kind": "Playbook", "metadata": {"name": "triage"},
         "spec": {"source": {"git": {"url": git_url, "ref": {"branch": "main"},
                                     "secretRef": {"name": "git-auth"}},
                             "path": "triage/", "interval": "1m"},
                  "module": "triage", "replicas": 1}},
    ]  # fmt: skip


def run_local(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as cleanup:
        work = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="kubesoar-demo-")))

        say("Starting the local control plane (etcd, kube-apiserver, controllers, node agent)")
        cluster = LocalCluster()
        cluster.up()
        if not args.keep_cluster:
            cleanup.callback(lambda: (say("Stopping the local control plane"), cluster.down()))
        kubeconfig = cluster.kubeconfig
        kubectl = kubectl_runner(cluster.kubectl_bin, kubeconfig)
        print(f"    kubectl --kubeconfig {kubeconfig} get nodes")
        print("    " + kubectl("get", "nodes").stdout.replace("\n", "\n    ").rstrip())

        say("Installing the CRDs (crds/)")
        apply_crds(kubectl)

        say(f"Creating tenant namespace {NAMESPACE} (Pod Security: restricted)")
        kubectl(
            "delete", "namespace", NAMESPACE, "--ignore-not-found", "--timeout=60s", check=False
        )
        kubectl("create", "namespace", NAMESPACE)
        kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")

        say("Serving a Git repository with the demo playbook over HTTP (basic auth) on loopback")
        git_password = secrets.token_urlsafe(12)
        git = GitHTTPServer(work / "git", username="soc", password=git_password).start()
        cleanup.callback(git.close)
        repo = git.create_repo(
            "playbooks", {"triage/triage.py": (REPO / "hack/demo/triage.py").read_text()}
        )
        print(f"    {git.url('playbooks')} @ {repo.head()[:12]}")

        say("Starting the operator and the router")
        stack = KubesoarStack(kubeconfig=kubeconfig, namespaces=[NAMESPACE], workdir=work)
        cleanup.callback(stack.stop)
        stack.start()
        # Registered after the stack, so it runs before the operator stops (LIFO):
        # the operator must be alive to release its finalizers.
        cleanup.callback(delete_namespace, kubectl, NAMESPACE)
        print(f"    router on {stack.router_url}; logs in {work}")

        say("Applying the tenant's Secrets, AlertSource and Playbook")
        token, key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        objects = tenant_objects(git.url("playbooks"), "soc", git_password, token, key)
        kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump_all(objects))

        say("Waiting for playbook/triage to be Ready (resolve ref, pack artifact, start pods)")
        last = [""]

        def ready() -> dict[str, Any] | None:
            pb = json.loads(
                kubectl("get", "-n", NAMESPACE, "playbook", "triage", "-o", "json").stdout
            )
            shown = ", ".join(
                f"{c['type']}={c['status']}" for c in pb.get("status", {}).get("conditions", [])
            )
            if shown != last[0]:
                print(f"    {shown or 'no status yet'}")
                last[0] = shown
            cond = condition(pb, "Ready")
            return pb if cond and cond["status"] == "True" else None

        pb = wait_for("playbook/triage Ready", ready, timeout=240, interval=1)
        print(f"    revision {pb['status']['source']['revision']}")
        print(f"    routes: {json.dumps(pb['status'].get('playbooks', []))}")

        path = f"/v1/namespaces/{NAMESPACE}/sources/siem/alerts"
        say(f"Sending a signed alert to {path}")
        answer = stack.send_alert(NAMESPACE, "siem", DEMO_ALERT, token=token, hmac_key=key)
        print(f"    HTTP {answer.status_code} {answer.text}")
        if answer.status_code != 202 or not answer.json().get("deliveries"):
            print(stack.logs()[-4000:], file=sys.stderr)
            return 1

        say("The run's result, from the runtime pod")
        run_id = answer.json()["deliveries"][0]["runId"]

        def finished() -> dict[str, Any] | None:
            caller = stack.caller_token(NAMESPACE, "triage")
            run = find_run(kubectl, NAMESPACE, "triage", run_id, token=caller)
            return run if run and run.get("status") not in ("queued", "running") else None

        result = wait_for("the run to finish", finished, timeout=60)
        print("    " + json.dumps(result, indent=2).replace("\n", "\n    "))

        say("kubectl get playbooks,alertsources")
        time.sleep(3)  # one status refresh, so the run counters show
        print(kubectl("get", "-n", NAMESPACE, "playbooks,alertsources").stdout)
        print(kubectl("get", "-n", NAMESPACE, "playbook", "triage", "-o",
                      "jsonpath={.status.runs}").stdout)  # fmt: skip
        if args.keep_cluster:
            print(f"\nThe cluster keeps running: export KUBECONFIG={kubeconfig}")
        say("Done; cleaning up")
    return 0


def run_on_cluster(args: argparse.Namespace) -> int:
    helm = LocalCluster().helm_bin
    say(f"Installing the chart into kubesoar-system on the cluster behind {args.kubeconfig}")
    subprocess.run(
        [str(helm), "upgrade", "--install", "kubesoar", str(REPO / "helm/kubesoar"),
         "--kubeconfig", args.kubeconfig, "-n", "kubesoar-system", "--create-namespace",
         "--set", f"image.repository={args.image.rsplit(':', 1)[0]}",
         "--set", f"image.tag={args.image.rsplit(':', 1)[1]}", "--wait"],
        check=True,
    )  # fmt: skip
    say("Installed. Next: put hack/demo/triage.py in a Git repository the cluster can reach,")
    print("    then apply a Secret, an AlertSource and a Playbook as in docs/install.md.")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--kubeconfig", help="target this cluster (Helm chart) instead of a local one"
    )
    parser.add_argument("--image", default="ghcr.io/kubesoar/kubesoar:0.1.0")
    parser.add_argument(
        "--keep-cluster", action="store_true", help="leave the local cluster running"
    )
    args = parser.parse_args()
    return run_on_cluster(args) if args.kubeconfig else run_local(args)


if __name__ == "__main__":
    raise SystemExit(main())
