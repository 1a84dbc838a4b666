"""`opensoar.playbook`: OpenSOAR's decorator on kubesoar's engine.

An entry point registered here receives an `OpenSOARAlert` (not kubesoar's
typed `Alert`), its conditions match OpenSOAR's field names and values, its
`trigger` defaults to None (OpenSOAR's default: run only when named), and
`priority` takes OpenSOAR's words. `action` is kubesoar's own: its signature
and retry formula are OpenSOAR's already.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any, Final, TypeVar

from kubesoar import _sdk
from kubesoar._alert import Alert
from kubesoar._context import current_context
from kubesoar._opensoar_alert import OpenSOARAlert, OpenSOARCondition

__all__ = ["PRIORITY_WORDS", "is_opensoar_entry", "playbook"]

F = TypeVar("F", bound=Callable[..., Any])

# OpenSOAR's playbook priorities, onto kubesoar's integer (higher runs first
# among entry points of equal `order` in the router).
PRIORITY_WORDS: Final = {"high": 10, "default": 0, "low": -10}
OPENSOAR_ATTRIBUTE: Final = _sdk.OPENSOAR_FIELDS
# OpenSOAR playbooks reach its database through SQLAlchemy before `opensoar.db`.
DATABASE_MODULES: Final = frozenset({"sqlalchemy", "asyncpg"})
DATABASE_NOTE: Final = (
    "OpenSOAR playbooks use SQLAlchemy to reach OpenSOAR's database, which kubesoar does "
    "not have: change the alert with opensoar's update_current_alert / resolve_current_alert "
    "/ assign_current_alert / add_current_alert_comment (docs/migrating-from-opensoar.md)"
)


def _priority(value: str | int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value in PRIORITY_WORDS:
        return PRIORITY_WORDS[value]
    raise ValueError(
        f"Invalid playbook priority {value!r}; expected one of {tuple(PRIORITY_WORDS)}"
    )


def is_opensoar_entry(entry: _sdk.EntryPoint) -> bool:
    return bool(getattr(entry.func, OPENSOAR_ATTRIBUTE, False))


def playbook(
    trigger: str | None = None,
    *,
    conditions: dict[str, Any] | None = None,
    description: str = "",
    name: str | None = None,
    order: int = 1000,
    priority: str | int = "default",
) -> Callable[[F], F]:
    """OpenSOAR's `@playbook`; see the module docstring."""
    rank = _priority(priority)
    condition = OpenSOARCondition.compile(conditions)

    def decorate(func: F) -> F:
        async def with_view(alert: Alert) -> Any:
            ctx = current_context()
            view = OpenSOARAlert(alert, correlation_id=ctx.correlation_id if ctx else None)
            token = view.activate()
            try:
                if inspect.iscoroutinefunction(func):
                    return await func(view)
                result = await asyncio.to_thread(func, view)
                return await result if inspect.isawaitable(result) else result
            except ModuleNotFoundError as exc:
                if exc.name and exc.name.split(".")[0] in DATABASE_MODULES:
                    exc.add_note(DATABASE_NOTE)
                raise
            finally:
                view.deactivate(token)

        functools.update_wrapper(with_view, func)
        # The engine inspects the signature to decide whether to pass a context:
        # it must see `with_view`'s one parameter, not `func`'s.
        delattr(with_view, "__wrapped__")
        setattr(with_view, OPENSOAR_ATTRIBUTE, True)
        entry = _sdk.EntryPoint(
            name=name or func.__name__,
            func=with_view,
            trigger=trigger,
            condition=condition,
            order=order,
            priority=rank,
            description=description,
            timeout=None,
            module=func.__module__,
            sequence=_sdk.next_sequence(),
            wants_context=False,
        )
        _sdk.register(entry)
        setattr(func, _sdk.ENTRY_ATTRIBUTE, entry)
        return func

    return decorate
