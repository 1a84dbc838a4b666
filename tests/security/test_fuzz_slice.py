"""A bounded slice of the hostile-input fuzzer (bench/fuzz/fuzz.py) against real router
and runtime servers: no 5xx, no dropped connection, no ERROR log line, and no planted
secret in any answer or log line. The full run (100,000 inputs) is in bench/README.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_two_thousand_hostile_requests_get_only_4xx_or_success() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fuzz" / "fuzz.py"), "--requests", "2000",
         "--seed", "7", "--json"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["requests"] == 2000
    statuses = {int(s) for counts in report["by_status"].values() for s in counts}
    assert statuses, report
    assert report["5xx"] == 0, report
    assert report["crashes"] == 0, report
    assert report["error_log_records"] == 0, report["error_log_samples"]
    assert report["secrets_found"] == {}, report
    # The slice reaches past authentication on both servers, not only 401s.
    assert report["by_status"]["router"].get("202", 0) > 0
    assert report["by_status"]["router"].get("400", 0) > 0
    assert report["by_status"]["runtime"].get("400", 0) > 0
    assert proc.returncode == 0, proc.stderr[-2000:]
