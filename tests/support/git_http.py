"""A real Git smart-HTTP server on loopback, for tests.

`git http-backend` runs as a CGI program behind a small threaded stdlib HTTP
server on 127.0.0.1 (an ephemeral port), serving the bare repositories under
one folder. Optional HTTP basic and bearer auth make credential handling
testable end to end. `GitRepo` creates a repository with files, commits, tags
and pushes into the served folder (over the file system, so pushing needs no
credentials).

Usage::

    with GitHTTPServer(tmp_path / "srv", username="bob", password="s3cret") as server:
        repo = server.create_repo("playbooks", {"triage.py": "..."})
        sha = repo.commit({"triage.py": "..."}, "second")
        repo.tag("v1.0.0")
        url = server.url("playbooks")   # http://127.0.0.1:PORT/playbooks.git
"""

from __future__ import annotations

import base64
import hmac
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_BODY = 64 * 1024 * 1024
_BACKEND = subprocess.run(
    ["git", "--exec-path"], capture_output=True, text=True, check=True
).stdout.strip()
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "kubesoar tests",
    "GIT_AUTHOR_EMAIL": "tests@kubesoar.invalid",
    "GIT_COMMITTER_NAME": "kubesoar tests",
    "GIT_COMMITTER_EMAIL": "tests@kubesoar.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, **_GIT_ENV}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


class GitRepo:
    """A working clone whose commits and tags are pushed to the served bare repo."""

    def __init__(self, bare: Path, work: Path) -> None:
        self.bare = bare
        self.work = work

    def commit(self, files: Mapping[str, str | None], message: str = "change") -> str:
        """Write (or, with None, delete) files, commit on the current branch, push; the sha."""
        for rel, content in files.items():
            target = self.work / rel
            if content is None:
                target.unlink(missing_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        _git("add", "-A", cwd=self.work)
        _git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        self.push()
        return self.head()

    def head(self) -> str:
        return _git("rev-parse", "HEAD", cwd=self.work)

    def branch(self, name: str) -> None:
        """Create and switch to branch `name` (from the current commit)."""
        _git("checkout", "-q", "-B", name, cwd=self.work)
        self.push()

    def tag(self, name: str, annotated: bool = False) -> None:
        if annotated:
            _git("tag", "-a", name, "-m", name, cwd=self.work)
        else:
            _git("tag", name, cwd=self.work)
        _git("push", "-q", "origin", f"refs/tags/{name}", cwd=self.work)

    def push(self) -> None:
        _git("push", "-q", "-f", "origin", "HEAD", cwd=self.work)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet in tests
        pass

    def _authorised(self) -> bool:
        cfg = self.server.owner
        if cfg.username is None and cfg.token is None:
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if cfg.token is not None and scheme.lower() == "bearer":
            return hmac.compare_digest(value.encode(), cfg.token.encode())
        if cfg.username is not None and scheme.lower() == "basic":
            expected = base64.b64encode(f"{cfg.username}:{cfg.password}".encode())
            return hmac.compare_digest(value.encode(), expected)
        return False

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        owner = self.server.owner
        owner.requests.append(self.path)
        if not self._authorised():
            owner.rejected += 1
            self._reply(401, {"WWW-Authenticate": 'Basic realm="git"'}, b"unauthorised\n")
            return
        try:
            body = self._read_body()
        except ValueError:
            self._reply(413, {}, b"too large\n")
            return
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(owner.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_USER": owner.username or "",
            "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
        }
        done = subprocess.run(
            [f"{_BACKEND}/git-http-backend"],
            input=body,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = done.stdout.partition(b"\n\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers[key.strip()] = value.strip()
        self._reply(status, headers, payload)

    do_GET = _handle
    do_POST = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: GitHTTPServer


class GitHTTPServer:
    """Serves bare repositories under `root` at http://127.0.0.1:<port>/<name>.git."""

    def __init__(
        self,
        root: Path,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
    ) -> None:
        self.root = root
        self.username, self.password, self.token = username, password, token
        self.requests: list[str] = []
        self.rejected = 0
        root.mkdir(parents=True, exist_ok=True)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}.git"

    def create_repo(
        self, name: str, files: Mapping[str, str] | None = None, *, branch: str = "main"
    ) -> GitRepo:
        """A new bare repo `name`, with a first commit of `files` on `branch`."""
        bare = self.root / f"{name}.git"
        _git("init", "-q", "--bare", "-b", branch, str(bare))
        work = self.root / "_work" / name
        _git("init", "-q", "-b", branch, str(work))
        _git("remote", "add", "origin", str(bare), cwd=work)
        repo = GitRepo(bare, work)
        repo.commit(dict(files or {"README.md": "playbooks\n"}), "initial")
        return repo

    def start(self) -> GitHTTPServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        shutil.rmtree(self.root / "_work", ignore_errors=True)

    def __enter__(self) -> GitHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
