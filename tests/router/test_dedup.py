"""Dedup keys and the bounded cache."""

from __future__ import annotations

from kubesoar_router.dedup import DedupCache, dedup_key


def test_key_from_paths():
    alert = {"source_id": "x", "rule_name": "r", "raw": {"a": {"b": 1}}}
    assert dedup_key("ns/s", alert, ["source_id"]) == dedup_key("ns/s", dict(alert), ["source_id"])
    assert dedup_key("ns/s", alert, ["source_id"]) != dedup_key("ns/other", alert, ["source_id"])
    assert dedup_key("ns/s", alert, ["raw.a.b"]) != dedup_key("ns/s", alert, ["rule_name"])
    assert dedup_key("ns/s", {"source_id": None}, ["source_id"]) is None
    assert dedup_key("ns/s", alert, ["missing", "rule_name"]) is not None


def test_window_and_bound():
    cache = DedupCache(max_entries=2)
    cache.remember(b"a", 10, now=0)
    assert cache.seen(b"a", now=9.9)
    assert not cache.seen(b"a", now=10)
    cache.remember(b"b", 10, now=20)
    cache.remember(b"c", 10, now=20)
    cache.remember(b"d", 10, now=20)
    assert len(cache) == 2
    assert not cache.seen(b"b", now=21)  # evicted as the oldest
    assert cache.seen(b"d", now=21)
