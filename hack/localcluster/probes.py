"""Container probes (httpGet, tcpSocket, exec) with the kubelet's thresholds and periods."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger("nodeagent.probes")


@dataclass
class ProbeTarget:
    """What a probe needs to know about its container."""

    pod_ip: str
    ports_by_name: Mapping[str, int]
    env: Mapping[str, str]
    cwd: str
    rewrite: Callable[[Sequence[str]], list[str]]
    session: aiohttp.ClientSession

    def port(self, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        if port not in self.ports_by_name:
            raise ValueError(f"named port {port!r} is not a container port")
        return self.ports_by_name[port]


async def probe_once(probe: Mapping[str, Any], target: ProbeTarget) -> tuple[bool, str]:
    """Run one probe; returns (success, reason for a failure)."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            spec = probe["httpGet"]
            scheme = spec.get("scheme", "HTTP").lower()
            host = spec.get("host") or target.pod_ip
            url = f"{scheme}://{host}:{target.port(spec['port'])}{spec.get('path', '/')}"
            headers = {h["name"]: h["value"] for h in spec.get("httpHeaders") or []}
            async with target.session.get(
                url,
                headers=headers,
                ssl=False,  # the kubelet does not verify probe certificates either
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                await resp.read()
                if 200 <= resp.status < 400:
                    return True, ""
                return False, f"HTTP probe failed with statuscode: {resp.status}"
        if "tcpSocket" in probe:
            spec = probe["tcpSocket"]
            host = spec.get("host") or target.pod_ip
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, target.port(spec["port"])), timeout
            )
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True, ""
        if "exec" in probe:
            argv = target.rewrite(probe["exec"]["command"])
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                env=dict(target.env),
                cwd=target.cwd,
                start_new_session=True,
            )
            try:
                code = await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                return False, f"command timed out after {timeout}s"
            return code == 0, f"command exited with {code}"
        return False, f"unsupported probe handler {sorted(probe)}"
    except (OSError, TimeoutError, aiohttp.ClientError, ValueError) as exc:
        return False, f"probe error: {exc!r}"


class ProbeLoop:
    """Probes every periodSeconds; `result` flips after the success/failure thresholds.

    `initial` is the result before any threshold is reached: False for
    readiness and startup, True for liveness (as in the kubelet).
    """

    def __init__(
        self,
        kind: str,
        probe: Mapping[str, Any],
        target: ProbeTarget,
        *,
        initial: bool,
        on_change: Callable[[bool], None],
        label: str = "",
    ) -> None:
        self.label = label
        self.kind = kind
        self.probe = probe
        self.target = target
        self.result = initial
        self.on_change = on_change

    async def run(self, stop_when_succeeded: bool = False) -> bool:
        """Probe until cancelled (or, for startup probes, until the first verdict)."""
        period = float(self.probe.get("periodSeconds", 10))
        success_threshold = int(self.probe.get("successThreshold", 1))
        failure_threshold = int(self.probe.get("failureThreshold", 3))
        await asyncio.sleep(float(self.probe.get("initialDelaySeconds", 0)))
        successes = failures = 0
        while True:
            ok, reason = await probe_once(self.probe, self.target)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if ok and successes >= success_threshold and not self.result:
                log.info("%s: %s probe succeeded", self.label, self.kind)
                self._set(True)
            elif not ok and failures >= failure_threshold and (self.result or stop_when_succeeded):
                # Logged when the verdict changes, not on every failed probe.
                log.info(
                    "%s: %s probe failed %d times: %s", self.label, self.kind, failures, reason
                )
                self._set(False)
                if stop_when_succeeded:
                    return False
            if stop_when_succeeded and self.result:
                return True
            await asyncio.sleep(period)

    def _set(self, result: bool) -> None:
        self.result = result
        self.on_change(result)
