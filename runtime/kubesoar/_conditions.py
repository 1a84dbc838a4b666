"""The condition language: which alerts an entry point (or a route) accepts.

Shared by the runtime (which entry points of a module an alert triggers) and the
router (which Playbooks an alert is delivered to), so a route means the same
thing everywhere. A spec is compiled once into small objects holding closures;
matching an alert walks them without re-parsing anything.

Semantics (a superset of OpenSOAR's `conditions`):

- ``None`` or ``{}`` matches every alert.
- Top-level keys are AND-ed. A key is a dotted path into the alert
  (``raw.event.category``, ``iocs.ips``) or a group: ``$any: [cond, ...]``
  (any-of), ``$all: [cond, ...]`` (all-of), ``$not: cond``.
- A scalar value means equality; a list value means membership (the alert's
  scalar is in the list) or overlap (the alert's list shares an element).
  A scalar against an alert list means "contains" (``{"tags": "phishing"}``).
- A dict whose keys all start with ``$`` is an operator set, AND-ed: ``$eq $ne
  $gt $gte $lt $lte $in $nin $regex $contains $exists $not``. A dict without
  ``$`` keys is a nested condition relative to that path.
- A missing field never satisfies a test, negative ones included (``$ne``,
  ``$nin``): absence is matched only explicitly, with ``$exists: false`` or
  with ``$not`` (field-level or group-level), which negates the whole test.
- Strings compare case-sensitively, except on the top-level ``severity`` path:
  there both sides are lower-cased and ``$gt``/``$gte``/``$lt``/``$lte`` use the
  rank ``info < low < medium < high < critical``.
- ``$regex`` uses ``re.search`` (anchor with ``^``/``$`` yourself, inline flags
  such as ``(?i)`` work); patterns are compiled once and capped in length.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

__all__ = [
    "MISSING",
    "SEVERITY_RANK",
    "Condition",
    "ConditionError",
    "compile_conditions",
    "lookup_path",
    "normalize_anchor",
]

MAX_REGEX_LENGTH: Final = 512
MAX_DEPTH: Final = 16
SEVERITY_PATH: Final = "severity"
SEVERITY_RANK: Final[Mapping[str, int]] = {
    "info": 0,
    "low": 1,
    "medium": 2,
    "high": 3,
    "critical": 4,
}

_SCALARS = (str, int, float, bool, type(None))
_FIELD_OPERATORS = frozenset(
    {
        "$eq",
        "$ne",
        "$gt",
        "$gte",
        "$lt",
        "$lte",
        "$in",
        "$nin",
        "$regex",
        "$contains",
        "$exists",
        "$not",
    }
)
_GROUPS = frozenset({"$any", "$all", "$not"})


class ConditionError(ValueError):
    """A conditions spec is malformed; the message names the offending key."""


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Final = _Missing()
"""What `lookup_path` returns for a path that is not in the alert."""

Predicate = Callable[[Any], bool]


def lookup_path(alert: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, or `MISSING`.

    Raw payloads sometimes use dotted keys literally (Elastic's flattened
    ``event.category``), so when a segment is absent the longer joined key is
    tried too.
    """
    return _lookup(alert, tuple(path.split(".")))


def _lookup(current: Any, parts: tuple[str, ...]) -> Any:
    for index, part in enumerate(parts):
        if not isinstance(current, Mapping):
            return MISSING
        if part in current:
            current = current[part]
            continue
        # Slow path, only on a miss: try "a.b" as one key.
        for end in range(len(parts), index + 1, -1):
            joined = ".".join(parts[index:end])
            if joined in current:
                return _lookup(current[joined], parts[end:])
        return MISSING
    return current


