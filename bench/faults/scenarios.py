"""The five faults, one per scenario, each injected while the open-loop load runs (and
`no_fault`, the same load with nothing failing: the baseline).

A scenario waits until a third of the load has been sent (a quarter for the rollout,
which takes longer), injects its fault, heals it, and returns what it did with the
time into the load. `run_scenario` then waits for the load to end and for quiet, and
reads the ledger (ledger.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from bench.faults import cpu
from bench.faults.ledger import Ledger, settle
from bench.faults.load import OpenLoopSender, SenderStats
from bench.faults.world import INGEST_TOKEN, FaultWorld, free_port, wait_for


@dataclass
class Injected:
    """What a fault did: notes with times into the load, runtime processes it SIGKILLed."""

    notes: list[str]
    killed_pids: set[int] = field(default_factory=set)


Inject = Callable[[FaultWorld, OpenLoopSender], Injected]


@dataclass
class Outcome:
    scenario: str
    ledger: Ledger
    sender: SenderStats
    notes: list[str] = field(default_factory=list)
    offered_rate: float = 0.0
    seconds: float = 0.0
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    """CPU of each part from the start of the load until quiet (cpu.py)."""
    load_average: float = 0.0
    """The machine's 1-minute load average when the load started."""


def _at(sender: OpenLoopSender, seconds: float) -> str:
    """Sleep until `seconds` into the load; returns the time stamp for notes."""
    while sender.elapsed() < seconds:
        time.sleep(0.05)
    return _t(sender)


def _t(sender: OpenLoopSender) -> str:
    return f"t={sender.elapsed():.1f}s"


# --- the faults ---------------------------------------------------------------------
def runtime_pod_sigkill(world: FaultWorld, sender: OpenLoopSender) -> Injected:
    """SIGKILL a runtime pod's process while it holds a run whose action has executed
    and been journaled (found through the side-effects file and the database)."""
    _at(sender, sender.seconds / 3)
    pid, pod, run_id = asyncio.run(_mid_run_victim(world, within=sender.seconds))
    os.kill(pid, signal.SIGKILL)
    notes = [
        f"{_t(sender)} SIGKILL runtime pod {pod} (pid {pid}) while it held run {run_id} "
        "after its journaled side effect"
    ]
    wait_for(
        "the killed runtime to be replaced",
        lambda: pid not in world.runtime_pids() and world.ready_endpoints() == 2,
        timeout=120,
        interval=0.5,
    )
    notes.append(f"{_t(sender)} runtime ready again (the node agent restarted the container)")
    return Injected(notes, killed_pids={pid})


async def _mid_run_victim(world: FaultWorld, within: float) -> tuple[int, str, str]:
    """(pid, pod, run id) of a runtime that is holding a run after its journaled action."""
    conn = await asyncpg.connect(world.database_url(), timeout=10)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            pids = world.runtime_pids()
            lines = world.side_effects.read_text().splitlines()[-200:]
            candidates = {}
            for line in lines:
                fields = line.split()
                if len(fields) >= 4 and int(fields[3]) in pids:
                    candidates[uuid.UUID(fields[0])] = int(fields[3])
            if candidates:
                holding = await conn.fetch(
                    "SELECT r.id FROM runs r JOIN action_journal j ON j.run_id = r.id"
                    " WHERE r.id = ANY($1::uuid[]) AND r.status = 'running'",
                    list(candidates),
                )
                if holding:
                    run = holding[-1]["id"]
                    pid = candidates[run]
                    return pid, pids[pid], str(run)
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    raise TimeoutError("no runtime was holding a journaled run: is the load reaching the pods?")


def git_commit_rollout(world: FaultWorld, sender: OpenLoopSender) -> Injected:
    """A new commit; the annotation asks the operator to act at once; the pods roll."""
    _at(sender, sender.seconds / 4)
    sha = world.new_commit()
    notes = [f"{_t(sender)} committed {sha[:12]} and annotated the Playbook"]
    world.wait_steady(timeout=240)
    notes.append(f"{_t(sender)} both runtime pods run {sha[:12]}")
    return Injected(notes)


def router_sigkill(world: FaultWorld, sender: OpenLoopSender) -> Injected:
    """SIGKILL router replica 2 while both replicas hold leases of runs mid-run; its
    replacement starts on a new address, as a replacement pod gets a new IP, and the
    sender learns it (the Service's endpoints)."""
    _at(sender, sender.seconds / 3)
    held = asyncio.run(_leases_by_owner(world, within=sender.seconds))
    world.stack.kill("router-2")
    notes = [
        f"{_t(sender)} SIGKILL router-2 ({world.stack.replica_url(1)}) while the replicas "
        f"held {sorted(held.values())} journaled runs mid-run"
    ]
    time.sleep(min(3.0, sender.seconds / 5))
    world.stack.start_router(1, port=free_port())
    sender.set_urls(world.stack.router_urls)
    notes.append(f"{_t(sender)} router-2 replaced at {world.stack.replica_url(1)} and ready")
    return Injected(notes)


