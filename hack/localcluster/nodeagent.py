"""The local node agent: a stand-in for the kubelet that runs pods as processes.

    python hack/localcluster/nodeagent.py --kubeconfig K --node-name N --state-dir D
    python hack/localcluster/nodeagent.py --sweep --state-dir D

It registers a Ready Node, renews its Lease in kube-node-lease, watches the pods
bound to it and runs each (podworker.py) on its own loopback address from
127.1.0.0/16. Deleted pods get SIGTERM, SIGKILL after their grace period, and
are then removed with gracePeriodSeconds=0, as the kubelet does. On SIGTERM the
agent stops all its pods. `--sweep` kills processes left by an agent that died.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import fcntl
import ipaddress
import logging
import os
import platform
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import aiohttp

if __package__ in (None, ""):  # run as a script: make `hack.localcluster` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hack.localcluster import podnet, podstatus
from hack.localcluster.kubeapi import ApiError, KubeApi, WatchExpired, retrying
from hack.localcluster.podworker import NodeContext, PodWorker

log = logging.getLogger("nodeagent")

# Every running agent on this machine owns one 127.N.0.0/16 (N >= 1), claimed
# with a lock file, so that two clusters never hand out the same pod address.
POD_NETWORK_LOCKS = Path(tempfile.gettempdir()) / "kubesoar-localcluster-podnets"
LEASE_SECONDS = 40
LEASE_RENEW_SECONDS = 10
NODE_STATUS_SECONDS = 60
# Pods that vanished from the API (no deletion seen) and agent shutdown:
# grace periods are honoured up to this long.
MAX_ORPHAN_GRACE = 10.0
KUBELET_VERSION = "v1.36.3"


def claim_pod_network(state_dir: Path) -> tuple[ipaddress.IPv4Network, IO[str]]:
    """Lock a free 127.N.0.0/16 for this agent's lifetime (the same N as last time if free)."""
    POD_NETWORK_LOCKS.mkdir(parents=True, exist_ok=True)
    remembered = state_dir / "podnet"
    preferred = int(remembered.read_text()) if remembered.exists() else 1
    for octet in [preferred, *range(1, 255)]:
        lock = open(
            POD_NETWORK_LOCKS / f"127.{octet}.lock", "w"
        )  # held (locked) until the agent exits
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        lock.write(f"{state_dir}\n")
        lock.flush()
        remembered.write_text(f"{octet}\n")
        return ipaddress.IPv4Network(f"127.{octet}.0.0/16"), lock
    raise RuntimeError("no free 127.N.0.0/16 pod network left")


class AddressPool:
    def __init__(self, network: ipaddress.IPv4Network) -> None:
        self.network = network
        self.in_use: set[str] = set()

    def take(self, wanted: str | None = None) -> str:
        if wanted and ipaddress.ip_address(wanted) in self.network and wanted not in self.in_use:
            self.in_use.add(wanted)
            return wanted
        for host in self.network.hosts():
            address = str(host)
            if host.packed[-1] not in (0, 255) and address not in self.in_use:
                self.in_use.add(address)
                return address
        raise RuntimeError("pod address pool exhausted")

    def release(self, address: str) -> None:
        self.in_use.discard(address)


def micro_time() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


AGENT_STARTED = podstatus.now()


def node_status() -> dict[str, Any]:
    memory_kib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
    disk = shutil.disk_usage("/")
    resources = {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{memory_kib}Ki",
        "pods": "110",
        "ephemeral-storage": f"{disk.total // 1024}Ki",
    }
    now = podstatus.now()

    def condition(kind: str, ok: bool, reason: str, message: str) -> dict[str, str]:
        return {
            "type": kind,
            "status": "True" if ok else "False",
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            # The conditions never change while the agent runs.
            "lastTransitionTime": AGENT_STARTED,
        }

    return {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            condition("MemoryPressure", False, "KubeletHasSufficientMemory", "local node agent"),
            condition("DiskPressure", False, "KubeletHasNoDiskPressure", "local node agent"),
            condition("PIDPressure", False, "KubeletHasSufficientPID", "local node agent"),
            condition(
                "Ready", True, "KubeletReady", "kubesoar local node agent is posting ready status"
            ),
        ],
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": platform.node() or "localhost"},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": "kubesoar-local",
            "systemUUID": "kubesoar-local",
            "bootID": "kubesoar-local",
            "kernelVersion": platform.release(),
            "osImage": f"{platform.system()} (kubesoar local node agent)",
            "containerRuntimeVersion": "localprocess://1",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                platform.machine(), platform.machine()
            ),
        },
    }


