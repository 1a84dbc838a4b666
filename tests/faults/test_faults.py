"""The fault suite's bounded slice: every alert answered 202 finishes exactly once, and no
journaled action runs twice, while one part after another fails under load.

The same scenarios as `bench/faults/run.py` (world.py, scenarios.py, ledger.py there), at
20 alerts/s for 12 s each instead of 300/s for 60 s: two router replicas and a Playbook of
two runtime pods on the local cluster and its PostgreSQL, an open-loop sender that
retries as a careful sender does, and, one at a time: a runtime pod SIGKILLed mid-run, a
new Git commit rolling the pods, a router replica SIGKILLed, PostgreSQL restarted, the
operator SIGKILLed and restarted. The ledger reads the `runs` table and the side-effects
file once the system is quiet. The table of this slice is printed at the end (and written
as JSON to $KUBESOAR_FAULTS_RESULTS when set; bench/faults/results.json holds the
benchmark's own run).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cluster import ClusterHandle

from bench.faults.run import details, table
from bench.faults.scenarios import Outcome, run_scenario
from bench.faults.world import FaultWorld, WorldSettings

pytestmark = pytest.mark.cluster

RATE = 20.0
SECONDS = 12.0
# What a sender may see besides 202 and retry: a busy or unavailable answer, a router that
# is not there, a connection cut mid-request (maybe accepted: the same body again).
RETRYABLE = ("202", "429", "503", "no-connection", "no-answer:")


@pytest.fixture(scope="module")
def outcomes() -> Iterator[list[Outcome]]:
    done: list[Outcome] = []
    yield done
    if done:
        print("\n" + table(done))
        target = os.environ.get("KUBESOAR_FAULTS_RESULTS")
        if target:
            rows = {o.scenario: o.ledger.row.as_json() for o in done}
            Path(target).write_text(json.dumps(rows, indent=2) + "\n")


@pytest.fixture(scope="module")
def world(
    local_cluster: ClusterHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultWorld]:
    if local_cluster.database_url_file is None:
        pytest.skip("the fault suite needs the local test bed's PostgreSQL")
    world = FaultWorld(local_cluster, tmp_path_factory.mktemp("faults"), WorldSettings())
    try:
        yield world.start()
    finally:
        world.close()


def scenario(world: FaultWorld, outcomes: list[Outcome], name: str) -> Outcome:
    outcome = run_scenario(world, name, rate=RATE, seconds=SECONDS)
    outcomes.append(outcome)
    print(details(outcome))
    return outcome


def assert_nothing_lost_nothing_repeated(outcome: Outcome) -> None:
    row, ledger, report = outcome.ledger.row, outcome.ledger, details(outcome)
    # The sender retried what the routers asked it to retry: every alert got its 202.
    assert row.sent == outcome.offered_rate * outcome.seconds
    assert row.accepted == row.sent, report
    assert all(status.startswith(RETRYABLE) for status in outcome.sender.statuses), report
    # ... and every one of them has exactly one finished run of the Playbook.
    assert row.missing == 0, report
    assert row.finished == row.accepted, report
    assert ledger.quiet, report
    # No journaled action ran twice, and no succeeded run skipped its action.
    assert row.double_executed == 0, report
    assert ledger.never_executed == 0, report
    # A single fault, healed, leaves every run a next attempt: none runs out of them.
    assert row.dead == 0, report


def test_a_runtime_pod_killed_mid_run(world: FaultWorld, outcomes: list[Outcome]) -> None:
    outcome = scenario(world, outcomes, "runtime_pod_sigkill")
    assert_nothing_lost_nothing_repeated(outcome)
    # The run it held after its journaled action went to another attempt, which got the
    # action's result from the journal instead of executing it again.
    assert outcome.ledger.row.redelivered >= 1, details(outcome)
    assert outcome.ledger.replayed >= 1, details(outcome)


def test_a_new_commit_rolls_the_pods(world: FaultWorld, outcomes: list[Outcome]) -> None:
    outcome = scenario(world, outcomes, "git_commit_rollout")
    assert_nothing_lost_nothing_repeated(outcome)
    # The rollout really replaced the code: alerts sent now run the new commit.
    after = run_scenario(world, "no_fault", rate=5, seconds=1)
    assert after.ledger.row.finished == 5, details(after)
    assert f" v{world.version}" in world.side_effects.read_text()


def test_a_router_replica_killed(world: FaultWorld, outcomes: list[Outcome]) -> None:
    outcome = scenario(world, outcomes, "router_sigkill")
    assert outcome.sender.failovers >= 1, details(outcome)  # it did fail over
    assert_nothing_lost_nothing_repeated(outcome)


def test_postgres_restarted(world: FaultWorld, outcomes: list[Outcome]) -> None:
    outcome = scenario(world, outcomes, "postgres_restart")
    # While it was down, ingest said 503 (retry), never 202 and never another error.
    assert outcome.sender.statuses["503"] >= 1, details(outcome)
    assert_nothing_lost_nothing_repeated(outcome)


def test_the_operator_restarted(world: FaultWorld, outcomes: list[Outcome]) -> None:
    outcome = scenario(world, outcomes, "operator_restart")
    assert_nothing_lost_nothing_repeated(outcome)


def test_a_burst_beyond_the_pods_capacity_waits_its_turn(
    world: FaultWorld, outcomes: list[Outcome]
) -> None:
    """Not a fault: runs of 1 s, two at a time per pod, and a burst of 100 alerts, so
    runs wait in the pods' queues (100 each) for longer than the lease (15 s). A busy pod
    should be work that waits, not work lost: a run waiting in a pod's queue heartbeats
    from admission, so its lease holds. Last in the module: it leaves the pods slow."""
    world.reconfigure(hold_seconds=1.0, concurrency=2)
    outcome = run_scenario(world, "no_fault", rate=20, seconds=5)
    outcome.scenario = "burst_beyond_capacity"
    outcomes.append(outcome)
    print(details(outcome))
    assert_nothing_lost_nothing_repeated(outcome)
