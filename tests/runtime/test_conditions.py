"""The condition language shared by the runtime and the router: a table of
specs and alerts (OpenSOAR's rules first, then the operators), malformed specs,
explanations and the anchors the router indexes by."""

from __future__ import annotations

from typing import Any

import pytest
from kubesoar._conditions import (
    MISSING,
    ConditionError,
    compile_conditions,
    lookup_path,
    normalize_anchor,
)

ALERT: dict[str, Any] = {
    "title": "Suspicious login",
    "severity": "high",
    "source": "elastic",
    "score": 7.5,
    "count": 3,
    "enabled": True,
    "tags": ["phishing", "vip"],
    "iocs": {"ips": ["10.0.0.1", "192.0.2.7"], "domains": []},
    "hostname": None,
    "raw": {"event": {"category": "authentication"}, "user.name": "alice"},
}

CASES: list[tuple[str, dict[str, Any] | None, bool]] = [
    # OpenSOAR's rules: AND of keys, scalar equality, list membership/overlap.
    ("no conditions", None, True),
    ("empty conditions", {}, True),
    ("scalar equality", {"severity": "high"}, True),
    ("scalar inequality", {"severity": "low"}, False),
    ("list membership", {"severity": ["high", "critical"]}, True),
    ("list no membership", {"severity": ["low", "medium"]}, False),
    ("list overlap", {"tags": ["vip", "exec"]}, True),
    ("list no overlap", {"tags": ["malware"]}, False),
    ("scalar contained in alert list", {"tags": "phishing"}, True),
    ("keys are AND-ed", {"severity": "high", "source": "splunk"}, False),
    ("keys are AND-ed, all true", {"severity": "high", "source": "elastic"}, True),
    ("missing field never matches", {"rule_name": "x"}, False),
    ("missing field, list", {"rule_name": ["x", "y"]}, False),
    ("null value equals null", {"hostname": None}, True),
    ("case-sensitive strings", {"source": "Elastic"}, False),
    ("severity is case-insensitive", {"severity": "HIGH"}, True),
    ("bool is not 1", {"enabled": 1}, False),
    ("bool equality", {"enabled": True}, True),
    ("int equals float", {"count": 3.0}, True),
    # Dotted paths, nested mappings, literal dotted keys.
    ("dotted path", {"raw.event.category": "authentication"}, True),
    ("dotted path miss", {"raw.event.category": "network"}, False),
    ("nested mapping", {"raw": {"event": {"category": "authentication"}}}, True),
    ("literal dotted key", {"raw.user.name": "alice"}, True),
    ("dotted into list", {"iocs.ips": "192.0.2.7"}, True),
    ("path through scalar", {"title.x": "y"}, False),
    # Operators.
    ("$eq", {"source": {"$eq": "elastic"}}, True),
    ("$ne", {"source": {"$ne": "splunk"}}, True),
    ("$ne same", {"source": {"$ne": "elastic"}}, False),
    ("$ne on missing", {"rule_name": {"$ne": "x"}}, False),
    ("$ne on list", {"tags": {"$ne": "vip"}}, False),
    ("$gt number", {"score": {"$gt": 7}}, True),
    ("$gte number", {"score": {"$gte": 7.5}}, True),
    ("$lt number", {"score": {"$lt": 7.5}}, False),
    ("$lte number", {"count": {"$lte": 3}}, True),
    ("$gt string vs number", {"title": {"$gt": 1}}, False),
    ("$gt string", {"title": {"$gt": "A"}}, True),
    ("range", {"score": {"$gt": 5, "$lt": 8}}, True),
    ("range miss", {"score": {"$gt": 5, "$lt": 6}}, False),
    ("severity rank $gte", {"severity": {"$gte": "medium"}}, True),
    ("severity rank $gt", {"severity": {"$gt": "high"}}, False),
    ("severity rank $lt", {"severity": {"$lt": "Critical"}}, True),
    ("$in", {"source": {"$in": ["elastic", "splunk"]}}, True),
    ("$nin", {"source": {"$nin": ["elastic", "splunk"]}}, False),
    ("$nin list", {"tags": {"$nin": ["malware"]}}, True),
    ("$nin on missing", {"rule_name": {"$nin": ["x"]}}, False),
    ("$regex", {"title": {"$regex": "^Susp"}}, True),
    ("$regex search", {"title": {"$regex": "login$"}}, True),
    ("$regex case", {"title": {"$regex": "suspicious"}}, False),
    ("$regex inline flag", {"title": {"$regex": "(?i)suspicious"}}, True),
    ("$regex on list", {"iocs.ips": {"$regex": r"^192\.0\.2\."}}, True),
    ("$regex on number", {"score": {"$regex": "7"}}, False),
    ("$contains substring", {"title": {"$contains": "login"}}, True),
    ("$contains element", {"tags": {"$contains": "vip"}}, True),
    ("$contains miss", {"tags": {"$contains": "vi"}}, False),
    ("$exists true", {"raw.event": {"$exists": True}}, True),
    ("$exists true on null", {"hostname": {"$exists": True}}, True),
    ("$exists false", {"rule_name": {"$exists": False}}, True),
    ("$exists false on present", {"source": {"$exists": False}}, False),
    ("field $not", {"source": {"$not": {"$regex": "^spl"}}}, True),
    ("field $not matches missing", {"rule_name": {"$not": "x"}}, True),
    ("field $not list", {"severity": {"$not": ["high"]}}, False),
    # Groups.
    ("$any", {"$any": [{"source": "splunk"}, {"severity": "high"}]}, True),
    ("$any none", {"$any": [{"source": "splunk"}, {"severity": "low"}]}, False),
    ("$all", {"$all": [{"source": "elastic"}, {"severity": "high"}]}, True),
    ("$all one fails", {"$all": [{"source": "elastic"}, {"severity": "low"}]}, False),
    ("$not group", {"$not": {"source": "splunk"}}, True),
    ("$not group matches absence", {"$not": {"rule_name": {"$exists": True}}}, True),
    ("$not group negates", {"$not": {"source": "elastic"}}, False),
    (
        "nested groups",
        {"severity": ["high"], "$any": [{"$not": {"tags": "vip"}}, {"score": {"$gt": 7}}]},
        True,
    ),
]


