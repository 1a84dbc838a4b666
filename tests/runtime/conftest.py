"""Shared helpers for the runtime tests: write playbook modules into a
temporary source folder."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture
def write_module(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """Write `name.py` with dedented source into a fresh src folder; the
    modules are removed from sys.modules afterwards."""
    source = tmp_path / "src"
    source.mkdir()
    written: list[str] = []

    def write(name: str, code: str) -> Path:
        path = source / f"{name}.py"
        path.write_text(textwrap.dedent(code))
        written.append(name)
        return path

    yield write
    for name in written:
        sys.modules.pop(name, None)
    while str(source.resolve()) in sys.path:
        sys.path.remove(str(source.resolve()))
