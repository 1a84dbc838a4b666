"""What became of every alert a scenario's sender got a 202 for, read from the system of
record (the `runs` table) and the side-effects file, once the system is quiet.

- finished: the alert has exactly one run of the Playbook it matched, and that run ended
  `succeeded`, `failed`, or `dead` with a reason;
- missing: every other accepted alert — no run, a run still queued or running when the
  wait for quiet ran out, a second run, a `dead` run without a reason;
- redelivered: runs on attempt > 1 (a lease ran out and the run was given out again);
- double_executed: runs whose **journaled** action was executed more than once: the
  action's journal entry was recorded by attempt k, and the side-effects file shows
  another execution by attempt k or a later one, or by an earlier attempt *after*
  attempt k's (a stale attempt that went on running after its lease was gone).
  An execution by an earlier attempt that never got its journal entry recorded (its pod
  died between the side effect and the report) is the at-least-once repeat the contract
  allows (docs/playbooks.md, "At least once"); those are counted apart, as
  `unjournaled_repeats`.
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


def side_effects(path: Path) -> dict[str, list[int]]:
    """Run id → the attempt of each execution of its action, in the order they happened
    (one O_APPEND write per execution: the file's order is the machine's)."""
    executions: dict[str, list[int]] = defaultdict(list)
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3:
            executions[fields[0]].append(int(fields[2]))
    return executions


def repeated_after_journal(attempts: list[int], journaled_by: int | None) -> bool:
    """True when a journaled action ran again (see the module docstring)."""
    if journaled_by is None or journaled_by not in attempts:
        return False  # never journaled: any repeat is the allowed at-least-once kind
    if sum(1 for a in attempts if a >= journaled_by) > 1:
        return True
    first_journaled = attempts.index(journaled_by)
    return any(a < journaled_by for a in attempts[first_journaled + 1 :])


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
    database_url: str, sent: list[Sent], effects_file: Path, *, quiet_timeout: float
) -> Ledger:
    """Wait (bounded) until every accepted alert's runs ended, then count."""
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
        attempts = effects.get(run_id, [])
        if repeated_after_journal(attempts, row["journaled_by"]):
            doubled += 1
            ledger.double_examples.append(
                f"run {run_id} ({row['status']} on attempt {row['attempt']}, journaled by "
                f"attempt {row['journaled_by']}): executed by attempts {attempts}"
            )
        elif len(attempts) > 1:
            ledger.unjournaled_repeats += 1
        if row["status"] == "succeeded" and not attempts:
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
