"""GreyNoise API: noise classification, context, RIOT and GNQL.

Auth: `key` header. Secret `greynoise`: `api_key`; optional `base_url`,
`requests_per_minute` (default 60), `cache_ttl_seconds` (default 6 h).
"""

from __future__ import annotations

from typing import Any, ClassVar

from kubesoar.integrations._base import Integration
from kubesoar.integrations._types import ActionDefinition, HealthCheckResult

__all__ = ["GreyNoise"]


class GreyNoise(Integration):
    name: ClassVar[str] = "greynoise"
    display_name: ClassVar[str] = "GreyNoise"
    description: ClassVar[str] = "Internet noise and RIOT classification for IP addresses"
    default_base_url: ClassVar[str] = "https://api.greynoise.io"
    cache_ttl_seconds: ClassVar[float] = 6 * 3600
    requests_per_minute: ClassVar[float | None] = 60

    def _headers(self) -> dict[str, str]:
        return {"key": self.require("api_key"), "Accept": "application/json"}

    async def _get(
        self, method: str, path: str, cache_key: str, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        answer: dict[str, Any] = await self._request(
            f"greynoise.{method}",
            "GET",
            path,
            params=params,
            headers=self._headers(),
            cache_key=cache_key,
        )
        return answer

    async def quick_lookup(self, ip: str) -> dict[str, Any]:
        return await self._get("quick_lookup", f"/v2/noise/quick/{ip}", f"quick:{ip}")

    async def context(self, ip: str) -> dict[str, Any]:
        return await self._get("context", f"/v2/noise/context/{ip}", f"context:{ip}")

    async def riot(self, ip: str) -> dict[str, Any]:
        return await self._get("riot", f"/v2/riot/{ip}", f"riot:{ip}")

    async def gnql(self, query: str) -> dict[str, Any]:
        return await self._get("gnql", "/v2/experimental/gnql", f"gnql:{query}", {"query": query})

    async def health_check(self) -> HealthCheckResult:
        try:
            await self._request(
                "greynoise.health",
                "GET",
                "/v2/noise/quick/8.8.8.8",
                headers=self._headers(),
                raise_errors=True,
            )
        except Exception as exc:
            return HealthCheckResult(healthy=False, message=str(exc))
        return HealthCheckResult(healthy=True, message="OK")

    def get_actions(self) -> list[ActionDefinition]:
        ip = {"ip": {"type": "string"}}
        return [
            ActionDefinition("quick_lookup", "Fast noise/RIOT classification for an IP", ip),
            ActionDefinition("context", "Full noise context for an IP", ip),
            ActionDefinition("riot", "RIOT lookup: is this IP a known-benign service?", ip),
            ActionDefinition("gnql", "Run a GNQL query", {"query": {"type": "string"}}),
        ]
