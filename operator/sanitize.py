"""Make text safe for status, Events and logs.

Every message that may carry a URL or a tool's stderr passes through
`sanitize` before it leaves the operator: userinfo and query strings are cut
from URLs (they carry tokens), and any known secret value is masked, also in
the encodings it travels in (base64 for HTTP basic auth).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
# Any scheme://... run, up to whitespace or a quote.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# scp-like git@host:path has no secret; `user:token@host` without a scheme may.
_BARE_USERINFO = re.compile(r"(?<![\w/])[^\s/@:'\"]+:[^\s/@'\"]+@(?=[\w.-]+)")
_MIN_SECRET_LEN = 4


def clean_url(url: str) -> str:
    """The URL without userinfo, query string or fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    if ":" in (parts.hostname or "") and parts.hostname:
        host = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _variants(secret: str) -> set[str]:
    raw = secret.encode()
    return {
        secret,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
    }


def sanitize(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with URLs cleaned and every secret value (and its base64) masked."""
    out = _URL.sub(lambda m: clean_url(m.group(0)), text)
    out = _BARE_USERINFO.sub("", out)
    # Longest first, so a secret containing another is masked whole.
    values = sorted(
        {v for s in secrets if s and len(s) >= _MIN_SECRET_LEN for v in _variants(s)},
        key=len,
        reverse=True,
    )
    for value in values:
        out = out.replace(value, MASK)
    return out
