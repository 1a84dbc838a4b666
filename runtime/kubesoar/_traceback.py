"""A failed run's traceback as its author needs it: the playbook's own frames
first, each as `file:line in function`, then the rest; redacted and bounded.

"Own" frames are those of the playbook's source folder (the folder its
top-level module was imported from), minus anything installed there (a
virtualenv inside the folder), the standard library and kubesoar itself. The
innermost own frame is the line to look at; `Failure.where` names it.
"""

from __future__ import annotations

import inspect
import sys
import sysconfig
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from kubesoar._redact import redact

__all__ = ["MAX_TRACEBACK_CHARS", "Failure", "describe_failure", "playbook_root"]

MAX_TRACEBACK_CHARS: Final = 8000
# A deep recursion must not make a record of thousands of frames.
MAX_FRAMES_PER_SECTION: Final = 30
_KUBESOAR_DIR: Final = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Failure:
    """`where`: the innermost own frame (`triage.py:12 in triage`), or None when
    no own frame is on the stack; `traceback`: the text for the run record."""

    where: str | None
    traceback: str


def playbook_root(func: Callable[..., Any]) -> Path | None:
    """The folder the playbook's top-level module or package was imported from."""
    module = sys.modules.get(getattr(inspect.unwrap(func), "__module__", "") or "")
    if module is None:
        return None
    top = sys.modules.get(module.__name__.split(".")[0], module)
    filename = getattr(top, "__file__", None)
    if not filename:
        return None
    path = Path(filename).resolve()
    # A package's __file__ is its __init__.py: the root is the package's parent.
    return path.parent.parent if path.name == "__init__.py" else path.parent


def _not_own_dirs() -> list[Path]:
    paths = sysconfig.get_paths()
    dirs = {paths.get(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    return [Path(d).resolve() for d in dirs if d] + [_KUBESOAR_DIR]


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _is_own(filename: str, root: Path | None, not_own: list[Path]) -> bool:
    if filename.startswith("<"):  # <frozen ...>, <string>
        return False
    path = Path(filename).resolve()
    if any(_under(path, d) for d in not_own) or {"site-packages", "dist-packages"} & set(
        path.parts
    ):
        return False
    return root is None or _under(path, root)


def _shown_name(filename: str, root: Path | None) -> str:
    if root is not None:
        try:
            return str(Path(filename).resolve().relative_to(root))
        except ValueError:
            pass
    return filename


def _frame_lines(frames: Iterable[traceback.FrameSummary], root: Path | None) -> list[str]:
    lines: list[str] = []
    for frame in frames:
        lines.append(f"  {_shown_name(frame.filename, root)}:{frame.lineno} in {frame.name}")
        if frame.line:
            lines.append(f"    {frame.line.strip()}")
    return lines


def _last(frames: list[traceback.FrameSummary]) -> list[traceback.FrameSummary]:
    # The innermost frames say most; a recursion keeps only its deepest calls.
    return frames[-MAX_FRAMES_PER_SECTION:]


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    seen = {id(exc)}
    current: BaseException | None = exc
    while current is not None:
        nxt = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        chain.append(nxt)
        current = nxt
    return chain


def describe_failure(
    exc: BaseException,
    *,
    root: Path | None,
    secrets: Iterable[str] = (),
    skip_outer: int = 0,
) -> Failure:
    """The failure of `exc` for a run record. `skip_outer` drops the caller's
    own frames at the top of the stack (the engine's)."""
    not_own = _not_own_dirs()
    frames = list(traceback.extract_tb(exc.__traceback__))[skip_outer:]
    own = [f for f in frames if _is_own(f.filename, root, not_own)]
    other = [f for f in frames if not _is_own(f.filename, root, not_own)]
    where = None
    if own:
        inner = own[-1]
        where = f"{_shown_name(inner.filename, root)}:{inner.lineno} in {inner.name}"
    lines: list[str] = []
    if own:
        lines.append("Playbook frames (most recent call last):")
        lines += _frame_lines(_last(own), root)
    if other:
        lines.append("Other frames (most recent call last):")
        lines += _frame_lines(_last(other), root)
    lines.append("".join(traceback.format_exception_only(exc)).strip())
    for cause in _causes(exc):
        cause_frames = traceback.extract_tb(cause.__traceback__)
        cause_own = [f for f in cause_frames if _is_own(f.filename, root, not_own)]
        cause_text = "".join(traceback.format_exception_only(cause)).strip()
        lines.append(f"Caused by: {cause_text}")
        lines += _frame_lines(_last(cause_own), root)
    text = redact("\n".join(lines), secrets)
    if len(text) > MAX_TRACEBACK_CHARS:
        # Keep both ends: the playbook's frames open it, the exception closes it.
        half = MAX_TRACEBACK_CHARS // 2 - 20
        text = f"{text[:half]}\n… (truncated) …\n{text[-half:]}"
    return Failure(where=redact(where, secrets) if where else None, traceback=text)
