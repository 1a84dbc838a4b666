"""The `helm template` commands of docs/install.md, run exactly as written.

A user follows the page with the project's helm and no cluster: each command
must render (the chart's `kubeVersion` against helm's offline default), and the
RBAC preview must print the RBAC objects only. Run from the repository root, as
the page's `./helm/kubesoar` paths assume, with `helm` on PATH and no kubeconfig.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from packaging_support import RBAC_KINDS, REPO

INSTALL_DOC = REPO / "docs" / "install.md"
SHELL_BLOCK = re.compile(r"```sh\n(.*?)```", re.S)


def shell_commands(markdown: str) -> list[str]:
    """Each command of the page's ```sh blocks, continuation lines joined."""
    commands: list[str] = []
    for block in SHELL_BLOCK.findall(markdown):
        pending = ""
        for line in block.splitlines():
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            pending += line.rstrip()
            if pending.endswith("\\"):
                pending = pending[:-1].rstrip() + " "
                continue
            commands.append(pending.strip())
            pending = ""
    return commands


TEMPLATE_COMMANDS = [
    c for c in shell_commands(INSTALL_DOC.read_text()) if c.startswith("helm template")
]


def test_the_page_has_the_template_commands_this_test_runs():
    assert len(TEMPLATE_COMMANDS) >= 2, TEMPLATE_COMMANDS
    assert all("--kube-version" not in c for c in TEMPLATE_COMMANDS)


@pytest.fixture(scope="module")
def user_shell(helm_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A shell environment with the project's helm as `helm` and no cluster."""
    bin_dir = tmp_path_factory.mktemp("bin")
    (bin_dir / "helm").symlink_to(helm_bin)
    home = tmp_path_factory.mktemp("home")
    return {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin",
        "HOME": str(home),
        "KUBECONFIG": str(home / "no-such-kubeconfig"),
    }


@pytest.mark.parametrize("command", TEMPLATE_COMMANDS)
def test_documented_helm_template_renders_offline(command: str, user_shell: dict[str, str]):
    proc = subprocess.run(
        ["bash", "-c", command],
        cwd=REPO,
        env=user_shell,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"{command}\n{proc.stderr}"
    objects = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    kinds = {o["kind"] for o in objects}
    if "--show-only templates/rbac.yaml" in command:
        assert kinds and kinds <= RBAC_KINDS, kinds
        namespaces = {o["metadata"].get("namespace") for o in objects if o["kind"] == "Role"}
        assert namespaces == {"tenant-a", "tenant-b"}
    else:
        assert {"Deployment", "Service", "ServiceAccount"} <= kinds


def test_project_helm_offline_default_is_its_client_library_version(helm_bin: Path, tmp_path: Path):
    # What the page says: the project's helm assumes the Kubernetes version of its
    # client library (as helm's release builds do), not v1.20.0.
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.0.0\n")
    (chart / "templates" / "v.yaml").write_text("v: {{ .Capabilities.KubeVersion.Version }}\n")
    out = subprocess.run(
        [str(helm_bin), "template", "probe", str(chart)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "v: v1.34.0" in out
