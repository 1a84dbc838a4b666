"""`kubesoar runtime`: load the playbook module and serve it.

On SIGTERM the runtime turns unready (so EndpointSlices drop it), refuses new
runs with 503, finishes what it accepted within KUBESOAR_DRAIN_SECONDS and
exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from kubesoar._gc import tune_gc
from kubesoar._http import build_app
from kubesoar._loader import LoadedModule, LoadError, load_module
from kubesoar._logs import configure_json_logging
from kubesoar._service import RuntimeService
from kubesoar._settings import RuntimeSettings, SettingsError

# httpx is imported when a run first makes a call: a pod waiting for runs never needs it
# (tests/runtime/test_runtime_footprint.py).
if TYPE_CHECKING:
    import httpx

__all__ = ["RuntimeServer", "main_runtime"]

log = logging.getLogger("kubesoar.runtime")


class RuntimeServer:
    """Load, serve, drain. Usable in-process (tests) or from `main_runtime`."""

    def __init__(
        self,
        settings: RuntimeSettings,
        *,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self._http_transport = http_transport
        self._runner: web.AppRunner | None = None
        self.service: RuntimeService | None = None
        self.port: int | None = None

    def _load(self) -> LoadedModule:
        if not self.settings.module:
            loaded = LoadedModule(name="", source_dir=self.settings.source_dir)
            loaded.error = LoadError("ValueError", "KUBESOAR_MODULE is not set", None, None)
            return loaded
        return load_module(self.settings.module, self.settings.source_dir)

    async def start(self) -> None:
        loaded = self._load()
        if loaded.error:
            log.error("playbook module failed to load: %s", loaded.error)
        else:
            log.info(
                "loaded %s: %s",
                loaded.name,
                ", ".join(entry.name for entry in loaded.entry_points) or "no entry points",
            )
        self.service = RuntimeService(loaded, self.settings, http_transport=self._http_transport)
        self.service.start()
        self._runner = web.AppRunner(build_app(self.service), handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        # With port 0 (tests) the kernel picks one; report what was bound.
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else self.settings.port
        log.info("listening on %s:%s", self.settings.host, self.port)

    async def stop(self) -> int:
        """Drain and close; returns the number of accepted runs left unfinished."""
        unfinished = 0
        if self.service is not None:
            unfinished = await self.service.drain(self.settings.drain_seconds)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.service is not None:
            await self.service.engine.reports.aclose()  # after the drain's last reports
        return unfinished


async def serve(settings: RuntimeSettings) -> int:
    server = RuntimeServer(settings)
    await server.start()
    tune_gc(full_collection=False)  # the first readiness answer waits for it
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("signal received, draining")
    # Unready first, so endpoints drop us while accepted runs finish.
    unfinished = await server.stop()
    log.info("stopped (%d unfinished)", unfinished)
    return 0


def main_runtime(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kubesoar runtime",
        description="Serve a playbook module (settings from KUBESOAR_* environment variables).",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="DEBUG, INFO, WARNING or ERROR (default INFO)",
    )
    args = parser.parse_args(argv)
    configure_json_logging(getattr(logging, args.log_level))
    try:
        settings = RuntimeSettings.from_env()
        settings.caller_token()  # a missing or empty token file stops here, clearly
    except SettingsError as exc:
        log.error("invalid settings: %s", exc)
        return 2
    return asyncio.run(serve(settings))


main = main_runtime
