"""Make text safe for status, Events and logs.

Every message that may carry a URL or a tool's stderr passes through
`sanitize` before it leaves the operator: userinfo and query strings are cut
from URLs (they carry tokens), and any known secret value is masked, also in
the encodings it travels in (base64 for HTTP basic auth).

The rules live in one place, `kubesoar._redact`, which the runtime uses for
run records and its logs too; this module keeps the operator's names.
"""

from __future__ import annotations

from collections.abc import Iterable

from kubesoar._redact import MASK, clean_url, redact

__all__ = ["MASK", "clean_url", "sanitize"]


def sanitize(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with URLs cleaned and every secret value (and its base64) masked."""
    return redact(text, secrets)
