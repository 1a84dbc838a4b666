"""AbuseIPDB API v2: IP reputation (`GET /check`).

Auth: `Key` header. Secret `abuseipdb`: `api_key`; optional `base_url`,
`requests_per_minute` (default 60), `cache_ttl_seconds` (default 12 h).
"""

from __future__ import annotations

from typing import Any, ClassVar

from kubesoar.integrations._base import Integration
from kubesoar.integrations._types import ActionDefinition, HealthCheckResult

__all__ = ["AbuseIPDB"]


class AbuseIPDB(Integration):
    name: ClassVar[str] = "abuseipdb"
    display_name: ClassVar[str] = "AbuseIPDB"
    description: ClassVar[str] = "IP address reputation and abuse reporting"
    default_base_url: ClassVar[str] = "https://api.abuseipdb.com/api/v2"
    cache_ttl_seconds: ClassVar[float] = 12 * 3600
    requests_per_minute: ClassVar[float | None] = 60

    def _headers(self) -> dict[str, str]:
        return {"Key": self.require("api_key"), "Accept": "application/json"}

    async def check_ip(self, ip: str, max_age_days: int = 90) -> dict[str, Any]:
        answer: dict[str, Any] = await self._request(
            "abuseipdb.check_ip",
            "GET",
            "/check",
            params={"ipAddress": ip, "maxAgeInDays": str(max_age_days)},
            headers=self._headers(),
            cache_key=f"ip:{ip}|maxAgeInDays={max_age_days}",
        )
        return answer

    async def health_check(self) -> HealthCheckResult:
        try:
            await self._request(
                "abuseipdb.health",
                "GET",
                "/check",
                params={"ipAddress": "8.8.8.8", "maxAgeInDays": "1"},
                headers=self._headers(),
                raise_errors=True,
            )
        except Exception as exc:
            return HealthCheckResult(healthy=False, message=str(exc))
        return HealthCheckResult(healthy=True, message="OK")

    def get_actions(self) -> list[ActionDefinition]:
        return [
            ActionDefinition(
                "check_ip",
                "Check an IP address for abuse reports",
                {"ip": {"type": "string"}, "max_age_days": {"type": "integer"}},
            )
        ]
