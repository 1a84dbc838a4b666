"""What became of every alert a scenario's sender got a 202 for, read from the system of
record (the `runs` table) and the side-effects file, once the system is quiet.

- finished: the alert has exactly one run of the Playbook it matched, and that run ended
  `succeeded`, `failed`, or `dead` with a reason;
- missing: every other accepted alert — no run, a run still queued or running when the
  wait for quiet ran out, a second run, a `dead` run without a reason;
- redelivered: runs on attempt > 1 (a lease ran out and the run was given out again);
- double_executed: runs whose action was executed more than once, except the one repeat
  the at-least-once contract allows (docs/playbooks.md, "At least once"): the earlier
  execution was made by a runtime process the scenario SIGKILLed, before its journal
  entry was recorded (the pod died between the side effect and its report). Those are
  counted apart, as `unjournaled_repeats`. Everything else is a double execution: a
  journaled action run again, an action run twice by live pods (a stale attempt that
  went on after its lease was gone, a redelivery whose journal never arrived).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from kubesoar_router.durable import alert_uuid

from bench.faults.load import Sent

TERMINAL = ("succeeded", "failed", "dead")
PLAYBOOK = "triage"

PROGRESS = """
SELECT count(*) FILTER (WHERE status IN ('succeeded', 'failed', 'dead')) AS done, count(*) AS runs
FROM runs WHERE alert_id = ANY($1::uuid[])
"""
DETAILS = """
SELECT r.id, r.alert_id, r.playbook, r.status, r.attempt, r.error,
       r.result -> 'actions' AS actions, j.attempt AS journaled_by
FROM runs r LEFT JOIN action_journal j ON j.run_id = r.id AND j.seq = 0
WHERE r.alert_id = ANY($1::uuid[])
"""


@dataclass(frozen=True)
class Row:
    """One line of the fault table (results.json holds exactly these keys)."""

    sent: int
    accepted: int
    finished: int
    missing: int
    redelivered: int
    dead: int
    double_executed: int
    p99_accept_ms: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Ledger:
    row: Row
    run_statuses: Counter[str] = field(default_factory=Counter)
    replayed: int = 0
    """Runs whose record shows an action answered from the journal (not executed again)."""
    never_executed: int = 0
    """Succeeded runs with no side-effects line at all (must be 0, like missing)."""
    unjournaled_repeats: int = 0
    """Runs whose action ran again because an earlier attempt never journaled it."""
    missing_examples: list[str] = field(default_factory=list)
    double_examples: list[str] = field(default_factory=list)
    settled_in: float = 0.0
    quiet: bool = True


def p99(values: list[float]) -> float:
    """Nearest-rank 99th percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)], 1)


@dataclass(frozen=True)
class Execution:
    attempt: int
    pid: int


def side_effects(path: Path) -> dict[str, list[Execution]]:
    """Run id → each execution of its action (attempt, runtime pid), in the order they
    happened (one O_APPEND write each: the file's order is the machine's)."""
    executions: dict[str, list[Execution]] = defaultdict(list)
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 4:
            executions[fields[0]].append(Execution(int(fields[2]), int(fields[3])))
    return executions


def executed_twice(
    executions: list[Execution], journaled_by: int | None, killed_pids: set[int]
) -> bool:
    """True when the executions are more than the contract allows (module docstring)."""
    if len(executions) <= 1:
        return False
    for execution in executions[:-1]:
        if execution.pid not in killed_pids:
            return True  # a live pod executed it, and then someone executed it again
        if journaled_by is not None and execution.attempt >= journaled_by:
            return True  # it was journaled (by this attempt or before) and ran again
    return False


async def _wait_quiet(conn: asyncpg.Connection, ids: list[uuid.UUID], within: float) -> bool:
    deadline = time.monotonic() + within
    while True:
        progress = await conn.fetchrow(PROGRESS, ids)
        if progress["done"] == progress["runs"] >= len(ids):
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(1.0)


async def settle(
    database_url: str,
    sent: list[Sent],
    effects_file: Path,
    *,
    quiet_timeout: float,
    killed_pids: set[int] | frozenset[int] = frozenset(),
) -> Ledger:
    """Wait (bounded) until every accepted alert's runs ended, then count.
    `killed_pids`: runtime processes the scenario SIGKILLed (see executed_twice)."""
    started = time.monotonic()
    accepted = [s for s in sent if s.final_status == 202 and s.alert_id]
    by_alert = {alert_uuid(s.alert_id): s for s in accepted if s.alert_id}
    ids = list(by_alert)
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        quiet = await _wait_quiet(conn, ids, quiet_timeout)
        rows = await conn.fetch(DETAILS, ids)
    finally:
        await conn.close()
    settled_in = time.monotonic() - started
    effects = side_effects(effects_file)

    runs_of: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for row in rows:
        runs_of[row["alert_id"]].append(row)
    ledger = Ledger(row=Row(0, 0, 0, 0, 0, 0, 0, 0.0), settled_in=settled_in, quiet=quiet)
    finished = redelivered = dead = doubled = 0
    missing: list[str] = []
    for alert, sent_alert in by_alert.items():
        runs = [r for r in runs_of.get(alert, []) if r["playbook"] == PLAYBOOK]
        problem = _problem(runs)
        if problem:
            missing.append(f"{sent_alert.alert_id}: {problem}")
        else:
            finished += 1
    for row in rows:
        run_id = str(row["id"])
        ledger.run_statuses[row["status"]] += 1
        redelivered += row["attempt"] > 1
        dead += row["status"] == "dead"
        executions = effects.get(run_id, [])
        if executed_twice(executions, row["journaled_by"], set(killed_pids)):
            doubled += 1
            by = ", ".join(f"attempt {e.attempt} (pid {e.pid})" for e in executions)
            ledger.double_examples.append(
                f"run {run_id} ({row['status']} on attempt {row['attempt']}, journaled by "
                f"attempt {row['journaled_by']}): executed by {by}"
            )
        elif len(executions) > 1:
            ledger.unjournaled_repeats += 1
        if row["status"] == "succeeded" and not executions:
            ledger.never_executed += 1
        actions = json.loads(row["actions"]) if row["actions"] else []
        if any(a.get("status") == "replayed" for a in actions):
            ledger.replayed += 1
    ledger.missing_examples = missing[:20]
    ledger.double_examples = ledger.double_examples[:20]
    latencies = [s.accept_ms for s in accepted if s.accept_ms is not None]
    ledger.row = Row(
        sent=len(sent),
        accepted=len(accepted),
        finished=finished,
        missing=len(missing),
        redelivered=redelivered,
        dead=dead,
        double_executed=doubled,
        p99_accept_ms=p99(latencies),
    )
    return ledger


def _problem(runs: list[Any]) -> str:
    if not runs:
        return "no run"
    if len(runs) > 1:
        return f"{len(runs)} runs: " + ", ".join(f"{r['id']} {r['status']}" for r in runs)
    [run] = runs
    if run["status"] not in TERMINAL:
        return f"run {run['id']} still {run['status']} (attempt {run['attempt']})"
    if run["status"] == "dead" and not run["error"]:
        return f"run {run['id']} dead without a reason"
    return ""
