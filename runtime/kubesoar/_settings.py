"""Runtime settings from the pod environment (names in docs/CONTRACTS.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kubesoar.contracts.caller import AUTH_ENV, TOKEN_FILE

__all__ = ["RuntimeSettings", "SettingsError"]


class SettingsError(ValueError):
    """An environment variable has a value the runtime cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise SettingsError(f"{name} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True)
class RuntimeSettings:
    workspace: Path
    module: str
    commit: str
    revision: str
    playbook: str
    namespace: str
    host: str
    port: int
    concurrency: int
    queue_size: int
    timeout_seconds: float
    drain_seconds: float
    secrets_dir: Path
    max_body_bytes: int
    history: int
    # Callers must present the token (kubesoar.contracts.caller); False only outside a pod, where
    # the runtime serves without caller authentication (local development, tests).
    caller_auth: bool = False

    @property
    def source_dir(self) -> Path:
        return self.workspace / "src"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RuntimeSettings:
        env = os.environ if env is None else env
        return cls(
            workspace=Path(env.get("KUBESOAR_WORKSPACE") or "/workspace"),
            module=env.get("KUBESOAR_MODULE", "").strip(),
            commit=env.get("KUBESOAR_COMMIT", ""),
            revision=env.get("KUBESOAR_REVISION", ""),
            playbook=env.get("KUBESOAR_PLAYBOOK", ""),
            namespace=env.get("KUBESOAR_NAMESPACE", ""),
            host=env.get("KUBESOAR_POD_IP") or "127.0.0.1",
            port=_int(env, "KUBESOAR_PORT", 8080, minimum=0),
            concurrency=_int(env, "KUBESOAR_CONCURRENCY", 8),
            # 0: no run waits; only what an idle worker takes at once is admitted.
            queue_size=_int(env, "KUBESOAR_QUEUE_SIZE", 100, minimum=0),
            timeout_seconds=_float(env, "KUBESOAR_TIMEOUT_SECONDS", 300.0),
            drain_seconds=_float(env, "KUBESOAR_DRAIN_SECONDS", 25.0),
            secrets_dir=Path(env.get("KUBESOAR_SECRETS_DIR") or "/var/run/kubesoar/secrets"),
            max_body_bytes=_int(env, "KUBESOAR_MAX_BODY_BYTES", 1 << 20),
            history=_int(env, "KUBESOAR_RUN_HISTORY", 1000),
            caller_auth=env.get(AUTH_ENV, "").strip() == "required",
        )

    def caller_token(self) -> bytes | None:
        """The token callers must present, or None when caller auth is off."""
        if not self.caller_auth:
            return None
        path = self.workspace / TOKEN_FILE
        try:
            token = path.read_bytes().strip()
        except OSError as exc:
            raise SettingsError(f"cannot read the caller token {path}: {exc.strerror}") from None
        if not token:
            raise SettingsError(f"the caller token {path} is empty")
        return token
