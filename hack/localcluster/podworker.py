"""The lifecycle of one pod on the local node: volumes, init containers, containers,
probes, restarts with backoff, status, and graceful termination.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from hack.localcluster import images, podnet, podstatus
from hack.localcluster.kubeapi import ApiError, KubeApi
from hack.localcluster.podenv import ContainerConfigError, PathRewriter, expand, resolve_env
from hack.localcluster.podproc import ContainerProcess
from hack.localcluster.podstatus import ContainerRecord
from hack.localcluster.podvolumes import PodVolumes, VolumeError
from hack.localcluster.probes import ProbeLoop, ProbeTarget

log = logging.getLogger("nodeagent.pod")

# The kubelet starts at 10 s; tests want faster feedback, the cap keeps a
# crash-looping container from spinning.
BACKOFF_INITIAL, BACKOFF_MAX = 1.0, 30.0
# A container that ran this long without failing gets its backoff reset.
BACKOFF_RESET_AFTER = 60.0
# Waiting on something missing (Secret, ConfigMap) is retried this often.
CONFIG_RETRY_SECONDS = 2.0
# Where in-cluster clients look for their token; hard-coded in every client.
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# kubesoar's operator and router read the token and CA from this folder when it is
# set (else SERVICE_ACCOUNT_DIR), so they use the in-cluster login for real here.
SERVICE_ACCOUNT_DIR_ENV = "KUBESOAR_SERVICE_ACCOUNT_DIR"


@dataclass
class NodeContext:
    """What every pod worker shares: the API, the node, the base environment."""

    api: KubeApi
    node_name: str
    state_dir: Path
    api_host: str
    api_port: int
    probe_session: aiohttp.ClientSession
    # Resolves `<service>.<namespace>.svc` names to a ready pod (see podnet.py).
    lookup_service: podnet.ServiceLookup

    def base_env(self, pod: Mapping[str, Any], pod_ip: str, pod_dir: Path) -> dict[str, str]:
        venv_bin = str(Path(sys.executable).parent)
        return {
            "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(pod_dir / "home"),
            "TMPDIR": str(pod_dir / "tmp"),
            "HOSTNAME": pod["metadata"]["name"],
            "LANG": "C.UTF-8",
            # In-cluster clients find the API here, never through the Service IP.
            "KUBERNETES_SERVICE_HOST": self.api_host,
            "KUBERNETES_SERVICE_PORT": str(self.api_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(self.api_port),
            "KUBESOAR_LOCAL_POD_IP": pod_ip,
            "KUBESOAR_LOCAL_POD_UID": pod["metadata"]["uid"],
            # Marks every process of this node agent, so leftovers can be swept.
            "KUBESOAR_LOCAL_NODE_STATE": str(self.state_dir),
        }


class PodObjects:
    """Secrets, ConfigMaps and tokens of one pod, read with the node's identity."""

    def __init__(self, api: KubeApi, pod: Mapping[str, Any]) -> None:
        self.api = api
        self.pod = pod
        self.namespace = pod["metadata"]["namespace"]

    async def _get(self, resource: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.api.get_or_none(
                f"/api/v1/namespaces/{self.namespace}/{resource}/{name}"
            )
        except ApiError as exc:
            # The node authorizer learns of a new pod's references a moment
            # after the pod is bound: a 403 here heals on retry.
            raise VolumeError(f"reading {resource}/{name}: HTTP {exc.status}") from exc

    async def secret(self, name: str) -> dict[str, Any] | None:
        return await self._get("secrets", name)

    async def config_map(self, name: str) -> dict[str, Any] | None:
        return await self._get("configmaps", name)

    async def service_account_token(self, audience: str | None, expiration: int) -> str:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        account = spec.get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": expiration,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        try:
            answer = await self.api.create(
                f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token", body
            )
        except ApiError as exc:
            raise VolumeError(
                f"requesting a token for serviceaccount {account}: HTTP {exc.status}"
            ) from exc
        return str(answer["status"]["token"])


class PodWorker:
    def __init__(self, pod: dict[str, Any], node: NodeContext, pod_ip: str) -> None:
        self.pod = pod
        self.node = node
        self.pod_ip = pod_ip
        self.uid: str = pod["metadata"]["uid"]
        self.pod_dir: Path = node.state_dir / "pods" / self.uid
        spec = pod["spec"]
        self.init_records = [
            ContainerRecord(c["name"], c["image"]) for c in spec.get("initContainers") or []
        ]
        self.records = [ContainerRecord(c["name"], c["image"]) for c in spec["containers"]]
        if self.init_records:
            for record in self.records:
                record.state = podstatus.waiting("PodInitializing")
        self.phase = "Pending"
        self.initialized = not self.init_records
        self.start_time = podstatus.now()
        self.conditions = podstatus.Conditions()
        self.processes: dict[str, ContainerProcess] = {}
        self.stopping = False
        self._dirty = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._main: asyncio.Task[None] | None = None
        self._patcher: asyncio.Task[None] | None = None

    # -- public --------------------------------------------------------------

    @property
    def name(self) -> str:
        return f"{self.pod['metadata']['namespace']}/{self.pod['metadata']['name']}"

    def start(self) -> None:
        self._main = asyncio.create_task(self._run(), name=f"pod {self.name}")
        self._patcher = asyncio.create_task(self._patch_loop(), name=f"status {self.name}")
        self.mark_dirty()

    def update(self, pod: dict[str, Any]) -> None:
        self.pod = pod

    def mark_dirty(self) -> None:
        self._dirty.set()

    async def stop(self, grace_seconds: float) -> None:
        """Stop the pod: no more restarts, SIGTERM, SIGKILL after the grace period."""
        self.stopping = True
        for task in [self._main, *self._tasks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(p.terminate(grace_seconds) for p in list(self.processes.values())))
        if self._main is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._main
        if self._patcher is not None:
            self._patcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._patcher

    # -- lifecycle -----------------------------------------------------------

    async def _run(self) -> None:
        for sub in ("logs", "run", "home", "tmp", "root"):
            (self.pod_dir / sub).mkdir(parents=True, exist_ok=True)
        if not self._check_images():
            self.mark_dirty()
            return  # stays Pending until deleted, as with an image that cannot be pulled
        volumes = PodVolumes(self.pod, self.pod_dir)
        await self._retry_until_ok(lambda: volumes.set_up(PodObjects(self.node.api, self.pod)))
        if self.init_records:
            # A retried volume set-up said ContainerCreating; with volumes in place the
            # app containers wait for the init containers again, as the kubelet reports.
            for record in self.records:
                if "waiting" in record.state:
                    record.state = podstatus.waiting("PodInitializing")
        specs = self.pod["spec"]
        for container, record in zip(
            specs.get("initContainers") or [], self.init_records, strict=True
        ):
            if not await self._run_init_container(container, record, volumes):
                self.phase = "Failed"
                self.mark_dirty()
                return
        self.initialized = True
        self.mark_dirty()
        codes = await asyncio.gather(
            *(
                self._supervise(c, r, volumes)
                for c, r in zip(specs["containers"], self.records, strict=True)
            )
        )
        self.phase = "Succeeded" if all(code == 0 for code in codes) else "Failed"
        self.mark_dirty()

    def _check_images(self) -> bool:
        runnable = True
        containers = [
            *(self.pod["spec"].get("initContainers") or []),
            *self.pod["spec"]["containers"],
        ]
        for container, record in zip(containers, self.init_records + self.records, strict=True):
            try:
                images.container_argv(container)
            except images.ImageNotRunnable as exc:
                record.state = podstatus.waiting(exc.reason, str(exc))
                runnable = False
        return runnable

    async def _retry_until_ok(self, attempt: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await attempt()
                return
            except (VolumeError, ContainerConfigError) as exc:
                message = str(exc)
                reason = exc.reason
            except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
                message, reason = f"setting up volumes: {exc}", VolumeError.reason
            for record in self.init_records + self.records:
                if "waiting" in record.state:
                    record.state = podstatus.waiting(reason, message)
            self.mark_dirty()
            log.info("pod %s waits: %s", self.name, message)
            await asyncio.sleep(CONFIG_RETRY_SECONDS)

    async def _run_init_container(
        self, container: dict[str, Any], record: ContainerRecord, volumes: PodVolumes
    ) -> bool:
        backoff = BACKOFF_INITIAL
        while True:
            code = await self._run_once(container, record, volumes, probes=False)
            if code == 0:
                record.ready = True
                self.mark_dirty()
                return True
            if self.pod["spec"].get("restartPolicy", "Always") == "Never":
                return False
            await self._back_off(container, record, backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _supervise(
        self, container: dict[str, Any], record: ContainerRecord, volumes: PodVolumes
    ) -> int:
        backoff = BACKOFF_INITIAL
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while True:
            started = time.monotonic()
            code = await self._run_once(container, record, volumes, probes=True)
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                return code
            if time.monotonic() - started > BACKOFF_RESET_AFTER:
                backoff = BACKOFF_INITIAL
            await self._back_off(container, record, backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _back_off(
        self, container: dict[str, Any], record: ContainerRecord, delay: float
    ) -> None:
        meta = self.pod["metadata"]
        record.last_state = record.state
        record.state = podstatus.waiting(
            "CrashLoopBackOff",
            f"back-off {delay:g}s restarting failed container={container['name']} "
            f"pod={meta['name']}_{meta['namespace']}({self.uid})",
        )
        self.mark_dirty()
        await asyncio.sleep(delay)
        record.restart_count += 1

    async def _run_once(
        self,
        container: dict[str, Any],
        record: ContainerRecord,
        volumes: PodVolumes,
        *,
        probes: bool,
    ) -> int:
        rewriter = PathRewriter(volumes.mounts(container))
        env: dict[str, str] = {}
        base: dict[str, str] = {}

        async def resolve() -> None:
            nonlocal env, base
            base = self.node.base_env(self.pod, self.pod_ip, self.pod_dir)
            env = await resolve_env(
                self.pod, container, self.pod_ip, PodObjects(self.node.api, self.pod), base
            )

        await self._retry_until_ok(resolve)
        # The spec's paths only (the agent's own, in `base`, are host paths already),
        # folders above mount paths (KUBESOAR_SECRETS_DIR) included.
        env = rewriter.rewrite_env(env, base)
        env = {k: v if base.get(k) == v else await self._rewrite_address(v) for k, v in env.items()}
        kubeconfig = self._in_cluster_kubeconfig(rewriter)
        if kubeconfig is not None:
            env.setdefault("KUBECONFIG", str(kubeconfig))
            env.setdefault(SERVICE_ACCOUNT_DIR_ENV, rewriter.rewrite(SERVICE_ACCOUNT_DIR))
        spec_words = {
            key: [
                await self._rewrite_address(word)
                for word in rewriter.rewrite_all([expand(w, env) for w in container.get(key) or []])
            ]
            for key in ("command", "args")
        }
        argv = images.container_argv({**container, **spec_words})
        cwd = (
            Path(rewriter.rewrite(container["workingDir"]))
            if container.get("workingDir")
            else self.pod_dir / "root"
        )
        cwd.mkdir(parents=True, exist_ok=True)
        name = container["name"]
        proc = ContainerProcess(
            argv,
            env=env,
            cwd=cwd,
            log_path=self.pod_dir / "logs" / f"{name}.log",
            pid_path=self.pod_dir / "run" / f"{name}.pid",
        )
        if "terminated" in record.state:
            record.last_state = record.state
        started_at = podstatus.now()
        try:
            await proc.start()
        except OSError as exc:
            record.state = podstatus.terminated(
                128, started_at, "StartError", f"exec {argv[0]}: {exc.strerror}"
            )
            self.mark_dirty()
            return 128
        self.processes[name] = proc
        record.container_id = f"localprocess://{proc.pid}"
        record.state = {"running": {"startedAt": started_at}}
        has_startup = probes and "startupProbe" in container
        has_readiness = probes and "readinessProbe" in container
        record.started = not has_startup
        record.ready = record.started and not has_readiness
        if all("running" in r.state or "terminated" in r.state for r in self.records):
            self.phase = "Running"
        self.mark_dirty()
        probe_task = None
        if probes and any(
            k in container for k in ("startupProbe", "readinessProbe", "livenessProbe")
        ):
            target = ProbeTarget(
                pod_ip=self.pod_ip,
                ports_by_name={
                    p["name"]: p["containerPort"]
                    for p in container.get("ports") or []
                    if p.get("name")
                },
                env=env,
                cwd=str(cwd),
                rewrite=rewriter.rewrite_all,
                session=self.node.probe_session,
            )
            probe_task = asyncio.create_task(self._probe(container, record, proc, target))
            self._tasks.add(probe_task)
        try:
            code = await proc.wait()
        finally:
            if probe_task is not None:
                probe_task.cancel()
                self._tasks.discard(probe_task)
        self.processes.pop(name, None)
        record.ready = record.started = False
        record.state = podstatus.terminated(code, started_at)
        self.mark_dirty()
        log.info("pod %s container %s exited with %d", self.name, name, code)
        return code

    async def _rewrite_address(self, value: str) -> str:
        return await podnet.rewrite(value, self.pod_ip, self.node.lookup_service)

    @property
    def ready(self) -> bool:
        """Every container ready and the pod not being stopped (a Service may send to it)."""
        return not self.stopping and all(record.ready for record in self.records)

    def _in_cluster_kubeconfig(self, rewriter: PathRewriter) -> Path | None:
        """A kubeconfig with the pod's service account token, when one is mounted.

        In-cluster clients read the token from a fixed absolute path that a
        process outside a container cannot see; the Kubernetes clients and
        kopf fall back to $KUBECONFIG, which names this file.
        """
        account_dir = Path(rewriter.rewrite(SERVICE_ACCOUNT_DIR))
        token, ca = account_dir / "token", account_dir / "ca.crt"
        if str(account_dir) == SERVICE_ACCOUNT_DIR or not token.exists() or not ca.exists():
            return None
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "in-cluster",
                    "cluster": {
                        "server": f"https://{self.node.api_host}:{self.node.api_port}",
                        "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode(),
                    },
                }
            ],
            "users": [{"name": "service-account", "user": {"token": token.read_text().strip()}}],
            "contexts": [
                {
                    "name": "in-cluster",
                    "context": {
                        "cluster": "in-cluster",
                        "user": "service-account",
                        "namespace": self.pod["metadata"]["namespace"],
                    },
                }
            ],
            "current-context": "in-cluster",
        }
        path = self.pod_dir / "run" / "kubeconfig"
        path.touch(mode=0o600)
        path.write_text(json.dumps(config))
        return path

    async def _probe(
        self,
        container: dict[str, Any],
        record: ContainerRecord,
        proc: ContainerProcess,
        target: ProbeTarget,
    ) -> None:
        grace = float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

        def changed(attr: str) -> Callable[[bool], None]:
            def apply(value: bool) -> None:
                setattr(record, attr, value)
                self.mark_dirty()

            return apply

        if "startupProbe" in container:
            loop = ProbeLoop(
                "startup",
                container["startupProbe"],
                target,
                label=f"{self.name}/{container['name']}",
                initial=False,
                on_change=lambda _: None,
            )
            if not await loop.run(stop_when_succeeded=True):
                log.info(
                    "pod %s container %s failed its startup probe", self.name, container["name"]
                )
                await proc.terminate(grace)
                return
            record.started = True
            record.ready = "readinessProbe" not in container
            self.mark_dirty()
        loops = []
        if "readinessProbe" in container:
            loops.append(
                ProbeLoop(
                    "readiness",
                    container["readinessProbe"],
                    target,
                    label=f"{self.name}/{container['name']}",
                    initial=False,
                    on_change=changed("ready"),
                ).run()
            )
        if "livenessProbe" in container:

            def on_liveness(alive: bool) -> None:
                if not alive:
                    log.info(
                        "pod %s container %s failed liveness, restarting",
                        self.name,
                        container["name"],
                    )
                    self._spawn(proc.terminate(grace))

            loops.append(
                ProbeLoop(
                    "liveness",
                    container["livenessProbe"],
                    target,
                    label=f"{self.name}/{container['name']}",
                    initial=True,
                    on_change=on_liveness,
                ).run()
            )
        await asyncio.gather(*loops)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- status --------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        records = self.records
        init_pending = podstatus.names_where(self.init_records, lambda r: r.exit_code != 0)
        unready = podstatus.names_where(records, lambda r: not r.ready)
        terminal = self.phase in {"Succeeded", "Failed"}
        c = self.conditions
        c.set("PodReadyToStartContainers", True)
        c.set(
            "Initialized",
            self.initialized,
            "ContainersNotInitialized",
            f"containers with incomplete status: [{init_pending}]",
        )
        gates = [g["conditionType"] for g in self.pod["spec"].get("readinessGates") or []]
        existing = {
            x["type"]: x.get("status")
            for x in (self.pod.get("status") or {}).get("conditions") or []
        }
        gates_ok = all(existing.get(g) == "True" for g in gates)
        containers_ready = not unready and not terminal
        c.set(
            "ContainersReady",
            containers_ready,
            "PodCompleted" if terminal else "ContainersNotReady",
            "" if terminal else f"containers with unready status: [{unready}]",
        )
        c.set(
            "Ready",
            containers_ready and gates_ok,
            "PodCompleted"
            if terminal
            else ("ContainersNotReady" if unready else "ReadinessGatesNotReady"),
            "" if terminal else f"containers with unready status: [{unready}]",
        )
        status: dict[str, Any] = {
            "phase": self.phase,
            "conditions": c.merged_with((self.pod.get("status") or {}).get("conditions") or []),
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": self.start_time,
            "containerStatuses": [r.to_status() for r in records],
        }
        if self.init_records:
            status["initContainerStatuses"] = [r.to_status() for r in self.init_records]
        return status

    async def _patch_loop(self) -> None:
        """Patch status when it changed; coalesces bursts so the API server is not hammered."""
        meta = self.pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
        last_sent: dict[str, Any] | None = None
        while True:
            await self._dirty.wait()
            await asyncio.sleep(0.05)
            self._dirty.clear()
            status = self.status()
            if status == last_sent:
                continue
            try:
                await self.node.api.merge_patch(
                    path, {"metadata": {"uid": self.uid}, "status": status}
                )
                last_sent = status
            except ApiError as exc:
                if exc.status in (404, 409, 422):
                    # Gone, replaced by a new pod of the same name (uid differs),
                    # or a status the API rejects: retrying would not help.
                    if exc.status == 422:
                        log.error("status of pod %s rejected: %s", self.name, exc)
                    return
                log.warning("status of pod %s: %s", self.name, exc)
                await asyncio.sleep(1)
                self._dirty.set()
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("status of pod %s: %r", self.name, exc)
                await asyncio.sleep(1)
                self._dirty.set()
