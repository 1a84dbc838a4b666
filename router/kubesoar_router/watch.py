"""Keeping the router's snapshot in step with the API server.

Reflectors (list, then watch from the list's resourceVersion; on a dropped
watch or `410 Gone`, list again, with backoff) keep a store per kind:
Playbooks, AlertSources, runtime EndpointSlices (labelled
`kube.RUNTIME_SELECTOR`) and the Secrets AlertSources reference,
one field-selected watch per referenced Secret, so no other Secret is ever read.
A change marks its namespace dirty; a single task rebuilds dirty namespaces
(`snapshot.build_namespace`), coalescing bursts such as the initial lists.
The snapshot is marked synced once every first list is in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterable
from typing import Any

from kubesoar.contracts import kube

from kubesoar_router import snapshot as snapshots
from kubesoar_router.kubeapi import KubeApi

logger = logging.getLogger("kubesoar.router")

WATCH_TIMEOUT_SECONDS = 300
MAX_BACKOFF_SECONDS = 30.0

Key = tuple[str, str]  # (namespace, name)


def collection_path(kind: str, namespace: str | None) -> str:
    scope = f"/namespaces/{namespace}" if namespace else ""
    if kind == kube.PLAYBOOK.plural:
        return kube.PLAYBOOK.path(namespace)
    if kind == kube.ALERT_SOURCE.plural:
        return kube.ALERT_SOURCE.path(namespace)
    if kind == "endpointslices":
        return f"/apis/discovery.k8s.io/v1{scope}/endpointslices"
    if kind == "secrets":
        return f"/api/v1{scope}/secrets"
    raise ValueError(kind)


class Reflector:
    """One list+watch loop feeding `store`; calls `changed(namespace)` on every change."""

    def __init__(
        self, api: KubeApi, path: str, params: dict[str, str], store: dict[Key, Any], owner: Watcher
    ) -> None:
        self._api = api
        self._path = path
        self._params = params
        self._store = store
        self._owner = owner
        self._mine: set[Key] = set()
        self.synced = asyncio.Event()

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                version = await self._list()
                failures = 0
                while True:
                    version = await self._watch(version)
            except asyncio.CancelledError:
                raise
            except _Relist:
                continue
            except Exception as exc:  # the loop must survive anything the server sends
                failures += 1
                # Jitter only spreads the retries of many replicas; it guards nothing.
                jitter = random.uniform(0.5, 1.0)  # noqa: S311
                delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2**failures) * jitter
                logger.warning(
                    "watch failed; retrying",
                    extra={"path": self._path, "reason": str(exc)[:300], "retryIn": delay},
                )
                await asyncio.sleep(delay)

    def forget(self) -> None:
        for key in self._mine:
            self._store.pop(key, None)
            self._owner.changed(key[0])
        self._mine.clear()

    async def _list(self) -> str:
        listing = await self._api.get(self._path, self._params)
        fresh = {_key(item): item for item in listing.get("items") or []}
        for key in self._mine - set(fresh):
            self._store.pop(key, None)
            self._owner.changed(key[0])
        for key, item in fresh.items():
            self._store[key] = item
            self._owner.changed(key[0])
        self._mine = set(fresh)
        self.synced.set()
        return str(listing["metadata"].get("resourceVersion", ""))

    async def _watch(self, version: str) -> str:
        params = {
            **self._params,
            "resourceVersion": version,
            "timeoutSeconds": str(WATCH_TIMEOUT_SECONDS),
        }
        async for event in self._api.watch(self._path, params):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                # 410 Gone: our resourceVersion is too old; anything else: start over too.
                raise _Relist
            version = obj.get("metadata", {}).get("resourceVersion", version)
            if kind == "BOOKMARK":
                continue
            key = _key(obj)
            if kind == "DELETED":
                self._store.pop(key, None)
                self._mine.discard(key)
            else:
                self._store[key] = obj
                self._mine.add(key)
            self._owner.changed(key[0])
        return version


class _Relist(Exception):
    pass


def _key(obj: dict[str, Any]) -> Key:
    metadata = obj.get("metadata") or {}
    return (str(metadata.get("namespace", "")), str(metadata.get("name", "")))


class Watcher:
    """Owns the reflectors and rebuilds `snapshot` namespaces as objects change."""

    def __init__(
        self, api: KubeApi, snapshot: snapshots.Snapshot, namespaces: Iterable[str] | None = None
    ) -> None:
        self._api = api
        self._snapshot = snapshot
        self._namespaces = sorted(set(namespaces)) if namespaces else None
        self.stores: dict[str, dict[Key, Any]] = {
            kind: {} for kind in ("playbooks", "alertsources", "endpointslices", "secrets")
        }
        self._secret_reflectors: dict[Key, tuple[Reflector, asyncio.Task[None]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()

    def changed(self, namespace: str) -> None:
        self._dirty.add(namespace)
        self._wake.set()

    async def start(self) -> None:
        """Start watching; returns once the first lists are in and the snapshot is synced."""
        reflectors = []
        scopes: list[str | None] = [None]
        if self._namespaces:
            scopes = list(self._namespaces)
        for namespace in scopes:
            for kind in ("playbooks", "alertsources", "endpointslices"):
                params = (
                    {"labelSelector": kube.RUNTIME_SELECTOR} if kind == "endpointslices" else {}
                )
                reflectors.append(
                    Reflector(
                        self._api, collection_path(kind, namespace), params, self.stores[kind], self
                    )
                )
        self._tasks += [asyncio.create_task(r.run()) for r in reflectors]
        await asyncio.gather(*(r.synced.wait() for r in reflectors))
        self._reconcile_secret_watches()
        await asyncio.gather(*(r.synced.wait() for r, _ in self._secret_reflectors.values()))
        self._rebuild(set(self._dirty))
        self._dirty.clear()
        self._snapshot.synced = True
        self._tasks.append(asyncio.create_task(self._rebuild_loop()))
        logger.info("router synced", extra={"namespaces": self._snapshot.namespaces()})

    async def stop(self) -> None:
        tasks = self._tasks + [task for _, task in self._secret_reflectors.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _rebuild_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0.05)  # coalesce a burst of events into one rebuild
            dirty, self._dirty = self._dirty, set()
            self._reconcile_secret_watches()
            self._rebuild(dirty)

    def _reconcile_secret_watches(self) -> None:
        wanted: set[Key] = set()
        for (namespace, _), obj in self.stores["alertsources"].items():
            wanted.update((namespace, name) for name in snapshots.referenced_secrets(obj))
        for key in set(self._secret_reflectors) - wanted:
            reflector, task = self._secret_reflectors.pop(key)
            task.cancel()
            reflector.forget()
        for key in wanted - set(self._secret_reflectors):
            namespace, name = key
            reflector = Reflector(
                self._api,
                collection_path("secrets", namespace),
                {"fieldSelector": f"metadata.name={name}"},
                self.stores["secrets"],
                self,
            )
            self._secret_reflectors[key] = (reflector, asyncio.create_task(reflector.run()))

    def _rebuild(self, namespaces: set[str]) -> None:
        for namespace in namespaces:
            try:
                state = snapshots.build_namespace(
                    namespace,
                    playbooks=self._of("playbooks", namespace),
                    alertsources=self._of("alertsources", namespace),
                    secrets={
                        obj["metadata"]["name"]: snapshots.decode_secret(obj)
                        for obj in self._of("secrets", namespace)
                    },
                    endpointslices=self._of("endpointslices", namespace),
                )
            except Exception:  # a bad object must not stop routing for everyone else
                logger.exception("could not rebuild namespace", extra={"namespace": namespace})
                continue
            self._snapshot.put(state)

    def _of(self, kind: str, namespace: str) -> list[Any]:
        return [obj for (ns, _), obj in self.stores[kind].items() if ns == namespace]
