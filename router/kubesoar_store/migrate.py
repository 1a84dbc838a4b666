"""Versioned schema migrations: `migrations/NNNN_name.sql`, applied in order, each once.

- `schema_migrations` records each applied version with a checksum of its text.
- A session advisory lock serialises migrators: a second `kubesoar db migrate`
  (another Helm hook, a developer) waits, then finds nothing left to do.
- Each migration runs in its own transaction together with its
  `schema_migrations` row, so one that fails leaves the schema as the previous
  one left it, and a re-run starts from the failed one.
- A database at a version newer than the code knows is refused with a clear
  message (an older `kubesoar db migrate` must not "repair" a newer schema);
  an older router keeps serving on a newer schema, because migrations only add.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg

from kubesoar_store.errors import (
    MigrationFailed,
    SchemaTooNew,
    SchemaTooOld,
    unavailable,
)

logger = logging.getLogger("kubesoar.store.migrate")

# pg_advisory_lock key: the first 8 bytes of sha256("kubesoar.migrate"), as a signed bigint.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"kubesoar.migrate").digest()[:8], "big", signed=True)
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def load_migrations(folder: Path | None = None) -> list[Migration]:
    """The migrations in `folder` (default: the ones shipped with this package), in order."""
    if folder is None:
        root = resources.files("kubesoar_store") / "migrations"
        files = [(entry.name, entry.read_text("utf-8")) for entry in root.iterdir()]
    else:
        files = [(path.name, path.read_text("utf-8")) for path in folder.iterdir()]
    migrations = []
    for name, text in files:
        if not name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(name)
        if match is None:
            raise ValueError(f"migration file {name!r} is not named NNNN_lowercase_name.sql")
        migrations.append(Migration(int(match[1]), match[2], text))
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions) or versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1, 2, 3, ... without gaps; found {versions}")
    return migrations


@dataclass(frozen=True)
class MigrateResult:
    applied: list[str]
    version: int


async def migrate(
    conn: asyncpg.Connection,
    migrations: Sequence[Migration] | None = None,
    *,
    lock_timeout_seconds: float = 10.0,
) -> MigrateResult:
    """Apply what is missing; safe to run concurrently and again. Returns what it applied.

    `lock_timeout_seconds` bounds how long one DDL statement waits for a table lock
    held by a running router, so a migration fails (and can be re-run) instead of
    stalling every query queued behind it.
    """
    known = list(migrations) if migrations is not None else load_migrations()
    with unavailable("migrating the database"):
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            return await _migrate_locked(conn, known, lock_timeout_seconds)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def _migrate_locked(
    conn: asyncpg.Connection, known: list[Migration], lock_timeout: float
) -> MigrateResult:
    await conn.execute(_CREATE_TABLE)
    rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
    applied = {row["version"]: row for row in rows}
    _refuse_newer(applied, known)
    for migration in known:
        row = applied.get(migration.version)
        if row is not None and row["checksum"] != migration.checksum:
            raise MigrationFailed(
                f"migration {migration.label} was changed after it was applied "
                "(checksum differs); add a new migration instead of editing an applied one"
            )
    done: list[str] = []
    for migration in known:
        if migration.version in applied:
            continue
        started = time.monotonic()
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'")
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
        except asyncpg.PostgresError as exc:
            version = max([0, *applied, *(m.version for m in known if m.label in done)])
            raise MigrationFailed(
                f"migration {migration.label} failed and was rolled back: "
                f"{type(exc).__name__}: {exc}; the schema stays at version {version}"
            ) from exc
        logger.info(
            "applied migration %s in %.0f ms", migration.label, (time.monotonic() - started) * 1e3
        )
        done.append(migration.label)
    return MigrateResult(applied=done, version=known[-1].version if known else 0)


def _refuse_newer(applied: dict[int, asyncpg.Record], known: list[Migration]) -> None:
    latest = known[-1].version if known else 0
    newer = sorted(v for v in applied if v > latest)
    if newer:
        names = ", ".join(f"{v:04d}_{applied[v]['name']}" for v in newer)
        raise SchemaTooNew(
            f"the database schema is at version {max(newer)} ({names}), newer than this "
            f"kubesoar knows (version {latest}); run `kubesoar db migrate` from the newer "
            "kubesoar, or upgrade this one"
        )


async def schema_version(conn: asyncpg.Connection) -> int:
    """The highest applied version; 0 on a database never migrated."""
    with unavailable("reading the schema version"):
        exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not exists:
            return 0
        version: int | None = await conn.fetchval("SELECT max(version) FROM schema_migrations")
        return version or 0


async def require_schema(conn: asyncpg.Connection, at_least: int | None = None) -> int:
    """For a router or operator at startup: the schema must have what this code needs.

    A newer schema is fine (migrations only add); an older one raises SchemaTooOld.
    """
    needed = at_least if at_least is not None else load_migrations()[-1].version
    version = await schema_version(conn)
    if version < needed:
        raise SchemaTooOld(
            f"the database schema is at version {version}, this kubesoar needs {needed}; "
            "run `kubesoar db migrate` (the Helm chart runs it as a pre-upgrade hook)"
        )
    return version
