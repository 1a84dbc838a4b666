"""`kubesoar fetch` against a real HTTP server on loopback: a good artifact
unpacks; a digest mismatch, path traversal, links out, device files, an
oversize download or unpacked tree all fail with a clear message, a non-zero
exit, nothing unpacked, and never the URL's signed query."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kubesoar._fetch import FetchError, fetch_artifact, safe_url, unpack_tarball

SIGNED_QUERY = "expires=99&sig=TOPSECRETSIGNATURE"


@pytest.fixture
def artifact_server() -> Iterator[Callable[[bytes], str]]:
    """Serve one tarball at /artifact.tar; returns its URL with a signed query."""
    served: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if not self.path.startswith("/artifact.tar?"):
                self.send_error(404)
                return
            body = served["body"]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    def serve(body: bytes) -> str:
        served["body"] = body
        return f"http://127.0.0.1:{server.server_address[1]}/artifact.tar?{SIGNED_QUERY}"

    yield serve
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def make_tarball(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            else:
                archive.addfile(info)
    return buffer.getvalue()


def file_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def link_member(
    name: str, target: str, kind: bytes = tarfile.SYMTYPE
) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _env(workspace: Path, url: str, body: bytes, **extra: str) -> dict[str, str]:
    return {
        "KUBESOAR_ARTIFACT_URL": url,
        "KUBESOAR_ARTIFACT_SHA256": hashlib.sha256(body).hexdigest(),
        "KUBESOAR_WORKSPACE": str(workspace),
        **extra,
    }


GOOD = make_tarball(
    file_member("triage.py", b"from kubesoar import playbook\n"),
    file_member("lib/__init__.py", b""),
    link_member("lib/alias.py", "../triage.py"),
)


def test_good_artifact_unpacks(tmp_path: Path, artifact_server: Callable[[bytes], str]) -> None:
    url = artifact_server(GOOD)
    target = fetch_artifact(_env(tmp_path, url, GOOD))
    assert target == tmp_path / "src"
    assert (target / "triage.py").read_text() == "from kubesoar import playbook\n"
    assert (target / "lib" / "alias.py").read_text() == "from kubesoar import playbook\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # scratch cleaned


def test_refetch_replaces_the_tree(tmp_path: Path, artifact_server: Callable[[bytes], str]) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "stale.py").write_text("old")
    url = artifact_server(GOOD)
    fetch_artifact(_env(tmp_path, url, GOOD))
    assert not (tmp_path / "src" / "stale.py").exists()


BAD_ARTIFACTS = [
    ("traversal", make_tarball(file_member("../evil.py", b"x")), "unsafe path"),
    ("absolute", make_tarball(file_member("/etc/evil", b"x")), "unsafe path"),
    ("symlink out", make_tarball(link_member("out", "../../etc/passwd")), "link leaving"),
    ("absolute symlink", make_tarball(link_member("out", "/etc/passwd")), "link leaving"),
    (
        "hardlink out",
        make_tarball(link_member("hard", "../outside", tarfile.LNKTYPE)),
        "link leaving",
    ),
    (
        "device",
        make_tarball(link_member("dev", "", tarfile.CHRTYPE)),
        "device or FIFO",
    ),
    ("not a tarball", b"definitely not a tarball" * 10, "not a valid tarball"),
]


@pytest.mark.parametrize(
    ("case", "body", "message"), BAD_ARTIFACTS, ids=[c for c, _, _ in BAD_ARTIFACTS]
)
def test_unsafe_artifacts_are_refused(
    tmp_path: Path,
    artifact_server: Callable[[bytes], str],
    case: str,
    body: bytes,
    message: str,
) -> None:
    url = artifact_server(body)
    with pytest.raises(FetchError, match=message) as info:
        fetch_artifact(_env(tmp_path, url, body))
    assert "TOPSECRET" not in str(info.value)
    assert not (tmp_path / "src").exists()
    assert not (tmp_path.parent / "evil.py").exists()


def test_digest_mismatch(tmp_path: Path, artifact_server: Callable[[bytes], str]) -> None:
    url = artifact_server(GOOD)
    env = _env(tmp_path, url, GOOD, KUBESOAR_ARTIFACT_SHA256="0" * 64)
    with pytest.raises(FetchError, match="sha256 mismatch") as info:
        fetch_artifact(env)
    assert "TOPSECRET" not in str(info.value)
    assert not (tmp_path / "src").exists()


def test_oversize_download(tmp_path: Path, artifact_server: Callable[[bytes], str]) -> None:
    url = artifact_server(GOOD)
    env = _env(tmp_path, url, GOOD, KUBESOAR_MAX_ARTIFACT_BYTES=str(len(GOOD) - 1))
    with pytest.raises(FetchError, match="larger than"):
        fetch_artifact(env)


def test_unpacked_limits(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.tar.gz"
    bomb.write_bytes(make_tarball(file_member("zeros", b"\0" * 100_000)))
    with pytest.raises(FetchError, match="unpacks to more than 1000 bytes"):
        unpack_tarball(bomb, tmp_path / "out", max_unpacked_bytes=1000)
    many = tmp_path / "many.tar.gz"
    many.write_bytes(make_tarball(*(file_member(f"f{i}", b"") for i in range(5))))
    with pytest.raises(FetchError, match="more than 3 files"):
        unpack_tarball(many, tmp_path / "out", max_files=3)
    assert not (tmp_path / "out").exists()


def test_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="KUBESOAR_ARTIFACT_URL is not set"):
        fetch_artifact({"KUBESOAR_WORKSPACE": str(tmp_path)})
    with pytest.raises(FetchError, match="must be 64 hex"):
        fetch_artifact(
            {"KUBESOAR_ARTIFACT_URL": "http://127.0.0.1/x", "KUBESOAR_ARTIFACT_SHA256": "z"}
        )
    with pytest.raises(FetchError, match="must be http"):
        fetch_artifact({"KUBESOAR_ARTIFACT_URL": "file:///etc/passwd"})


def test_safe_url_strips_credentials_and_query() -> None:
    assert safe_url("https://user:pw@host:8443/a/b.tar?sig=x#frag") == "https://host:8443/a/b.tar"


def test_cli_exit_codes(tmp_path: Path, artifact_server: Callable[[bytes], str]) -> None:
    url = artifact_server(GOOD)
    env = {**os.environ, **_env(tmp_path, url, GOOD)}
    ok = subprocess.run(
        [sys.executable, "-m", "kubesoar", "fetch"], env=env, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "src" / "triage.py").is_file()
    env["KUBESOAR_ARTIFACT_SHA256"] = "f" * 64
    bad = subprocess.run(
        [sys.executable, "-m", "kubesoar", "fetch"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert "sha256 mismatch" in bad.stderr
    assert "TOPSECRET" not in bad.stderr + ok.stderr
    # The connection-refused path names the safe URL only.
    env["KUBESOAR_ARTIFACT_URL"] = f"http://127.0.0.1:1/artifact.tar?{SIGNED_QUERY}"
    refused = subprocess.run(
        [sys.executable, "-m", "kubesoar", "fetch"], env=env, capture_output=True, text=True
    )
    assert refused.returncode == 1
    assert "ConnectError" in refused.stderr and "TOPSECRET" not in refused.stderr
