"""Email over SMTP (the standard library's `smtplib`, in a worker thread).

Secret `email`: `smtp_host`; optional `smtp_port` (587), `from_address`,
`username` + `password`, `use_tls` (STARTTLS, default true; `false` for a
relay on a trusted network), `requests_per_minute` (default 60).
Connection failures and temporary (4xx) SMTP answers are retried.
"""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from typing import Any, ClassVar

from kubesoar.integrations._base import Integration, Retryable
from kubesoar.integrations._errors import IntegrationError
from kubesoar.integrations._types import ActionDefinition, HealthCheckResult

__all__ = ["Email"]

SMTP_TIMEOUT_SECONDS = 30.0


def _flag(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().lower() not in {"0", "false", "no", "off"}


class Email(Integration):
    name: ClassVar[str] = "email"
    display_name: ClassVar[str] = "Email (SMTP)"
    description: ClassVar[str] = "Send email notifications via SMTP"
    requests_per_minute: ClassVar[float | None] = 60
    credential_keys: ClassVar[tuple[str, ...]] = ("password",)

    def _validate(self) -> None:
        self.require("smtp_host")

    def _server(self) -> tuple[str, int]:
        return self.require("smtp_host"), int(self.setting("smtp_port") or 587)

    def _send_blocking(self, message: EmailMessage) -> None:
        host, port = self._server()
        with smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT_SECONDS) as server:
            if _flag(self.setting("use_tls"), True):
                server.starttls()
            username = self.setting("username")
            if username:
                server.login(username, self.require("password"))
            server.send_message(message)

    async def send_email(self, to: str, subject: str, body: str) -> dict[str, Any]:
        self._require_connected()
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self.setting("from_address") or "kubesoar@localhost"
        message["To"] = to
        message.set_content(body)

        async def send() -> None:
            try:
                await asyncio.to_thread(self._send_blocking, message)
            except smtplib.SMTPResponseException as exc:
                error = IntegrationError(f"email.send: SMTP {exc.smtp_code} {exc.smtp_error!r}")
                if 400 <= exc.smtp_code < 500:
                    raise Retryable(str(error), final=error) from exc
                raise error from exc
            except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError) as exc:
                error = IntegrationError(f"email.send: {type(exc).__name__}: {exc}")
                raise Retryable(str(error), final=error) from exc
            except smtplib.SMTPException as exc:  # refused recipients or sender: permanent
                raise IntegrationError(f"email.send: {type(exc).__name__}: {exc}") from exc
            except OSError as exc:  # (SMTPException is an OSError: caught above first)
                error = IntegrationError(f"email.send: {type(exc).__name__}: {exc}")
                raise Retryable(str(error), final=error) from exc

        await self._attempts("email.send", send)
        return {"sent_to": to, "subject": subject}

    async def health_check(self) -> HealthCheckResult:
        def probe() -> None:
            host, port = self._server()
            with smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT_SECONDS) as server:
                server.ehlo()

        try:
            await asyncio.to_thread(probe)
        except (smtplib.SMTPException, OSError, ValueError) as exc:
            return HealthCheckResult(healthy=False, message=self._redact(str(exc)))
        return HealthCheckResult(healthy=True, message="SMTP connection OK")

    def get_actions(self) -> list[ActionDefinition]:
        text = {"type": "string"}
        return [
            ActionDefinition(
                "send_email",
                "Send an email notification",
                {"to": text, "subject": text, "body": text},
            )
        ]
