"""`kubesoar fetch`: the init container's job. Download the playbook artifact,
check its sha256, unpack it safely into `$KUBESOAR_WORKSPACE/src`.

The URL's query string carries the signature, so only scheme, host and path
are ever printed. The tarball is untrusted input: members are checked before
anything is written (no absolute paths, no `..`, no links leaving the tree,
no devices or FIFOs; bounded file count and unpacked size).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Final
from urllib.parse import urlsplit

import httpx

# One URL cleaner for the whole package: the artifact URL carries its signature in the query.
from kubesoar._redact import clean_url as safe_url
from kubesoar.contracts import caller

__all__ = ["FetchError", "fetch_artifact", "main_fetch", "safe_url", "unpack_tarball"]

DEFAULT_MAX_ARTIFACT_BYTES: Final = 50 * 1024 * 1024
DEFAULT_MAX_UNPACKED_BYTES: Final = 200 * 1024 * 1024
DEFAULT_MAX_FILES: Final = 10_000
CHUNK: Final = 64 * 1024


class FetchError(Exception):
    """The artifact could not be fetched, verified or unpacked."""


def download(
    url: str, destination: Path, *, max_bytes: int, timeout: float = 30.0
) -> tuple[str, str | None]:
    """Stream `url` into `destination`: the hex sha256 of the bytes, and the caller token
    the artifact server sent with them (kubesoar.contracts.caller), if any."""
    digest = hashlib.sha256()
    size = 0
    shown = safe_url(url)
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0)) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise FetchError(f"GET {shown}: HTTP {response.status_code}")
            token = response.headers.get(caller.TOKEN_HEADER)
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"GET {shown}: artifact is larger than {max_bytes} bytes")
            with destination.open("wb") as out:
                for chunk in response.iter_bytes(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise FetchError(f"GET {shown}: artifact is larger than {max_bytes} bytes")
                    digest.update(chunk)
                    out.write(chunk)
    except httpx.HTTPError as exc:
        # httpx messages can include the full URL; name the type and safe URL only.
        raise FetchError(f"GET {shown}: {type(exc).__name__}") from None
    return digest.hexdigest(), token


def _check_member(member: tarfile.TarInfo, root: Path) -> None:
    name = member.name
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith(("/", "\\")) or ".." in path.parts:
        raise FetchError(f"unsafe path in artifact: {name!r}")
    if member.isdev() or member.isfifo():
        raise FetchError(f"device or FIFO in artifact: {name!r}")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise FetchError(f"unsupported member type in artifact: {name!r}")
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname)
        base = (root / path.parent / link) if member.issym() else (root / link)
        resolved = os.path.normpath(base)
        inside = resolved == str(root) or resolved.startswith(str(root) + os.sep)
        if link.is_absolute() or not inside:
            raise FetchError(f"link leaving the artifact: {name!r} -> {member.linkname!r}")


def unpack_tarball(
    tarball: Path,
    destination: Path,
    *,
    max_files: int = DEFAULT_MAX_FILES,
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
) -> int:
    """Check every member, then extract; returns the number of members."""
    root = Path(os.path.abspath(destination))
    try:
        with tarfile.open(tarball, mode="r:*") as archive:
            members = []
            total = 0
            for member in archive:
                members.append(member)
                if len(members) > max_files:
                    raise FetchError(f"artifact has more than {max_files} files")
                _check_member(member, root)
                total += max(member.size, 0)
                if total > max_unpacked_bytes:
                    raise FetchError(f"artifact unpacks to more than {max_unpacked_bytes} bytes")
            root.mkdir(parents=True, exist_ok=True)
            # The data filter re-checks the same rules and drops modes we do not want.
            archive.extractall(root, members=members, filter="data")
    except tarfile.TarError as exc:
        raise FetchError(f"artifact is not a valid tarball: {exc}") from None
    return len(members)


def fetch_artifact(env: Mapping[str, str]) -> Path:
    url = env.get("KUBESOAR_ARTIFACT_URL", "").strip()
    expected = env.get("KUBESOAR_ARTIFACT_SHA256", "").strip().lower()
    if not url:
        raise FetchError("KUBESOAR_ARTIFACT_URL is not set")
    if urlsplit(url).scheme not in {"http", "https"}:
        raise FetchError(f"KUBESOAR_ARTIFACT_URL must be http(s): {safe_url(url)}")
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise FetchError("KUBESOAR_ARTIFACT_SHA256 must be 64 hex characters")
    raw_limit = env.get("KUBESOAR_MAX_ARTIFACT_BYTES", "").strip()
    if raw_limit and not raw_limit.isdigit():
        raise FetchError("KUBESOAR_MAX_ARTIFACT_BYTES must be a number of bytes")
    max_bytes = int(raw_limit) if raw_limit else DEFAULT_MAX_ARTIFACT_BYTES
    workspace = Path(env.get("KUBESOAR_WORKSPACE") or "/workspace")
    workspace.mkdir(parents=True, exist_ok=True)
    target = workspace / "src"
    with tempfile.TemporaryDirectory(dir=workspace, prefix=".fetch-") as scratch:
        tarball = Path(scratch) / "artifact.tar"
        actual, token = download(url, tarball, max_bytes=max_bytes)
        if not hmac.compare_digest(actual, expected):
            raise FetchError(
                f"sha256 mismatch for {safe_url(url)}: expected {expected}, got {actual}"
            )
        # Unpack beside the target, then swap, so a failure leaves no half tree.
        staging = Path(scratch) / "src"
        count = unpack_tarball(tarball, staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    if token:
        token_file = workspace / caller.TOKEN_FILE
        token_file.unlink(missing_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "w") as out:
            out.write(token)
    print(f"kubesoar fetch: {count} entries from {safe_url(url)} into {target}", file=sys.stderr)
    return target


def main_fetch(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="kubesoar fetch",
        description="Download KUBESOAR_ARTIFACT_URL, verify KUBESOAR_ARTIFACT_SHA256, "
        "unpack into $KUBESOAR_WORKSPACE/src.",
    ).parse_args(argv)
    try:
        fetch_artifact(os.environ)
    except FetchError as exc:
        print(f"kubesoar fetch: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"kubesoar fetch: cannot write the workspace: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


main = main_fetch
