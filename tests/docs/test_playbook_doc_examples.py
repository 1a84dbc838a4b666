"""The pytest examples of docs/playbooks.md work in an author's own repository.

The page's files (`triage.py` and the `test_*.py` blocks, each opening with a
`# <file>.py` line) are written, exactly as shown, into a fresh folder outside
this repository, with no pytest configuration, and pytest runs there in a
subprocess with this virtualenv: once as installed (pytest-asyncio present, in
its default strict mode), once without pytest-asyncio, and once with a user's
`asyncio_mode = auto`, where pytest-asyncio runs the tests and the plugin must
stay out of its way.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "playbooks.md"
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
FILE_LINE = re.compile(r"# ([\w]+\.py)\n")
CONFIG_FILES = ("pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg", "conftest.py")


def documented_files() -> dict[str, str]:
    files = {}
    for block in PYTHON_BLOCK.findall(PAGE.read_text()):
        named = FILE_LINE.match(block)
        if named:
            files[named.group(1)] = block
    return files


def test_the_page_shows_a_playbook_and_its_tests():
    names = set(documented_files())
    assert {"triage.py", "test_triage.py", "test_retries.py"} <= names


@pytest.fixture
def user_project(tmp_path: Path) -> Path:
    project = tmp_path / "my-playbooks"
    project.mkdir()
    for name, text in documented_files().items():
        (project / name).write_text(text)
    # Outside this repository, with no configuration pytest could find above it.
    assert REPO not in project.parents
    for folder in project.parents:
        assert not any((folder / name).exists() for name in CONFIG_FILES), folder
    return project


def _pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KUBESOAR_", "PYTEST_")) and k != "PYTHONPATH"
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "plugins", [pytest.param((), id="with-pytest-asyncio-strict"), ("-p", "no:asyncio")]
)
def test_documented_tests_pass_without_configuration(user_project: Path, plugins):
    proc = _pytest(user_project, *plugins)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"\b2 passed\b", proc.stdout), proc.stdout
    assert "not natively supported" not in proc.stdout + proc.stderr


def test_a_users_pytest_asyncio_auto_mode_still_runs_them(user_project: Path):
    (user_project / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    proc = _pytest(user_project, "-v")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"\b2 passed\b", proc.stdout), proc.stdout
