"""Database URLs never show their password; the local server (hack/localcluster/postgres.py)
listens on loopback only and wants a password from everyone."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from kubesoar_store import DatabaseUrlError
from kubesoar_store.url import redact_url, resolve_url, scrub
from support.postgres import PostgresHandle


def test_redact_hides_the_password_wherever_it_is() -> None:
    assert redact_url("postgresql://app:s3cr%40t@db:5432/kubesoar?sslmode=require") == (
        "postgresql://app:***@db:5432/kubesoar?sslmode=require"
    )
    assert redact_url("postgres://db/kubesoar?user=app&password=s3cr3t") == (
        "postgres://db/kubesoar?user=app&password=***"
    )
    url = "postgresql://app:s3cr%40t@db/kubesoar"
    assert scrub(f"failed: {url} said s3cr@t and s3cr%40t", url) == (
        "failed: postgresql://app:***@db/kubesoar said *** and ***"
    )


def test_resolve_url_sources_and_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBESOAR_DATABASE_URL", raising=False)
    monkeypatch.delenv("KUBESOAR_DATABASE_URL_FILE", raising=False)
    with pytest.raises(DatabaseUrlError, match="no database URL"):
        resolve_url()
    monkeypatch.setenv("KUBESOAR_DATABASE_URL", "postgresql://u:p@h/d")
    assert resolve_url() == "postgresql://u:p@h/d"
    path = tmp_path / "url"
    path.write_text("  postgresql://f:p@h/d\n")
    monkeypatch.setenv("KUBESOAR_DATABASE_URL_FILE", str(path))
    assert resolve_url() == "postgresql://f:p@h/d"  # the file wins
    path.write_bytes(b"x" * 9000)
    with pytest.raises(DatabaseUrlError, match="over 8192 bytes"):
        resolve_url(url_file=path)
    with pytest.raises(DatabaseUrlError) as refused:
        resolve_url("https://u:topsecret@h/d")
    assert "topsecret" not in str(refused.value)


async def test_the_local_server_wants_passwords_and_listens_on_loopback(
    postgres: PostgresHandle,
) -> None:
    server = postgres.server
    status = server.status()
    assert status["running"] and status["port"] == postgres.port
    for path in (server.admin_url_file, server.database_url_file):
        assert path.stat().st_mode & 0o077 == 0
    with pytest.raises(asyncpg.PostgresError, match="password"):
        await asyncpg.connect(host="127.0.0.1", port=postgres.port, user="postgres", password="x")
    conn = await asyncpg.connect(server.database_url)
    try:
        assert await conn.fetchval("SELECT current_user") == "kubesoar"
        assert await conn.fetchval("SELECT current_database()") == "kubesoar"
    finally:
        await conn.close()
    conn = await asyncpg.connect(server.admin_url)
    try:
        assert await conn.fetchval("SHOW listen_addresses") == "127.0.0.1"
        assert await conn.fetchval("SHOW unix_socket_directories") == ""
    finally:
        await conn.close()
