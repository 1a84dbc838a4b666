"""What a runtime pod imports (issue 16, a lighter runtime): `kubesoar runtime` serving a
no-op playbook never imports the operator's or the router's dependencies (kubernetes,
kopf, GitPython, asyncpg, kubesoar's operator, router and store packages), neither to
start nor to run; httpx waits for a run's first call; the HTTP paths are known without
pydantic; and `tune_gc`, as the runtime calls it, frees young garbage before it freezes.

The pod's own entry point (`python -m kubesoar runtime`, through `runpy` as `-m` does)
runs under a few lines that write `sorted(sys.modules)` to a file on SIGUSR1 (sent once
`/readyz` answers: what the start imported) and at exit (after a run and SIGTERM:
everything). `sys.modules` is the ground truth: `python -X importtime` was tried and
does not list modules imported through `importlib.import_module` (as `kubesoar` imports
its subcommand and the playbook), so an import of that kind would go unseen. No debug
endpoint in the runtime. Timing is bench/scale's business (`runtime_start.py`), not
asserted here.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from runtime_procs import wait_until_ready

NOOP = (
    "from kubesoar import playbook\n\n\n"
    "@playbook('webhook')\nasync def triage(alert, ctx):\n    return {'ok': True}\n"
)

# The operator and router extras (pyproject.toml); installed in this test environment,
# so an import of any of them by the runtime would show.
NOT_IN_A_RUNTIME_POD = {
    "kubernetes",
    "kopf",
    "git",
    "asyncpg",
    "kubesoar_operator",
    "kubesoar_router",
    "kubesoar_store",
}


# The pod's entry point, with `sys.modules` written to $FOOTPRINT_DIR/<when> on SIGUSR1
# and at exit. Standard library only, so the probe adds nothing to what it finds.
PROBE = """
import atexit, os, runpy, signal, sys

def dump(when):
    path = os.path.join(os.environ["FOOTPRINT_DIR"], when)
    with open(path + ".part", "w") as out:
        out.write("\\n".join(sorted(sys.modules)))
    os.replace(path + ".part", path)  # whole, or not there yet

signal.signal(signal.SIGUSR1, lambda *_: dump("at-start"))
atexit.register(dump, "at-exit")
sys.argv = ["kubesoar", "runtime"]
runpy.run_module("kubesoar", run_name="__main__", alter_sys=True)
"""


async def _read_when_written(path: Path) -> set[str]:
    for _ in range(500):  # bounded: the handler runs as soon as the loop wakes
        if path.exists():
            return set(path.read_text().split())
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path.name} was never written")


def _packages(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_noop_runtime_pod_imports_no_operator_or_router_dependency(
    tmp_path: Path,
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "noopbook.py").write_text(NOOP)
    port = _free_port()
    env = {
        **os.environ,
        "KUBESOAR_WORKSPACE": str(tmp_path),
        "KUBESOAR_MODULE": "noopbook",
        "KUBESOAR_POD_IP": "127.0.0.1",
        "KUBESOAR_PORT": str(port),
        "FOOTPRINT_DIR": str(tmp_path),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", PROBE], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            await wait_until_ready(client, process)
            process.send_signal(signal.SIGUSR1)
            at_start = await _read_when_written(tmp_path / "at-start")
            answer = await client.post(
                "/v1/runs", json={"idempotencyKey": "k1", "alert": {"title": "t"}}
            )
            assert answer.status_code == 202, answer.text
            run_id = answer.json()["runId"]
            status = None
            for _ in range(250):  # bounded: a no-op run finishes at once
                status = (await client.get(f"/v1/runs/{run_id}")).json()["status"]
                if status not in {"queued", "running"}:
                    break
                await asyncio.sleep(0.02)
            assert status == "succeeded"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    everything = await _read_when_written(tmp_path / "at-exit")

    # The probe read what it should: the server and the playbook were imported.
    assert {"aiohttp.web", "kubesoar._server", "noopbook"} <= at_start
    found = NOT_IN_A_RUNTIME_POD & _packages(everything)
    assert not found, f"a runtime pod imported {sorted(found)}"
    # httpx (and click and pygments, which httpx/__init__ imports) only for a call.
    early = {"httpx", "click", "pygments"} & _packages(at_start)
    assert not early, f"imported before any run: {sorted(early)}"


def test_the_http_paths_are_known_without_pydantic() -> None:
    probe = (
        "import sys\n"
        "from kubesoar.contracts import paths\n"
        "assert paths.READYZ_PATH == '/readyz'\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'pydantic'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_contracts_http_re_exports_the_paths() -> None:
    from kubesoar.contracts import http, paths

    for name in paths.__all__:
        assert getattr(http, name) is getattr(paths, name)


def test_the_runtimes_tune_gc_frees_young_garbage_then_freezes_the_rest() -> None:
    # In a child: freezing is for a server process, not for the test session's heap.
    probe = (
        "import gc, weakref\n"
        "from kubesoar._gc import GC_GEN0_THRESHOLD, tune_gc\n"
        "class Node: pass\n"
        "garbage = Node()\n"
        "garbage.me = garbage\n"  # a cycle: only the collector frees it
        "gone = weakref.ref(garbage)\n"
        "del garbage\n"
        "tune_gc(full_collection=False)\n"  # as `kubesoar runtime` calls it
        "print(gone() is None, gc.get_freeze_count() > 1000,"
        " gc.get_threshold()[0] == GC_GEN0_THRESHOLD)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    freed, frozen, rarer_young_collections = done.stdout.split()
    assert (freed, frozen, rarer_young_collections) == ("True", "True", "True")
