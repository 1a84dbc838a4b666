"""The image workflow (.github/workflows/image.yaml), which is not run here.

actionlint (pinned in hack/localcluster/versions.env, built from the Go module
proxy by build.sh when missing) checks its syntax, expressions and action inputs;
the tests below check what it promises: a multi-arch build of this Dockerfile,
pushed only outside pull requests, with provenance, an SBOM and an attestation of
the pushed digest, and write permissions only on the job that needs them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging_support import REPO, versions

WORKFLOW = REPO / ".github" / "workflows" / "image.yaml"


@pytest.fixture(scope="module")
def actionlint() -> Path:
    version = versions()["ACTIONLINT_VERSION"]
    path = Path.home() / ".cache" / "kubesoar" / "bin" / f"actionlint-{version}"
    if not path.exists():
        subprocess.run(
            ["bash", str(REPO / "hack/localcluster/build.sh"), "actionlint"],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return path


def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def steps_using(action: str) -> list[dict[str, Any]]:
    (job,) = workflow()["jobs"].values()
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(action + "@")]


def test_actionlint_finds_nothing(actionlint: Path):
    done = subprocess.run(
        [str(actionlint), "-color=false", str(WORKFLOW)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_builds_every_architecture_with_provenance_and_sbom():
    builds = steps_using("docker/build-push-action")
    (release,) = [s for s in builds if "platforms" in s["with"]]
    options = release["with"]
    assert options["context"] == "."  # the Dockerfile at the root, with .dockerignore
    assert set(options["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert options["provenance"] == "mode=max"
    assert options["sbom"] is True
    # OCI labels of the Dockerfile filled in from the build.
    for arg in ("VERSION=", "REVISION=${{ github.sha }}", "CREATED="):
        assert arg in options["build-args"]
    # The pushed digest is what gets attested.
    (attest,) = steps_using("actions/attest-build-provenance")
    assert attest["with"]["subject-digest"] == "${{ steps.build.outputs.digest }}"
    assert release["id"] == "build"
    # QEMU for the foreign architecture, buildx for attestations.
    assert steps_using("docker/setup-qemu-action") and steps_using("docker/setup-buildx-action")


def test_pull_requests_build_but_never_log_in_push_or_attest():
    (job,) = workflow()["jobs"].values()
    assert job["env"]["PUSH"] == "${{ github.event_name != 'pull_request' }}"
    (release,) = [s for s in steps_using("docker/build-push-action") if "platforms" in s["with"]]
    assert release["with"]["push"] == "${{ env.PUSH == 'true' }}"
    for action in ("docker/login-action", "actions/attest-build-provenance"):
        (step,) = steps_using(action)
        assert step["if"] == "github.event_name != 'pull_request'"
    # A smoke test of the loaded image runs before the push.
    names = [s.get("name") for s in job["steps"]]
    assert names.index("Smoke test") < names.index("Build and push (amd64, arm64)")


def test_permissions_are_read_only_except_on_the_publishing_job():
    flow = workflow()
    assert flow["permissions"] == {"contents": "read"}
    (job,) = flow["jobs"].values()
    assert job["permissions"] == {
        "contents": "read",
        "packages": "write",
        "id-token": "write",
        "attestations": "write",
    }
    # yaml reads the `on:` key as True.
    triggers = flow[True]
    assert triggers["push"]["tags"] == ["v*.*.*"]
    assert "pull_request" in triggers


def test_publishes_where_the_chart_pulls_from():
    (job,) = workflow()["jobs"].values()
    values = yaml.safe_load((REPO / "helm" / "kubesoar" / "values.yaml").read_text())
    assert job["env"]["IMAGE"] == values["image"]["repository"]
