"""Map a container image to a local program: nothing is ever pulled.

- any repository ending in `kubesoar/kubesoar`: the `kubesoar` console script
  becomes `<this Python> -m kubesoar` (and `python` this Python), so pods run
  the editable checkout in the agent's virtualenv;
- `kubesoar.dev/test/http-echo`: the stdlib echo server next to this file;
- anything else cannot run: the container waits with `ErrImageNeverPull`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

KUBESOAR_REPOSITORY_SUFFIX = "kubesoar/kubesoar"
ECHO_REPOSITORY = "kubesoar.dev/test/http-echo"
ECHO_SERVER = Path(__file__).resolve().parent / "echo_server.py"


class ImageNotRunnable(Exception):
    reason = "ErrImageNeverPull"


def repository(image: str) -> str:
    """`ghcr.io/kubesoar/kubesoar:0.1.0@sha256:…` -> `ghcr.io/kubesoar/kubesoar`."""
    name = image.split("@", 1)[0]
    colon, slash = name.rfind(":"), name.rfind("/")
    return name[:colon] if colon > slash else name


def container_argv(container: dict[str, Any]) -> list[str]:
    """The argv a container runs (command overrides the image entrypoint, as in Kubernetes)."""
    image = container.get("image", "")
    repo = repository(image)
    command: list[str] = list(container.get("command") or [])
    args: list[str] = list(container.get("args") or [])
    if repo == KUBESOAR_REPOSITORY_SUFFIX or repo.endswith("/" + KUBESOAR_REPOSITORY_SUFFIX):
        argv = (command or ["kubesoar"]) + args
        program = Path(argv[0]).name
        if program == "kubesoar":
            return [sys.executable, "-m", "kubesoar", *argv[1:]]
        if program in {"python", "python3"}:
            return [sys.executable, *argv[1:]]
        return argv
    if repo == ECHO_REPOSITORY:
        return (command + args) if command else [sys.executable, str(ECHO_SERVER), *args]
    raise ImageNotRunnable(
        f'image "{image}" is not available on the local node agent, which pulls nothing: '
        f"it runs only images whose repository ends in {KUBESOAR_REPOSITORY_SUFFIX} "
        f"or is {ECHO_REPOSITORY}"
    )
