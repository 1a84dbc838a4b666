"""A real PostgreSQL for tests (logic behind the fixtures in tests/conftest.py).

One server per test session (hack/localcluster/postgres.py, fsync off: test data is
thrown away), started in about a second and stopped at the end. Migrations run
once into a template database; each test that asks for `database_url` gets its
own database copied from that template (CREATE DATABASE ... TEMPLATE), so every
test starts from a clean, migrated schema without running the migrations again.

KUBESOAR_TEST_POSTGRES_DIR=/path keeps the server's state there (and leaves it
running after the session, for a look with psql); by default it is a temporary
folder deleted at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from hack.localcluster.postgres import LocalPostgres  # noqa: E402

TEMPLATE = "kubesoar_template"


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


@dataclass
class PostgresHandle:
    server: LocalPostgres
    admin_url: str

    @property
    def port(self) -> int:
        return self.server.port

    def url(self, database: str) -> str:
        return with_database(self.admin_url, database)


@contextmanager
def running_server() -> Iterator[PostgresHandle]:
    keep = os.environ.get("KUBESOAR_TEST_POSTGRES_DIR")
    state_dir = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="kubesoar-test-pg-"))
    server = LocalPostgres(state_dir, durable=False)
    server.up()
    try:
        yield PostgresHandle(server, server.admin_url)
    finally:
        if not keep:
            server.down()
            shutil.rmtree(state_dir, ignore_errors=True)


async def _admin(handle: PostgresHandle, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(handle.url("postgres"), timeout=10)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def create_template(handle: PostgresHandle) -> str:
    """A database with every migration applied, used as the template of each test database."""

    async def build() -> None:
        import asyncpg
        from kubesoar_store import migrate

        await _admin(
            handle,
            f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)",
            f"CREATE DATABASE {TEMPLATE}",
        )
        conn = await asyncpg.connect(handle.url(TEMPLATE), timeout=10)
        try:
            await migrate.migrate(conn)
        finally:
            await conn.close()

    asyncio.run(build())
    return TEMPLATE


@contextmanager
def fresh_database(handle: PostgresHandle, template: str | None) -> Iterator[str]:
    """A new database (a copy of `template`, or empty) and its URL; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    source = f" TEMPLATE {template}" if template else ""
    asyncio.run(_admin(handle, f"CREATE DATABASE {name}{source}"))
    try:
        yield handle.url(name)
    finally:
        asyncio.run(_admin(handle, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
