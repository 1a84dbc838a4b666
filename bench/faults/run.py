"""The fault suite as a benchmark: a table, and results.json in the issue's shape.

    .venv/bin/python bench/faults/run.py                       # 300 alerts/s, 60 s, all five
    .venv/bin/python bench/faults/run.py --rate 20 --seconds 12 --scenario router_sigkill

Starts (or reuses) the local cluster of $KUBESOAR_CLUSTER_DIR with its PostgreSQL, builds
the world (world.py), runs the scenarios one at a time, prints a table and writes
`{scenario: {"sent", "accepted", "finished", "missing", "redelivered", "dead",
"double_executed", "p99_accept_ms"}}` to --results. Exit code 1 when any scenario has a
missing alert or a double execution.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench.faults` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.faults.scenarios import FAULTS, SCENARIOS, Outcome, run_scenario
from bench.faults.world import FaultWorld, WorldSettings

HERE = Path(__file__).resolve().parent
COLUMNS = (
    "sent", "accepted", "finished", "missing", "redelivered", "dead", "double_executed",
    "p99_accept_ms",
)  # fmt: skip


def table(outcomes: list[Outcome]) -> str:
    header = ["scenario", *COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for outcome in outcomes:
        row = outcome.ledger.row.as_json()
        cells = [outcome.scenario, *(f"{row[c]:,}" for c in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def details(outcome: Outcome) -> str:
    ledger, sender = outcome.ledger, outcome.sender
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(sender.statuses.items()))
    runs = ", ".join(f"{k}: {v}" for k, v in sorted(ledger.run_statuses.items()))
    accepted = max(1, ledger.row.accepted)
    drain = ledger.row.finished / (outcome.seconds + ledger.settled_in)
    cpu = ", ".join(
        f"{part} {seconds:.1f}s ({seconds / accepted * 1e6:,.0f} µs/alert)"
        for part, seconds in outcome.cpu_seconds.items()
    )
    lines = [
        f"{outcome.scenario} ({outcome.offered_rate:g}/s for {outcome.seconds:g}s, "
        f"load average {outcome.load_average:.1f} at the start)",
        *(f"  {note}" for note in outcome.notes),
        f"  {ledger.row.finished:,} runs finished in {outcome.seconds + ledger.settled_in:.0f}s "
        f"from the first alert: {drain:.0f} runs/s",
        f"  answers: {statuses}; failovers {sender.failovers}; "
        f"alerts that waited for a free connection {sender.late_starts}",
        f"  runs: {runs}; replayed from the journal {ledger.replayed}; "
        f"unjournaled repeats {ledger.unjournaled_repeats}; "
        f"succeeded without executing {ledger.never_executed}",
        f"  CPU from the start of the load until quiet: {cpu}",
        *(f"  MISSING {m}" for m in ledger.missing_examples),
        *(f"  DOUBLE {d}" for d in ledger.double_examples),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=300.0, help="alerts per second (300)")
    parser.add_argument("--seconds", type=float, default=60.0, help="load per scenario (60)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        help="repeatable; default the five faults (no_fault: the same load, nothing fails)",
    )
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=30.0,
        help="the routers' --lease-seconds (30, their default; the test slice uses 15)",
    )
    parser.add_argument("--hold-seconds", type=float, default=WorldSettings.hold_seconds)
    parser.add_argument("--concurrency", type=int, default=WorldSettings.concurrency)
    parser.add_argument(
        "--quiet-timeout",
        type=float,
        default=0,
        help="longest wait for quiet after the load (default: six leases and a minute)",
    )
    parser.add_argument("--results", type=Path, default=HERE / "results.json")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE.parents[1] / "tests"))
    from support.cluster import start_cluster

    print(f"cluster: {os.environ.get('KUBESOAR_CLUSTER_DIR', '(default dir)')}", file=sys.stderr)
    cluster = start_cluster()
    settings = WorldSettings(
        lease_seconds=args.lease_seconds,
        hold_seconds=args.hold_seconds,
        concurrency=args.concurrency,
    )
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="kubesoar-faults-") as workdir:
        world = FaultWorld(cluster, Path(workdir), settings).start()
        try:
            for name in args.scenario or FAULTS:
                print(f"--- {name}: {args.rate:g}/s for {args.seconds:g}s", file=sys.stderr)
                outcome = run_scenario(
                    world,
                    name,
                    rate=args.rate,
                    seconds=args.seconds,
                    quiet_timeout=args.quiet_timeout,
                )
                outcomes.append(outcome)
                print(details(outcome), file=sys.stderr)
        finally:
            world.close()
    print(table(outcomes))
    results = {o.scenario: o.ledger.row.as_json() for o in outcomes}
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    failed = [o.scenario for o in outcomes if o.ledger.row.missing or o.ledger.row.double_executed]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
