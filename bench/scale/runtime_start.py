"""What a runtime pod costs at start (issue 16): time to ready and RSS of a no-op playbook.

    .venv/bin/python bench/scale/runtime_start.py [--runs 7] [--importtime-runs 3] \\
        [--floor] [--layers] [--playbook playbooks/phishing_triage/phishing.py]

Starts `python -m kubesoar runtime` as a runtime pod does (settings from `KUBESOAR_*`,
a no-op playbook in the workspace, or `--playbook`'s file; on 127.0.0.1 and a free
port), `--runs` times one after the other, and reports the median and the spread of:
seconds from exec until `GET /readyz` answers 200, the CPU seconds the process used by
then (what the load average changes least), and its RSS, RssAnon (the process's own
pages; the rest of RSS is the libraries' file pages) and PSS then, and RSS after one
POST was answered. Then `--importtime-runs` starts under `python -X importtime` give
the import time (the top-level imports' cumulative seconds added up, median;
importtime's own overhead included, and the few modules imported through
`importlib.import_module`, such as `kubesoar._server` itself, count only through what
they import) and, from the median run, the slowest top-level imports: the list to cut
from.

`--floor` also starts, `--runs` times, the least a server of this design can be: an
aiohttp app that only answers `/readyz`, measured the same way. `--layers` adds where
the start's time and memory go: fresh interpreters that import one more layer each (the
interpreter alone, asyncio, aiohttp.web, prometheus_client, pydantic with kubesoar's
models, then all of `kubesoar._server`), `--runs` each: median CPU seconds from exec
to the last import, and RSS then. The load average comes with every line.
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


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
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


# The floor under this design: an aiohttp server that only answers `/readyz`.
# Started as `kubesoar runtime` starts its server (AppRunner, TCPSite, no access log).
FLOOR = """
import asyncio, os
from aiohttp import web

async def ready(request):
    return web.json_response({"status": "ready"})

async def serve():
    app = web.Application()
    app.router.add_get("/readyz", ready)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(os.environ["KUBESOAR_PORT"])).start()
    await asyncio.Event().wait()

asyncio.run(serve())
"""
RUNTIME = ["-m", "kubesoar", "runtime"]


def one_start(
    workspace: Path, python_args: list[str], program: list[str] = RUNTIME
) -> dict[str, float]:
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, *python_args, *program],
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
        rss_ready, anon_ready, pss_ready, cpu_ready = (
            rss_mib(proc.pid),
            rss_mib(proc.pid, "RssAnon"),
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
            "rss_anon_ready": anon_ready,
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


def top_level_imports(text: str) -> list[tuple[str, float]]:
    """Top-level imports (the least indented `import time:` lines), cumulative seconds."""
    rows = []
    for line in text.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        raw = parts[2].rstrip()
        rows.append((len(raw) - len(raw.lstrip()), raw.strip(), int(parts[1]) / 1e6))
    least = min((indent for indent, _, _ in rows), default=0)
    return [(name, s) for indent, name, s in rows if indent == least]


def slowest_imports(text: str, top: int) -> list[tuple[str, float]]:
    return sorted(top_level_imports(text), key=lambda r: -r[1])[:top]


# Each layer imports what the one before it did, and more (see the module docstring).
LAYERS: list[tuple[str, str]] = [
    ("interpreter", "pass"),
    ("+ asyncio", "import asyncio"),
    ("+ aiohttp.web", "from aiohttp import web"),
    ("+ prometheus_client", "from aiohttp import web; import prometheus_client"),
    (
        "+ pydantic, kubesoar._alert, kubesoar.contracts.http",
        "from aiohttp import web; import prometheus_client, kubesoar._alert, "
        "kubesoar.contracts.http",
    ),
    ("kubesoar._server (all a pod imports to start)", "import kubesoar._server"),
]
# The child's CPU seconds from exec (process_time) and its RSS, printed before it exits
# (an interpreter's teardown of its modules is no part of a start).
_PRINT_CPU_AND_RSS = (
    "\nimport time\nprint(time.process_time())"
    "\nfor line in open('/proc/self/status'):\n"
    "    if line.startswith('VmRSS:'): print(line.split()[1])"
)


def layers(runs: int) -> list[dict[str, Any]]:
    """Per layer: median CPU seconds from exec to the last import, and RSS then."""
    result = []
    for name, code in LAYERS:
        cpus, rss = [], []
        for _ in range(runs):
            done = subprocess.run(
                [sys.executable, "-c", code + _PRINT_CPU_AND_RSS],
                capture_output=True,
                text=True,
                check=True,
                cwd=tempfile.gettempdir(),  # not the repository: its folders shadow nothing
            )
            cpu, kib = done.stdout.split()[-2:]
            cpus.append(float(cpu))
            rss.append(int(kib) / 1024)
        result.append(
            {
                "layer": name,
                "cpu_s": round(statistics.median(cpus), 3),
                "rss_mib": round(statistics.median(rss), 1),
                "load": round(os.getloadavg()[0], 2),
            }
        )
    return result


def summary(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {
        key: {
            "median": round(statistics.median(r[key] for r in runs), 3),
            "min": round(min(r[key] for r in runs), 3),
            "max": round(max(r[key] for r in runs), 3),
        }
        for key in runs[0]
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--importtime", type=int, default=15, help="slowest imports to list")
    parser.add_argument("--importtime-runs", type=int, default=3)
    parser.add_argument("--layers", action="store_true", help="also measure layer by layer")
    parser.add_argument("--floor", action="store_true", help="also start a bare aiohttp server")
    parser.add_argument("--playbook", type=Path, help="serve this module instead of the no-op one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kubesoar-runtime-") as folder:
        workspace = Path(folder)
        (workspace / "src").mkdir()
        playbook = args.playbook.read_text() if args.playbook else NOOP
        (workspace / "src" / "noopbook.py").write_text(playbook)
        load = os.getloadavg()[0]
        runs: list[dict[str, float]] = [one_start(workspace, []) for _ in range(args.runs)]
        traces = []
        for _ in range(max(1, args.importtime_runs)):
            one_start(workspace, ["-X", "importtime"])
            text = one_start.importtime  # type: ignore[attr-defined]
            traces.append((sum(s for _, s in top_level_imports(text)), text))
        traces.sort(key=lambda trace: trace[0])
        import_s, median_trace = traces[len(traces) // 2]
        imports = slowest_imports(median_trace, args.importtime)
    result: dict[str, Any] = {"load_at_start": load, "load_at_end": os.getloadavg()[0]}
    result["import_s"] = {
        "median": round(import_s, 3),
        "min": round(traces[0][0], 3),
        "max": round(traces[-1][0], 3),
    }
    result.update(summary(runs))
    result["slowest_imports_s"] = [[name, round(s, 3)] for name, s in imports]
    if args.floor:
        with tempfile.TemporaryDirectory(prefix="kubesoar-floor-") as folder:
            floor = [one_start(Path(folder), [], ["-c", FLOOR]) for _ in range(args.runs)]
        result["floor"] = summary(floor)
        del result["floor"]["rss_served"]  # it answers /readyz only
    if args.layers:
        result["layers"] = layers(args.runs)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
