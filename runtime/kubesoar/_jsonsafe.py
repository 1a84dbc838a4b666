"""Turn whatever a playbook returns into JSON, bounded in size."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import date, datetime
from enum import Enum
from typing import Any, Final

__all__ = ["MAX_RESULT_BYTES", "json_safe"]

MAX_RESULT_BYTES: Final = 64 * 1024
_MAX_DEPTH: Final = 32


def _convert(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return "<too deep>"
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return (
            value if value == value and value not in {float("inf"), float("-inf")} else str(value)
        )
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return _convert(value.value, depth + 1)
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # pydantic models
        return _convert(dump(mode="json"), depth + 1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _convert(dataclasses.asdict(value), depth + 1)
    if isinstance(value, Mapping):
        return {str(k): _convert(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [_convert(v, depth + 1) for v in items]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)


def json_safe(value: Any, limit: int = MAX_RESULT_BYTES) -> Any:
    """A JSON-able copy; results larger than `limit` become a truncated preview."""
    converted = _convert(value, 0)
    text = json.dumps(converted)
    if len(text) <= limit:
        return converted
    return {"truncated": True, "bytes": len(text), "preview": text[: limit // 4]}
