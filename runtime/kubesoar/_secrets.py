"""Integration credentials, read from files: `$KUBESOAR_SECRETS_DIR/<name>/<key>`
(one folder per named Secret, as Kubernetes mounts them). Values are never
logged, and errors name the secret and key only."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

__all__ = ["DEFAULT_SECRETS_DIR", "SecretNotFound", "Secrets"]

DEFAULT_SECRETS_DIR: Final = "/var/run/kubesoar/secrets"
MAX_SECRET_BYTES: Final = 1 << 20
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


class SecretNotFound(KeyError):
    """The named secret or key is not mounted."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "secret not found"


class Secrets:
    """Read-only access to mounted secrets; files are read on each access so
    that Kubernetes' in-place updates of mounted Secrets are seen."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(
            directory or os.environ.get("KUBESOAR_SECRETS_DIR") or DEFAULT_SECRETS_DIR
        )

    def get(self, name: str, key: str) -> str:
        """The value of `key` in secret `name`, without a trailing newline."""
        for part, what in ((name, "secret name"), (key, "key")):
            if not _SAFE_NAME.match(part) or part in {".", ".."}:
                raise ValueError(f"invalid {what} {part!r}")
        path = self.directory / name / key
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_SECRET_BYTES + 1)
        except (FileNotFoundError, NotADirectoryError):
            # The folder named, so a local `kubesoar run` says where it looked.
            raise SecretNotFound(f"secret {name!r} has no key {key!r} (no file {path})") from None
        if len(data) > MAX_SECRET_BYTES:
            raise ValueError(f"secret {name!r} key {key!r} is larger than 1 MiB")
        return data.decode("utf-8").rstrip("\r\n")

    def names(self) -> list[str]:
        """The mounted secret names (not their values)."""
        if not self.directory.is_dir():
            return []
        return sorted(
            p.name for p in self.directory.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def keys(self, name: str) -> list[str]:
        folder = self.directory / name
        if not _SAFE_NAME.match(name) or not folder.is_dir():
            return []
        # Kubernetes' atomic-writer adds ..data and timestamped folders; skip them.
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))

    def __repr__(self) -> str:
        return f"Secrets({str(self.directory)!r})"
