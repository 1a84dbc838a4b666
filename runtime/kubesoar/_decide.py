"""`kubesoar approve RUN` and `kubesoar deny RUN`: decide a waiting run.

The kubectl form works (`kubectl create --raw …/runs/RUN/approval -f -` with a JSON
body) but is long to type while an incident is on. These commands build that request
and hand it to kubectl, so the caller's kubeconfig, context, credentials plugins and
RBAC apply exactly as for any other kubectl command; nothing here holds a credential.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from kubesoar.contracts import kube

_RUN_NAME = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _parser(verb: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"kubesoar {verb}",
        description=f"{verb.capitalize()} a run that waits for approval (kubectl get runs"
        " --field-selector status=waiting lists them), as your kubectl user.",
    )
    parser.add_argument("run", help="the run's name (its id, a UUID)")
    parser.add_argument("-n", "--namespace", help="the run's namespace (default: the context's)")
    parser.add_argument("--comment", default=None, help="why, kept with the decision")
    parser.add_argument("--kubeconfig", help="passed to kubectl")
    parser.add_argument("--context", help="passed to kubectl")
    parser.add_argument("--kubectl", default="kubectl", help="the kubectl to run")
    return parser


def _kubectl(args: argparse.Namespace) -> list[str]:
    command = [args.kubectl]
    if args.kubeconfig:
        command.append(f"--kubeconfig={args.kubeconfig}")
    if args.context:
        command.append(f"--context={args.context}")
    return command


def _namespace(args: argparse.Namespace) -> str:
    if args.namespace:
        return str(args.namespace)
    shown = subprocess.run(
        [*_kubectl(args), "config", "view", "--minify", "-o", "jsonpath={..namespace}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return shown.stdout.strip() or "default"


def decide(verb: str, argv: Sequence[str] | None) -> int:
    args = _parser(verb).parse_args(argv)
    if not _RUN_NAME.match(args.run):
        print(f"kubesoar {verb}: {args.run!r} is not a run name (a UUID)", file=sys.stderr)
        return 2
    namespace = _namespace(args)
    if not _NAMESPACE.match(namespace):
        print(f"kubesoar {verb}: {namespace!r} is not a namespace name", file=sys.stderr)
        return 2
    body: dict[str, Any] = {"approved": verb == "approve"}
    if args.comment is not None:
        body["comment"] = args.comment
    path = (
        f"{kube.RUNS_API_VERSION_PATH}/namespaces/{namespace}/{kube.RUNS_RESOURCE}"
        f"/{args.run}/approval"
    )
    try:
        done = subprocess.run(
            [*_kubectl(args), "create", "--raw", path, "-f", "-"],
            input=json.dumps(body),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except FileNotFoundError:
        print(f"kubesoar {verb}: {args.kubectl!r} not found; install kubectl", file=sys.stderr)
        return 2
    if done.returncode != 0:
        sys.stderr.write(done.stderr)  # the cluster's own words: Forbidden, NotFound, 409
        return done.returncode
    decision = json.loads(done.stdout)["status"]["approval"]["decision"]
    said = f": {decision['comment']}" if decision.get("comment") else ""
    print(f"run {args.run} {decision['reason'].lower()} by {decision['decidedBy']}{said}")
    return 0


def main_approve(argv: Sequence[str] | None = None) -> int:
    return decide("approve", argv)


def main_deny(argv: Sequence[str] | None = None) -> int:
    return decide("deny", argv)
