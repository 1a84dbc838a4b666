"""JSON log lines for the pod, each with the run's correlation id, and the
redaction filter every kubesoar process (runtime, router, operator) puts on
its log handler."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from aiohttp.http_exceptions import HttpProcessingError

from kubesoar._redact import mask_raw_bytes, redact

__all__ = ["JsonFormatter", "RedactingFilter", "configure_json_logging"]

# The module of aiohttp's HTTP parser errors, as a traceback names it.
_HTTP_PARSER_ERROR = "aiohttp.http_exceptions."


class RedactingFilter(logging.Filter):
    """Redacts every record that reaches the handler it is installed on.

    Message and traceback lose credentials (`kubesoar._redact.redact`:
    `Authorization` and signature header values, `Bearer <token>`, URL
    userinfo...). A record of aiohttp's (`aiohttp.server` logs "Error handling
    request" with the parser's BadHttpMessage) or a traceback of an aiohttp
    HTTP parser error also loses the raw request bytes the error quotes: a
    folded or malformed `Authorization` header shows its token there, at times
    without the header name. A changed traceback is kept as `exc_text` (and
    `exc_info` dropped), which the JSON formatters write instead.

    A request aiohttp's parser refused (a client's mistake, answered 400) is logged by
    aiohttp at ERROR with a traceback; it becomes one INFO line naming the error, so
    hostile input cannot flood the error log or page anyone.

    On the handler rather than a logger, so that records of every logger
    (aiohttp's, third parties') pass through it."""

    def filter(self, record: logging.LogRecord) -> bool:
        from_aiohttp = record.name == "aiohttp" or record.name.startswith("aiohttp.")
        if from_aiohttp and record.exc_info and isinstance(record.exc_info[1], HttpProcessingError):
            error = record.exc_info[1]
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "refused a malformed HTTP request (%s, HTTP %s)"
            record.args = (type(error).__name__, error.code)
            record.exc_info, record.exc_text = None, None
            return True
        try:
            message = record.getMessage()
        except Exception:  # bad arguments: leave it to the handler's error path
            message = None
        if message is not None:
            cleaned = _clean(message, raw_request=from_aiohttp)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[0] is not None:
            text = logging.Formatter().formatException(record.exc_info)
        else:
            text = record.exc_text or ""
        if text:
            cleaned = _clean(text, raw_request=from_aiohttp or _HTTP_PARSER_ERROR in text)
            if cleaned != text:
                record.exc_text, record.exc_info = cleaned, None
        return True


def _clean(text: str, *, raw_request: bool) -> str:
    # Raw bytes first: `redact` may rewrite part of a literal and leave the rest.
    return redact(mask_raw_bytes(text) if raw_request else text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("correlation_id", "run_id"):
            value = getattr(record, key, "")
            if value:
                line[key.replace("_id", "Id")] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:  # the filters keep a redacted traceback here
            line["exception"] = record.exc_text
        return json.dumps(line, default=str)


def configure_json_logging(level: int = logging.INFO) -> None:
    # Here, not at the top: the router and the operator import this module for
    # RedactingFilter and need not load the run context (and httpx).
    from kubesoar._context import CorrelationFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    handler.addFilter(CorrelationFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log repeats what our metrics say, once per request.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
