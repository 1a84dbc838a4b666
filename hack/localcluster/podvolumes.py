"""Pod volumes as folders under the pod's root: `<state>/pods/<uid>/root/<mountPath>`.

A volume lives at the mountPath of its first mount (init containers first), so
the per-pod root folder looks like the container's view of its mounts; other
mounts of the same volume map to that same folder. Contents are written once
when the pod starts (Secret/ConfigMap updates are not propagated).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from hack.localcluster.podenv import field_value


class VolumeError(Exception):
    """A volume cannot be set up yet (missing object, unsupported type)."""

    reason = "ContainerCreating"


class VolumeSource(Protocol):
    async def secret(self, name: str) -> dict[str, Any] | None: ...
    async def config_map(self, name: str) -> dict[str, Any] | None: ...
    async def service_account_token(self, audience: str | None, expiration: int) -> str: ...


def all_containers(pod: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod["spec"].get("initContainers") or []
    yield from pod["spec"]["containers"]


def _safe_join(base: Path, relative: str) -> Path:
    target = (base / relative.lstrip("/")).resolve()
    if target != base.resolve() and base.resolve() not in target.parents:
        raise VolumeError(f"path {relative!r} escapes its volume")
    return target


class PodVolumes:
    def __init__(self, pod: Mapping[str, Any], pod_dir: Path) -> None:
        self.pod = pod
        self.root = pod_dir / "root"
        self.dirs: dict[str, Path] = {}
        for container in all_containers(pod):
            for mount in container.get("volumeMounts") or []:
                if mount["name"] not in self.dirs and not mount.get("subPath"):
                    self.dirs[mount["name"]] = _safe_join(self.root, mount["mountPath"])
        for volume in pod["spec"].get("volumes") or []:
            self.dirs.setdefault(volume["name"], pod_dir / "volumes" / volume["name"])

    def mounts(self, container: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(mountPath, folder on this machine) for each of the container's mounts."""
        result = []
        for mount in container.get("volumeMounts") or []:
            host = self.dirs.get(mount["name"])
            if host is None:
                raise VolumeError(f"volume {mount['name']!r} is mounted but not declared")
            if mount.get("subPath"):
                host = _safe_join(host, mount["subPath"])
                host.mkdir(parents=True, exist_ok=True)
            result.append((mount["mountPath"], str(host)))
        return result

    async def set_up(self, source: VolumeSource) -> None:
        for volume in self.pod["spec"].get("volumes") or []:
            target = self.dirs[volume["name"]]
            target.mkdir(parents=True, exist_ok=True)
            files = await self._files(volume, source)
            for relative, (content, mode) in files.items():
                path = _safe_join(target, relative)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.unlink(missing_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
                with os.fdopen(fd, "wb") as out:
                    out.write(content)
                os.chmod(path, mode)  # the umask narrowed the mode given to open()

    async def _files(
        self, volume: Mapping[str, Any], source: VolumeSource
    ) -> dict[str, tuple[bytes, int]]:
        if "emptyDir" in volume:
            return {}
        if "secret" in volume:
            spec = volume["secret"]
            return await self._object_files(
                source, "Secret", spec["secretName"], spec, spec.get("defaultMode", 0o644)
            )
        if "configMap" in volume:
            spec = volume["configMap"]
            return await self._object_files(
                source, "ConfigMap", spec["name"], spec, spec.get("defaultMode", 0o644)
            )
        if "downwardAPI" in volume:
            spec = volume["downwardAPI"]
            return self._downward_files(spec.get("items") or [], spec.get("defaultMode", 0o644))
        if "projected" in volume:
            spec = volume["projected"]
            default_mode = spec.get("defaultMode", 0o644)
            files: dict[str, tuple[bytes, int]] = {}
            for src in spec.get("sources") or []:
                if "secret" in src:
                    s = src["secret"]
                    files.update(
                        await self._object_files(source, "Secret", s["name"], s, default_mode)
                    )
                elif "configMap" in src:
                    s = src["configMap"]
                    files.update(
                        await self._object_files(source, "ConfigMap", s["name"], s, default_mode)
                    )
                elif "downwardAPI" in src:
                    files.update(
                        self._downward_files(src["downwardAPI"].get("items") or [], default_mode)
                    )
                elif "serviceAccountToken" in src:
                    s = src["serviceAccountToken"]
                    token = await source.service_account_token(
                        s.get("audience"), s.get("expirationSeconds", 3607)
                    )
                    files[s["path"]] = (token.encode(), default_mode)
                else:
                    raise VolumeError(
                        f"unsupported projected source {sorted(src)} in volume {volume['name']!r}"
                    )
            return files
        kinds = sorted(k for k in volume if k != "name")
        raise VolumeError(
            f"volume {volume['name']!r}: type {kinds} is not supported by the local node agent"
        )

    async def _object_files(
        self, source: VolumeSource, kind: str, name: str, spec: Mapping[str, Any], default_mode: int
    ) -> dict[str, tuple[bytes, int]]:
        obj = await (source.secret(name) if kind == "Secret" else source.config_map(name))
        if obj is None:
            if spec.get("optional"):
                return {}
            raise VolumeError(f'MountVolume.SetUp failed: {kind.lower()} "{name}" not found')
        data = (
            {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
            if kind == "Secret"
            else {}
        )
        if kind == "ConfigMap":
            data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        items = spec.get("items")
        if not items:
            return {key: (value, default_mode) for key, value in data.items()}
        files = {}
        for item in items:
            if item["key"] not in data:
                if spec.get("optional"):
                    continue
                raise VolumeError(
                    f'MountVolume.SetUp failed: key {item["key"]} not in {kind.lower()} "{name}"'
                )
            files[item["path"]] = (data[item["key"]], item.get("mode", default_mode))
        return files

    def _downward_files(
        self, items: list[dict[str, Any]], default_mode: int
    ) -> dict[str, tuple[bytes, int]]:
        files = {}
        pod_ip = (self.pod.get("status") or {}).get("podIP", "")
        for item in items:
            if "fieldRef" not in item:
                raise VolumeError("downwardAPI volumes support fieldRef items only")
            value = field_value(self.pod, item["fieldRef"]["fieldPath"], pod_ip)
            files[item["path"]] = (value.encode(), item.get("mode", default_mode))
        return files
