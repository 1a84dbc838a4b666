"""One JSON object per log line, with URLs sanitised on the way out."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from kubesoar._logs import RedactingFilter

from kubesoar_operator.sanitize import sanitize


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            # Defence in depth: nothing should log a credential, but a URL with
            # userinfo or a signed query string loses them here regardless.
            "message": sanitize(record.getMessage()),
        }
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict):
            entry["object"] = f"{ref.get('namespace', '')}/{ref.get('name', '')}".lstrip("/")
        if record.exc_info:
            entry["error"] = sanitize(self.formatException(record.exc_info))
        elif record.exc_text:  # RedactingFilter keeps a redacted traceback here
            entry["error"] = sanitize(record.exc_text)
        return json.dumps(entry, ensure_ascii=False)


def configure(verbose: bool = False) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter())
    # The artifact server's aiohttp logs a malformed request's raw headers.
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # The API client's and kopf's debug chatter would drown the operator's own lines.
    for noisy in ("kubernetes", "urllib3", "aiohttp.access", "httpx", "httpcore", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not verbose:
        # kopf says "Handler 'reconcile' succeeded." for every Playbook on every event;
        # its warnings (a handler failing temporarily) still come through.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
