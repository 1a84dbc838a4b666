"""Optional speed-ups the durable bench can switch on per process, to measure what each
buys before anyone makes it a dependency: `--uvloop` (the event loop) and `--orjson`
(JSON encoding and decoding on the hot paths).

Neither is a dependency of kubesoar. The bench finds them in the venv or in the folder
named by KUBESOAR_BENCH_EXTRAS (e.g. `pip install --target /tmp/bench-extras uvloop
orjson`, which leaves the shared venv as it is).
"""

from __future__ import annotations

import argparse
import os
import sys


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--uvloop", action="store_true", help="run the event loop on uvloop")
    parser.add_argument("--orjson", action="store_true", help="orjson on the JSON hot paths")


def _extras_on_path() -> None:
    extras = os.environ.get("KUBESOAR_BENCH_EXTRAS")
    if extras and extras not in sys.path:
        sys.path.append(extras)


def apply(uvloop: bool, orjson: bool) -> None:
    """Switch the chosen speed-ups on in this process (before any event loop exists)."""
    if not (uvloop or orjson):
        return
    _extras_on_path()
    if uvloop:
        import uvloop as uvloop_module

        uvloop_module.install()
    if orjson:
        _orjson()


def _orjson() -> None:
    raise SystemExit("--orjson: not wired yet")
