"""The decorators authors write: `@playbook` marks an entry point, `@action`
wraps a step with a timeout, retries and attempt tracking.

Signatures and defaults follow OpenSOAR's (`trigger` first, `order=1000`,
`timeout=300`, `retries=0`, `retry_backoff=1.0`, waiting `retry_backoff **
attempt` seconds between attempts) so playbooks written for it load unchanged.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, ParamSpec, TypeVar, cast

from kubesoar._conditions import Condition, compile_conditions
from kubesoar._context import BackoffSleep, current_context, known_secret_values
from kubesoar._redact import redact
from kubesoar._secrets import SecretNotFound

__all__ = [
    "ActionSpec",
    "EntryPoint",
    "action",
    "backoff_delay",
    "entry_points_of",
    "playbook",
]

P = ParamSpec("P")
R = TypeVar("R")

MAX_BACKOFF_SECONDS: Final = 60.0
ENTRY_ATTRIBUTE: Final = "__kubesoar_playbook__"
ACTION_ATTRIBUTE: Final = "__kubesoar_action__"
# Set (by kubesoar._opensoar_sdk) on entry points whose conditions name OpenSOAR's fields.
OPENSOAR_FIELDS: Final = "__kubesoar_opensoar__"

# Entry points by the module that defined them, in definition order. The
# loader forgets a module's entries before (re)importing it.
_REGISTRY: dict[str, list[EntryPoint]] = {}
_sequence = 0

# The process-wide way actions wait between attempts when the run context
# does not say (None: `asyncio.sleep`, looked up when called).
# `kubesoar.testing`'s `no_backoff` fixture swaps it for a recorder.
default_backoff_sleep: BackoffSleep | None = None


@dataclass(frozen=True)
class EntryPoint:
    """A function decorated with `@playbook`, with its routing metadata."""

    name: str
    func: Callable[..., Any]
    trigger: str | None
    condition: Condition
    order: int
    priority: int
    description: str
    timeout: float | None
    module: str
    sequence: int
    wants_context: bool = field(default=False)

    @property
    def conditions(self) -> dict[str, Any]:
        return self.condition.spec

    def triggered_by(self, source: str) -> bool:
        """OpenSOAR's rule: `webhook` takes every alert, `<source>` and
        `<source>.alert` take that source's alerts."""
        return self.trigger in {"webhook", source, f"{source}.alert"}

    def describe(self) -> dict[str, Any]:
        """The entry point as the report and `status.playbooks` show it."""
        return {
            "name": self.name,
            "trigger": self.trigger,
            "conditions": self.conditions,
            "order": self.order,
            "priority": self.priority,
            "description": self.description,
            "fields": "opensoar" if getattr(self.func, OPENSOAR_FIELDS, False) else "kubesoar",
        }


@dataclass(frozen=True)
class ActionSpec:
    name: str
    timeout: float | None
    retries: int
    retry_backoff: float
    description: str


def _first_doc_line(func: Callable[..., Any]) -> str:
    doc = inspect.getdoc(func) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _accepts_context(func: Callable[..., Any]) -> bool:
    try:
        parameters = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    variadic = any(p.kind is p.VAR_POSITIONAL for p in parameters)
    return variadic or len(positional) >= 2


