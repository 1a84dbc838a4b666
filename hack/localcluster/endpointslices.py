"""EndpointSlices for pods on loopback addresses (stands in for the kcm controller).

The API server rejects loopback addresses in Endpoints and in IPv4/IPv6
EndpointSlices (ValidateEndpointIP), so kube-controller-manager's endpoint
controllers cannot publish pods that live on 127.1.x.y. This controller
publishes them instead, in slices of addressType FQDN whose addresses are the
dotted pod IPs: "127.1.0.7" is a valid FQDN for the API, and any client that
connects to an address as a host name reaches the pod, with no DNS involved.

Everything else follows the kcm controller: label kubernetes.io/service-name,
owner reference to the Service, conditions ready/serving/terminating,
publishNotReadyAddresses, named targetPorts resolved per pod (one slice per
distinct port set), targetRef and nodeName on each endpoint.

    python hack/localcluster/endpointslices.py --kubeconfig K
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

if __package__ in (None, ""):  # run as a script: make `hack.localcluster` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hack.localcluster.kubeapi import ApiError, KubeApi, WatchExpired

log = logging.getLogger("endpointslices")

MANAGED_BY = "loopback-endpointslices.kubesoar.dev"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
HEADLESS_LABEL = "service.kubernetes.io/headless"
SLICES = "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"

Key = tuple[str, str]


def key_of(obj: dict[str, Any]) -> Key:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


class Informer:
    """List, then watch, a resource into a dict; calls `changed(old, new)` on each change."""

    def __init__(self, api: KubeApi, path: str, changed: Callable[[Any, Any], None]) -> None:
        self.api = api
        self.path = path
        self.changed = changed
        self.items: dict[Key, dict[str, Any]] = {}
        self.synced = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                listing = await self.api.get(self.path)
                version = listing["metadata"]["resourceVersion"]
                fresh = {key_of(o): o for o in listing["items"]}
                for key in set(self.items) | set(fresh):
                    self._set(key, fresh.get(key))
                self.synced.set()
                while True:
                    async for event in self.api.watch(self.path, version):
                        obj = event["object"]
                        version = obj["metadata"].get("resourceVersion", version)
                        if event["type"] in ("ADDED", "MODIFIED"):
                            self._set(key_of(obj), obj)
                        elif event["type"] == "DELETED":
                            self._set(key_of(obj), None)
            except WatchExpired:
                continue
            except (ApiError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("watch %s failed: %r", self.path, exc)
                await asyncio.sleep(1)

    def _set(self, key: Key, obj: dict[str, Any] | None) -> None:
        old = self.items.pop(key, None)
        if obj is not None:
            self.items[key] = obj
        if old is not None or obj is not None:
            self.changed(old, obj)


def _pod_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _resolve_port(pod: dict[str, Any], target: int | str, protocol: str) -> int | None:
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for container in pod["spec"]["containers"]:
        for port in container.get("ports") or []:
            if port.get("name") == target and port.get("protocol", "TCP") == protocol:
                return int(port["containerPort"])
    return None


def desired_slices(
    service: dict[str, Any], pods: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The slices a Service should have, by name (pure: tested without a cluster)."""
    spec = service["spec"]
    selector = spec.get("selector") or {}
    if not selector or spec.get("type") == "ExternalName":
        return {}
    namespace, name = key_of(service)
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        status = pod.get("status") or {}
        if any(labels.get(k) != v for k, v in selector.items()) or not status.get("podIP"):
            continue
        if status.get("phase") in ("Succeeded", "Failed"):
            continue
        ports = []
        for service_port in spec.get("ports") or []:
            protocol = service_port.get("protocol", "TCP")
            resolved = _resolve_port(
                pod, service_port.get("targetPort", service_port["port"]), protocol
            )
            if resolved is None:
                continue
            port = {"name": service_port.get("name", ""), "port": resolved, "protocol": protocol}
            if service_port.get("appProtocol"):
                port["appProtocol"] = service_port["appProtocol"]
            ports.append(port)
        terminating = bool(pod["metadata"].get("deletionTimestamp"))
        serving = _pod_ready(pod) or publish_not_ready
        endpoint: dict[str, Any] = {
            "addresses": [status["podIP"]],
            "conditions": {
                "ready": serving and not terminating,
                "serving": serving,
                "terminating": terminating,
            },
            "nodeName": pod["spec"].get("nodeName", ""),
            "targetRef": {
                "kind": "Pod",
                "namespace": namespace,
                "name": pod["metadata"]["name"],
                "uid": pod["metadata"]["uid"],
            },
        }
        group = json.dumps(ports, sort_keys=True)
        groups.setdefault(group, (ports, []))[1].append(endpoint)
    # As the kcm controller: the Service's labels, then the reserved ones.
    labels = {
        k: v
        for k, v in (service["metadata"].get("labels") or {}).items()
        if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL)
    }
    labels.update({SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MANAGED_BY})
    if spec.get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    slices: dict[str, dict[str, Any]] = {}
    for group, (ports, endpoints) in groups.items():
        digest = hashlib.sha256(group.encode()).hexdigest()[:8]
        slice_name = f"{name[:200]}-loopback-{digest}"
        slices[slice_name] = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": slice_name,
                "namespace": namespace,
                "labels": dict(labels),
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "name": name,
                        "uid": service["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "addressType": "FQDN",
            "endpoints": sorted(endpoints, key=lambda e: e["targetRef"]["name"]),
            "ports": ports,
        }
    return slices