class NodeAgent:
    def __init__(
        self,
        api: KubeApi,
        node_name: str,
        state_dir: Path,
        probe_session: aiohttp.ClientSession,
        pod_network: ipaddress.IPv4Network,
    ) -> None:
        server = urlsplit(api.server)
        self.api = api
        self.node_name = node_name
        self.context = NodeContext(
            api=api,
            node_name=node_name,
            state_dir=state_dir,
            api_host=server.hostname or "127.0.0.1",
            api_port=server.port or 443,
            probe_session=probe_session,
            lookup_service=self.lookup_service,
        )
        self.addresses = AddressPool(pod_network)
        self.workers: dict[str, PodWorker] = {}
        self.stopping: dict[str, asyncio.Task[None]] = {}

    # -- node and lease ------------------------------------------------------

    async def register(self) -> None:
        path = f"/api/v1/nodes/{self.node_name}"
        node = await self.api.get_or_none(path)
        if node is None:
            labels = {
                "kubernetes.io/hostname": self.node_name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": node_status()["nodeInfo"]["architecture"],
            }
            node = await self.api.create(
                "/api/v1/nodes",
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": self.node_name, "labels": labels},
                },
            )
        await self.api.merge_patch(f"{path}/status", {"status": node_status()})
        self.node_uid = node["metadata"]["uid"]
        log.info("node %s registered", self.node_name)

    async def heartbeat(self) -> None:
        lease_path = (
            f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node_name}"
        )
        beats = 0
        while True:
            try:
                lease = await self.api.get_or_none(lease_path)
                spec = {
                    "holderIdentity": self.node_name,
                    "leaseDurationSeconds": LEASE_SECONDS,
                    "renewTime": micro_time(),
                }
                if lease is None:
                    owner = {
                        "apiVersion": "v1",
                        "kind": "Node",
                        "name": self.node_name,
                        "uid": self.node_uid,
                    }
                    await self.api.create(
                        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                        {
                            "metadata": {"name": self.node_name, "ownerReferences": [owner]},
                            "spec": spec,
                        },
                    )
                else:
                    await self.api.merge_patch(lease_path, {"spec": spec})
                beats += 1
                if beats % (NODE_STATUS_SECONDS // LEASE_RENEW_SECONDS) == 0:
                    await self.api.merge_patch(
                        f"/api/v1/nodes/{self.node_name}/status", {"status": node_status()}
                    )
            except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
                log.warning("heartbeat failed: %r", exc)
            await asyncio.sleep(LEASE_RENEW_SECONDS)

    # -- pods ----------------------------------------------------------------

    async def lookup_service(self, namespace: str, name: str, port: int) -> str | None:
        """ "address:port" of a ready pod behind Service `name` on `port` (podnet.py)."""
        try:
            service = await self.api.get_or_none(f"/api/v1/namespaces/{namespace}/services/{name}")
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("looking up service %s/%s: %r", namespace, name, exc)
            return None
        if service is None:
            return None
        ready = [(w.pod, w.pod_ip) for w in self.workers.values() if w.ready]
        return podnet.pick_backend(service, port, ready)

    async def watch_pods(self) -> None:
        selector = {"fieldSelector": f"spec.nodeName={self.node_name}"}
        while True:
            try:
                listing = await self.api.get("/api/v1/pods", **selector)
                version = listing["metadata"]["resourceVersion"]
                seen = set()
                for pod in listing["items"]:
                    seen.add(pod["metadata"]["uid"])
                    self.on_pod(pod)
                for uid in set(self.workers) - seen:
                    self.on_pod_gone(uid)
                while True:
                    async for event in self.api.watch("/api/v1/pods", version, **selector):
                        pod = event["object"]
                        version = pod["metadata"].get("resourceVersion", version)
                        if event["type"] in ("ADDED", "MODIFIED"):
                            self.on_pod(pod)
                        elif event["type"] == "DELETED":
                            self.on_pod_gone(pod["metadata"]["uid"])
            except WatchExpired:
                log.info("pod watch expired; listing again")
            except (ApiError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("pod watch failed: %r; retrying", exc)
                await asyncio.sleep(1)

    def on_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        worker = self.workers.get(uid)
        if worker is None:
            if uid in self.stopping:
                return
            if meta.get("deletionTimestamp"):
                self._stop(uid, pod, None, grace=0)
                return
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return  # finished before this agent started; never run twice
            address = self.addresses.take((pod.get("status") or {}).get("podIP"))
            worker = PodWorker(pod, self.context, address)
            self.workers[uid] = worker
            log.info("starting pod %s on %s", worker.name, address)
            worker.start()
            return
        worker.update(pod)
        if meta.get("deletionTimestamp"):
            grace = meta.get(
                "deletionGracePeriodSeconds", pod["spec"].get("terminationGracePeriodSeconds", 30)
            )
            self._stop(uid, pod, self.workers.pop(uid), grace=float(grace))

    def on_pod_gone(self, uid: str) -> None:
        worker = self.workers.pop(uid, None)
        if worker is not None:
            grace = min(
                float(worker.pod["spec"].get("terminationGracePeriodSeconds", 30)), MAX_ORPHAN_GRACE
            )
            self._stop(uid, None, worker, grace=grace)

    def _stop(
        self, uid: str, pod: dict[str, Any] | None, worker: PodWorker | None, grace: float
    ) -> None:
        async def stop() -> None:
            try:
                if worker is not None:
                    log.info("stopping pod %s (grace %.0fs)", worker.name, grace)
                    await worker.stop(grace)
                    self.addresses.release(worker.pod_ip)
                    self._clean_pod_dir(worker)
                if pod is not None:
                    await self._finalize_deletion(pod)
            finally:
                self.stopping.pop(uid, None)

        self.stopping[uid] = asyncio.create_task(stop(), name=f"stop {uid}")

    async def _finalize_deletion(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        try:
            await retrying(f"delete pod {meta['name']}", lambda: self.api.delete(path, body))
        except ApiError as exc:
            if exc.status not in (404, 409):
                log.warning("deleting pod %s: %s", meta["name"], exc)

    @staticmethod
    def _clean_pod_dir(worker: PodWorker) -> None:
        # Volumes may hold secrets: remove everything but the logs.
        for sub in ("root", "volumes", "home", "tmp"):
            shutil.rmtree(worker.pod_dir / sub, ignore_errors=True)

    async def shutdown(self) -> None:
        workers = list(self.workers.values())
        self.workers.clear()
        await asyncio.gather(
            *(
                w.stop(
                    min(
                        float(w.pod["spec"].get("terminationGracePeriodSeconds", 30)),
                        MAX_ORPHAN_GRACE,
                    )
                )
                for w in workers
            ),
            *self.stopping.values(),
            return_exceptions=True,
        )


def sweep(state_dir: Path) -> int:
    """Kill every process that carries this state dir's marker; returns how many groups."""
    marker = f"KUBESOAR_LOCAL_NODE_STATE={state_dir}".encode()
    groups = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            with contextlib.suppress(OSError):
                groups.add(os.getpgid(int(entry.name)))
    for group in groups:
        with contextlib.suppress(OSError):
            os.killpg(group, signal.SIGKILL)
    return len(groups)


async def run(
    args: argparse.Namespace, state_dir: Path, pod_network: ipaddress.IPv4Network
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with (
        KubeApi(Path(args.kubeconfig)) as api,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0)) as probes,
    ):
        agent = NodeAgent(api, args.node_name, state_dir, probes, pod_network)
        await retrying("register node", agent.register, attempts=30)
        tasks = [asyncio.create_task(agent.heartbeat()), asyncio.create_task(agent.watch_pods())]
        await stop.wait()
        log.info("shutting down: stopping %d pods", len(agent.workers))
        for task in tasks:
            task.cancel()
        await agent.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kubeconfig")
    parser.add_argument("--node-name", default="kubesoar-node")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--sweep", action="store_true", help="kill leftover pod processes and exit")
    args = parser.parse_args(argv)
    if args.sweep:
        sweep(Path(args.state_dir).resolve())
        return 0
    if not args.kubeconfig:
        parser.error("--kubeconfig is required")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    state_dir = Path(args.state_dir).resolve()
    leftovers = sweep(state_dir)
    if leftovers:
        log.warning("killed %d process groups left by a previous agent", leftovers)
    pod_network, _lock = claim_pod_network(state_dir)
    log.info("pod network %s", pod_network)
    asyncio.run(run(args, state_dir, pod_network))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
