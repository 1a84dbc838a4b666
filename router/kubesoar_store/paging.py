"""Keyset paging for lists newest first: the `continue` token of the runs.kubesoar.dev API.

A page ends at a row (created_at, id); the token names that row, and the next page
starts strictly after it in the order `created_at DESC, id DESC`. No server-side
cursor or snapshot is held, so a token never expires and any router replica can
serve the next page; rows created after the first page are not in later pages
(they sort before the token), rows deleted meanwhile are simply missing.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MAX_LIMIT = 1000
DEFAULT_LIMIT = 500  # kubectl's own chunk size


class BadContinue(ValueError):
    """A `continue` token this server did not make (or a client mangled)."""


@dataclass(frozen=True)
class Position:
    """The last row of a page: the next page starts strictly after it."""

    created_at: datetime
    id: uuid.UUID

    def token(self) -> str:
        body = json.dumps({"t": self.created_at.isoformat(), "i": str(self.id)})
        return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")

    @classmethod
    def parse(cls, token: str) -> Position:
        try:
            padded = token + "=" * (-len(token) % 4)
            body = json.loads(base64.urlsafe_b64decode(padded.encode()))
            return cls(datetime.fromisoformat(body["t"]), uuid.UUID(body["i"]))
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise BadContinue("the continue token is not one this server issued") from exc


def clamp_limit(limit: int | None) -> int:
    """A page size within 1..MAX_LIMIT; none (or 0, Kubernetes' "all") is the default size."""
    if not limit or limit < 1:
        return DEFAULT_LIMIT
    return min(limit, MAX_LIMIT)


def changed_after(
    condition: str, args: list[Any], alias: str, since: datetime, after_id: uuid.UUID | None
) -> str:
    """`condition` (a `WHERE ...` fragment or "") extended to the rows of table `alias`
    changed after `since` — and, for the rest of a page cut inside one timestamp, after
    `after_id` at it — in the order a watch reads them (`updated_at, id`). The values are
    appended to `args` as bind parameters; only fixed fragments go into the SQL."""
    args.append(since)
    changed = f"{alias}.updated_at > ${len(args)}"
    if after_id is not None:
        args.append(after_id)
        changed = f"({alias}.updated_at, {alias}.id) > (${len(args) - 1}, ${len(args)})"
    return f"{condition} AND {changed}" if condition else f" WHERE {changed}"
