"""One run of one container: a process in its own session, logs to a file, a pid file.

After the main process exits, whatever it left in its process group is killed,
as a container runtime tears down the container's cgroup.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from hack.localcluster import processes


class ContainerProcess:
    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path,
        pid_path: Path,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log_path
        self.pid_path = pid_path
        self._proc: asyncio.subprocess.Process | None = None
        # Every process of the container inherits this entry (see NodeContext.base_env).
        uid = self.env.get("KUBESOAR_LOCAL_POD_UID", "")
        self._marker = f"KUBESOAR_LOCAL_POD_UID={uid}".encode()
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def start(self) -> None:
        """Start the process; raises OSError when it cannot be executed."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        # Opening a local log file does not block the loop in any way that matters.
        with open(self.log_path, "ab") as log:  # noqa: ASYNC230
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        self.pid_path.write_text(f"{self._proc.pid}\n{self.argv[0]}\n")

    async def wait(self) -> int:
        """Wait for the exit; returns the exit code (128+N when killed by signal N)."""
        assert self._proc is not None
        code = await self._proc.wait()
        self._kill_group(signal.SIGKILL)
        self.pid_path.unlink(missing_ok=True)
        return 128 - code if code < 0 else code

    async def terminate(self, grace_seconds: float) -> None:
        """SIGTERM the process group; SIGKILL it when the grace period is over."""
        if self._proc is None or self._proc.returncode is not None:
            return
        self._kill_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self._proc.wait()), grace_seconds)
        except TimeoutError:
            self._kill_group(signal.SIGKILL)
            await self._proc.wait()
        self._kill_group(signal.SIGKILL)

    def _kill_group(self, sig: signal.Signals) -> None:
        """Signal the container's process group, and never anything else.

        Pids are recycled: once the main process is reaped, its pid can belong to
        a new, unrelated session leader. The group is signalled only while the
        main process is unreaped, or while a member still carries this
        container's marker (a pid that is some group's id is never reused).
        """
        if self._proc is None:
            return
        pgid = self._proc.pid
        if self._proc.returncode is not None and not any(
            processes.has_environ_entry(member, self._marker)
            for member in processes.group_members(pgid)
        ):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
