"""Connection pools for the router and the operator."""

from __future__ import annotations

import asyncpg

from kubesoar_store.errors import StoreUnavailable, unavailable
from kubesoar_store.url import redact_url, scrub


async def create_pool(
    url: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    application_name: str = "kubesoar",
    connect_timeout: float = 5.0,
    statement_timeout_seconds: float = 30.0,
) -> asyncpg.Pool:
    """A pool whose every statement is bounded in time on the server side too.

    Errors carry the URL without its password.
    """
    settings = {
        "application_name": application_name,
        "statement_timeout": str(int(statement_timeout_seconds * 1000)),
    }
    try:
        with unavailable(f"connecting to {redact_url(url)}"):
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                timeout=connect_timeout,
                server_settings=settings,
                command_timeout=statement_timeout_seconds + 5,
                reset=_no_reset,
            )
    except StoreUnavailable as exc:
        raise StoreUnavailable(scrub(str(exc), url)) from exc.__cause__
    except ValueError as exc:  # a malformed URL; its text may hold the password
        raise StoreUnavailable(
            f"bad database URL {redact_url(url)}: {scrub(str(exc), url)}"
        ) from None
    assert pool is not None
    return pool


async def _no_reset(conn: asyncpg.Connection) -> None:
    """What a connection runs when it goes back to the pool: nothing.

    asyncpg's default (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) is a round trip
    per release, i.e. per statement of the ingest and report paths (bench/README.md,
    Durable ingest). The store changes no session state; asyncpg still rolls back a
    transaction left open; the one advisory lock a pooled connection takes
    (housekeeping) is released in a `finally`.
    """
