"""Start detached processes with pid files, and stop them with nothing left behind.

Every process runs in its own session (so its own process group): stopping
signals the whole group, which also reaches any children it forked. A pid file
holds the pid and the program path, and a pid is only signalled while
/proc/<pid>/cmdline still names that program, so a recycled pid is never hit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Go servers set SO_REUSEADDR, so connections of a previous run in
        # TIME_WAIT do not keep them from binding the port again.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def start_detached(
    argv: Sequence[str],
    *,
    log_path: Path,
    pid_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
    pid_path.write_text(f"{proc.pid}\n{argv[0]}\n")
    # The process outlives this Popen object on purpose; forget it so that
    # Python does not warn about a child it never waited for.
    proc.returncode = 0
    return proc.pid


def read_pid_file(pid_path: Path) -> tuple[int, str] | None:
    try:
        pid_text, program = pid_path.read_text().splitlines()[:2]
        return int(pid_text), program
    except (OSError, ValueError):
        return None


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_running(pid: int, program: str) -> bool:
    """True while `pid` is alive (not a zombie) and still runs `program`."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    args = cmdline(pid)
    if not args:
        # cmdline can read empty for a moment (the kernel could not access the
        # process's memory); the command name, truncated to 15 bytes, still tells.
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        return comm == Path(program).name[:15]
    return program in args


def pid_file_alive(pid_path: Path) -> bool:
    entry = read_pid_file(pid_path)
    return entry is not None and is_running(*entry)


def stop_group(pid: int, *, is_ours: bool, grace_seconds: float = 10.0) -> None:
    """SIGTERM the process group led by `pid`, SIGKILL it after the grace period."""
    if not is_ours:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and group_alive(pid):
        time.sleep(0.1)
    # Only while the group has members: Linux does not reuse a pid that is
    # still a process group id, so then the group is certainly still ours.
    # Signalling an empty group could hit a new process that got the pid.
    if group_alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    # Reap it if it is our own child (it is not, when started by another run).
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def group_members(pgid: int) -> list[int]:
    """Pids of the non-zombie processes in the process group."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        # fields: state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def group_alive(pgid: int) -> bool:
    """True while any non-zombie process is left in the process group."""
    return bool(group_members(pgid))


def has_environ_entry(pid: int, entry: bytes) -> bool:
    try:
        return entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def stop_pid_file(pid_path: Path, grace_seconds: float = 10.0) -> None:
    entry = read_pid_file(pid_path)
    if entry is not None:
        pid, program = entry
        stop_group(pid, is_ours=program in cmdline(pid), grace_seconds=grace_seconds)
    pid_path.unlink(missing_ok=True)