async def _leases_by_owner(world: FaultWorld, within: float) -> dict[str, int]:
    """Wait until runs mid-run (action journaled, still running) are leased by two
    dispatchers, i.e. by both replicas; returns their count per lease owner."""
    conn = await asyncpg.connect(world.database_url(), timeout=10)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            rows = await conn.fetch(
                "SELECT r.lease_owner, count(*) AS held FROM runs r"
                " JOIN action_journal j ON j.run_id = r.id"
                " WHERE r.status = 'running' AND r.namespace = $1 GROUP BY r.lease_owner",
                world.namespace,
            )
            if len(rows) >= world.settings.routers:
                return {row["lease_owner"]: row["held"] for row in rows}
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    raise TimeoutError("the router replicas never both held runs mid-run")


def postgres_restart(world: FaultWorld, sender: OpenLoopSender) -> Injected:
    """Stop PostgreSQL (fast shutdown: sessions cut), wait, start it again."""
    if world.cluster.local is None:
        raise RuntimeError("restarting PostgreSQL needs the local test bed's server")
    server = world.cluster.local.postgres
    _at(sender, sender.seconds / 3)
    server.down()
    notes = [f"{_t(sender)} PostgreSQL stopped"]
    time.sleep(min(2.0, sender.seconds / 6))
    server.up()
    notes.append(f"{_t(sender)} PostgreSQL up again")
    return Injected(notes)


def operator_restart(world: FaultWorld, sender: OpenLoopSender) -> Injected:
    """SIGKILL the operator and start it again (a crash and its restart)."""
    _at(sender, sender.seconds / 3)
    world.stack.kill("operator")
    notes = [f"{_t(sender)} SIGKILL the operator"]
    world.stack.start_operator()
    notes.append(f"{_t(sender)} operator live again")
    return Injected(notes)


def no_fault(world: FaultWorld, sender: OpenLoopSender) -> Injected:
    """The baseline: the same load and ledger, nothing fails (what the machine sustains)."""
    return Injected([])


SCENARIOS: dict[str, Inject] = {
    "runtime_pod_sigkill": runtime_pod_sigkill,
    "git_commit_rollout": git_commit_rollout,
    "router_sigkill": router_sigkill,
    "postgres_restart": postgres_restart,
    "operator_restart": operator_restart,
    "no_fault": no_fault,
}
FAULTS = [name for name in SCENARIOS if name != "no_fault"]
"""The issue's five, in the order the runner takes them by default."""


def run_scenario(
    world: FaultWorld, name: str, *, rate: float, seconds: float, quiet_timeout: float = 0
) -> Outcome:
    """Load at `rate` alerts/s for `seconds` with fault `name` injected; then the ledger,
    waiting at most `quiet_timeout` seconds for quiet (default: six leases and a minute)."""
    inject = SCENARIOS[name]
    world.wait_steady()
    give_up = 120.0
    load_average = os.getloadavg()[0]
    cpu_before = cpu.snapshot(world.processes())
    sender = OpenLoopSender(
        world.stack.router_urls,
        world.ingest_path,
        INGEST_TOKEN,
        rate=rate,
        seconds=seconds,
        label=name,
        give_up_after=give_up,
    ).start()
    injected = inject(world, sender)
    notes = injected.notes
    sender.join(timeout=seconds + give_up + 60)
    notes.append(f"{_t(sender)} load ended; last alert answered")
    s = world.settings
    ledger = asyncio.run(
        settle(
            world.database_url(),
            sender.sent,
            world.side_effects,
            quiet_timeout=quiet_timeout or s.lease_seconds * s.max_attempts * 2 + 60,
            killed_pids=injected.killed_pids,
        )
    )
    cpu_spent = cpu.spent(cpu_before, cpu.snapshot(world.processes()))
    notes.append(f"quiet {ledger.settled_in:.1f}s after the load" if ledger.quiet else
                 f"NOT quiet after {ledger.settled_in:.1f}s")  # fmt: skip
    world.wait_steady()
    return Outcome(
        name,
        ledger,
        sender.stats,
        notes,
        offered_rate=rate,
        seconds=seconds,
        cpu_seconds=cpu_spent,
        load_average=load_average,
    )
