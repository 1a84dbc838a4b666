"""The store's exceptions, one tree, so callers map each to one HTTP answer.

    StoreError
     ├── StoreUnavailable   the database failed or could not be reached (ingest: 503 + Retry-After)
     ├── StoreOverloaded    the group committer's pending queue is full (ingest: 429/503)
     ├── NotLeased          the run is not leased to that token (runtime: 403, nothing written)
     ├── InvalidSubmission  PostgreSQL cannot store this alert (ingest: 400); its batch is unharmed
     ├── DatabaseUrlError   no database URL, or one that cannot be read
     └── SchemaError        the schema does not fit this code
          ├── SchemaTooNew      the database is at a version this code does not know
          ├── SchemaTooOld      migrations this code needs are not applied yet
          └── MigrationFailed   a migration failed; the ones before it stay applied

Only this package sees asyncpg's exceptions: `unavailable()` turns them into
StoreUnavailable, with the driver's exception as `__cause__`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg


class StoreError(Exception):
    """Base of every exception the store raises."""


class StoreUnavailable(StoreError):
    """The database failed a statement or could not be reached; retrying later may work."""


class StoreOverloaded(StoreError):
    """More submissions are waiting for a commit than the committer holds."""


class NotLeased(StoreError):
    """The run does not exist, is not leased, or is leased under another token."""


class InvalidSubmission(StoreError, ValueError):
    """This one submission cannot be stored (a NUL in a name, JSON PostgreSQL refuses)."""


class DatabaseUrlError(StoreError):
    """No database URL was given, or the one given cannot be read."""


class SchemaError(StoreError):
    """The database schema does not fit this version of kubesoar."""


class SchemaTooNew(SchemaError):
    pass


class SchemaTooOld(SchemaError):
    pass


class MigrationFailed(SchemaError):
    pass


# What a broken or unreachable database looks like from asyncpg and the sockets under it.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    asyncio.TimeoutError,
)


def is_bad_data(exc: BaseException | None) -> bool:
    """PostgreSQL refused the data itself (SQLSTATE class 22 data exception, 54 limits),
    not the connection or the server: retrying the same rows will fail the same way."""
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, asyncpg.PostgresError) and sqlstate[:2] in ("22", "54")


@contextmanager
def unavailable(what: str) -> Iterator[None]:
    """Re-raise a driver error as StoreUnavailable("<what>: <driver message>")."""
    try:
        yield
    except DRIVER_ERRORS as exc:
        raise StoreUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
