"""`kubesoar db`: the database's schema.

    kubesoar db migrate [--database-url-file PATH | --database-url URL]
    kubesoar db status  [--database-url-file PATH | --database-url URL]

Without either flag the URL comes from $KUBESOAR_DATABASE_URL_FILE or
$KUBESOAR_DATABASE_URL. No message shows the password. Exit codes: 0 done,
1 failed (database unreachable, migration failed), 2 bad usage or no URL,
4 the database schema is newer than this kubesoar.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from kubesoar_store import migrate
from kubesoar_store.errors import (
    DatabaseUrlError,
    SchemaTooNew,
    StoreError,
)
from kubesoar_store.url import redact_url, resolve_url, scrub

CONNECT_TIMEOUT_SECONDS = 10.0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="kubesoar db",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command",
        choices=["migrate", "status"],
        help="migrate: bring the schema up to date; status: show the schema's version",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--database-url-file", type=Path, help="file holding the postgresql:// URL (a Secret)"
    )
    source.add_argument(
        "--database-url", help="postgresql:// URL (visible in the process list; prefer the file)"
    )
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=10.0,
        help="seconds one DDL statement may wait for a table lock before the migration fails",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    try:
        url = resolve_url(args.database_url, args.database_url_file)
    except DatabaseUrlError as exc:
        print(f"kubesoar db: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args, url))
    except SchemaTooNew as exc:
        print(f"kubesoar db: {scrub(str(exc), url)}", file=sys.stderr)
        return 4
    except OSError as exc:
        print(
            f"kubesoar db {args.command}: cannot connect to {redact_url(url)}: {exc}",
            file=sys.stderr,
        )
        return 1
    except (StoreError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"kubesoar db {args.command}: {scrub(str(exc), url)}", file=sys.stderr)
        return 1
    except (TimeoutError, ValueError) as exc:
        # asyncpg raises ValueError for a malformed URL; its text may hold the URL.
        detail = scrub(str(exc), url) or type(exc).__name__
        print(f"kubesoar db {args.command}: {redact_url(url)}: {detail}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace, url: str) -> int:
    conn = await asyncpg.connect(
        url, timeout=CONNECT_TIMEOUT_SECONDS, server_settings={"application_name": "kubesoar-db"}
    )
    try:
        if args.command == "status":
            version = await migrate.schema_version(conn)
            latest = migrate.load_migrations()[-1].version
            state = "up to date" if version == latest else f"this kubesoar knows {latest}"
            print(f"{redact_url(url)}: schema version {version} ({state})")
            return 0
        result = await migrate.migrate(conn, lock_timeout_seconds=args.lock_timeout)
    finally:
        await conn.close()
    for label in result.applied:
        print(f"applied {label}")
    print(f"{redact_url(url)}: schema at version {result.version}")
    return 0