def playbook(
    trigger: str | None = "webhook",
    *,
    conditions: dict[str, Any] | None = None,
    description: str = "",
    name: str | None = None,
    order: int = 1000,
    priority: int = 0,
    timeout: float | None = None,
    enabled: bool = True,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Mark `func(alert)` or `func(alert, ctx)` as an entry point.

    The conditions are compiled here, so a malformed spec fails the import
    with the playbook's own line number. `timeout` (seconds) overrides the
    runtime's default per-run timeout for this entry point.
    """
    condition = compile_conditions(conditions)
    if timeout is not None and timeout <= 0:
        raise ValueError("playbook timeout must be positive")

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        entry = EntryPoint(
            name=name or func.__name__,
            func=func,
            trigger=trigger,
            condition=condition,
            order=order,
            priority=priority,
            description=description or _first_doc_line(func),
            timeout=timeout,
            module=func.__module__,
            sequence=next_sequence(),
            wants_context=_accepts_context(func),
        )
        setattr(func, ENTRY_ATTRIBUTE, entry)
        if enabled:
            register(entry)
        return func

    return decorate


def next_sequence() -> int:
    """The next definition number (ties in `order` run in definition order)."""
    global _sequence
    _sequence += 1
    return _sequence


def register(entry: EntryPoint) -> None:
    """Add an entry point to its module's list (the `opensoar` alias builds its own)."""
    _REGISTRY.setdefault(entry.module, []).append(entry)


def forget_module(module_name: str) -> None:
    """Drop the entries of a module and its submodules (before a reload)."""
    for key in [k for k in _REGISTRY if k == module_name or k.startswith(module_name + ".")]:
        del _REGISTRY[key]


def entry_points_of(module_name: str) -> list[EntryPoint]:
    """Entry points defined by a module and its submodules, in run order.

    Raises ValueError when two share a name: names are how the router asks
    for them.
    """
    found = [
        entry
        for key, entries in _REGISTRY.items()
        if key == module_name or key.startswith(module_name + ".")
        for entry in entries
    ]
    seen: dict[str, EntryPoint] = {}
    for entry in found:
        if entry.name in seen:
            raise ValueError(
                f"two entry points are named {entry.name!r} "
                f"({seen[entry.name].module} and {entry.module}); pass name= to one of them"
            )
        seen[entry.name] = entry
    return sorted(found, key=lambda e: (e.order, e.sequence))


def action(
    name: str | None = None,
    *,
    timeout: float | None = 300,
    retries: int = 0,
    retry_backoff: float = 1.0,
    description: str = "",
) -> Callable[[Callable[P, Awaitable[R]] | Callable[P, R]], Callable[P, Awaitable[R]]]:
    """Wrap a step: per-attempt timeout, `retries` more attempts on failure,
    waiting `retry_backoff ** attempt` seconds (capped at a minute) between
    them. Every attempt is recorded on the current run."""
    if retries < 0:
        raise ValueError("action retries must be >= 0")
    if retry_backoff < 0:
        raise ValueError("action retry_backoff must be >= 0")
    if timeout is not None and timeout <= 0:
        raise ValueError("action timeout must be positive")

    def decorate(func: Callable[P, Awaitable[R]] | Callable[P, R]) -> Callable[P, Awaitable[R]]:
        spec = ActionSpec(
            name=name or func.__name__,
            timeout=timeout,
            retries=retries,
            retry_backoff=retry_backoff,
            description=description or _first_doc_line(func),
        )
        is_async = inspect.iscoroutinefunction(func)

        @functools.wraps(func)
        async def run_action(*args: P.args, **kwargs: P.kwargs) -> R:
            ctx = current_context()
            journal = ctx.journal if ctx is not None else None
            seq = journal.next_seq() if journal is not None else 0
            if journal is not None:
                recorded = journal.replay(seq, spec.name)
                if recorded is not None:
                    # An earlier attempt of this run completed it: not again.
                    _record(spec, 0, "replayed", datetime.now(UTC), time.perf_counter(), None)
                    return cast(R, recorded.result)
            for attempt in range(1, spec.retries + 2):
                started = datetime.now(UTC)
                clock = time.perf_counter()
                try:
                    async with asyncio.timeout(spec.timeout):
                        if is_async:
                            result = await cast(Callable[P, Awaitable[R]], func)(*args, **kwargs)
                        else:
                            result = await asyncio.to_thread(
                                cast(Callable[P, R], func), *args, **kwargs
                            )
                except Exception as exc:
                    status = "timeout" if isinstance(exc, TimeoutError) else "failed"
                    error = (
                        f"timed out after {spec.timeout}s"
                        if status == "timeout"
                        else redact(
                            "".join(traceback.format_exception_only(exc)).strip(),
                            known_secret_values(),
                        )
                    )
                    _record(spec, attempt, status, started, clock, error)
                    # A missing secret is configuration, not a passing failure:
                    # retrying only delays the message that names it.
                    if attempt > spec.retries or isinstance(exc, SecretNotFound):
                        if status == "timeout":
                            raise TimeoutError(f"action {spec.name} {error}") from exc
                        raise
                    await _backoff(backoff_delay(spec.retry_backoff, attempt))
                    continue
                _record(spec, attempt, "succeeded", started, clock, None)
                if journal is not None:
                    await journal.record(seq, spec.name, result)
                return result
            raise AssertionError("unreachable")  # pragma: no cover

        setattr(run_action, ACTION_ATTRIBUTE, spec)
        return run_action

    return decorate


def backoff_delay(retry_backoff: float, attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based):
    `retry_backoff ** attempt`, capped at a minute (OpenSOAR's formula)."""
    return float(min(retry_backoff**attempt, MAX_BACKOFF_SECONDS))


async def _backoff(delay: float) -> None:
    ctx = current_context()
    sleep = ctx.backoff_sleep if ctx is not None else None
    if sleep is None:
        sleep = default_backoff_sleep
    if sleep is None:
        await asyncio.sleep(delay)  # looked up now, so a monkeypatch is seen
    else:
        await sleep(delay)


def _record(
    spec: ActionSpec,
    attempt: int,
    status: str,
    started: datetime,
    clock: float,
    error: str | None,
) -> None:
    ctx = current_context()
    if ctx is None:
        return
    ctx.record_attempt(
        {
            "action": spec.name,
            "attempt": attempt,
            "status": status,
            "started": started.isoformat(),
            "durationSeconds": round(time.perf_counter() - clock, 6),
            "error": error,
        }
    )
