"""Make text safe to record or log: the one redaction helper of kubesoar.

Error text travels far (the run record, `lastError` of the report, the
Playbook's status, log lines), and an integration's exception often carries
the request that failed: `https://user:token@host/...`, `?apikey=...`, an
`Authorization` header. `redact` removes those:

* URLs lose their userinfo, query string and fragment;
* `user:password@host` without a scheme loses its userinfo;
* `Authorization: <scheme> <credentials>`, `Bearer <token>`, signature headers
  (`X-Hub-Signature-256: sha256=...`) and credential-looking `key: value` /
  `key=value` pairs (`api_key`, `apikey`, `x-api-key`, `access_token`,
  `password`, `secret`, `token`) keep the key only;
* every known secret value is masked, also in the encodings it travels in
  (base64 and URL-safe base64, as HTTP basic auth sends it).

`mask_raw_bytes` hides the raw request bytes an HTTP parser error quotes
(`b'...'`): a folded or malformed `Authorization` header shows its token
there without the header name, where no rule above can recognise it.

Pure and standard-library only: the operator (`kubesoar_operator.sanitize`)
and the runtime share it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit, urlunsplit

__all__ = ["MASK", "MIN_SECRET_LENGTH", "clean_url", "mask_raw_bytes", "redact", "redact_urls"]

MASK: Final = "***"
# Shorter values would mask ordinary words; secrets are longer than this.
MIN_SECRET_LENGTH: Final = 4

# Any scheme://... run, up to whitespace or a quote.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# scp-like git@host:path has no secret; `user:token@host` without a scheme may.
_BARE_USERINFO = re.compile(r"(?<![\w/])[^\s/@:'\"]+:[^\s/@'\"]+@(?=[\w.-]+)")
# `Authorization: Basic abc=`, `Proxy-Authorization=Bearer x`, `'authorization': 'tok'`.
_AUTH_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)"
    r"(?:(basic|bearer|token|digest|negotiate|apikey)\s+)?[^\s,;'\"]+"
)
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
# `X-Hub-Signature-256: sha256=...`, `X-Signature: v1=...`, `Stripe-Signature=t=1,v1=...`.
_SIGNATURE_HEADER = re.compile(
    r"(?i)\b([\w-]*signature(?:-\d+)?['\"]?[ \t]*[:=][ \t]*['\"]?)[^\s;'\"]+"
)
# A bytes literal as `repr` writes it: b'...' or b"...", escapes included.
_BYTES_LITERAL = re.compile(r"""\bb(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")""")
_CREDENTIAL_PAIR = re.compile(
    r"(?i)\b((?:x-)?api[-_]?key|access[-_]?token|refresh[-_]?token|client[-_]?secret"
    r"|password|passwd|secret|token)(['\"]?\s*[:=]\s*['\"]?)[^\s,;&'\"}]+"
)
# Cheap checks that let the common line skip the regexes.
_HINTS: Final = ("://", "@", "uthorization", "earer", "=", ":")


def clean_url(url: str) -> str:
    """The URL without userinfo, query string or fragment."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return MASK
    hostname = parts.hostname or ""
    host = f"[{hostname}]" if ":" in hostname else hostname
    if port is not None:
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def redact_urls(text: str) -> str:
    """`text` with every URL cleaned (`clean_url`) and bare `user:pass@` cut."""
    if "://" in text:
        text = _URL.sub(lambda m: clean_url(m.group(0)), text)
    if "@" in text:
        text = _BARE_USERINFO.sub("", text)
    return text


def mask_raw_bytes(text: str) -> str:
    """`text` with every bytes literal (`b'...'`, as a parser error quotes the raw
    request) replaced by `b'***'`."""
    return _BYTES_LITERAL.sub(f"b'{MASK}'", text) if "b'" in text or 'b"' in text else text


def _auth_header(match: re.Match[str]) -> str:
    scheme = f"{match.group(2)} " if match.group(2) else ""
    return f"{match.group(1)}{scheme}{MASK}"


def _variants(secret: str) -> set[str]:
    raw = secret.encode()
    return {
        secret,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
    }


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with URLs cleaned, credentials in headers and `key=value` pairs
    masked, and every secret value (and its base64) masked."""
    values = sorted(
        {v for s in secrets if s and len(s) >= MIN_SECRET_LENGTH for v in _variants(s)},
        key=len,
        reverse=True,  # longest first, so a secret containing another is masked whole
    )
    out = text
    # Secrets first: a value inside a URL's path survives URL cleaning.
    for value in values:
        if value in out:
            out = out.replace(value, MASK)
    if not any(hint in out for hint in _HINTS):
        return out
    out = redact_urls(out)
    out = _AUTH_HEADER.sub(_auth_header, out)
    out = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", out)
    if "ignature" in out:
        out = _SIGNATURE_HEADER.sub(lambda m: f"{m.group(1)}{MASK}", out)
    return _CREDENTIAL_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", out)
