"""The image's root filesystem, built the way the Dockerfile says and run without an engine.

There is no container engine here, so the builder stage is replayed instead: its
COPY instructions copy the build context (what .dockerignore admits) into a clean
temporary root, and its RUN commands run there as written in the Dockerfile,
with each absolute path moved under that root and `python`/`pip` the base Python
3.11 of this machine (a Debian 3.11, as in the `-slim-bookworm` base). So the
wheel is built from this checkout and installed with the Dockerfile's own pip
command; a change to that command changes what this test builds.

Then the final stage's entry point runs from that root with only the environment
the image sets (ENV, WORKDIR, USER 65532:65532 when the test runs as root):
`kubesoar --help` (the default CMD), `kubesoar fetch --help`, `kubesoar router
--help`, the operator up to the point where it needs a cluster, and the runtime
serving a playbook until /readyz says it is ready. Every module comes from the
root: nothing from this checkout, its virtualenv, PYTHONPATH or the working
directory. What the base image provides (the interpreter, its standard library,
git) comes from this machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
from dockerfile_support import build_args, dockerignore, env_pairs, stages
from packaging_support import REPO

IMAGE_USER = (65532, 65532)
# The PATH of the python:*-slim images, which the final stage's ENV PATH extends.
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Absolute paths in a RUN command (not parts of a longer word such as a URL).
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?=[A-Za-z_])")

PLAYBOOK = """\
from kubesoar import Alert, playbook


@playbook(trigger="webhook")
async def triage(alert: Alert) -> dict:
    return {"seen": alert.title}
"""


def base_python() -> Path:
    """The machine's CPython of the version the Dockerfile's base image carries."""
    version = re.match(r"python:(\d+\.\d+)", build_args()["PYTHON_IMAGE"])
    assert version is not None
    found = shutil.which(f"python{version.group(1)}", path="/usr/local/bin:/usr/bin")
    if found is None:
        pytest.skip(f"no system python{version.group(1)} (the base image's Python) here")
    has_pip = subprocess.run([found, "-m", "pip", "--version"], capture_output=True)
    if has_pip.returncode != 0:
        pytest.skip(f"{found} has no pip (the base image's pip)")
    return Path(found)


def ignored(patterns: list[str]) -> Any:
    """shutil.copytree's `ignore`: the names .dockerignore keeps out of the context."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if any(fnmatch(n, pattern) for pattern in patterns)}

    return ignore


def under(root: Path, command: str) -> str:
    """`command` with every absolute path moved under `root`."""
    return ABSOLUTE_PATH.sub(f"{root}/", command)


def build_builder_stage(root: Path, python: Path) -> None:
    builder = stages()[0]
    allowed, excluded = dockerignore()
    tools = root / ".base-bin"  # the base image's `python` and `pip`
    tools.mkdir(parents=True)
    (tools / "python").symlink_to(python)
    (tools / "pip").write_text(f'#!/bin/sh\nexec {python} -m pip "$@"\n')
    (tools / "pip").chmod(0o755)
    # The machine's pip settings (index, certificates) are the build's network.
    env = {k: v for k, v in os.environ.items() if k.startswith("PIP_") or k.endswith("_PROXY")}
    env |= {"PATH": f"{tools}:/usr/bin:/bin", "HOME": str(root / "root"), "LANG": "C.UTF-8"}
    workdir = root
    for instruction, args in builder[1:]:
        if instruction == "ENV":
            env |= env_pairs(args)
        elif instruction == "WORKDIR":
            workdir = Path(under(root, args))
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction == "COPY":
            *sources, dest = args.split()
            assert {s.rstrip("/") for s in sources} <= allowed, "COPY outside the build context"
            target = Path(under(root, dest))
            for source in sources:
                if source.endswith("/"):
                    shutil.copytree(REPO / source, target, ignore=ignored(excluded))
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(REPO / source, target / source)
        elif instruction == "RUN":
            done = subprocess.run(
                ["sh", "-c", under(root, args)],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=540,
            )
            assert done.returncode == 0, f"RUN {args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        elif instruction not in {"ARG"}:
            raise AssertionError(f"the builder stage has {instruction}, which this test ignores")


