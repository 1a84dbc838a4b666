"""Size bounds for what runtime pods report: over the bound, a marker instead of a refusal.

A run's record must be kept even when an action returned a megabyte: the
runtime is told nothing went wrong, and whoever reads the record sees that
(and how much) was cut.
"""

from __future__ import annotations

import json
from typing import Any

MAX_RESULT_BYTES = 256 * 1024
MAX_JOURNAL_RESULT_BYTES = 64 * 1024
MAX_TEXT_BYTES = 64 * 1024
# How much of a cut JSON value is kept, as text, next to the marker.
PREVIEW_BYTES = 4 * 1024


def bounded_json(value: Any, max_bytes: int) -> str:
    """`value` as JSON text, or a truncation marker object when the text is over max_bytes.

    The marker: {"truncated": true, "originalBytes": n, "preview": "<first bytes of the JSON>"}.
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    size = len(text.encode())
    if size <= max_bytes:
        return text
    preview = text.encode()[: min(PREVIEW_BYTES, max_bytes // 2)].decode(errors="ignore")
    marker = {"truncated": True, "originalBytes": size, "preview": preview}
    return json.dumps(marker, separators=(",", ":"), ensure_ascii=False)


def bounded_text(text: str | None, max_bytes: int = MAX_TEXT_BYTES) -> str | None:
    """`text` cut to max_bytes (UTF-8), ending in "…[truncated, N bytes in all]" when cut."""
    if text is None:
        return None
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text
    # The marker counts against the bound too, so the result is never over it.
    marker = f"…[truncated, {len(encoded)} bytes in all]"
    keep = max(0, max_bytes - len(marker.encode()))
    return encoded[:keep].decode(errors="ignore") + marker
