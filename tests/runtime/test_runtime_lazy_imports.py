"""A runtime pod imports only what it needs to start (issue 16): `kubesoar runtime`'s
module does not import httpx (nor, through httpx, click and pygments) until a run makes
a call, and `DEFAULT_HTTP_TIMEOUT` is still there for the integrations."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(done.stdout.split())


def test_the_runtime_server_starts_without_httpx() -> None:
    loaded = _modules_after("import kubesoar._server")
    assert "kubesoar._service" in loaded  # the probe did import the server's modules
    assert not {"httpx", "click", "pygments"} & loaded


def test_a_playbooks_first_call_imports_httpx() -> None:
    loaded = _modules_after(
        "import kubesoar._server\n"
        "from kubesoar._context import DEFAULT_HTTP_TIMEOUT\n"
        "assert DEFAULT_HTTP_TIMEOUT.connect == 10.0 and DEFAULT_HTTP_TIMEOUT.read == 30.0"
    )
    assert "httpx" in loaded
