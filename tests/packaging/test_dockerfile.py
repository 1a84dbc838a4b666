"""Key properties of the Dockerfile, checked textually.

There is no container engine on the build machine, so the image itself is not
built here (test_image_root.py builds and runs its root filesystem); these
tests keep the properties the chart and the runtime pods rely on: two stages
from a base pinned by digest, only the installed environment copied into the
final one, a fixed non-root UID/GID 65532, the `kubesoar` entry point, no
bytecode written at run time, OCI labels, and a build context limited by
.dockerignore.
"""

from __future__ import annotations

import json
import re

from dockerfile_support import build_args, stages
from packaging_support import REPO


def test_multi_stage_build_on_python_311_slim_pinned_by_digest():
    args = build_args()
    builder, final = stages()
    assert builder[0][1] == "${PYTHON_IMAGE} AS builder"
    assert final[0][1] == "${PYTHON_IMAGE}"
    # The tag says what it is, the digest makes every build start from the same bytes.
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?@sha256:[0-9a-f]{64}", args["PYTHON_IMAGE"])


def test_final_stage_copies_only_the_installed_environment():
    builder, final = stages()
    assert any(i == "RUN" and "pip wheel" in a for i, a in builder)
    copies = [a for i, a in final if i == "COPY"]
    assert copies == ["--from=builder --chown=0:0 /opt/kubesoar /opt/kubesoar"]
    # No build tools, pip caches or apt lists in the final image.
    final_runs = " ".join(a for i, a in final if i == "RUN")
    assert not re.search(r"\b(gcc|build-essential|pip install)\b", final_runs)
    assert "--no-install-recommends" in final_runs
    assert "rm -rf /var/lib/apt/lists/*" in final_runs
    builder_env = " ".join(a for i, a in builder if i == "ENV")
    assert "PIP_NO_CACHE_DIR=1" in builder_env


def test_runs_as_fixed_non_root_uid_65532():
    _, final = stages()
    users = [a for i, a in final if i == "USER"]
    assert users == ["65532:65532"], "numeric UID:GID, so the kubelet can check runAsNonRoot"
    final_runs = " ".join(a for i, a in final if i == "RUN")
    assert "--uid 65532" in final_runs and "--gid 65532" in final_runs


def test_entrypoint_is_the_kubesoar_console_script():
    _, final = stages()
    (entrypoint,) = [a for i, a in final if i == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["kubesoar"]
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'kubesoar = "kubesoar._cli:main"' in pyproject
    env = " ".join(a for i, a in final if i == "ENV")
    assert "PATH=/opt/kubesoar/bin:$PATH" in env


def test_nothing_is_written_outside_tmp_at_run_time():
    builder, final = stages()
    env = " ".join(a for i, a in final if i == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "HOME=/tmp" in env
    # Bytecode compiled at build time, for the environment and the stdlib.
    assert any(i == "RUN" and "compileall" in a and "/opt/kubesoar" in a for i, a in builder)
    assert any(
        i == "RUN" and "compileall" in a and "/usr/local/lib/python3.11" in a for i, a in final
    )


def test_oci_labels():
    _, final = stages()
    labels = " ".join(a for i, a in final if i == "LABEL")
    for key in ("title", "description", "source", "licenses", "version", "revision", "created"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in labels


def test_build_context_is_limited_to_what_the_wheel_needs():
    ignore = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "runtime", "operator", "router"}
    builder, _ = stages()
    sources = set()
    for i, a in builder:
        if i == "COPY":
            sources |= {s.rstrip("/") for s in a.split()[:-1]}
    # The builder copies exactly the context, and the context holds every
    # folder setuptools maps to a package.
    assert sources == allowed
    pyproject = (REPO / "pyproject.toml").read_text()
    where = re.search(r"where = \[([^\]]*)\]", pyproject)
    assert where is not None
    package_dirs = set(re.findall(r'"(\w+)"', where.group(1)))
    assert package_dirs and package_dirs <= allowed


def test_no_command_runs_where_operator_shadows_the_standard_library():
    # `python -m ...` puts the working directory first on sys.path; a folder
    # named operator/ there shadows the stdlib module and breaks Python itself.
    for stage in stages():
        workdir = "/"
        copied_to: set[str] = set()
        for instruction, args in stage:
            if instruction == "WORKDIR":
                workdir = args.rstrip("/") or "/"
            elif instruction == "COPY":
                dest = args.split()[-1].rstrip("/")
                if dest.endswith("/operator"):
                    copied_to.add(dest.rsplit("/", 1)[0] or "/")
            elif instruction == "RUN":
                assert workdir not in copied_to, f"RUN in {workdir}, next to operator/: {args}"
