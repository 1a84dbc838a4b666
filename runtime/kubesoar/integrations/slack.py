"""Slack: an incoming webhook, or the Web API's `chat.postMessage` with a bot
token (`Authorization: Bearer`).

Secret `slack`: `webhook_url` or `bot_token`; optional `base_url` (Web API,
default https://slack.com/api), `default_channel`, `requests_per_minute`
(default 60; Slack allows about one message a second per channel).
"""

from __future__ import annotations

from typing import Any, ClassVar

from kubesoar.integrations._base import Integration
from kubesoar.integrations._errors import IntegrationError, IntegrationHTTPError
from kubesoar.integrations._types import ActionDefinition, HealthCheckResult

__all__ = ["Slack"]


class Slack(Integration):
    name: ClassVar[str] = "slack"
    display_name: ClassVar[str] = "Slack"
    description: ClassVar[str] = "Send notifications and alerts to Slack channels"
    default_base_url: ClassVar[str] = "https://slack.com/api"
    requests_per_minute: ClassVar[float | None] = 60
    credential_keys: ClassVar[tuple[str, ...]] = ("webhook_url", "bot_token")

    def _validate(self) -> None:
        if not (self.setting("webhook_url") or self.setting("bot_token")):
            raise ValueError(
                "Slack requires 'webhook_url' or 'bot_token': pass one in the config or "
                "mount a Secret 'slack' with one of these keys"
            )

    async def send_message(
        self, channel: str | None = None, text: str = "", blocks: list[Any] | None = None
    ) -> dict[str, Any]:
        """Post `text` (and Block Kit `blocks`). Through a webhook the answer is
        `{"status", "ok"}`; through the Web API it is Slack's JSON."""
        self._require_connected()
        webhook = self.setting("webhook_url")
        if webhook:
            payload: dict[str, Any] = {"text": text}
            if blocks:
                payload["blocks"] = blocks
            try:
                await self._request(
                    "slack.send_message", "POST", "", url=webhook, json=payload, raise_errors=True
                )
            except IntegrationHTTPError as exc:
                if self.error_answers == "return":
                    return {"status": exc.status, "ok": False}
                raise
            return {"status": 200, "ok": True}
        answer: dict[str, Any] = await self._request(
            "slack.send_message",
            "POST",
            "/chat.postMessage",
            json={
                "channel": channel or self.setting("default_channel"),
                "text": text,
                "blocks": blocks,
            },
            headers={"Authorization": f"Bearer {self.require('bot_token')}"},
        )
        if self.error_answers == "raise" and isinstance(answer, dict) and not answer.get("ok"):
            raise IntegrationError(f"slack.send_message: Slack answered {answer.get('error')!r}")
        return answer

    async def health_check(self) -> HealthCheckResult:
        token = self.setting("bot_token")
        if not token:
            return HealthCheckResult(healthy=True, message="Webhook configured (cannot verify)")
        try:
            answer = await self._request(
                "slack.health",
                "POST",
                "/auth.test",
                headers={"Authorization": f"Bearer {token}"},
                raise_errors=True,
            )
        except Exception as exc:
            return HealthCheckResult(healthy=False, message=str(exc))
        if isinstance(answer, dict) and answer.get("ok"):
            return HealthCheckResult(healthy=True, message="OK")
        return HealthCheckResult(healthy=False, message=str(answer))

    def get_actions(self) -> list[ActionDefinition]:
        return [
            ActionDefinition(
                "send_message",
                "Send a message to a Slack channel",
                {"channel": {"type": "string"}, "text": {"type": "string"}},
            )
        ]
