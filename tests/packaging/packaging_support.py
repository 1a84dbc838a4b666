"""Helpers of the packaging tests: the real helm CLI and a chart renderer."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "kubesoar"
# The real control plane's version: helm built from source defaults to v1.20.
KUBE_VERSION = "1.36.3"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def versions() -> dict[str, str]:
    out = {}
    for line in (REPO / "hack" / "localcluster" / "versions.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def helm_path() -> Path:
    """The pinned helm CLI, built from the Go module proxy when missing or when
    built without helm's default-Kubernetes-version flags (build.sh checks)."""
    path = Path.home() / ".cache" / "kubesoar" / "bin" / f"helm-{versions()['HELM_VERSION']}"
    subprocess.run(
        ["bash", str(REPO / "hack/localcluster/build.sh"), "helm"], check=True, capture_output=True
    )
    return path


class HelmError(RuntimeError):
    pass


def run_helm(helm: Path, *args: str, values: dict[str, Any] | None = None) -> str:
    cmd = [str(helm), *args]
    if values is not None:
        cmd += ["--values", "-"]
    proc = subprocess.run(
        cmd, input=yaml.safe_dump(values or {}), capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise HelmError(f"{proc.stdout.strip()}\n{proc.stderr.strip()}".strip())
    return proc.stdout


def render(
    helm: Path,
    values: dict[str, Any] | None = None,
    *,
    release: str = "ks",
    namespace: str = "kubesoar-system",
    crds: bool = False,
) -> list[dict[str, Any]]:
    args = ["template", release, str(CHART), "--namespace", namespace]
    args += ["--kube-version", KUBE_VERSION]
    if crds:
        args.append("--include-crds")
    text = run_helm(helm, *args, values=values or {})
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(objects: list[dict[str, Any]], kind: str, name_suffix: str = "") -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)]


def one(objects: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = find(objects, kind, name_suffix)
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, got {len(found)}"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


class Kubectl:
    """The real kubectl against the local cluster, as the cluster admin."""

    def __init__(self, binary: Path, kubeconfig: Path) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def apply(self, objects: list[dict[str, Any]], *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "-f", "-", *extra, stdin=yaml.safe_dump_all(objects))

    def can_i(
        self,
        sa: str,
        verb: str,
        resource: str,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> bool:
        """`kubectl auth can-i` as the ServiceAccount `sa` ("namespace/name")."""
        sa_namespace, sa_name = sa.split("/")
        args = ["auth", "can-i", verb, resource]
        args.append(f"--as=system:serviceaccount:{sa_namespace}:{sa_name}")
        if subresource:
            args.append(f"--subresource={subresource}")
        args.append(f"--namespace={namespace}" if namespace else "--all-namespaces")
        proc = self.run(*args, check=False)
        answer = proc.stdout.strip()
        assert answer in {"yes", "no"}, f"can-i: {proc.stdout} {proc.stderr}"
        # An unknown resource answers "no" with a warning: a typo must not pass.
        assert "doesn't have a resource type" not in proc.stderr, proc.stderr
        return answer == "yes"
