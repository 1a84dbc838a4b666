"""Schema migrations on a real PostgreSQL: idempotent, safe with concurrent migrators,
a failing migration leaves the previous schema, a newer schema is refused, and the
`kubesoar db` command never prints the password."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from kubesoar_store import MigrationFailed, SchemaTooNew, SchemaTooOld, migrate

SHIPPED = Path(migrate.__file__).parent / "migrations"
# What this checkout ships; the tests add theirs after it.
LABELS = [m.label for m in migrate.load_migrations()]
LATEST = migrate.load_migrations()[-1].version
NEXT = f"{LATEST + 1:04d}"


def migrations_folder(tmp_path: Path, **extra: str) -> Path:
    """The shipped migrations plus `extra` ({"NNNN_name": "SQL"}) in a folder of their own."""
    folder = tmp_path / "migrations"
    shutil.copytree(SHIPPED, folder)
    for name, sql in extra.items():
        (folder / f"{name}.sql").write_text(sql)
    return folder


async def tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row["tablename"] for row in rows}


async def test_migrate_applies_once_then_is_a_no_op(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await migrate.schema_version(conn) == 0
        first = await migrate.migrate(conn)
        assert first.applied == LABELS and LABELS[0] == "0001_initial"
        assert {"alerts", "runs", "action_journal", "dedup_keys", "replay_keys"} <= await tables(
            conn
        )
        second = await migrate.migrate(conn)
        assert second.applied == []
        assert await migrate.schema_version(conn) == LATEST
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(LABELS)
    finally:
        await conn.close()


async def test_concurrent_migrators_apply_each_migration_once(empty_database_url: str) -> None:
    conns = [await asyncpg.connect(empty_database_url) for _ in range(5)]
    try:
        results = await asyncio.gather(*(migrate.migrate(conn) for conn in conns))
        # One migrator applied them all (the advisory lock), the others found them applied.
        assert sorted(len(r.applied) for r in results) == [0, 0, 0, 0, len(LABELS)]
        assert all(r.version == LATEST for r in results)
        assert await conns[0].fetchval("SELECT count(*) FROM schema_migrations") == len(LABELS)
    finally:
        for conn in conns:
            await conn.close()


async def test_failing_migration_leaves_the_previous_schema(
    empty_database_url: str, tmp_path: Path
) -> None:
    bad = migrations_folder(
        tmp_path,
        **{
            f"{NEXT}_half_done": "CREATE TABLE half_done (id int);\n"
            "ALTER TABLE runs ADD COLUMN x int;\nSELECT 1 / 0;"
        },
    )
    conn = await asyncpg.connect(empty_database_url)
    try:
        with pytest.raises(MigrationFailed) as failed:
            await migrate.migrate(conn, migrate.load_migrations(bad))
        message = str(failed.value)
        assert f"{NEXT}_half_done" in message and "division by zero" in message
        assert f"stays at version {LATEST}" in message
        assert await migrate.schema_version(conn) == LATEST
        assert "half_done" not in await tables(conn)
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'"
        )
        assert "x" not in {c["column_name"] for c in columns}
        # The old schema still serves.
        await conn.execute(
            "INSERT INTO replay_keys (key, expires_at) VALUES ('\\x01', now() + interval '1 h')"
        )

        # Fixed, the same run picks up from the failed migration.
        (bad / f"{NEXT}_half_done.sql").write_text("CREATE TABLE half_done (id int);")
        fixed = await migrate.migrate(conn, migrate.load_migrations(bad))
        assert fixed.applied == [f"{NEXT}_half_done"]
        assert "half_done" in await tables(conn)
    finally:
        await conn.close()


async def test_a_newer_schema_is_refused(database_url: str, tmp_path: Path) -> None:
    newer = migrations_folder(tmp_path, **{f"{NEXT}_future": "CREATE TABLE future (id int);"})
    conn = await asyncpg.connect(database_url)
    try:
        await migrate.migrate(conn, migrate.load_migrations(newer))
        with pytest.raises(
            SchemaTooNew, match=rf"version {LATEST + 1} .*newer than this kubesoar knows"
        ):
            await migrate.migrate(conn)
        # An older router keeps serving on it: the schema has what it needs.
        assert await migrate.require_schema(conn) == LATEST + 1
    finally:
        await conn.close()


async def test_an_edited_applied_migration_is_refused(database_url: str, tmp_path: Path) -> None:
    edited = migrations_folder(tmp_path)
    path = edited / "0001_initial.sql"
    path.write_text(path.read_text() + "\n-- edited\n")
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(MigrationFailed, match="changed after it was applied"):
            await migrate.migrate(conn, migrate.load_migrations(edited))
    finally:
        await conn.close()


async def test_require_schema_on_an_unmigrated_database(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        with pytest.raises(SchemaTooOld, match="kubesoar db migrate"):
            await migrate.require_schema(conn)
    finally:
        await conn.close()


def test_migration_file_names_are_checked(tmp_path: Path) -> None:
    folder = migrations_folder(tmp_path, **{"0003_gap": "SELECT 1;"})
    with pytest.raises(ValueError, match="without gaps"):
        migrate.load_migrations(folder)
    (folder / "0003_gap.sql").rename(folder / "3-bad.sql")
    with pytest.raises(ValueError, match=r"NNNN_lowercase_name\.sql"):
        migrate.load_migrations(folder)


def kubesoar_db(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubesoar", "db", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_cli_migrates_from_a_url_file_without_showing_the_password(
    empty_database_url: str, tmp_path: Path
) -> None:
    password = empty_database_url.split(":")[2].split("@")[0]
    url_file = tmp_path / "url"
    url_file.write_text(empty_database_url + "\n")

    first = kubesoar_db("migrate", "--database-url-file", str(url_file))
    assert first.returncode == 0, first.stderr
    assert all(f"applied {label}" in first.stdout for label in LABELS)
    assert f"schema at version {LATEST}" in first.stdout and ":***@" in first.stdout
    second = kubesoar_db("migrate", "--database-url-file", str(url_file))
    assert second.returncode == 0 and "applied" not in second.stdout
    status = kubesoar_db("status", "--database-url", empty_database_url)
    assert status.returncode == 0 and f"schema version {LATEST} (up to date)" in status.stdout
    for result in (first, second, status):
        assert password not in result.stdout + result.stderr


def test_cli_refusals_are_clear_and_redacted(empty_database_url: str, tmp_path: Path) -> None:
    password = empty_database_url.split(":")[2].split("@")[0]
    wrong = empty_database_url.replace(password, password[:-3] + "xyz")
    bad_password = kubesoar_db("migrate", "--database-url", wrong)
    assert bad_password.returncode == 1
    assert "password authentication failed" in bad_password.stderr
    assert password[:-3] not in bad_password.stderr + bad_password.stdout

    no_url = kubesoar_db("migrate", env={"PATH": "/usr/bin:/bin"})
    assert no_url.returncode == 2 and "--database-url-file" in no_url.stderr

    missing = kubesoar_db("migrate", "--database-url-file", str(tmp_path / "absent"))
    assert missing.returncode == 2 and "cannot read the database URL file" in missing.stderr

    not_postgres = kubesoar_db("migrate", "--database-url", "mysql://u:hunter2@h/db")
    assert not_postgres.returncode == 2
    assert "hunter2" not in not_postgres.stderr and "mysql://u:***@h/db" in not_postgres.stderr
