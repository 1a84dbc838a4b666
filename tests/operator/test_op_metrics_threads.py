"""The operator's Playbook gauge under kopf's and the refresher's threads at once
(issue 16: `RuntimeError: dictionary changed size during iteration` in `record_ready`)."""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Iterator

import pytest
from kubesoar_operator import metrics
from kubesoar_operator.metrics import READY_VALUES, ReadyCounts
from prometheus_client import CollectorRegistry, Gauge

THREADS, UPDATES, PLAYBOOKS = 8, 3_000, 200


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Switch threads every microsecond so unguarded shared state shows its races."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def _gauge_values(registry: CollectorRegistry) -> dict[str, float]:
    return {
        value: registry.get_sample_value("test_playbooks", {"ready": value}) or 0.0
        for value in READY_VALUES
    }


def test_concurrent_updates_neither_fail_nor_leave_a_stale_count(
    frequent_thread_switches: None,
) -> None:
    registry = CollectorRegistry()
    counts = ReadyCounts(Gauge("test_playbooks", "test", ["ready"], registry=registry))
    failures: list[BaseException] = []
    start = threading.Barrier(THREADS, timeout=30)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            for _ in range(UPDATES):
                name = f"pb-{rng.randrange(PLAYBOOKS)}"
                counts.record("ns", name, rng.choice([*READY_VALUES, None]))
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not [t for t in threads if t.is_alive()]
    assert failures == []
    # The gauge shows the final states, counted afresh: no update was lost or reordered.
    final = counts.counts()
    assert sum(final.values()) <= PLAYBOOKS
    assert _gauge_values(registry) == {value: float(n) for value, n in final.items()}
    recount = {value: 0 for value in READY_VALUES}
    for ready in counts._ready.values():
        recount[ready] += 1
    assert recount == final


def test_deleting_a_playbook_takes_it_out_of_the_gauge() -> None:
    registry = CollectorRegistry()
    counts = ReadyCounts(Gauge("test_playbooks", "test", ["ready"], registry=registry))
    counts.record("ns", "a", "True")
    counts.record("ns", "b", "False")
    counts.record("ns", "a", "False")  # a status change moves it, it is not counted twice
    assert _gauge_values(registry) == {"True": 0.0, "False": 2.0, "Unknown": 0.0}
    counts.record("ns", "a", None)
    counts.record("ns", "never-seen", None)
    assert _gauge_values(registry) == {"True": 0.0, "False": 1.0, "Unknown": 0.0}


def test_the_operator_gauge_is_counted_this_way() -> None:
    assert isinstance(metrics._READY, ReadyCounts)
    metrics.record_ready("test-metrics-threads", "pb", "Unknown")
    try:
        assert metrics._READY.counts()["Unknown"] >= 1
    finally:
        metrics.record_ready("test-metrics-threads", "pb", None)
