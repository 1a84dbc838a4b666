"""A bounded slice of the durable ingest bench (bench/durable/bench.py) through its own
processes: a runtime (no-op playbook, caller authentication on) and a router with the
system of record, on the suite's real PostgreSQL. Every alert answered 202 ends with
exactly one final run in the database, none is missing and none is extra. The timed
figures are in bench/README.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_two_hundred_alerts_through_the_bench_processes_all_finish(
    database_url: str, tmp_path: Path
) -> None:
    url_file = tmp_path / "database-url"
    url_file.touch(mode=0o600)
    url_file.write_text(database_url)
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "durable" / "bench.py"), "slice",
         "--alerts", "200", "--database-url-file", str(url_file), "--json"],
        capture_output=True, text=True, timeout=420, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["accepted"] == 200, report["other_answers"]
    assert report["missing"] == [], report
    assert report["unexpected"] == [], report
    assert report["alerts_stored"] == report["runs_stored"] == 200
    # Finished = final: succeeded, or dead once its attempts ran out (a no-op never fails).
    assert set(report["by_status"]) <= {"succeeded", "dead"}, report["by_status"]
    assert report["by_status"].get("succeeded", 0) > 0, report["by_status"]
    assert report["error_log_records"] == [], report["error_log_records"]
    # The database URL (with its password) is not echoed by the bench.
    assert database_url not in proc.stdout + proc.stderr
