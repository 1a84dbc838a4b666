"""`opensoar.config.settings`: OpenSOAR's setting names, answered from the
Playbook's mounted Secrets (and, for what is not a credential, the
environment), so a migrated playbook needs a Secret, not a code change.

Values are read on each access, from the secrets of the run that asks (a
Secret updated in place is seen by the next run). Credentials come from
Secrets only: the runtime's environment is the operator's, not the
tenant's. Settings of OpenSOAR's server (database, Redis, JWT) have no
meaning here and raise AttributeError saying so.
"""

from __future__ import annotations

import os
from typing import Any, Final

from kubesoar._context import current_context
from kubesoar._secrets import SecretNotFound, Secrets

__all__ = ["CREDENTIALS", "FROM_SECRET_OR_ENV", "TTL_DEFAULTS", "Settings", "settings"]

# setting -> (Secret, key). Missing -> None, as OpenSOAR's unset keys.
CREDENTIALS: Final[dict[str, tuple[str, str]]] = {
    "vt_api_key": ("virustotal", "api_key"),
    "abuseipdb_api_key": ("abuseipdb", "api_key"),
    "greynoise_api_key": ("greynoise", "api_key"),
    "shodan_api_key": ("shodan", "api_key"),
    "openai_api_key": ("openai", "api_key"),
    "anthropic_api_key": ("anthropic", "api_key"),
}
# setting -> (Secret, key, environment variable).
FROM_SECRET_OR_ENV: Final[dict[str, tuple[str, str, str]]] = {
    "ollama_url": ("ollama", "url", "OLLAMA_URL"),
    "llm_model": ("llm", "model", "LLM_MODEL"),
    "ai_embedding_provider": ("llm", "embedding_provider", "AI_EMBEDDING_PROVIDER"),
    "ai_embedding_model": ("llm", "embedding_model", "AI_EMBEDDING_MODEL"),
}
# enrichment_cache_ttl_<integration>: Secret <integration>/cache_ttl_seconds,
# else ENRICHMENT_CACHE_TTL_<INTEGRATION>, else OpenSOAR's default (seconds).
TTL_DEFAULTS: Final[dict[str, int]] = {
    "virustotal": 24 * 3600,
    "abuseipdb": 12 * 3600,
    "greynoise": 6 * 3600,
    "shodan": 24 * 3600,
}
# Plain settings from the environment, with OpenSOAR's defaults.
FROM_ENV: Final[dict[str, Any]] = {
    "debug": False,
    "enrichment_cache_ttl_default": 3600,
    "ai_dedup_threshold": 0.85,
    "ai_embedding_cache_ttl": 7 * 24 * 3600,
    "playbook_dirs": "playbooks",
    "integration_dirs": "",
}
_SERVER_ONLY: Final = frozenset(
    {
        "database_url",
        "sync_database_url",
        "redis_url",
        "celery_broker_url",
        "effective_celery_broker_url",
        "jwt_secret",
        "jwt_expire_minutes",
        "api_key_secret",
        "local_login_enabled",
        "local_registration_enabled",
        "alerts_retention_days",
        "incidents_retention_days",
        "activities_retention_days",
        "retention_grace_days",
    }
)


def _secret(name: str, key: str) -> str | None:
    ctx = current_context()
    store = ctx.secrets if ctx is not None else Secrets()
    try:
        return store.get(name, key) or None
    except SecretNotFound:
        return None


def _typed(raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


class Settings:
    """Attribute access only, like OpenSOAR's pydantic settings object."""

    def __getattr__(self, name: str) -> Any:
        if name in CREDENTIALS:
            return _secret(*CREDENTIALS[name])
        if name in FROM_SECRET_OR_ENV:
            secret, key, env = FROM_SECRET_OR_ENV[name]
            return _secret(secret, key) or os.environ.get(env) or None
        if name.startswith("enrichment_cache_ttl_") and name[21:] in TTL_DEFAULTS:
            integration = name[21:]
            raw = _secret(integration, "cache_ttl_seconds") or os.environ.get(name.upper())
            return int(raw) if raw else TTL_DEFAULTS[integration]
        if name in FROM_ENV:
            raw = os.environ.get(name.upper())
            return _typed(raw, FROM_ENV[name]) if raw else FROM_ENV[name]
        if name in _SERVER_ONLY:
            raise AttributeError(
                f"OpenSOAR setting {name!r} belongs to OpenSOAR's server (database, Redis, "
                "API auth) and has no meaning under kubesoar; see docs/migrating-from-opensoar.md"
            )
        raise AttributeError(f"OpenSOAR has no setting {name!r}")

    @property
    def playbook_directories(self) -> list[str]:
        return [d.strip() for d in str(self.playbook_dirs).split(",") if d.strip()]

    def __repr__(self) -> str:
        return "<opensoar settings from the Playbook's Secrets (kubesoar)>"


settings = Settings()