class Image:
    """The final stage's configuration, applied to the root built above."""

    def __init__(self, root: Path) -> None:
        self.root = root
        final = stages()[-1]
        copies = [a for i, a in final if i == "COPY"]
        # The final stage copies only the environment, to the same place.
        assert copies == ["--from=builder --chown=0:0 /opt/kubesoar /opt/kubesoar"]
        env: dict[str, str] = {}
        for instruction, args in final:
            if instruction == "ENV":
                env |= env_pairs(args)
        self.env = {k: under(root, v.replace("$PATH", BASE_PATH)) for k, v in env.items()}
        (workdir,) = [a for i, a in final if i == "WORKDIR"]
        self.workdir = Path(under(root, workdir))
        (entrypoint,) = [json.loads(a) for i, a in final if i == "ENTRYPOINT"]
        self.entrypoint: list[str] = entrypoint
        (user,) = [a for i, a in final if i == "USER"]
        assert tuple(int(x) for x in user.split(":")) == IMAGE_USER
        # The image's /tmp: HOME and WORKDIR, writable by everyone as in the base image.
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o1777)
        Path(self.env["HOME"]).mkdir(parents=True, exist_ok=True)

    def popen_args(
        self, argv: list[str], extra_env: dict[str, str] | None = None
    ) -> dict[str, Any]:
        program = shutil.which(argv[0], path=self.env["PATH"])
        assert program is not None, f"{argv[0]} is not on the image's PATH"
        kwargs: dict[str, Any] = {
            "args": [program, *argv[1:]],
            "env": {**self.env, **(extra_env or {})},
            "cwd": self.workdir,
        }
        if os.geteuid() == 0:
            kwargs |= {"user": IMAGE_USER[0], "group": IMAGE_USER[1], "extra_groups": []}
        return kwargs

    def run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            **self.popen_args([*self.entrypoint, *argv]),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    python = base_python()
    # Not under pytest's tmp folders: those are private to this user, and the
    # image's user must be able to reach the root.
    root = Path(tempfile.mkdtemp(prefix="kubesoar-image-root-"))
    root.chmod(0o755)
    try:
        build_builder_stage(root, python)
        yield Image(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_environment_is_installed_from_a_wheel_not_from_this_checkout(image):
    venv = image.root / "opt" / "kubesoar"
    (dist_info,) = venv.glob("lib/python3.*/site-packages/kubesoar-*.dist-info")
    # An install from a path or an editable one records where it came from; a wheel
    # found with --find-links does not.
    assert not (dist_info / "direct_url.json").exists()
    site = dist_info.parent
    for pth in site.glob("*.pth"):
        assert str(REPO) not in pth.read_text(), pth
    # No pip in the image's environment (extend it with the base image's pip).
    assert not (venv / "bin" / "pip").exists()
    # Bytecode compiled at build time: the image writes none at run time.
    sources = list((site / "kubesoar").rglob("*.py"))
    assert sources
    for source in sources:
        assert list((source.parent / "__pycache__").glob(f"{source.stem}.*.pyc")), source
    # Owned by root (COPY --chown=0:0) and not writable by the image's user.
    assert stat.S_IMODE(site.stat().st_mode) & 0o002 == 0


def test_every_module_comes_from_the_image_root(image):
    script = (
        "import json, sys\n"
        "import kubesoar, kubesoar_operator, kubesoar_router, kopf, kubernetes, git, asyncpg\n"
        "mods = [kubesoar, kubesoar_operator, kubesoar_router, kopf, kubernetes, git, asyncpg]\n"
        "print(json.dumps({'files': [m.__file__ for m in mods], 'path': sys.path}))\n"
    )
    argv = ["python", "-P", "-c", script]
    done = subprocess.run(**image.popen_args(argv), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    venv = str(image.root / "opt" / "kubesoar")
    assert all(f.startswith(venv + "/") for f in answer["files"]), answer["files"]
    # sys.path: the environment, and the base interpreter's standard library; never
    # this checkout, its virtualenv, or the working directory.
    for entry in answer["path"]:
        assert not entry.startswith(str(REPO)), entry
        assert entry.startswith((venv, "/usr/lib/python3", "/usr/local/lib/python3")), entry


def test_default_command_and_help_of_each_entry_point(image):
    done = image.run("--help")  # the image's CMD
    assert done.returncode == 0, done.stderr
    for command in ("operator", "router", "runtime", "fetch"):
        assert command in done.stdout
    for command in ("fetch", "router", "operator"):
        done = image.run(command, "--help")
        assert done.returncode == 0, f"{command}: {done.stderr}"
        assert f"kubesoar {command}" in done.stdout


def test_operator_runs_until_it_needs_a_cluster(image):
    done = image.run(
        "operator",
        "--all-namespaces",
        "--artifact-url=http://operator.kubesoar-system.svc:8090",
        "--artifact-listen=127.0.0.1:0",
    )
    output = done.stdout + done.stderr
    # Its modules all loaded and its artifact server started; only credentials are missing.
    assert done.returncode == 2, output
    assert "cannot load Kubernetes credentials" in output
    assert "Traceback" not in output


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_runtime_serves_a_playbook(image):
    workspace = image.workdir / "workspace"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "triage.py").write_text(PLAYBOOK)
    port = free_port()
    env = {
        "KUBESOAR_WORKSPACE": str(workspace),
        "KUBESOAR_MODULE": "triage",
        "KUBESOAR_POD_IP": "127.0.0.1",
        "KUBESOAR_PORT": str(port),
        "KUBESOAR_SECRETS_DIR": str(image.workdir / "secrets"),
    }
    kwargs = image.popen_args([*image.entrypoint, "runtime"], env)
    with subprocess.Popen(**kwargs, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        try:
            ready = None
            for _ in range(120):  # bounded: 60 s
                if proc.poll() is not None:
                    break
                try:
                    url = f"http://127.0.0.1:{port}/readyz"
                    with urllib.request.urlopen(url, timeout=2) as answer:
                        ready = json.loads(answer.read())
                        break
                except (urllib.error.URLError, ConnectionError):
                    time.sleep(0.5)
            assert ready == {"status": "ready"}, f"runtime not ready; exit {proc.poll()}"
        finally:
            proc.terminate()
            output = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert "Traceback" not in output, output
    # SIGTERM drains and exits cleanly, as a pod's runtime does.
    assert proc.returncode == 0, output
