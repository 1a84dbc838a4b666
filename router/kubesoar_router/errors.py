"""The ingest API's error answer: `{"error": code, "message": text}` with a status."""

from __future__ import annotations


class IngestError(Exception):
    """A request the router refuses; `code` is stable, `message` says why."""

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