def normalize_anchor(value: Any) -> str:
    """The string form used for index keys (`Condition.anchors`).

    The router applies the same function to an alert's value (to each element
    when it is a list) before looking routes up, so spec ``1`` and alert
    ``1.0`` share a key. Severities are lower-cased, as in matching.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def _equal(actual: Any, expected: Any) -> bool:
    # bool is an int in Python; `True == 1` must not make a match.
    if isinstance(actual, bool) != isinstance(expected, bool):
        return False
    return bool(actual == expected)


def _comparable(actual: Any, expected: Any) -> bool:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return False
    numbers = (int, float)
    if isinstance(actual, numbers) and isinstance(expected, numbers):
        return True
    return isinstance(actual, str) and isinstance(expected, str)


def _severity_value(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _severity_rank(value: Any) -> Any:
    if isinstance(value, str):
        return SEVERITY_RANK.get(value.lower(), MISSING)
    return value


def _each(actual: Any) -> Iterable[Any]:
    """An alert value as the elements a test looks at (a list tests each)."""
    return actual if isinstance(actual, list) else (actual,)


class _Node:
    """A compiled test against a whole alert."""

    __slots__ = ()

    def matches(self, alert: Mapping[str, Any]) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def explain(self, alert: Mapping[str, Any]) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError


class _FieldNode(_Node):
    __slots__ = ("describe", "parts", "path", "predicate")

    def __init__(self, path: str, predicate: Predicate, describe: str) -> None:
        self.path = path
        self.parts = tuple(path.split("."))
        self.predicate = predicate
        self.describe = describe

    def matches(self, alert: Mapping[str, Any]) -> bool:
        return self.predicate(_lookup(alert, self.parts))

    def explain(self, alert: Mapping[str, Any]) -> list[str]:
        actual = _lookup(alert, self.parts)
        if self.predicate(actual):
            return []
        shown = "missing" if actual is MISSING else _short(actual)
        return [f"{self.path}: is {shown}, wanted {self.describe}"]


class _AllNode(_Node):
    __slots__ = ("children",)

    def __init__(self, children: list[_Node]) -> None:
        self.children = tuple(children)

    def matches(self, alert: Mapping[str, Any]) -> bool:
        for child in self.children:
            if not child.matches(alert):
                return False
        return True

    def explain(self, alert: Mapping[str, Any]) -> list[str]:
        reasons: list[str] = []
        for child in self.children:
            reasons.extend(child.explain(alert))
        return reasons


class _AnyNode(_Node):
    __slots__ = ("children",)

    def __init__(self, children: list[_Node]) -> None:
        self.children = tuple(children)

    def matches(self, alert: Mapping[str, Any]) -> bool:
        for child in self.children:
            if child.matches(alert):
                return True
        return False

    def explain(self, alert: Mapping[str, Any]) -> list[str]:
        if self.matches(alert):
            return []
        parts = ["; ".join(child.explain(alert)) for child in self.children]
        return ["$any: none matched (" + " | ".join(parts) + ")"]


class _NotNode(_Node):
    __slots__ = ("child",)

    def __init__(self, child: _Node) -> None:
        self.child = child

    def matches(self, alert: Mapping[str, Any]) -> bool:
        return not self.child.matches(alert)

    def explain(self, alert: Mapping[str, Any]) -> list[str]:
        if self.child.matches(alert):
            return ["$not: the negated condition matched"]
        return []


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Condition:
    """A compiled conditions spec. Build it with `compile_conditions`."""

    __slots__ = ("_anchors", "_root", "spec")

    def __init__(
        self, spec: dict[str, Any], root: _Node, anchors: list[tuple[str, frozenset[Any]]]
    ):
        self.spec = spec
        self._root = root
        self._anchors = anchors

    def matches(self, alert: Mapping[str, Any]) -> bool:
        return self._root.matches(alert)

    def explain(self, alert: Mapping[str, Any]) -> list[str]:
        """Why the alert does not match; empty when it does."""
        return self._root.explain(alert)

    def anchors(self) -> list[tuple[str, frozenset[Any]]]:
        """Top-level (path, allowed values) pairs an alert must satisfy.

        A necessary condition only, for indexing: an alert can match only if
        `normalize_anchor` of its value at `path` (of some element, for a list)
        is in the set. Callers still confirm with `matches`.
        """
        return list(self._anchors)

    def __repr__(self) -> str:
        return f"Condition({_short(self.spec, 200)})"


def compile_conditions(conditions: Mapping[str, Any] | None) -> Condition:
    """Compile a spec; raises `ConditionError` naming the key when malformed."""
    if conditions is None:
        conditions = {}
    if not isinstance(conditions, Mapping):
        raise ConditionError(f"conditions: must be a mapping, got {type(conditions).__name__}")
    spec = _json_copy(conditions, "conditions")
    anchors: list[tuple[str, frozenset[Any]]] = []
    root = _compile_mapping(spec, prefix="", where="conditions", depth=0, anchors=anchors)
    return Condition(spec, root, anchors)


def _json_copy(value: Any, where: str) -> Any:
    if isinstance(value, Mapping):
        copied: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise ConditionError(f"{where}: keys must be non-empty strings, got {key!r}")
            copied[key] = _json_copy(item, f"{where}.{key}")
        return copied
    if isinstance(value, list | tuple):
        return [_json_copy(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        raise ConditionError(f"{where}: numbers must be finite")
    if isinstance(value, _SCALARS):
        return value
    raise ConditionError(f"{where}: unsupported value of type {type(value).__name__}")


def _compile_mapping(
    spec: Mapping[str, Any],
    *,
    prefix: str,
    where: str,
    depth: int,
    anchors: list[tuple[str, frozenset[Any]]] | None,
) -> _Node:
    if depth > MAX_DEPTH:
        raise ConditionError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    children: list[_Node] = []
    for key, value in spec.items():
        here = f"{where}.{key}"
        if key.startswith("$"):
            children.append(_compile_group(key, value, prefix, here, depth))
            continue
        if any(not part for part in key.split(".")):
            raise ConditionError(f"{here}: empty segment in dotted path")
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and not _is_operator_set(value, here):
            children.append(
                _compile_mapping(
                    value, prefix=f"{path}.", where=here, depth=depth + 1, anchors=anchors
                )
            )
            continue
        predicate, describe = _compile_field(path, value, here)
        children.append(_FieldNode(path, predicate, describe))
        if anchors is not None:
            anchor = _anchor_values(path, value)
            if anchor is not None:
                anchors.append((path, anchor))
    if len(children) == 1:
        return children[0]
    return _AllNode(children)


def _is_operator_set(value: Mapping[str, Any], where: str) -> bool:
    dollar = [key.startswith("$") for key in value]
    if all(dollar):
        return True
    if any(dollar):
        raise ConditionError(f"{where}: cannot mix operators ($...) and field names in one mapping")
    return False


def _compile_group(key: str, value: Any, prefix: str, where: str, depth: int) -> _Node:
    if key not in _GROUPS:
        raise ConditionError(f"{where}: unknown group {key!r} (expected one of {sorted(_GROUPS)})")
    if key == "$not":
        if not isinstance(value, Mapping) or not value:
            raise ConditionError(f"{where}: must be a non-empty mapping of conditions")
        return _NotNode(
            _compile_mapping(value, prefix=prefix, where=where, depth=depth + 1, anchors=None)
        )
    if not isinstance(value, list) or not value:
        raise ConditionError(f"{where}: must be a non-empty list of conditions")
    children = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise ConditionError(f"{where}[{index}]: must be a mapping of conditions")
        children.append(
            _compile_mapping(
                item, prefix=prefix, where=f"{where}[{index}]", depth=depth + 1, anchors=None
            )
        )
    return _AnyNode(children) if key == "$any" else _AllNode(children)


def _anchor_values(path: str, value: Any) -> frozenset[Any] | None:
    allowed: list[Any] | None = None
    if isinstance(value, list):
        allowed = value
    elif isinstance(value, _SCALARS):
        allowed = [value]
    elif isinstance(value, Mapping):
        if "$eq" in value:
            allowed = [value["$eq"]]
        elif "$in" in value:
            allowed = list(value["$in"])
    if allowed is None or any(not isinstance(item, _SCALARS) for item in allowed):
        return None
    if path == SEVERITY_PATH:
        allowed = [_severity_value(item) for item in allowed]
    return frozenset(normalize_anchor(item) for item in allowed)


def _compile_field(path: str, value: Any, where: str) -> tuple[Predicate, str]:
    """A predicate over the looked-up value (which may be MISSING)."""
    severity = path == SEVERITY_PATH
    if isinstance(value, Mapping):
        if not value:
            raise ConditionError(f"{where}: empty operator mapping")
        tests = [_compile_operator(op, arg, severity, f"{where}.{op}") for op, arg in value.items()]
        if len(tests) == 1:
            return tests[0]
        predicates = tuple(test for test, _ in tests)

        def all_of(actual: Any) -> bool:
            for predicate in predicates:
                if not predicate(actual):
                    return False
            return True

        return all_of, " and ".join(describe for _, describe in tests)
    if isinstance(value, list):
        return _compile_operator("$in", value, severity, where)
    return _compile_operator("$eq", value, severity, where)


def _compile_operator(op: str, arg: Any, severity: bool, where: str) -> tuple[Predicate, str]:
    if op not in _FIELD_OPERATORS:
        raise ConditionError(
            f"{where}: unknown operator {op!r} (expected one of {sorted(_FIELD_OPERATORS)})"
        )
    if op == "$exists":
        if not isinstance(arg, bool):
            raise ConditionError(f"{where}: must be true or false")
        if arg:
            return (lambda actual: actual is not MISSING), "present"
        return (lambda actual: actual is MISSING), "absent"
    if op == "$not":
        inner, describe = _compile_field("severity" if severity else "", arg, where)
        return (lambda actual: not inner(actual)), f"not ({describe})"
    if op == "$regex":
        return _compile_regex(arg, where)
    if op in {"$in", "$nin"}:
        return _compile_membership(op, arg, severity, where)
    if not isinstance(arg, _SCALARS):
        raise ConditionError(f"{where}: must be a scalar (string, number, boolean or null)")
    if op in {"$gt", "$gte", "$lt", "$lte"}:
        return _compile_comparison(op, arg, severity, where)
    if severity:
        arg = _severity_value(arg)
    expected = arg
    norm = _severity_value if severity else None
    if op == "$eq":

        def equals(actual: Any) -> bool:
            if actual is MISSING:
                return False
            for item in _each(actual):
                if _equal(norm(item) if norm else item, expected):
                    return True
            return False

        return equals, f"{_short(expected)}"
    if op == "$ne":

        def differs(actual: Any) -> bool:
            if actual is MISSING:
                return False
            for item in _each(actual):
                if _equal(norm(item) if norm else item, expected):
                    return False
            return True

        return differs, f"not {_short(expected)}"
    # $contains: substring of a string, or element of a list.

    def contains(actual: Any) -> bool:
        if isinstance(actual, str):
            return isinstance(expected, str) and expected in actual
        if isinstance(actual, list):
            return any(_equal(item, expected) for item in actual)
        return False

    return contains, f"containing {_short(expected)}"


def _compile_membership(op: str, arg: Any, severity: bool, where: str) -> tuple[Predicate, str]:
    if not isinstance(arg, list):
        raise ConditionError(f"{where}: must be a list")
    for index, item in enumerate(arg):
        if not isinstance(item, _SCALARS):
            raise ConditionError(f"{where}[{index}]: list items must be scalars")
    values = [_severity_value(item) for item in arg] if severity else list(arg)
    # A set answers most lookups in O(1); bools are kept apart so True != 1.
    hashable = frozenset((isinstance(v, bool), v) for v in values)
    norm = _severity_value if severity else None

    def is_member(item: Any) -> bool:
        if norm is not None:
            item = norm(item)
        try:
            return (isinstance(item, bool), item) in hashable
        except TypeError:  # unhashable alert value (a dict inside a list)
            return False

    if op == "$in":

        def member(actual: Any) -> bool:
            if actual is MISSING:
                return False
            return any(is_member(item) for item in _each(actual))

        return member, f"one of {_short(values)}"

    def not_member(actual: Any) -> bool:
        if actual is MISSING:
            return False
        return not any(is_member(item) for item in _each(actual))

    return not_member, f"none of {_short(values)}"


def _compile_comparison(op: str, arg: Any, severity: bool, where: str) -> tuple[Predicate, str]:
    if severity:
        if not isinstance(arg, str) or arg.lower() not in SEVERITY_RANK:
            raise ConditionError(f"{where}: must be one of {list(SEVERITY_RANK)}")
        expected: Any = SEVERITY_RANK[arg.lower()]
    else:
        if arg is None or isinstance(arg, bool):
            raise ConditionError(f"{where}: must be a number or a string")
        expected = arg
    compare: Callable[[Any, Any], bool] = {
        "$gt": lambda a, b: a > b,
        "$gte": lambda a, b: a >= b,
        "$lt": lambda a, b: a < b,
        "$lte": lambda a, b: a <= b,
    }[op]
    norm = _severity_rank if severity else None

    def ordered(actual: Any) -> bool:
        if actual is MISSING:
            return False
        for item in _each(actual):
            if norm is not None:
                item = norm(item)
            if _comparable(item, expected) and compare(item, expected):
                return True
        return False

    symbol = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}[op]
    return ordered, f"{symbol} {_short(arg)}"


def _compile_regex(arg: Any, where: str) -> tuple[Predicate, str]:
    if not isinstance(arg, str):
        raise ConditionError(f"{where}: must be a string pattern")
    if len(arg) > MAX_REGEX_LENGTH:
        raise ConditionError(f"{where}: pattern longer than {MAX_REGEX_LENGTH} characters")
    try:
        pattern = re.compile(arg)
    except re.error as exc:
        raise ConditionError(f"{where}: invalid regular expression: {exc}") from None
    search = pattern.search

    def found(actual: Any) -> bool:
        for item in _each(actual):
            if isinstance(item, str) and search(item) is not None:
                return True
        return False

    return found, f"matching /{arg}/"
