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
     control plane.

With --keep-cluster the demo is left running instead: the control plane, the tenant
namespace, the operator, the router and the Git server (detached processes, their
logs and pid files under <cluster state dir>/demo/), and it prints how to reach them.
`hack/demo.py --send-alert` sends the alert again; `hack/demo.py --stop` (what
`make demo-down` runs) deletes the namespace, stops those processes and then the
control plane.

With --kubeconfig it targets that cluster instead: it installs the Helm chart (image
--image) and prints the resources to apply; see docs/install.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
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
    wait_for,
)

from hack.localcluster import processes  # noqa: E402
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


def fresh_alert() -> dict[str, Any]:
    """The demo alert under an id of its own: the router deduplicates alerts (across runs
    of the demo too, as the database outlives them), and a second `make demo` must run
    its playbook again, not be told its alert is a duplicate."""
    return {**DEMO_ALERT, "id": f"EDR-{secrets.token_hex(4)}"}


# What a kept demo leaves under <cluster state dir>/demo/.
DEMO_STATE = "demo.json"
KEPT_PROCESSES = ("router", "operator", "git")
# The Git password reaches the detached Git server through its environment, not argv.
GIT_PASSWORD_ENV = "KUBESOAR_DEMO_GIT_PASSWORD"


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


def demo_dir(cluster: LocalCluster) -> Path:
    return cluster.state_dir / "demo"


def pid_file(work: Path, name: str) -> Path:
    return work / "run" / f"{name}.pid"


