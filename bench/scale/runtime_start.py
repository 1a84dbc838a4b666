"""What a runtime pod costs at start (issue 16): time to ready and RSS of a no-op playbook.

    .venv/bin/python bench/scale/runtime_start.py [--runs 7] [--importtime 15]

Starts `python -m kubesoar runtime` as a runtime pod does (settings from `KUBESOAR_*`,
a no-op playbook in the workspace, on 127.0.0.1 and a free port), `--runs` times one
after the other, and reports the median and the spread of: seconds from exec until
`GET /readyz` answers 200, the CPU seconds the process used by then (what the load
average changes least), and its RSS and PSS then (and RSS after one POST was answered).
Then one run under `python -X importtime` lists the `--importtime` slowest top-level
imports (cumulative), the list to cut from. The load average comes with every line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

NOOP = (
    "from kubesoar import playbook\n\n\n"
    "@playbook('webhook')\nasync def triage(alert, ctx):\n    return {'ok': True}\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def env(workspace: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "KUBESOAR_POD_IP": "127.0.0.1",
        "KUBESOAR_PORT": str(port),
        "KUBESOAR_WORKSPACE": str(workspace),
        "KUBESOAR_MODULE": "noopbook",
    }


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def one_start(workspace: Path, python_args: list[str]) -> dict[str, float]:
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, *python_args, "-m", "kubesoar", "runtime"],
        env=env(workspace, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(3000):  # bounded: at most ~30 s
            if ready(port):
                break
            if proc.poll() is not None:
                raise SystemExit(f"runtime exited: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.005)
        else:
            raise SystemExit("runtime never became ready")
        to_ready = time.monotonic() - started
        rss_ready, pss_ready, cpu_ready = (
            rss_mib(proc.pid),
            pss_mib(proc.pid),
            cpu_seconds(proc.pid),
        )
        body = json.dumps(
            {"idempotencyKey": "k1", "runId": "r1", "attempt": 1, "alert": {"title": "t"}}
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/runs",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        try:
            urllib.request.urlopen(request, timeout=5).read()
        except OSError:
            pass  # the RSS after a request is what matters, not its answer
        time.sleep(0.2)
        return {
            "to_ready": to_ready,
            "cpu_to_ready": cpu_ready,
            "rss_ready": rss_ready,
            "pss_ready": pss_ready,
            "rss_served": rss_mib(proc.pid),
        }
    finally:
        proc.terminate()
        try:
            _, stderr = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        if python_args:
            one_start.importtime = stderr.decode()  # type: ignore[attr-defined]


def slowest_imports(text: str, top: int) -> list[tuple[str, float]]:
    """Top-level imports (the least indented `import time:` lines) by cumulative seconds."""
    rows = []
    for line in text.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        raw = parts[2].rstrip()
        rows.append((len(raw) - len(raw.lstrip()), raw.strip(), int(parts[1]) / 1e6))
    least = min((indent for indent, _, _ in rows), default=0)
    top_level = [(name, s) for indent, name, s in rows if indent == least]
    return sorted(top_level, key=lambda r: -r[1])[:top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--importtime", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kubesoar-runtime-") as folder:
        workspace = Path(folder)
        (workspace / "src").mkdir()
        (workspace / "src" / "noopbook.py").write_text(NOOP)
        load = os.getloadavg()[0]
        runs: list[dict[str, float]] = [one_start(workspace, []) for _ in range(args.runs)]
        one_start(workspace, ["-X", "importtime"])
        imports = slowest_imports(one_start.importtime, args.importtime)  # type: ignore[attr-defined]
    result: dict[str, Any] = {"load_at_start": load, "load_at_end": os.getloadavg()[0]}
    for key in ("to_ready", "cpu_to_ready", "rss_ready", "pss_ready", "rss_served"):
        values = [r[key] for r in runs]
        result[key] = {
            "median": round(statistics.median(values), 3),
            "min": round(min(values), 3),
            "max": round(max(values), 3),
        }
    result["slowest_imports_s"] = [[name, round(s, 3)] for name, s in imports]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
