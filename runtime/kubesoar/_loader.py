"""Import the playbook module and collect its entry points.

An import failure is not raised: it becomes a `LoadError` pointing at the
line in the author's file (not ours), which the runtime reports while staying
unready.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
import sysconfig
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from kubesoar import _compat
from kubesoar._context import known_secret_values
from kubesoar._redact import redact
from kubesoar._sdk import EntryPoint, entry_points_of, forget_module

__all__ = [
    "LoadError",
    "LoadedModule",
    "folder_modules",
    "load_module",
    "load_modules",
    "load_target",
]


@dataclass(frozen=True)
class LoadError:
    type: str
    message: str
    file: str | None
    line: int | None

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "file": self.file, "line": self.line}

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file else ""
        return f"{where}{self.type}: {self.message}"


@dataclass
class LoadedModule:
    name: str
    source_dir: Path
    module: ModuleType | None = None
    entry_points: list[EntryPoint] = field(default_factory=list)
    error: LoadError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.module is not None


def _relative(filename: str, source_dir: Path) -> str | None:
    try:
        return str(Path(filename).resolve().relative_to(source_dir.resolve()))
    except (ValueError, OSError):
        return None


def _describe(exc: BaseException, source_dir: Path) -> LoadError:
    # The message reaches the report and the Playbook's status.
    message = redact(str(exc) or exc.__class__.__name__, known_secret_values())
    if isinstance(exc, SyntaxError) and exc.filename:
        relative = _relative(exc.filename, source_dir)
        if relative is not None:
            return LoadError(type(exc).__name__, exc.msg or message, relative, exc.lineno)
    # The innermost frame in the author's files is the line to fix.
    file: str | None = None
    line: int | None = None
    for frame in traceback.extract_tb(exc.__traceback__):
        relative = _relative(frame.filename, source_dir)
        if relative is not None:
            file, line = relative, frame.lineno
    return LoadError(type(exc).__name__, message, file, line)


# Top-level names this loader imported itself: reloading them is fine.
_LOADED_BY_US: set[str] = set()


def _under(path: str | None, folder: Path) -> bool:
    if not path:
        return False
    try:
        Path(path).resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return False
    return True


def _installed_paths() -> list[Path]:
    """Where installed distributions live (site-packages), not the sources."""
    names = ("purelib", "platlib")
    paths = {sysconfig.get_paths()[name] for name in names}
    return [Path(path) for path in paths if path]


def _shadowing(top: str, source: Path) -> str | None:
    """Why importing `top` from `source` would shadow another module, or None.

    The loader puts the playbook's folder first on `sys.path` and replaces
    `sys.modules[top]`; a playbook named like the standard library (`json`,
    `operator`) or like a library the runtime uses (`httpx`) would replace
    that module for the whole process and break the runtime."""
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return (
            f"module name {top!r} shadows the standard library module {top!r}; "
            "rename the playbook module (e.g. to a name like 'playbook_" + top + "')"
        )
    if top in _LOADED_BY_US:
        return None
    existing = sys.modules.get(top)
    if existing is not None:
        where = getattr(existing, "__file__", None) or next(
            iter(getattr(existing, "__path__", None) or []), None
        )
        if _under(where, source):
            return None  # the playbook itself, imported before (by its tests)
        return (
            f"module name {top!r} shadows the already imported module {top!r}"
            + (f" ({where})" if where else "")
            + "; rename the playbook module"
        )
    installed = [str(path) for path in _installed_paths() if path.is_dir()]
    spec = importlib.machinery.PathFinder.find_spec(top, installed) if installed else None
    if spec is not None:
        return (
            f"module name {top!r} shadows the installed module {top!r} "
            f"({spec.origin or 'a package'}); rename the playbook module"
        )
    return None


def load_module(module_name: str, source_dir: str | Path) -> LoadedModule:
    """Import `module_name` with `source_dir` first on `sys.path`."""
    return load_modules(module_name, [module_name], source_dir)


def load_modules(name: str, module_names: list[str], source_dir: str | Path) -> LoadedModule:
    """Import every module of `module_names` (one playbook folder) with
    `source_dir` first on `sys.path`; their entry points together, in run order."""
    source = Path(source_dir)
    loaded = LoadedModule(name=name, source_dir=source)
    for module_name in module_names:
        if not module_name or any(not part.isidentifier() for part in module_name.split(".")):
            loaded.error = LoadError(
                "ValueError", f"invalid module name {module_name!r}", None, None
            )
            return loaded
    if not source.is_dir():
        loaded.error = LoadError("FileNotFoundError", f"no source folder {source}", None, None)
        return loaded
    tops = list(dict.fromkeys(module_name.split(".")[0] for module_name in module_names))
    for top in tops:
        reason = _shadowing(top, source)
        if reason is not None:
            loaded.error = LoadError("ImportError", reason, None, None)
            return loaded
    path_entry = str(source.resolve())
    if path_entry not in sys.path:
        sys.path.insert(0, path_entry)
    importlib.invalidate_caches()
    _compat.install_opensoar_alias()
    for top in tops:
        forget_module(top)
        for stale in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[stale]
        _LOADED_BY_US.add(top)
    try:
        modules = [importlib.import_module(module_name) for module_name in module_names]
        loaded.module = modules[0]
        loaded.entry_points = _merged([entry_points_of(top) for top in tops])
    except Exception as exc:  # anything raised by the author's code at import
        loaded.module = None
        loaded.error = _describe(exc, source)
        return loaded
    real = _compat.real_opensoar_in(modules)
    if real is not None:
        loaded.module, loaded.entry_points = None, []
        loaded.error = LoadError(
            "ImportError",
            f"the playbook imports the real OpenSOAR package ({real}), whose @playbook "
            "registers with OpenSOAR's engine, so kubesoar would find no entry points in it: "
            "uninstall opensoar from this environment; kubesoar provides the opensoar module "
            "itself (docs/migrating-from-opensoar.md)",
            None,
            None,
        )
    return loaded


def _merged(groups: list[list[EntryPoint]]) -> list[EntryPoint]:
    """Entry points of several top-level modules, in run order; names must be unique."""
    seen: dict[str, EntryPoint] = {}
    for entry in (entry for group in groups for entry in group):
        if entry.name in seen:
            raise ValueError(
                f"two entry points are named {entry.name!r} "
                f"({seen[entry.name].module} and {entry.module}); pass name= to one of them"
            )
        seen[entry.name] = entry
    return sorted(seen.values(), key=lambda e: (e.order, e.sequence))


def _is_test_file(path: Path) -> bool:
    return (
        path.name == "conftest.py" or path.stem.startswith("test_") or path.stem.endswith("_test")
    )


def folder_modules(folder: Path) -> tuple[Path, list[str]]:
    """The modules of a playbook folder, as OpenSOAR finds them: every `.py` file
    below it whose name does not start with `_`, tests (`test_*.py`, `*_test.py`,
    `conftest.py`) aside. Returns the folder to put on `sys.path` and the
    dotted names (under the folder's package name when it has `__init__.py`)."""
    folder = folder.resolve()
    package = (folder / "__init__.py").is_file()
    base = folder.parent if package else folder
    names = []
    for path in sorted(folder.rglob("*.py")):
        relative = path.relative_to(folder)
        if path.name.startswith("_") or _is_test_file(path):
            continue
        if any(part.startswith((".", "_")) for part in relative.parts[:-1]):
            continue
        dotted = ".".join(relative.with_suffix("").parts)
        names.append(f"{folder.name}.{dotted}" if package else dotted)
    return base, names


def load_target(target: str) -> LoadedModule:
    """Load what a user names on the command line: a `.py` file, a folder
    (every module in it, as OpenSOAR loads its playbook folders), or a module
    importable from the current directory."""
    path = Path(target)
    if path.suffix == ".py" and path.is_file():
        return load_module(path.stem, path.parent)
    if path.is_dir():
        base, names = folder_modules(path)
        if (path / "__init__.py").is_file():
            names.insert(0, path.resolve().name)  # the package itself first
        if not names:
            loaded = LoadedModule(name=path.resolve().name, source_dir=base)
            loaded.error = LoadError(
                "FileNotFoundError", f"no Python modules in the folder {target}", None, None
            )
            return loaded
        return load_modules(path.resolve().name, names, base)
    return load_module(target, Path(os.getcwd()))
