"""Reading and parsing request bodies: one reader for every aiohttp server in the project.

Every server (router ingest, runtime `POST /v1/runs`) reads bodies through
`read_body`, which reads until the body is complete or over the limit: a single
`StreamReader.read(n)` returns what has arrived so far, so a chunked or slow body
larger than one TCP read used to be cut short and rejected as malformed JSON.

`parse_json` turns any hostile JSON into a `BodyError` (a 4xx with a reason) instead of
an exception deep in a handler: integers past Python's digit limit, non-finite numbers
(`NaN`, `Infinity`, `1e400`), nesting deeper than `MAX_DEPTH`, and lone surrogates that
could never be encoded back to UTF-8 for the next hop.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from aiohttp import web

MAX_DEPTH: Final = 64


class BodyError(Exception):
    """A client mistake in a request body: `status` is 400 or 413, `code` names it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _too_large(limit: int) -> BodyError:
    return BodyError(413, "body_too_large", f"the body is larger than {limit} bytes")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, at most `limit` bytes (BodyError 413 past it)."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise _too_large(limit)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number this API accepts")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


def parse_json(body: bytes, *, code: str = "malformed_json") -> Any:
    """`body` as JSON, bounded as the module docstring says; BodyError(400, code) if not."""
    if not body:
        raise BodyError(400, code, "the body is empty; send a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(400, code, "the body is not UTF-8 text") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise BodyError(
            400, code, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise BodyError(400, code, f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # digit limit of int(), our non-finite checks
        raise BodyError(400, code, f"invalid JSON number: {str(exc)[:120]}") from None
    check_json_value(value, code=code)
    return value


def check_json_value(value: Any, *, code: str = "malformed_json") -> None:
    """Depth and string checks for a parsed value (iterative: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                _check_encodable(item, code)
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise BodyError(400, code, f"JSON nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not key.isascii():
                        _check_encodable(key, code)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def _check_encodable(text: str, code: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BodyError(
            400, code, "a JSON string holds a lone surrogate (\\ud800-\\udfff)"
        ) from None
