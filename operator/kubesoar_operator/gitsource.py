"""Resolve a Playbook's Git ref to a commit and fetch that commit into a cache.

Only the operator talks to Git (runtime pods get a tarball), so only it holds
the credentials. They reach `git` through its environment, never through the
URL or argv: HTTP basic and bearer auth as an `http.extraHeader` given via
`GIT_CONFIG_COUNT/KEY/VALUE`, SSH keys as files in a private temporary folder
named by `GIT_SSH_COMMAND`. Every error message is passed through `sanitize`
with the credential values, so neither they nor URL userinfo reach a status,
Event or log line.

Exceptions::

    SourceError(reason, message)   # reason is one of conditions.REASONS
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import shlex
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import git

from kubesoar_operator import conditions, semver
from kubesoar_operator.sanitize import clean_url, sanitize
from kubesoar_operator.spec import GitRef

log = logging.getLogger("kubesoar_operator.git")

_AUTH_HINTS = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "terminal prompts disabled",
    "the requested url returned error: 401",
    "the requested url returned error: 403",
    "permission denied (publickey",
    "host key verification failed",
)
_MISSING_REF_HINTS = ("couldn't find remote ref", "not our ref", "no such remote ref")
# HTTP 404 ("repository '<url>/' not found"), hosting services' own words, SSH paths.
_MISSING_REPOSITORY = re.compile(
    r"repository '[^']*' not found|repository not found|does not appear to be a git repository"
)


class SourceError(Exception):
    """Git or the Secret failed; `reason` is a condition reason, `message` is sanitised."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, repr=False)
class Credentials:
    """Git credentials from a Secret's data; `repr` shows which kinds, never values."""

    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None
    identity: str | None = None
    known_hosts: str | None = None

    def __repr__(self) -> str:
        kinds = [
            k for k in ("username", "password", "bearer_token", "identity") if getattr(self, k)
        ]
        return f"Credentials({', '.join(kinds)})"

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str] | None) -> Credentials:
        """From a Secret's base64 `data`; SourceError(SecretNotFound) on unusable data."""
        decoded: dict[str, str] = {}
        for key, value in (data or {}).items():
            try:
                decoded[key] = base64.b64decode(value).decode()
            except (ValueError, UnicodeDecodeError):
                raise SourceError(
                    conditions.SECRET_NOT_FOUND, f"secret key {key!r} is not valid UTF-8 base64"
                ) from None
        creds = cls(
            username=decoded.get("username"),
            password=decoded.get("password"),
            bearer_token=decoded.get("bearerToken"),
            identity=decoded.get("identity"),
            known_hosts=decoded.get("known_hosts"),
        )
        if creds.identity and not creds.known_hosts:
            raise SourceError(
                conditions.SECRET_NOT_FOUND, "secret has `identity` but no `known_hosts`"
            )
        if not (creds.password or creds.bearer_token or creds.identity):
            raise SourceError(
                conditions.SECRET_NOT_FOUND,
                "secret has none of username/password, bearerToken, identity+known_hosts",
            )
        return creds

    def secret_values(self) -> list[str]:
        values = [self.password, self.bearer_token, self.identity]
        if self.username and self.password:
            values.append(f"{self.username}:{self.password}")
        return [v for v in values if v]


@dataclass(frozen=True)
class Resolved:
    """A ref pinned to a commit; `revision` is Flux's `<ref>@sha1:<sha>`."""

    sha: str
    ref_name: str

    @property
    def revision(self) -> str:
        return f"{self.ref_name}@sha1:{self.sha}" if self.ref_name else f"sha1:{self.sha}"