@pytest.mark.parametrize(("name", "spec", "expected"), CASES, ids=[c[0] for c in CASES])
def test_matching_table(name: str, spec: dict[str, Any] | None, expected: bool) -> None:
    condition = compile_conditions(spec)
    assert condition.matches(ALERT) is expected
    reasons = condition.explain(ALERT)
    assert (reasons == []) is expected, reasons


BAD_SPECS: list[tuple[Any, str]] = [
    (["severity"], "conditions: must be a mapping"),
    ({"severity": {"$foo": 1}}, "conditions.severity.$foo: unknown operator"),
    ({"$either": []}, "conditions.$either: unknown group"),
    ({"$any": []}, "conditions.$any: must be a non-empty list"),
    ({"$any": ["x"]}, r"conditions.$any[0]: must be a mapping"),
    ({"$not": "x"}, "conditions.$not: must be a non-empty mapping"),
    ({"title": {"$regex": "("}}, "conditions.title.$regex: invalid regular expression"),
    ({"title": {"$regex": "a" * 600}}, "conditions.title.$regex: pattern longer"),
    ({"title": {"$regex": 3}}, "conditions.title.$regex: must be a string"),
    ({"title": {"$in": "abc"}}, "conditions.title.$in: must be a list"),
    ({"title": {"$in": [{"a": 1}]}}, r"conditions.title.$in[0]: list items must be scalars"),
    ({"title": {"$exists": "yes"}}, "conditions.title.$exists: must be true or false"),
    ({"title": {"$gt": [1]}}, "conditions.title.$gt: must be a scalar"),
    ({"score": {"$gt": None}}, "conditions.score.$gt: must be a number or a string"),
    ({"severity": {"$gte": "urgent"}}, "conditions.severity.$gte: must be one of"),
    ({"title": {"$eq": 1, "name": 2}}, "conditions.title: cannot mix operators"),
    ({"title": {}}, "conditions.title: empty operator mapping"),
    ({"a..b": 1}, "conditions.a..b: empty segment"),
    ({"score": float("nan")}, "conditions.score: numbers must be finite"),
    ({"score": {1, 2}}, "conditions.score: unsupported value of type set"),
    ({1: "x"}, "conditions: keys must be non-empty strings"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS, ids=[m for _, m in BAD_SPECS])
def test_malformed_specs_name_the_key(spec: Any, message: str) -> None:
    with pytest.raises(ConditionError) as info:
        compile_conditions(spec)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_depth_is_bounded() -> None:
    spec: dict[str, Any] = {"x": 1}
    for _ in range(40):
        spec = {"$not": spec}
    with pytest.raises(ConditionError, match="nested deeper"):
        compile_conditions(spec)


def test_explain_names_field_and_values() -> None:
    condition = compile_conditions(
        {"severity": ["critical"], "rule_name": "x", "source": "elastic"}
    )
    reasons = condition.explain(ALERT)
    assert reasons == [
        'severity: is "high", wanted one of ["critical"]',
        'rule_name: is missing, wanted "x"',
    ]
    any_reasons = compile_conditions({"$any": [{"source": "a"}, {"source": "b"}]}).explain(ALERT)
    assert len(any_reasons) == 1 and any_reasons[0].startswith("$any: none matched")


def test_spec_is_a_json_copy() -> None:
    original = {"severity": ("high", "critical"), "raw.x": {"$in": ["a"]}}
    condition = compile_conditions(original)
    assert condition.spec == {"severity": ["high", "critical"], "raw.x": {"$in": ["a"]}}
    original["raw.x"]["$in"].append("b")  # type: ignore[index]
    assert condition.spec["raw.x"] == {"$in": ["a"]}


def test_anchors_for_indexing() -> None:
    condition = compile_conditions(
        {
            "severity": ["HIGH", "critical"],
            "source": "elastic",
            "count": {"$in": [1, 2.0]},
            "enabled": {"$eq": True},
            "raw": {"event": {"category": "auth"}},
            "score": {"$gt": 3},
            "$any": [{"tags": "x"}],
        }
    )
    assert dict(condition.anchors()) == {
        "severity": frozenset({"high", "critical"}),
        "source": frozenset({"elastic"}),
        "count": frozenset({"1", "2"}),
        "enabled": frozenset({"true"}),
        "raw.event.category": frozenset({"auth"}),
    }
    assert compile_conditions({"$not": {"source": "x"}}).anchors() == []


def test_anchors_are_a_necessary_condition() -> None:
    # Property: whenever a condition matches, the alert's normalised value at
    # every anchor path is in the anchor's set.
    for _, spec, _ in CASES:
        condition = compile_conditions(spec)
        if not condition.matches(ALERT):
            continue
        for path, allowed in condition.anchors():
            value = lookup_path(ALERT, path)
            values = value if isinstance(value, list) else [value]
            keys = {normalize_anchor(v.lower() if path == "severity" else v) for v in values}
            assert keys & allowed, (spec, path)


def test_lookup_path() -> None:
    assert lookup_path(ALERT, "raw.event.category") == "authentication"
    assert lookup_path(ALERT, "raw.user.name") == "alice"
    assert lookup_path(ALERT, "raw.nope") is MISSING
    assert lookup_path({"a": [1]}, "a.0") is MISSING


def test_normalize_anchor() -> None:
    assert [normalize_anchor(v) for v in (True, None, 2.0, 2.5, 3, "x")] == [
        "true",
        "null",
        "2",
        "2.5",
        "3",
        "x",
    ]
