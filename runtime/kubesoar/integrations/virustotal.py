"""VirusTotal API v3: IP, domain, file-hash and URL reports.

Auth: `x-apikey` header. Secret `virustotal`: `api_key`; optional `base_url`,
`requests_per_minute` (default 4, the public API's quota), `cache_ttl_seconds`
(default 24 h). Answers are VirusTotal's JSON (`{"data": {"attributes": ...}}`).
"""

from __future__ import annotations

import base64
from typing import Any, ClassVar

from kubesoar.integrations._base import Integration
from kubesoar.integrations._types import ActionDefinition, HealthCheckResult

__all__ = ["VirusTotal"]


class VirusTotal(Integration):
    name: ClassVar[str] = "virustotal"
    display_name: ClassVar[str] = "VirusTotal"
    description: ClassVar[str] = "File, URL, IP, and domain reputation lookups"
    default_base_url: ClassVar[str] = "https://www.virustotal.com/api/v3"
    cache_ttl_seconds: ClassVar[float] = 24 * 3600
    requests_per_minute: ClassVar[float | None] = 4

    def _headers(self) -> dict[str, str]:
        return {"x-apikey": self.require("api_key"), "Accept": "application/json"}

    async def _report(self, kind: str, path: str, value: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._request(
            f"virustotal.lookup_{kind}",
            "GET",
            path,
            headers=self._headers(),
            cache_key=f"{kind}:{value}",
        )
        return answer

    async def lookup_ip(self, ip: str) -> dict[str, Any]:
        return await self._report("ip", f"/ip_addresses/{ip}", ip)

    async def lookup_domain(self, domain: str) -> dict[str, Any]:
        return await self._report("domain", f"/domains/{domain}", domain)

    async def lookup_hash(self, file_hash: str) -> dict[str, Any]:
        return await self._report("hash", f"/files/{file_hash}", file_hash)

    async def lookup_url(self, url: str) -> dict[str, Any]:
        # VirusTotal's URL identifier: unpadded URL-safe base64 of the URL.
        url_id = base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
        return await self._report("url", f"/urls/{url_id}", url)

    async def health_check(self) -> HealthCheckResult:
        try:
            await self._request(
                "virustotal.health", "GET", "/users/me", headers=self._headers(), raise_errors=True
            )
        except Exception as exc:
            return HealthCheckResult(healthy=False, message=str(exc))
        return HealthCheckResult(healthy=True, message="OK")

    def get_actions(self) -> list[ActionDefinition]:
        return [
            ActionDefinition("lookup_ip", "Get IP address reputation", {"ip": {"type": "string"}}),
            ActionDefinition(
                "lookup_hash", "Get file hash reputation", {"file_hash": {"type": "string"}}
            ),
            ActionDefinition(
                "lookup_domain", "Get domain reputation", {"domain": {"type": "string"}}
            ),
        ]
