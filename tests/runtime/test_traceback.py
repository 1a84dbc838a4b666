"""`kubesoar._traceback`: which frames are the playbook's own, the order they are
shown in, chained causes, secrets masked, and the size bound."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from kubesoar._traceback import MAX_TRACEBACK_CHARS, describe_failure, playbook_root


def _raise_from(tmp_path: Path, name: str, code: str, call: str) -> tuple[BaseException, Path]:
    """Import `code` as module `name` from a fresh folder, run `call`, return what it raised."""
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(code)
    sys.path.insert(0, str(folder))
    try:
        module = __import__(name)
        # The root is the folder the module was imported from.
        assert playbook_root(module.entry) == folder.resolve()
        with pytest.raises(Exception) as raised:
            eval(call, {"m": module})
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(name, None)
    return raised.value, folder.resolve()


def test_own_frames_first_and_the_cause_named(tmp_path):
    code = (
        "import json\n"
        "def entry():\n"
        "    try:\n"
        "        json.loads('{bad')\n"
        "    except ValueError as exc:\n"
        "        raise RuntimeError('lookup failed for token=abcd1234secret') from exc\n"
    )
    exc, root = _raise_from(tmp_path, "tb_cause", code, "m.entry()")
    failure = describe_failure(exc, root=root, secrets=["abcd1234secret"])
    assert failure.where == "tb_cause.py:6 in entry"
    lines = failure.traceback.splitlines()
    assert lines[:3] == [
        "Playbook frames (most recent call last):",
        "  tb_cause.py:6 in entry",
        "    raise RuntimeError('lookup failed for token=***') from exc",
    ]
    assert "abcd1234secret" not in failure.traceback
    assert "RuntimeError: lookup failed for token=***" in failure.traceback
    # The cause: its exception and the playbook line that led to it; json's frames are not own.
    caused = failure.traceback.split("Caused by: ", 1)[1].splitlines()
    assert caused[0].startswith("json.decoder.JSONDecodeError")
    assert caused[1:3] == ["  tb_cause.py:4 in entry", "    json.loads('{bad')"]


def test_a_deep_recursion_keeps_the_innermost_frames_within_the_bound(tmp_path):
    code = "def entry(n=0):\n    return entry(n + 1) if n < 400 else {}['x' * 50]\n"
    exc, root = _raise_from(tmp_path, "tb_deep", code, "m.entry()")
    failure = describe_failure(exc, root=root)
    own = [line for line in failure.traceback.splitlines() if line.startswith("  tb_deep.py")]
    assert len(own) == 30  # the deepest calls only
    assert len(failure.traceback) <= MAX_TRACEBACK_CHARS
    assert failure.traceback.endswith("KeyError: '" + "x" * 50 + "'")


def test_a_virtualenv_inside_the_playbook_folder_is_not_the_playbook(tmp_path):
    folder = tmp_path / "src"
    lib = folder / ".venv" / "lib" / "python3.11" / "site-packages"
    lib.mkdir(parents=True)
    (lib / "vendorlib.py").write_text("def explode():\n    raise OSError('vendor')\n")
    (folder / "tb_vendor.py").write_text(
        "import vendorlib\ndef entry():\n    vendorlib.explode()\n"
    )
    sys.path[:0] = [str(folder), str(lib)]
    try:
        import tb_vendor  # type: ignore[import-not-found]

        with pytest.raises(OSError) as raised:
            tb_vendor.entry()
    finally:
        del sys.path[:2]
        sys.modules.pop("tb_vendor", None)
        sys.modules.pop("vendorlib", None)
    failure = describe_failure(raised.value, root=folder.resolve())
    assert failure.where == "tb_vendor.py:3 in entry"
    other = failure.traceback.split("Other frames (most recent call last):\n", 1)[1]
    assert "vendorlib.py:2 in explode" in other
