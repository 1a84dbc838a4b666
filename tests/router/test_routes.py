"""The route index: same answers as testing every route, triggers as the runtime has them."""

from __future__ import annotations

import random

from kubesoar._conditions import compile_conditions
from kubesoar_router.routes import Route, RouteIndex, trigger_accepts
from kubesoar_router.snapshot import build_namespace
from router_objects import playbook

SEVERITIES = ["info", "low", "medium", "high", "critical"]


def make_routes(count: int, rng: random.Random) -> list[Route]:
    routes = []
    for index in range(count):
        kind = index % 4
        if kind == 0:
            spec = {"rule_name": f"rule-{rng.randrange(200)}"}
        elif kind == 1:
            spec = {"severity": rng.sample(SEVERITIES, 2), "hostname": {"$regex": "^web"}}
        elif kind == 2:
            spec = {"tags": f"tag-{rng.randrange(50)}", "source": ["elastic", "splunk"]}
        else:
            spec = {"$any": [{"severity": "CRITICAL"}, {"rule_name": {"$regex": "7$"}}]}
        routes.append(
            Route(f"pb-{index}", "main", "webhook", compile_conditions(spec), order=index)
        )
    return routes


def make_alert(rng: random.Random) -> dict:
    return {
        "source": rng.choice(["elastic", "splunk", "generic"]),
        "severity": rng.choice(SEVERITIES).upper()
        if rng.random() < 0.2
        else rng.choice(SEVERITIES),
        "rule_name": f"rule-{rng.randrange(200)}",
        "hostname": rng.choice(["web-1", "db-2", None]),
        "tags": [f"tag-{rng.randrange(50)}" for _ in range(rng.randrange(3))],
    }


def test_index_agrees_with_brute_force_and_prunes():
    rng = random.Random(7)
    routes = make_routes(400, rng)
    index = RouteIndex.build(routes)
    pruned = 0
    for _ in range(300):
        alert = make_alert(rng)
        expected = sorted(r.playbook for r in routes if r.condition.matches(alert))
        got = sorted(m.playbook for m in index.match(alert))
        assert got == expected
        pruned += len(routes) - len(index.candidates(alert))
    # Only the $any routes (a quarter) are unanchored; most routes are never tested.
    assert pruned / 300 > len(routes) * 0.5


def test_triggers_follow_the_runtime():
    assert trigger_accepts("webhook", "splunk")
    assert trigger_accepts("splunk", "splunk")
    assert trigger_accepts("splunk.alert", "splunk")
    assert not trigger_accepts("elastic", "splunk")
    assert not trigger_accepts(None, "splunk")


def test_entries_grouped_by_playbook_in_order():
    state = build_namespace(
        "t",
        playbooks=[
            playbook(
                "pb",
                [
                    {"name": "late", "trigger": "webhook", "order": 20},
                    {"name": "early", "trigger": "webhook", "order": 5},
                    {"name": "elastic-only", "trigger": "elastic", "order": 1},
                    {"name": "broken", "trigger": "webhook", "conditions": {"x": {"$bogus": 1}}},
                ],
            ),
            # Rolling out a new revision: not Ready, but its pods serve its routes.
            playbook("rolling-out", [{"name": "a", "trigger": "webhook"}], ready=False),
            playbook("suspended", [{"name": "a", "trigger": "webhook"}], suspend=True),
        ],
    )
    matches = state.index.match({"source": "generic", "severity": "high"})
    assert [(m.playbook, m.entries) for m in sorted(matches, key=lambda m: m.playbook)] == [
        ("pb", ("early", "late")),
        ("rolling-out", ("a",)),
    ]
    matches = state.index.match({"source": "elastic"})
    assert matches[0].entries == ("elastic-only", "early", "late")


def test_opensoar_entry_points_are_matched_on_opensoar_fields():
    """An entry point registered through `opensoar` names OpenSOAR's fields and values
    (`info` is `low` there): the router matches it as the runtime will."""
    conditions = {"severity": ["low"], "source_ip": {"$exists": True}}
    state = build_namespace(
        "t",
        playbooks=[
            playbook(
                "migrated",
                [{"name": "triage_low", "trigger": "webhook", "conditions": conditions,
                  "fields": "opensoar"}],
            ),
            playbook("native", [{"name": "low_only", "trigger": "webhook",
                                 "conditions": {"severity": ["low"]}}]),
        ],
    )  # fmt: skip
    info = {"source": "generic", "severity": "info", "source_ip": "10.0.0.1"}
    assert [m.playbook for m in state.index.match(info)] == ["migrated"]
    low = {**info, "severity": "low"}
    assert sorted(m.playbook for m in state.index.match(low)) == ["migrated", "native"]
    assert state.index.match({"source": "generic", "severity": "info"}) == []
