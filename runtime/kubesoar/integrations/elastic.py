"""Elastic Security (Kibana APIs): detection alerts, host isolation, cases.

Auth: `Authorization: ApiKey <api_key>`, or basic auth with `username` +
`password`; Kibana wants `kbn-xsrf` on writes. Secret `elastic`: `url`
(Kibana); `api_key` or `username` + `password`; optional
`requests_per_minute` (default 600).
"""

from __future__ import annotations

from typing import Any, ClassVar

from kubesoar.integrations._base import Integration
from kubesoar.integrations._types import ActionDefinition, HealthCheckResult

__all__ = ["Elastic"]


class Elastic(Integration):
    name: ClassVar[str] = "elastic"
    display_name: ClassVar[str] = "Elastic Security"
    description: ClassVar[str] = "Elastic Security alerts, cases and response actions"
    requests_per_minute: ClassVar[float | None] = 600
    credential_keys: ClassVar[tuple[str, ...]] = ("api_key", "password")

    @property
    def base_url(self) -> str:
        return (self.setting("url") or self.setting("base_url") or "").rstrip("/")

    def _validate(self) -> None:
        self.require("url")
        if not (self.setting("api_key") or (self.setting("username") and self.setting("password"))):
            raise ValueError("Elastic requires 'api_key' or 'username'+'password'")

    async def _call(self, action: str, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Content-Type": "application/json", "kbn-xsrf": "kubesoar"}
        auth = None
        api_key = self.setting("api_key")
        if api_key:
            headers["Authorization"] = f"ApiKey {api_key}"
        else:
            auth = (self.require("username"), self.require("password"))
        return await self._request(
            f"elastic.{action}", method, path, headers=headers, auth=auth, **kwargs
        )

    async def get_alerts(self, query: dict[str, Any] | None = None, size: int = 100) -> Any:
        return await self._call(
            "get_alerts",
            "POST",
            "/api/detection_engine/signals/search",
            json={"query": query or {"match_all": {}}, "size": size},
        )

    async def isolate_host(self, agent_id: str) -> Any:
        return await self._call(
            "isolate_host",
            "POST",
            "/api/endpoint/action/isolate",
            json={"endpoint_ids": [agent_id]},
        )

    async def create_case(self, title: str, description: str, tags: list[str] | None = None) -> Any:
        return await self._call(
            "create_case",
            "POST",
            "/api/cases",
            json={
                "title": title,
                "description": description,
                "tags": tags or [],
                "owner": "securitySolution",
                "connector": {"id": "none", "name": "none", "type": ".none", "fields": None},
                "settings": {"syncAlerts": True},
            },
        )

    async def health_check(self) -> HealthCheckResult:
        try:
            answer = await self._call("health", "GET", "/api/status", raise_errors=True)
        except Exception as exc:
            return HealthCheckResult(healthy=False, message=str(exc))
        version = ((answer or {}).get("version") or {}).get("number")
        return HealthCheckResult(healthy=True, message="Connected", details={"version": version})

    def get_actions(self) -> list[ActionDefinition]:
        return [
            ActionDefinition(
                "get_alerts",
                "Query Elastic Security alerts",
                {"query": {"type": "object"}, "size": {"type": "integer"}},
            ),
            ActionDefinition(
                "isolate_host",
                "Isolate a host via Elastic Endpoint",
                {"agent_id": {"type": "string"}},
            ),
            ActionDefinition(
                "create_case",
                "Create an Elastic Security case",
                {"title": {"type": "string"}, "description": {"type": "string"}},
            ),
        ]
