"""The SMTP client against a real local SMTP server (aiosmtpd on 127.0.0.1):
the message as sent, login, the answer shape, and retries of a refused
connection."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from kubesoar._context import RunContext
from kubesoar.integrations import Email, FakeClock, IntegrationError

PASSWORD = "smtp-password-0123456789"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def _authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == b"soc"
        and data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), _free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticate,
        auth_require_tls=False,
    )
    controller.start()
    yield inbox, port
    controller.stop()


def _secret(folder: Path, **keys: str) -> Path:
    (folder / "email").mkdir(parents=True)
    for key, value in keys.items():
        (folder / "email" / key).write_text(value)
    return folder


async def _in_run(secrets: Path, email: Email) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    ctx = RunContext(run_id="r", correlation_id="c", secrets_dir=secrets)
    token = ctx.activate()
    try:
        answer = await email.send_email("soc@example.org", "Alert a1", "It happened.")
    finally:
        ctx.deactivate(token)
        await ctx.aclose()
    return answer, ctx.attempts


async def test_send_email_with_login(smtp: tuple[Inbox, int], tmp_path: Path) -> None:
    inbox, port = smtp
    secrets = _secret(
        tmp_path,
        smtp_host="127.0.0.1",
        smtp_port=str(port),
        use_tls="false",
        username="soc",
        password=PASSWORD,
        from_address="kubesoar@example.org",
    )
    answer, attempts = await _in_run(secrets, Email())
    assert answer == {"sent_to": "soc@example.org", "subject": "Alert a1"}
    [message] = inbox.messages
    assert message["To"] == "soc@example.org" and message["From"] == "kubesoar@example.org"
    assert message["Subject"] == "Alert a1" and "It happened." in message.get_payload()
    assert attempts[0]["action"] == "email.send" and attempts[0]["status"] == "succeeded"


async def test_a_refused_recipient_is_not_retried(smtp: tuple[Inbox, int], tmp_path: Path) -> None:
    _, port = smtp
    secrets = _secret(tmp_path, smtp_host="127.0.0.1", smtp_port=str(port), use_tls="false")
    ctx = RunContext(run_id="r", correlation_id="c", secrets_dir=secrets)
    token = ctx.activate()
    try:
        with pytest.raises(IntegrationError, match="SMTPRecipientsRefused"):
            await Email().send_email("nobody@example.org", "s", "b")
    finally:
        ctx.deactivate(token)
        await ctx.aclose()
    assert [a["status"] for a in ctx.attempts] == ["failed"]


async def test_a_refused_connection_is_retried_then_fails(tmp_path: Path, clock: FakeClock) -> None:
    secrets = _secret(tmp_path, smtp_host="127.0.0.1", smtp_port=str(_free_port()), use_tls="no")
    ctx = RunContext(run_id="r", correlation_id="c", secrets_dir=secrets)
    token = ctx.activate()
    try:
        with pytest.raises(IntegrationError, match="ConnectionRefusedError"):
            await Email().send_email("a@example.org", "s", "b")
    finally:
        ctx.deactivate(token)
        await ctx.aclose()
    assert [a["status"] for a in ctx.attempts] == ["failed"] * 4
    assert clock.sleeps == [1.0, 2.0, 4.0]
