"""Which Playbooks of a namespace an alert goes to, without testing every route.

Each entry point (from a Playbook's `status.playbooks`) is a route with a
compiled `Condition`. Routes are indexed by one of their anchors (a top-level
path whose value must be in a set, from `Condition.anchors`): an alert only has
its routes under the values it actually holds confirmed with `matches`, plus the
routes no anchor covers. So matching cost follows the candidates, not the
number of Playbooks. The index is immutable; the watch side builds a new one
when a Playbook changes.

Triggers follow the runtime (OpenSOAR's rule): `webhook` takes every alert,
`<source>` and `<source>.alert` take the alerts whose normalised `source` is
that (`elastic`, `splunk`, `defender`, `generic` or what a generic sender set);
an entry point without a trigger is never routed.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubesoar._conditions import (
    MISSING,
    SEVERITY_PATH,
    Condition,
    ConditionError,
    compile_conditions,
    lookup_path,
    normalize_anchor,
)
from kubesoar._opensoar_alert import OpenSOARCondition

logger = logging.getLogger("kubesoar.router")

ANY_TRIGGER = "webhook"


def trigger_accepts(trigger: str | None, alert_source: Any) -> bool:
    """The same rule as the runtime's `EntryPoint.triggered_by`."""
    if trigger is None:
        return False
    return trigger == ANY_TRIGGER or trigger == alert_source or trigger == f"{alert_source}.alert"


@dataclass(frozen=True)
class Route:
    """One entry point of one Playbook."""

    playbook: str
    entry: str
    trigger: str | None
    condition: Condition
    order: int = 0
    priority: int = 0


@dataclass(frozen=True)
class Match:
    """The entry points of one Playbook an alert triggers, in run order."""

    playbook: str
    entries: tuple[str, ...]


def routes_from_status(playbook: str, entry_points: Iterable[Mapping[str, Any]]) -> list[Route]:
    """Routes from `status.playbooks`; an entry point whose conditions don't compile is
    skipped with a warning (the runtime reports the same error on the Playbook)."""
    routes = []
    for entry in entry_points:
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            continue
        try:
            if entry.get("fields") == "opensoar":
                # Written against OpenSOAR's alert record: matched on its field names
                # and severities, as the runtime will (kubesoar._opensoar_alert).
                condition: Condition = OpenSOARCondition.compile(entry.get("conditions") or {})
            else:
                condition = compile_conditions(entry.get("conditions") or {})
        except ConditionError as exc:
            logger.warning(
                "skipping entry point with bad conditions",
                extra={"playbook": playbook, "entry": name, "reason": str(exc)},
            )
            continue
        trigger = entry.get("trigger")
        routes.append(
            Route(
                playbook=playbook,
                entry=name,
                trigger=trigger if isinstance(trigger, str) else None,
                condition=condition,
                order=_int(entry.get("order")),
                priority=_int(entry.get("priority")),
            )
        )
    return routes


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(frozen=True)
class RouteIndex:
    routes: tuple[Route, ...] = ()
    # path -> anchor value -> positions in `routes`
    _by_anchor: dict[str, dict[str, tuple[int, ...]]] = field(default_factory=dict)
    _unanchored: tuple[int, ...] = ()

    @classmethod
    def build(cls, routes: Iterable[Route]) -> RouteIndex:
        ordered = tuple(sorted(routes, key=lambda r: (r.playbook, r.order, -r.priority, r.entry)))
        buckets: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        unanchored: list[int] = []
        for position, route in enumerate(ordered):
            anchors = route.condition.anchors()
            if not anchors:
                unanchored.append(position)
                continue
            # The anchor with the fewest values puts the route in the fewest buckets.
            path, values = min(anchors, key=lambda anchor: len(anchor[1]))
            for value in values:
                buckets[path][value].append(position)
        by_anchor = {
            path: {value: tuple(positions) for value, positions in values.items()}
            for path, values in buckets.items()
        }
        return cls(ordered, by_anchor, tuple(unanchored))

    def __len__(self) -> int:
        return len(self.routes)

    def candidates(self, alert: Mapping[str, Any]) -> list[int]:
        found: set[int] = set(self._unanchored)
        for path, buckets in self._by_anchor.items():
            value = lookup_path(alert, path)
            if value is MISSING:
                continue
            for item in value if isinstance(value, list) else (value,):
                if path == SEVERITY_PATH and isinstance(item, str):
                    item = item.lower()
                try:
                    positions = buckets.get(normalize_anchor(item))
                except TypeError:
                    continue
                if positions:
                    found.update(positions)
        return sorted(found)

    def match(self, alert: Mapping[str, Any]) -> list[Match]:
        """Matched entry points grouped by Playbook (Playbooks by name, entries by order)."""
        source = alert.get("source")
        matched: dict[str, list[str]] = {}
        for position in self.candidates(alert):
            route = self.routes[position]
            if trigger_accepts(route.trigger, source) and route.condition.matches(alert):
                matched.setdefault(route.playbook, []).append(route.entry)
        return [Match(playbook, tuple(entries)) for playbook, entries in matched.items()]
