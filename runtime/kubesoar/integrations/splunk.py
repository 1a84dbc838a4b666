"""Splunk REST API: SPL searches (dispatch, poll, results), indexes, and
Enterprise Security notable events.

Auth: `Authorization: Bearer <token>`, or basic auth with `username` +
`password`. Secret `splunk`: `url` (the management port, e.g.
https://splunk:8089); `token` or `username` + `password`; optional
`verify_ssl` (default true), `requests_per_minute` (default 600).
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

import httpx

from kubesoar.integrations._base import Integration
from kubesoar.integrations._clock import get_clock
from kubesoar.integrations._errors import IntegrationError
from kubesoar.integrations._types import ActionDefinition, HealthCheckResult

__all__ = ["Splunk"]

POLL_INTERVAL_SECONDS: Final = 1.0
MAX_POLLS: Final = 300


class Splunk(Integration):
    name: ClassVar[str] = "splunk"
    display_name: ClassVar[str] = "Splunk"
    description: ClassVar[str] = "Splunk search, indexes and notable events"
    requests_per_minute: ClassVar[float | None] = 600
    credential_keys: ClassVar[tuple[str, ...]] = ("token", "password")

    @property
    def base_url(self) -> str:
        return (self.setting("url") or self.setting("base_url") or "").rstrip("/")

    def _validate(self) -> None:
        self.require("url")
        if not (self.setting("token") or (self.setting("username") and self.setting("password"))):
            raise ValueError("Splunk requires 'token' or 'username'+'password'")

    def client(self) -> httpx.AsyncClient:
        verify = (self.setting("verify_ssl") or "true").strip().lower() not in {"0", "false", "no"}
        if verify or self._http is not None:
            return super().client()
        if self._own_http is None:  # the run's client verifies; this one was asked not to
            self._own_http = httpx.AsyncClient(verify=False, timeout=30.0)  # noqa: S501
        return self._own_http

    def _auth(self) -> tuple[dict[str, str], tuple[str, str] | None]:
        token = self.setting("token")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
            return headers, None
        return headers, (self.require("username"), self.require("password"))

    async def _call(self, action: str, method: str, path: str, **kwargs: Any) -> Any:
        headers, auth = self._auth()
        return await self._request(
            f"splunk.{action}",
            method,
            path,
            headers=headers,
            auth=auth,
            raise_errors=True,
            **kwargs,
        )

    async def run_search(
        self,
        spl: str,
        earliest: str | None = None,
        latest: str | None = None,
        max_count: int = 1000,
    ) -> dict[str, Any]:
        """Dispatch a search, wait for it, return `{"sid", "results"}`."""
        search = spl if spl.lstrip().startswith("search") else f"search {spl}"
        body: dict[str, Any] = {"search": search, "output_mode": "json", "exec_mode": "normal"}
        if earliest:
            body["earliest_time"] = earliest
        if latest:
            body["latest_time"] = latest
        dispatched = await self._call("run_search", "POST", "/services/search/jobs", data=body)
        sid = dispatched.get("sid") if isinstance(dispatched, dict) else None
        if not sid:
            raise IntegrationError("Splunk did not return a search id")
        await self._wait_for_job(sid)
        return {"sid": sid, "results": await self._job_results(sid, max_count)}

    async def _wait_for_job(self, sid: str) -> None:
        for _ in range(MAX_POLLS):
            answer = await self._call(
                "job_status", "GET", f"/services/search/jobs/{sid}", params={"output_mode": "json"}
            )
            content = ((answer.get("entry") or [{}])[0].get("content") or {}) if answer else {}
            if content.get("isDone"):
                if str(content.get("dispatchState", "")).upper() == "FAILED":
                    raise IntegrationError(f"Splunk job {sid} dispatchState=FAILED")
                return
            await get_clock().sleep(POLL_INTERVAL_SECONDS)
        raise IntegrationError(f"Splunk job {sid} did not complete in time")

    async def _job_results(self, sid: str, max_count: int) -> list[dict[str, Any]]:
        answer = await self._call(
            "job_results",
            "GET",
            f"/services/search/jobs/{sid}/results",
            params={"output_mode": "json", "count": str(max_count)},
        )
        return list((answer or {}).get("results") or [])

    async def list_indexes(self) -> list[dict[str, Any]]:
        answer = await self._call(
            "list_indexes",
            "GET",
            "/services/data/indexes",
            params={"output_mode": "json", "count": "0"},
        )
        return [
            {"name": e.get("name"), "content": e.get("content") or {}}
            for e in (answer or {}).get("entry") or []
        ]

    async def create_notable_event(
        self,
        rule_name: str,
        description: str | None = None,
        severity: str = "medium",
        **extra: Any,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"rule_name": rule_name, "severity": severity, "output_mode": "json"}
        if description:
            body["description"] = description
        body.update({k: v for k, v in extra.items() if v is not None})
        answer: dict[str, Any] = await self._call(
            "create_notable_event", "POST", "/services/notable_update", data=body
        )
        return answer

    async def health_check(self) -> HealthCheckResult:
        try:
            answer = await self._call(
                "health", "GET", "/services/server/info", params={"output_mode": "json"}
            )
        except Exception as exc:
            return HealthCheckResult(healthy=False, message=str(exc))
        entry = ((answer or {}).get("entry") or [{}])[0]
        version = (entry.get("content") or {}).get("version") or ""
        return HealthCheckResult(healthy=True, message="OK", details={"version": version})

    def get_actions(self) -> list[ActionDefinition]:
        text = {"type": "string"}
        return [
            ActionDefinition(
                "run_search",
                "Dispatch an SPL search and return results",
                {"spl": text, "earliest": text, "latest": text},
            ),
            ActionDefinition("list_indexes", "List available Splunk indexes"),
            ActionDefinition(
                "create_notable_event",
                "Create an ES notable event",
                {"rule_name": text, "description": text, "severity": text},
            ),
        ]