@dataclass
class GitClient:
    """Runs git against remote URLs with a cache of bare repositories under `cache_dir`."""

    cache_dir: Path
    timeout_seconds: float = 120.0
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _locks_guard: threading.Lock = field(default_factory=threading.Lock)
    _salt: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    # --- public -----------------------------------------------------------
    def resolve(self, url: str, ref: GitRef, creds: Credentials | None = None) -> Resolved:
        """The commit `ref` points at now, asked of the server with `creds` (one `ls-remote`).

        A pinned commit is asked too: the server must accept these credentials before the
        cache may serve anything, or a tenant could name another tenant's private
        repository and commit and be handed the cached code without any credential.
        """
        if ref.commit:
            self._ls_remote(url, creds, patterns=["HEAD"])
            return Resolved(ref.commit, "")
        if ref.branch:
            refs = self._ls_remote(url, creds, "--heads", patterns=[f"refs/heads/{ref.branch}"])
            sha = refs.get(f"refs/heads/{ref.branch}")
            if sha is None:
                raise SourceError(conditions.REF_NOT_FOUND, f"branch {ref.branch!r} not found")
            return Resolved(sha, ref.branch)
        tags = self._tags(url, creds)
        if ref.tag:
            if ref.tag not in tags:
                raise SourceError(conditions.REF_NOT_FOUND, f"tag {ref.tag!r} not found")
            return Resolved(tags[ref.tag], ref.tag)
        assert ref.semver is not None
        best = semver.highest_matching(ref.semver, tags)
        if best is None:
            raise SourceError(
                conditions.REF_NOT_FOUND, f"no tag matches semver range {ref.semver!r}"
            )
        return Resolved(tags[best], best)

    def fetch(self, url: str, resolved: Resolved, creds: Credentials | None = None) -> git.Repo:
        """The cache repo, holding `resolved.sha` (fetched if missing). Close it after use."""
        path = self.cache_dir / self._cache_key(url, creds)
        with self._lock(str(path)):
            if not (path / "HEAD").exists():
                path.mkdir(parents=True, exist_ok=True)
                git.Repo.init(path, bare=True).close()
            repo = git.Repo(path)
            if not self._has_commit(repo, resolved.sha):
                self._fetch_into(repo, url, resolved, creds)
            if not self._has_commit(repo, resolved.sha):
                repo.close()
                raise SourceError(
                    conditions.REF_NOT_FOUND, f"commit {resolved.sha} not found in the repository"
                )
            return repo

    # --- git plumbing -----------------------------------------------------
    def _cache_key(self, url: str, creds: Credentials | None) -> str:
        """One cache repository per (URL, credential identity), never shared across them.

        Keyed with a per-process random salt so a folder name is no offline oracle for a
        password; objects fetched with one credential are never served under another.
        """
        identity = "\0".join(creds.secret_values()) if creds else ""
        material = f"{clean_url(url)}\0{identity}".encode()
        return hmac.new(self._salt, material, hashlib.sha256).hexdigest()[:32]

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def _tags(self, url: str, creds: Credentials | None) -> dict[str, str]:
        refs = self._ls_remote(url, creds, "--tags")
        tags: dict[str, str] = {}
        for name, sha in refs.items():
            short = name.removeprefix("refs/tags/")
            if short.endswith("^{}"):
                tags[short[:-3]] = sha  # the peeled commit of an annotated tag wins
            else:
                tags.setdefault(short, sha)
        return tags

    def _ls_remote(
        self, url: str, creds: Credentials | None, *options: str, patterns: list[str] | None = None
    ) -> dict[str, str]:
        out = self._run(None, creds, url, "ls-remote", *options, url, *(patterns or []))
        refs = {}
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            if name:
                refs[name.strip()] = sha.strip()
        return refs

    @staticmethod
    def _has_commit(repo: git.Repo, sha: str) -> bool:
        try:
            repo.git.cat_file("-e", f"{sha}^{{commit}}")
        except git.GitCommandError:
            return False
        return True

    def _fetch_into(
        self, repo: git.Repo, url: str, resolved: Resolved, creds: Credentials | None
    ) -> None:
        # Fetch by sha first (protocol v2 servers allow reachable shas); fall back to
        # all branches and tags for servers that only serve advertised refs.
        try:
            self._run(repo, creds, url, "fetch", "--no-tags", "--depth=1", url, resolved.sha)
            return
        except SourceError as exc:
            if exc.reason == conditions.AUTHENTICATION_FAILED:
                raise
        self._run(
            repo, creds, url, "fetch", "--no-tags", url,
            "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*",
        )  # fmt: skip

    def _run(self, repo: git.Repo | None, creds: Credentials | None, url: str, *args: str) -> str:
        secrets = creds.secret_values() if creds else []
        runner = repo.git if repo is not None else git.Git(str(self.cache_dir))
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        log.debug("git %s %s", args[0], clean_url(url))
        with _credential_env(creds, self.cache_dir) as env:
            try:
                out = runner.execute(
                    ["git", *args],
                    env=env,
                    kill_after_timeout=self.timeout_seconds,
                    stdout_as_string=True,
                )
            except git.GitCommandError as exc:
                raise _classify(exc, secrets, url) from None
        return str(out)


