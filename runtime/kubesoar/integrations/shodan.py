"""Shodan REST API: hosts, search, DNS, account.

Auth: the `key` query parameter (Shodan's way; `kubesoar._redact` strips query
strings from any error text). Secret `shodan`: `api_key`; optional `base_url`,
`requests_per_minute` (default 60), `cache_ttl_seconds` (default 24 h).
"""

from __future__ import annotations

from typing import Any, ClassVar

from kubesoar.integrations._base import Integration
from kubesoar.integrations._types import ActionDefinition, HealthCheckResult

__all__ = ["Shodan"]


class Shodan(Integration):
    name: ClassVar[str] = "shodan"
    display_name: ClassVar[str] = "Shodan"
    description: ClassVar[str] = "Host info, search and DNS lookups"
    default_base_url: ClassVar[str] = "https://api.shodan.io"
    cache_ttl_seconds: ClassVar[float] = 24 * 3600
    requests_per_minute: ClassVar[float | None] = 60

    async def _get(
        self, method: str, path: str, cache_key: str | None, extra: dict[str, str] | None = None
    ) -> Any:
        params = {"key": self.require("api_key"), **(extra or {})}
        return await self._request(
            f"shodan.{method}",
            "GET",
            path,
            params=params,
            headers={"Accept": "application/json"},
            cache_key=cache_key,
        )

    async def host_info(self, ip: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._get("host_info", f"/shodan/host/{ip}", f"ip:{ip}")
        return answer

    async def search(self, query: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._get(
            "search", "/shodan/host/search", f"search:{query}", {"query": query}
        )
        return answer

    async def dns_resolve(self, domain: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._get(
            "dns_resolve", "/dns/resolve", f"domain:{domain}", {"hostnames": domain}
        )
        return answer

    async def dns_reverse(self, ip: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._get(
            "dns_reverse", "/dns/reverse", f"reverse:{ip}", {"ips": ip}
        )
        return answer

    async def account_profile(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self._get("account_profile", "/account/profile", None)
        return answer

    async def api_info(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self._get("api_info", "/api-info", None)
        return answer

    async def health_check(self) -> HealthCheckResult:
        try:
            await self._request(
                "shodan.health",
                "GET",
                "/api-info",
                params={"key": self.require("api_key")},
                raise_errors=True,
            )
        except Exception as exc:
            return HealthCheckResult(healthy=False, message=str(exc))
        return HealthCheckResult(healthy=True, message="OK")

    def get_actions(self) -> list[ActionDefinition]:
        return [
            ActionDefinition(
                "host_info", "Shodan host record for an IP", {"ip": {"type": "string"}}
            ),
            ActionDefinition("search", "Run a Shodan search", {"query": {"type": "string"}}),
            ActionDefinition("dns_resolve", "Resolve a hostname", {"domain": {"type": "string"}}),
            ActionDefinition("dns_reverse", "Reverse-resolve an IP", {"ip": {"type": "string"}}),
            ActionDefinition("account_profile", "The account profile"),
            ActionDefinition("api_info", "API plan and quota"),
        ]
