"""Playbook artifacts: deterministic tarballs of `path` at a commit, stored by digest.

The same commit and path always give the same bytes (sorted entries, fixed
mtime, owner and modes, gzip without timestamp or name), so the digest — and
with it the pod template — only changes when the code does. Entries are
relative to `path` (a file `phishing/triage.py` with `path: phishing/` is
`triage.py` in the tarball); `kubesoar fetch` unpacks them into
`$KUBESOAR_WORKSPACE/src`. Symlinks and submodules are left out: the runtime
unpacks regular files only.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import re
import shutil
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

import git

MAX_FILES = 10_000
MAX_UNPACKED_BYTES = 64 * 1024 * 1024
NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
DIGEST = re.compile(r"^[0-9a-f]{64}$")
_FILE_MODE, _EXEC_MODE, _DIR_MODE = 0o644, 0o755, 0o755
_GIT_EXECUTABLE, _GIT_FILE = 0o100755, 0o100644


class ArtifactError(ValueError):
    """`path` is missing at the commit, or the folder exceeds the limits."""


class ArtifactTooLarge(ArtifactError):
    """The folder exceeds the limits: the same commit always will (terminal, not retried)."""


@dataclass(frozen=True)
class Artifact:
    data: bytes
    digest: str  # hex sha256 of `data`


def pack(repo: git.Repo, sha: str, path: str) -> Artifact:
    """Tarball of folder `path` (repo root when empty) at commit `sha`."""
    tree = repo.commit(sha).tree
    folder = path.strip("/")
    if folder:
        try:
            tree = tree / folder
        except KeyError:
            raise ArtifactError(f"path {folder!r} does not exist at commit {sha[:12]}") from None
        if tree.type != "tree":
            raise ArtifactError(f"path {folder!r} is not a folder at commit {sha[:12]}")
    # Sizes come from the object headers (`cat-file --batch-check`), so a huge blob is
    # refused before a byte of it is read: memory stays bounded by MAX_UNPACKED_BYTES.
    blobs = [
        item
        for item in tree.traverse()
        if isinstance(item, git.Blob) and item.mode in (_GIT_FILE, _GIT_EXECUTABLE)
    ]  # symlinks (0o120000) and submodules ("commit") stay out
    if len(blobs) > MAX_FILES:
        raise ArtifactTooLarge(
            f"path {folder or '/'!r} has {len(blobs)} files; the limit is {MAX_FILES}"
        )
    total = 0
    for blob in blobs:
        total += blob.size
        if total > MAX_UNPACKED_BYTES:
            raise ArtifactTooLarge(
                f"path {folder or '/'!r} is over the limit of "
                f"{MAX_UNPACKED_BYTES // (1024 * 1024)} MiB unpacked "
                f"({blob.path} alone is {blob.size} bytes)"
            )
    files: list[tuple[str, int, bytes]] = []
    for blob in blobs:
        rel = os.path.relpath(str(blob.path), folder) if folder else str(blob.path)
        files.append((rel, blob.mode, blob.data_stream.read()))
    return Artifact(*_tarball(files))


def _tarball(files: list[tuple[str, int, bytes]]) -> tuple[bytes, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(p) for rel, _, _ in files for p in Path(rel).parents if str(p) != "."})
        for name in dirs:
            tar.addfile(_info(name + "/", tarfile.DIRTYPE, _DIR_MODE, 0))
        for rel, mode, data in sorted(files):
            file_mode = _EXEC_MODE if mode == _GIT_EXECUTABLE else _FILE_MODE
            tar.addfile(_info(rel, tarfile.REGTYPE, file_mode, len(data)), io.BytesIO(data))
    out = io.BytesIO()
    # mtime=0 and no file name keep the gzip header free of anything time- or host-bound.
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    data = out.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def _info(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size = kind, mode, size
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


class ArtifactStore:
    """Artifacts on disk at `<root>/<namespace>/<name>/<digest>.tar.gz`.

    The bytes are kept once per digest, in `<root>/.blobs/` (a dot: no namespace can
    take that name), and each Playbook's file is a hard link to them, so a thousand
    Playbooks on one commit and path hold one copy. A blob goes with its last link.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / ".blobs"
        # Linking to a blob and removing an unlinked blob must not interleave.
        self._lock = threading.Lock()

    def _folder(self, namespace: str, name: str) -> Path:
        if not (NAME.match(namespace) and NAME.match(name)):
            raise ValueError("invalid namespace or name")
        return self.root / namespace / name

    def _blob(self, digest: str) -> Path:
        if not DIGEST.match(digest):
            raise ValueError("invalid digest")
        return self._blobs / f"{digest}.tar.gz"

    def put_blob(self, artifact: Artifact) -> Path:
        """Keep the bytes of `artifact` (once per digest), linked to no Playbook yet."""
        with self._lock:
            return self._put_blob(artifact)

    def _put_blob(self, artifact: Artifact) -> Path:
        blob = self._blob(artifact.digest)
        if not blob.exists():
            self._blobs.mkdir(parents=True, exist_ok=True)
            partial = blob.with_name(f"{artifact.digest}.{threading.get_ident()}.partial")
            partial.write_bytes(artifact.data)
            partial.replace(blob)  # atomic: readers never see half a file
        return blob

    def has_blob(self, digest: str) -> bool:
        return DIGEST.match(digest) is not None and self._blob(digest).is_file()

    def put(self, namespace: str, name: str, artifact: Artifact) -> Path:
        """Keep `artifact` for this Playbook."""
        with self._lock:
            self._put_blob(artifact)
            linked = self._link(namespace, name, artifact.digest)
        assert linked is not None
        return linked

    def link(self, namespace: str, name: str, digest: str) -> Path | None:
        """Give this Playbook the stored artifact `digest`; None when no blob holds it."""
        with self._lock:
            return self._link(namespace, name, digest)

    def _link(self, namespace: str, name: str, digest: str) -> Path | None:
        blob = self._blob(digest)
        folder = self._folder(namespace, name)
        target = folder / f"{digest}.tar.gz"
        if target.exists():
            return target
        if not blob.is_file():
            return None
        folder.mkdir(parents=True, exist_ok=True)
        try:
            os.link(blob, target)
        except OSError:  # a file system without hard links: a copy, as before
            partial = target.with_suffix(".partial")
            shutil.copyfile(blob, partial)
            partial.replace(target)
        return target

    def get(self, namespace: str, name: str, digest: str) -> Path | None:
        if not DIGEST.match(digest):
            return None
        try:
            target = self._folder(namespace, name) / f"{digest}.tar.gz"
        except ValueError:
            return None
        return target if target.is_file() else None

    def prune(self, namespace: str, name: str, keep: set[str]) -> None:
        """Drop this Playbook's artifacts except `keep` (old revisions' pods are gone),
        and the bytes of those no other Playbook links to."""
        folder = self._folder(namespace, name)
        with self._lock:
            for item in folder.glob("*.tar.gz") if folder.is_dir() else ():
                digest = item.name.removesuffix(".tar.gz")
                if digest in keep:
                    continue
                item.unlink(missing_ok=True)
                if DIGEST.match(digest):
                    blob = self._blob(digest)
                    with contextlib.suppress(FileNotFoundError):
                        if blob.stat().st_nlink <= 1:
                            blob.unlink()
