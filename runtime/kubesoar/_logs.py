"""JSON log lines for the pod, each with the run's correlation id."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from kubesoar._context import CorrelationFilter

__all__ = ["JsonFormatter", "configure_json_logging"]


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
        elif record.exc_text:  # CorrelationFilter keeps a redacted traceback here
            line["exception"] = record.exc_text
        return json.dumps(line, default=str)


def configure_json_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(CorrelationFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log repeats what our metrics say, once per request.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
