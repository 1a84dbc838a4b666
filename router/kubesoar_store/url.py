"""Where the database URL comes from, and how it is shown: never with its password.

Order: `--database-url-file PATH` (a mounted Secret), `--database-url URL`,
`$KUBESOAR_DATABASE_URL_FILE`, `$KUBESOAR_DATABASE_URL`. A file is better than the
flag: a command line is visible to every process on the host.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from kubesoar_store.errors import DatabaseUrlError

ENV_URL = "KUBESOAR_DATABASE_URL"
ENV_URL_FILE = "KUBESOAR_DATABASE_URL_FILE"
MAX_URL_FILE_BYTES = 8192
_SCHEMES = ("postgres", "postgresql")


def resolve_url(url: str | None = None, url_file: str | Path | None = None) -> str:
    """The database URL from the arguments, else the environment; DatabaseUrlError if none."""
    if url_file is None and url is None:
        url_file = os.environ.get(ENV_URL_FILE) or None
        url = os.environ.get(ENV_URL) or None
    if url_file is not None:
        url = _read_url_file(Path(url_file))
    if not url:
        raise DatabaseUrlError(
            "no database URL: pass --database-url-file PATH (or --database-url), "
            f"or set {ENV_URL_FILE} or {ENV_URL}"
        )
    url = url.strip()
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        raise DatabaseUrlError(
            f"the database URL {redact_url(url)} is not a postgresql://user:password@host/db URL"
        )
    return url


def _read_url_file(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_URL_FILE_BYTES + 1)
    except OSError as exc:
        raise DatabaseUrlError(
            f"cannot read the database URL file {path}: {exc.strerror}"
        ) from None
    if len(data) > MAX_URL_FILE_BYTES:
        raise DatabaseUrlError(f"the database URL file {path} is over {MAX_URL_FILE_BYTES} bytes")
    try:
        return data.decode().strip()
    except UnicodeDecodeError:
        raise DatabaseUrlError(f"the database URL file {path} is not UTF-8 text") from None


def url_password(url: str) -> str | None:
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def redact_url(url: str) -> str:
    """`url` with its password replaced by `***` (also `?password=` in the query)."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostinfo = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{hostinfo}"
        query = "&".join(
            f"{key}=***" if key.lower() == "password" else item
            for item in parts.query.split("&")
            if item
            for key in [item.split("=", 1)[0]]
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparseable database URL>"


def scrub(text: str, url: str) -> str:
    """`text` with the URL's password removed, raw and URL-encoded, wherever it appears."""
    password = url_password(url)
    if password:
        for form in {password, quote(password, safe="")}:
            text = text.replace(form, "***")
    return text.replace(url, redact_url(url))