def _classify(exc: git.GitCommandError, secrets: list[str], url: str) -> SourceError:
    stderr = exc.stderr if isinstance(exc.stderr, str) else str(exc.stderr or "")
    detail = " ".join(line.strip() for line in stderr.splitlines() if line.strip())
    detail = detail.removeprefix("stderr: ").strip("' ")
    lowered = detail.lower()
    text = sanitize(f"{clean_url(url)}: {detail or 'git failed'}", secrets)[:800]
    if any(hint in lowered for hint in _AUTH_HINTS):
        return SourceError(conditions.AUTHENTICATION_FAILED, text)
    if any(hint in lowered for hint in _MISSING_REF_HINTS):
        return SourceError(conditions.REF_NOT_FOUND, text)
    if _MISSING_REPOSITORY.search(lowered):
        return SourceError(conditions.REPOSITORY_NOT_FOUND, text)
    return SourceError(conditions.GIT_OPERATION_FAILED, text)


@contextmanager
def _credential_env(creds: Credentials | None, home: Path) -> Iterator[dict[str, str]]:
    """Environment for one git command: isolated config, no prompts, credentials if any."""
    env = {
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "true",
        "SSH_ASKPASS": "true",
        # A tenant must not make the operator read its own disk (file://) or run
        # commands (ext::).
        "GIT_ALLOW_PROTOCOL": "http:https:ssh",
        "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
        "GIT_HTTP_LOW_SPEED_TIME": "30",
    }
    headers = []
    if creds and creds.bearer_token:
        headers.append(f"Authorization: Bearer {creds.bearer_token}")
    elif creds and creds.password:
        pair = f"{creds.username or 'git'}:{creds.password}".encode()
        headers.append(f"Authorization: Basic {base64.b64encode(pair).decode()}")
    env["GIT_CONFIG_COUNT"] = str(len(headers))
    for i, header in enumerate(headers):
        env[f"GIT_CONFIG_KEY_{i}"] = "http.extraHeader"
        env[f"GIT_CONFIG_VALUE_{i}"] = header
    if not (creds and creds.identity):
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes"
        yield env
        return
    with tempfile.TemporaryDirectory(prefix="kubesoar-ssh-") as folder:
        identity = Path(folder, "identity")
        known_hosts = Path(folder, "known_hosts")
        identity.touch(mode=0o600)
        identity.write_text(creds.identity.rstrip("\n") + "\n")
        known_hosts.write_text(creds.known_hosts or "")
        env["GIT_SSH_COMMAND"] = ssh_command(identity, known_hosts)
        yield env


def ssh_command(identity: Path, known_hosts: Path) -> str:
    """ssh with only this key and these host keys, failing instead of prompting."""
    return " ".join(
        [
            "ssh",
            "-i", shlex.quote(str(identity)),
            "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={shlex.quote(str(known_hosts))}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes",
        ]
    )  # fmt: skip
