"""Microsoft Defender for Endpoint: alerts, machines (isolate, release, AV
scan) and indicators, with an Entra ID client-credentials token.

Secret `msdefender`: `tenant_id`, `client_id`, `client_secret`; optional
`base_url` (default https://api.securitycenter.microsoft.com), `login_url`
(default https://login.microsoftonline.com), `requests_per_minute`
(default 100, the API's per-application limit).
"""

from __future__ import annotations

from typing import Any, ClassVar

from kubesoar.integrations._base import Integration
from kubesoar.integrations._clock import get_clock
from kubesoar.integrations._errors import IntegrationError
from kubesoar.integrations._types import ActionDefinition, HealthCheckResult

__all__ = ["Defender"]

SCOPE = "https://api.securitycenter.microsoft.com/.default"


class Defender(Integration):
    name: ClassVar[str] = "msdefender"
    display_name: ClassVar[str] = "Microsoft Defender for Endpoint"
    description: ClassVar[str] = "Alerts, machine isolation, antivirus scans and indicators"
    default_base_url: ClassVar[str] = "https://api.securitycenter.microsoft.com"
    requests_per_minute: ClassVar[float | None] = 100
    credential_keys: ClassVar[tuple[str, ...]] = ("client_secret",)

    _token: str | None = None
    _token_expires: float = 0.0

    def _validate(self) -> None:
        for key in ("tenant_id", "client_id", "client_secret"):
            self.require(key)

    async def connect(self) -> None:
        await super().connect()
        await self._bearer()

    async def _bearer(self) -> str:
        if self._token and get_clock().now() < self._token_expires:
            return self._token
        login = (self.setting("login_url") or "https://login.microsoftonline.com").rstrip("/")
        answer = await self._request(
            "msdefender.token",
            "POST",
            "",
            url=f"{login}/{self.require('tenant_id')}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self.require("client_id"),
                "client_secret": self.require("client_secret"),
                "scope": SCOPE,
            },
            raise_errors=True,
        )
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not token:
            raise IntegrationError("Failed to obtain Defender access token: no access_token")
        self._token = str(token)
        self._token_expires = get_clock().now() + max(0, int(answer.get("expires_in", 3600)) - 60)
        return self._token

    async def _call(self, action: str, method: str, path: str, **kwargs: Any) -> Any:
        self._require_connected()
        headers = {"Authorization": f"Bearer {await self._bearer()}", "Accept": "application/json"}
        return await self._request(f"msdefender.{action}", method, path, headers=headers, **kwargs)

    @staticmethod
    def _params(odata_filter: str | None, top: int | None) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if odata_filter:
            params["$filter"] = odata_filter
        if top is not None:
            params["$top"] = top
        return params

    async def _list(self, action: str, path: str, odata_filter: str | None, top: int | None) -> Any:
        answer = await self._call(action, "GET", path, params=self._params(odata_filter, top))
        return list((answer or {}).get("value", []))

    async def list_alerts(self, odata_filter: str | None = None, top: int | None = None) -> Any:
        return await self._list("list_alerts", "/api/alerts", odata_filter, top)

    async def list_machines(self, odata_filter: str | None = None, top: int | None = None) -> Any:
        return await self._list("list_machines", "/api/machines", odata_filter, top)

    async def list_indicators(self, odata_filter: str | None = None, top: int | None = None) -> Any:
        return await self._list("list_indicators", "/api/indicators", odata_filter, top)

    async def get_alert(self, alert_id: str) -> Any:
        return await self._call("get_alert", "GET", f"/api/alerts/{alert_id}")

    async def isolate_machine(
        self, machine_id: str, comment: str = "Isolated by kubesoar", isolation_type: str = "Full"
    ) -> Any:
        return await self._call(
            "isolate_machine",
            "POST",
            f"/api/machines/{machine_id}/isolate",
            json={"Comment": comment, "IsolationType": isolation_type},
        )

    async def unisolate_machine(
        self, machine_id: str, comment: str = "Released by kubesoar"
    ) -> Any:
        return await self._call(
            "unisolate_machine",
            "POST",
            f"/api/machines/{machine_id}/unisolate",
            json={"Comment": comment},
        )

    async def run_antivirus_scan(
        self, machine_id: str, scan_type: str = "Quick", comment: str = "AV scan by kubesoar"
    ) -> Any:
        return await self._call(
            "run_antivirus_scan",
            "POST",
            f"/api/machines/{machine_id}/runAntiVirusScan",
            json={"ScanType": scan_type, "Comment": comment},
        )

    async def health_check(self) -> HealthCheckResult:
        try:
            await self._call("health", "GET", "/api/alerts", params={"$top": 1}, raise_errors=True)
        except Exception as exc:
            return HealthCheckResult(healthy=False, message=str(exc))
        return HealthCheckResult(healthy=True, message="OK")

    def get_actions(self) -> list[ActionDefinition]:
        text, number = {"type": "string"}, {"type": "integer"}
        listing = {"odata_filter": text, "top": number}
        return [
            ActionDefinition("list_alerts", "List Defender alerts (OData filter)", listing),
            ActionDefinition("get_alert", "Fetch one alert", {"alert_id": text}),
            ActionDefinition(
                "isolate_machine",
                "Isolate a machine",
                {"machine_id": text, "comment": text, "isolation_type": text},
            ),
            ActionDefinition(
                "unisolate_machine",
                "Release a machine from isolation",
                {"machine_id": text, "comment": text},
            ),
            ActionDefinition("list_machines", "List onboarded machines", listing),
            ActionDefinition(
                "run_antivirus_scan",
                "Start an antivirus scan",
                {"machine_id": text, "scan_type": text, "comment": text},
            ),
            ActionDefinition("list_indicators", "List custom indicators", listing),
        ]