def serve_git(root: Path) -> int:
    """`--serve-git ROOT`: the demo's Git server as a process of its own, so that it can
    outlive the demo. Writes ROOT/server.json ({url, head}) once it serves; runs until
    SIGTERM."""
    password = os.environ.pop(GIT_PASSWORD_ENV)
    server = GitHTTPServer(root, username="soc", password=password)
    repo = server.create_repo(
        "playbooks", {"triage/triage.py": (REPO / "hack/demo/triage.py").read_text()}
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with server:
        ready = root / "server.json.tmp"
        ready.write_text(json.dumps({"url": server.url("playbooks"), "head": repo.head()}))
        ready.rename(root / "server.json")
        print(f"serving {server.url('playbooks')} from {root} (pid {os.getpid()})", flush=True)
        stop.wait()
        print("stopped by SIGTERM", flush=True)
    return 0


def start_git_server(work: Path, password: str) -> dict[str, str]:
    root = work / "git"
    pid_path = pid_file(work, "git")
    processes.start_detached(
        [sys.executable, str(Path(__file__).resolve()), "--serve-git", str(root)],
        log_path=work / "git.log",
        pid_path=pid_path,
        env={**os.environ, GIT_PASSWORD_ENV: password},
    )

    def serving() -> dict[str, str] | None:
        if not processes.pid_file_alive(pid_path):
            raise RuntimeError(f"the Git server exited: {(work / 'git.log').read_text()[-2000:]}")
        info = root / "server.json"
        return json.loads(info.read_text()) if info.exists() else None

    return wait_for("the Git server", serving, timeout=30, interval=0.2)


def stop_command() -> str:
    """The command that stops a kept demo, as the user's shell would run it."""
    prefix = ""
    if os.environ.get("KUBESOAR_CLUSTER_DIR"):
        prefix = f"KUBESOAR_CLUSTER_DIR={shlex.quote(os.environ['KUBESOAR_CLUSTER_DIR'])} "
    return f"{prefix}{shlex.quote(sys.executable)} {shlex.quote(str(Path(__file__).resolve()))}"


def keep_running(cluster: LocalCluster, work: Path, stack: KubesoarStack, kubeconfig: Path) -> None:
    """Record what the kept demo left running, and say how to reach and stop it."""
    for name, pid in stack.pids().items():
        # The format of hack/localcluster/processes.py, so stop_pid_file can check the pid.
        pid_file(work, name).write_text(f"{pid}\n{sys.executable}\n")
    state = {"namespace": NAMESPACE, "kubeconfig": str(kubeconfig), "router": stack.router_url}
    (work / DEMO_STATE).write_text(json.dumps(state, indent=2))
    command = stop_command()
    say("The demo keeps running. To reach it:")
    print(f"    export KUBECONFIG={kubeconfig}")
    print(f"    kubectl -n {NAMESPACE} get playbooks,alertsources,pods")
    print(f"    router:  {stack.router_url}/v1/namespaces/{NAMESPACE}/sources/siem/alerts")
    print(f"    send the alert again:  {command} --send-alert")
    print(f"    logs:    {work}/operator.log, router.log, git.log")
    print(f"             control plane: {cluster.log_dir}")
    say("To stop it (namespace, operator, router, Git server, then the control plane):")
    print(f"    {command} --stop")


def api_answers(kubectl: Any) -> bool:
    return bool(kubectl("get", "--raw", "/readyz", check=False).returncode == 0)


def stop_demo(cluster: LocalCluster, *, stop_cluster: bool) -> int:
    """`--stop`: undo a kept demo. Safe to run when nothing (or only part) runs."""
    work = demo_dir(cluster)
    state_path = work / DEMO_STATE
    if state_path.exists() and cluster.kubeconfig.exists():
        kubectl = kubectl_runner(cluster.kubectl_bin, cluster.kubeconfig)
        if api_answers(kubectl) and processes.pid_file_alive(pid_file(work, "operator")):
            say(f"Deleting namespace {NAMESPACE} (while the operator runs)")
            try:
                delete_namespace(kubectl, NAMESPACE)
            except TimeoutError as exc:
                print(f"    {exc}", file=sys.stderr)
    for name in KEPT_PROCESSES:
        path = pid_file(work, name)
        if path.exists():
            say(f"Stopping the demo's {name}")
            processes.stop_pid_file(path, grace_seconds=15.0)
    state_path.unlink(missing_ok=True)
    if stop_cluster:
        say("Stopping the local control plane")
        cluster.down()
    if work.exists():
        print(f"    the demo's logs stay in {work}")
    return 0


def send_alert_again(cluster: LocalCluster) -> int:
    """`--send-alert`: the demo's alert to a kept demo's router, signed with the
    AlertSource's Secret as read from the cluster."""
    work = demo_dir(cluster)
    state = json.loads((work / DEMO_STATE).read_text())
    kubectl = kubectl_runner(cluster.kubectl_bin, Path(state["kubeconfig"]))
    secret = json.loads(
        kubectl("get", "-n", NAMESPACE, "secret", "siem-ingest", "-o", "json").stdout
    )
    token, key = (base64.b64decode(secret["data"][k]).decode() for k in ("token", "hmac"))
    port = int(state["router"].rsplit(":", 1)[1])
    stack = KubesoarStack(
        kubeconfig=Path(state["kubeconfig"]), namespaces=[NAMESPACE], workdir=work,
        router_port=port,
    )  # fmt: skip
    answer = stack.send_alert(NAMESPACE, "siem", fresh_alert(), token=token, hmac_key=key)
    print(f"HTTP {answer.status_code} {answer.text}")
    return 0 if answer.status_code == 202 else 1


async def read_run(database_url: str, run_id: str) -> dict[str, Any] | None:
    """A run's record as the system of record keeps it (what `kubectl get run` will show)."""
    import asyncpg

    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        row = await conn.fetchrow(
            "SELECT id, namespace, playbook, status, attempt, created_at, finished_at,"
            " error, result FROM runs WHERE id = $1",
            uuid.UUID(run_id),
        )
    finally:
        await conn.close()
    if row is None:
        return None
    record = dict(row)
    record["id"] = str(record["id"])
    for stamp in ("created_at", "finished_at"):
        record[stamp] = record[stamp].isoformat() if record[stamp] else None
    record["result"] = json.loads(record["result"]) if record["result"] else None
    return record


def run_local(args: argparse.Namespace) -> int:
    cluster = LocalCluster()
    with contextlib.ExitStack() as cleanup:
        if args.keep_cluster:
            # Kept: a folder that outlives this process. A demo kept before is stopped first.
            stop_demo(cluster, stop_cluster=False)
            work = demo_dir(cluster)
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
        else:
            work = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="kubesoar-demo-")))

        say("Starting the local control plane (etcd, kube-apiserver, controllers, node agent)")
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
        cleanup.callback(processes.stop_pid_file, pid_file(work, "git"))
        git = start_git_server(work, git_password)
        print(f"    {git['url']} @ {git['head'][:12]}")

        say("Starting the operator and the router")
        say("The system of record: PostgreSQL on loopback, migrated (kubesoar db migrate)")
        database_url_file = cluster.postgres.database_url_file
        print(f"    database URL in {database_url_file}")
        stack = KubesoarStack(
            kubeconfig=kubeconfig,
            namespaces=[NAMESPACE],
            workdir=work,
            database_url_file=database_url_file,
        )
        cleanup.callback(stack.stop)
        stack.start()
        # Registered after the stack, so it runs before the operator stops (LIFO):
        # the operator must be alive to release its finalizers.
        cleanup.callback(delete_namespace, kubectl, NAMESPACE)
        print(f"    router on {stack.router_url}; logs in {work}")

        say("Applying the tenant's Secrets, AlertSource and Playbook")
        token, key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        objects = tenant_objects(git["url"], "soc", git_password, token, key)
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
        answer = stack.send_alert(NAMESPACE, "siem", fresh_alert(), token=token, hmac_key=key)
        print(f"    HTTP {answer.status_code} {answer.text}")
        if answer.status_code != 202 or not answer.json().get("deliveries"):
            print(stack.logs()[-4000:], file=sys.stderr)
            return 1

        say("The run's record, read back from PostgreSQL (committed before the 202)")
        run_id = answer.json()["deliveries"][0]["runId"]
        database_url = database_url_file.read_text().strip()

        def finished() -> dict[str, Any] | None:
            run = asyncio.run(read_run(database_url, run_id))
            return run if run and run["status"] not in ("queued", "running") else None

        result = wait_for("the run to finish", finished, timeout=60)
        print("    " + json.dumps(result, indent=2).replace("\n", "\n    "))

        say("kubectl get playbooks,alertsources")
        time.sleep(3)  # one status refresh, so the run counters show
        print(kubectl("get", "-n", NAMESPACE, "playbooks,alertsources").stdout)
        print(kubectl("get", "-n", NAMESPACE, "playbook", "triage", "-o",
                      "jsonpath={.status.runs}").stdout)  # fmt: skip
        if args.keep_cluster:
            cleanup.pop_all()  # nothing is stopped: `--stop` does that later
            keep_running(cluster, work, stack, kubeconfig)
            return 0
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
    parser.add_argument(
        "--image", default="ghcr.io/kubesoar/kubesoar:0.1.0", help="image, with --kubeconfig"
    )
    parser.add_argument(
        "--keep-cluster",
        action="store_true",
        help="leave the demo running (control plane, namespace, operator, router, Git "
        "server, logs) and print how to reach and stop it",
    )
    parser.add_argument(
        "--stop",
        action="store_true",
        help="stop a demo left running by --keep-cluster, then the local control plane",
    )
    parser.add_argument(
        "--send-alert", action="store_true", help="send the alert again to a kept demo"
    )
    parser.add_argument("--serve-git", type=Path, metavar="ROOT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_git:
        return serve_git(args.serve_git)
    if args.stop:
        return stop_demo(LocalCluster(), stop_cluster=True)
    if args.send_alert:
        return send_alert_again(LocalCluster())
    return run_on_cluster(args) if args.kubeconfig else run_local(args)


if __name__ == "__main__":
    raise SystemExit(main())
