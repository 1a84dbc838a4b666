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
from typing import Any


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--uvloop", action="store_true", help="run the event loop on uvloop")
    parser.add_argument("--orjson", action="store_true", help="orjson on the JSON hot paths")


def _extras_on_path() -> None:
    extras = os.environ.get("KUBESOAR_BENCH_EXTRAS")
    if extras and extras not in sys.path:
        sys.path.append(extras)


def apply(uvloop: bool, orjson: bool, json_modules: tuple[str, ...]) -> None:
    """Switch the chosen speed-ups on in this process (before any event loop exists);
    orjson replaces `json` in `json_modules` (ROUTER_JSON or RUNTIME_JSON)."""
    if not (uvloop or orjson):
        return
    _extras_on_path()
    if uvloop:
        import uvloop as uvloop_module

        uvloop_module.install()
    if orjson:
        _orjson(json_modules)


# Where JSON is encoded or decoded per alert or per run (found with the bench's profile):
# the alert body parse (both servers), the stored alert's encoding and decoding and the
# result's bounding (store).
ROUTER_JSON = (
    "kubesoar._bodies",
    "kubesoar_store.groupcommit",
    "kubesoar_store.dispatch",
    "kubesoar_store.bounds",
)
RUNTIME_JSON = ("kubesoar._bodies",)


class _OrjsonShim:
    """The slice of the json module those modules call, on orjson. Not the same answers
    for every input (orjson has no parse hooks, writes NaN as null, refuses lone
    surrogates): a measuring aid, not a drop-in replacement."""

    def __init__(self) -> None:
        import json

        import orjson

        self._orjson = orjson
        self.JSONDecodeError = json.JSONDecodeError  # orjson's error subclasses it

    def loads(self, text: str | bytes, **_: Any) -> Any:
        return self._orjson.loads(text)

    def dumps(self, value: Any, *, default: Any = None, **_: Any) -> str:
        return str(self._orjson.dumps(value, default=default).decode())


def _orjson(json_modules: tuple[str, ...]) -> None:
    import importlib

    shim = _OrjsonShim()
    for name in json_modules:
        module = importlib.import_module(name)
        module.json = shim  # type: ignore[attr-defined]
