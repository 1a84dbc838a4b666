"""`kubesoar._expiring.ExpiringMap`, the one bounded expiring map behind the replay and
dedup caches, the delivery pins and the idempotency cache: its bound, its expiry (time
passed in, so no sleeping) and the order in which it evicts."""

from __future__ import annotations

import pytest
from kubesoar._expiring import ExpiringMap


def test_the_bound_holds_and_the_oldest_entry_is_evicted_first() -> None:
    entries: ExpiringMap[str, int] = ExpiringMap(max_entries=3)
    for index in range(5):
        entries.put(f"k{index}", index, expires_at=100.0, now=0.0)
    assert len(entries) == 3
    assert [entries.get(f"k{i}", now=1.0) for i in range(5)] == [None, None, 2, 3, 4]


def test_writing_a_key_again_makes_it_the_newest() -> None:
    entries: ExpiringMap[str, str] = ExpiringMap(max_entries=2)
    entries.put("a", "first", expires_at=100.0, now=0.0)
    entries.put("b", "b", expires_at=100.0, now=0.0)
    entries.put("a", "second", expires_at=100.0, now=0.0)  # "b" is now the oldest
    entries.put("c", "c", expires_at=100.0, now=0.0)
    assert entries.get("b", now=0.0) is None
    assert (entries.get("a", now=0.0), entries.get("c", now=0.0)) == ("second", "c")


def test_an_entry_is_live_until_its_expiry_time() -> None:
    entries: ExpiringMap[str, int] = ExpiringMap(max_entries=10)
    entries.put("k", 1, expires_at=10.0, now=0.0)
    assert entries.get("k", now=9.999) == 1 and entries.live("k", now=9.999)
    assert entries.get("k", now=10.0) is None  # dropped on the way
    assert len(entries) == 0 and not entries.live("k", now=0.0)


def test_a_write_sweeps_expired_entries_from_the_front() -> None:
    entries: ExpiringMap[str, int] = ExpiringMap(max_entries=10)
    entries.put("old", 1, expires_at=5.0, now=0.0)
    entries.put("older-window", 2, expires_at=6.0, now=0.0)
    entries.put("live", 3, expires_at=50.0, now=0.0)
    entries.put("new", 4, expires_at=60.0, now=7.0)
    assert len(entries) == 2  # the two expired ones went without being looked up
    assert entries.get("live", now=7.0) == 3


def test_a_longer_lived_entry_behind_a_short_one_still_expires_on_lookup() -> None:
    """The sweep stops at the first live entry; a lookup checks each entry's own expiry."""
    entries: ExpiringMap[str, int] = ExpiringMap(max_entries=10)
    entries.put("long", 1, expires_at=100.0, now=0.0)
    entries.put("short", 2, expires_at=5.0, now=0.0)
    entries.put("other", 3, expires_at=100.0, now=6.0)
    assert len(entries) == 3  # "short" sits behind a live entry
    assert entries.get("short", now=6.0) is None and len(entries) == 2


def test_values_that_are_none_are_told_apart_by_live() -> None:
    keys: ExpiringMap[bytes, None] = ExpiringMap(max_entries=2)
    keys.put(b"k", None, expires_at=10.0, now=0.0)
    assert keys.live(b"k", now=1.0) and not keys.live(b"other", now=1.0)
    keys.discard(b"k")
    assert not keys.live(b"k", now=1.0)


def test_a_zero_bound_keeps_nothing_and_a_negative_one_is_refused() -> None:
    nothing: ExpiringMap[str, int] = ExpiringMap(max_entries=0)
    nothing.put("k", 1, expires_at=10.0, now=0.0)
    assert len(nothing) == 0
    with pytest.raises(ValueError, match="max_entries"):
        ExpiringMap(max_entries=-1)