class Controller:
    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self.queue: asyncio.Queue[Key] = asyncio.Queue()
        self.queued: set[Key] = set()
        self.services = Informer(api, "/api/v1/services", self._service_changed)
        self.pods = Informer(api, "/api/v1/pods", self._pod_changed)

    def _enqueue(self, key: Key) -> None:
        if key not in self.queued:
            self.queued.add(key)
            self.queue.put_nowait(key)

    def _service_changed(self, old: Any, new: Any) -> None:
        self._enqueue(key_of(new or old))

    def _pod_changed(self, old: Any, new: Any) -> None:
        namespace = (new or old)["metadata"]["namespace"]
        for key in list(self.services.items):
            if key[0] == namespace:
                self._enqueue(key)

    async def run(self) -> None:
        tasks = [asyncio.create_task(self.services.run()), asyncio.create_task(self.pods.run())]
        try:
            await self.services.synced.wait()
            await self.pods.synced.wait()
            while True:
                key = await self.queue.get()
                await asyncio.sleep(0.02)  # let a burst of pod events coalesce
                self.queued.discard(key)
                try:
                    await self.reconcile(key)
                except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
                    log.warning("reconciling %s/%s: %r; retrying", *key, exc)
                    await asyncio.sleep(1)
                    self._enqueue(key)
        finally:
            for task in tasks:
                task.cancel()

    async def reconcile(self, key: Key) -> None:
        namespace, name = key
        service = self.services.items.get(key)
        pods = [p for (ns, _), p in self.pods.items.items() if ns == namespace]
        desired = desired_slices(service, pods) if service is not None else {}
        path = SLICES.format(ns=namespace)
        selector = f"{SERVICE_NAME_LABEL}={name},{MANAGED_BY_LABEL}={MANAGED_BY}"
        existing = {
            s["metadata"]["name"]: s
            for s in (await self.api.get(path, labelSelector=selector))["items"]
        }
        for slice_name, current in existing.items():
            if slice_name not in desired:
                await self._ignore_missing(self.api.delete(f"{path}/{slice_name}"))
            elif (
                current.get("endpoints") or [],
                current.get("ports") or [],
                current["metadata"].get("labels") or {},
            ) != (
                desired[slice_name]["endpoints"],
                desired[slice_name]["ports"],
                desired[slice_name]["metadata"]["labels"],
            ):
                body = desired[slice_name]
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                await self.api.request("PUT", f"{path}/{slice_name}", body=body)
        for slice_name, body in desired.items():
            if slice_name not in existing:
                await self._ignore_missing(self.api.create(path, body))
        log.info("service %s/%s: %d slice(s)", namespace, name, len(desired))

    @staticmethod
    async def _ignore_missing(call: Any) -> None:
        try:
            await call
        except ApiError as exc:
            if exc.status not in (404, 409):  # 409 on create: the next event reconciles again
                raise


async def run(kubeconfig: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with KubeApi(kubeconfig) as api:
        controller = asyncio.create_task(Controller(api).run())
        await stop.wait()
        controller.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kubeconfig", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(run(Path(args.kubeconfig)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
