"""A playbook module named like the standard library or a library the
runtime has imported fails to load with a clear loadError, and the runtime
keeps serving; load errors never show credentials."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from kubesoar import _loader
from kubesoar._loader import load_module
from kubesoar._server import RuntimeServer
from kubesoar._settings import RuntimeSettings

IMPOSTOR = "raise SystemExit('the impostor was imported')\n"


@pytest.mark.parametrize(
    ("module", "says"),
    [
        ("json", "shadows the standard library module 'json'"),
        ("operator", "shadows the standard library module 'operator'"),
        ("json.tool", "shadows the standard library module 'json'"),
        ("sys", "shadows the standard library module 'sys'"),
        ("httpx", "shadows the already imported module 'httpx'"),
        ("pytest", "shadows the already imported module 'pytest'"),
    ],
)
def test_a_shadowing_module_name_is_refused(tmp_path: Path, module: str, says: str) -> None:
    top = module.split(".")[0]
    real = sys.modules.get(top)
    (tmp_path / f"{top}.py").write_text(IMPOSTOR)
    loaded = load_module(module, tmp_path)
    assert not loaded.ok and loaded.error is not None
    assert loaded.error.type == "ImportError"
    assert says in loaded.error.message and "rename the playbook module" in loaded.error.message
    assert sys.modules.get(top) is real  # nothing replaced
    assert str(tmp_path.resolve()) not in sys.path


def test_an_installed_but_not_imported_module_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / "fancylib_for_kubesoar_tests.py").write_text("")
    monkeypatch.setattr(_loader, "_installed_paths", lambda: [site])
    source = tmp_path / "src"
    source.mkdir()
    (source / "fancylib_for_kubesoar_tests.py").write_text(IMPOSTOR)
    loaded = load_module("fancylib_for_kubesoar_tests", source)
    assert loaded.error is not None
    assert "shadows the installed module 'fancylib_for_kubesoar_tests'" in loaded.error.message
    assert "fancylib_for_kubesoar_tests" not in sys.modules


def test_a_playbook_can_be_reloaded_and_imported_by_its_tests_first(
    write_module: Callable[[str, str], Path],
) -> None:
    path = write_module(
        "guard_reload", "from kubesoar import playbook\n\n@playbook()\ndef a(alert): ...\n"
    )
    sys.path.insert(0, str(path.parent.resolve()))
    __import__("guard_reload")  # as an author's test does before run_playbook(path)
    assert load_module("guard_reload", path.parent).ok
    assert load_module("guard_reload", path.parent).ok  # and again


def test_load_errors_do_not_show_credentials(write_module: Callable[[str, str], Path]) -> None:
    path = write_module(
        "guard_leaky",
        "raise RuntimeError('cannot reach https://bob:pw-123456@api.example/v1?token=tok-99')\n",
    )
    loaded = load_module("guard_leaky", path.parent)
    assert loaded.error is not None
    assert loaded.error.message == "cannot reach https://api.example/v1"
    assert (loaded.error.file, loaded.error.line) == ("guard_leaky.py", 1)


async def test_the_runtime_reports_it_and_keeps_serving(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "json.py").write_text(IMPOSTOR)
    settings = RuntimeSettings.from_env(
        {"KUBESOAR_WORKSPACE": str(tmp_path), "KUBESOAR_MODULE": "json", "KUBESOAR_PORT": "0"}
    )
    server = RuntimeServer(settings)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 503
            report = (await client.get("/v1/report")).json()
    finally:
        await server.stop()
    assert report["loadError"]["type"] == "ImportError"
    assert "shadows the standard library module 'json'" in report["loadError"]["message"]
    assert json.loads('{"still": "the real json"}') == {"still": "the real json"}
