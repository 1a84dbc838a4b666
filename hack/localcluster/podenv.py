"""Container environment: env, envFrom, the downward API, and path rewriting.

Processes are not chrooted, so a path inside a volume's mountPath means the
volume's folder on this machine: every command word, argument (also the value
of `--flag=/path`), env value and workingDir that equals or starts with a
mountPath is rewritten to that folder.
An env value may also name a parent folder of mountPaths (KUBESOAR_SECRETS_DIR
holds one Secret mount per integration): it is rewritten to the folder on this
machine that holds those mounts' folders the same way.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class ContainerConfigError(Exception):
    """A referenced Secret/ConfigMap/key is missing: the container cannot start yet."""

    reason = "CreateContainerConfigError"


class ObjectSource(Protocol):
    async def secret(self, name: str) -> dict[str, Any] | None: ...
    async def config_map(self, name: str) -> dict[str, Any] | None: ...


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: unknown references stay as written, `$$` is `$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(replace, value)


def field_value(pod: Mapping[str, Any], field_path: str, pod_ip: str) -> str:
    meta, spec = pod["metadata"], pod["spec"]
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": "127.0.0.1",
        "status.hostIPs": "127.0.0.1",
    }
    if field_path in simple:
        return str(simple[field_path])
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", field_path)
    if match:
        return str(meta.get(match.group(1), {}).get(match.group(2), ""))
    if field_path in {"metadata.labels", "metadata.annotations"}:
        items = meta.get(field_path.split(".")[1], {})
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise ContainerConfigError(f"unsupported fieldRef fieldPath {field_path!r}")


def _decoded(obj: Mapping[str, Any], kind: str) -> dict[str, str]:
    if kind == "Secret":
        return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
    data = dict(obj.get("data") or {})
    for key, value in (obj.get("binaryData") or {}).items():
        data[key] = base64.b64decode(value).decode(errors="replace")
    return data


async def _lookup(source: ObjectSource, kind: str, name: str) -> dict[str, str] | None:
    obj = await (source.secret(name) if kind == "Secret" else source.config_map(name))
    return None if obj is None else _decoded(obj, kind)


async def resolve_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    pod_ip: str,
    source: ObjectSource,
    base: Mapping[str, str],
) -> dict[str, str]:
    env = dict(base)
    for from_ in container.get("envFrom") or []:
        kind, ref = (
            ("Secret", from_["secretRef"])
            if "secretRef" in from_
            else ("ConfigMap", from_["configMapRef"])
        )
        data = await _lookup(source, kind, ref["name"])
        if data is None:
            if ref.get("optional"):
                continue
            raise ContainerConfigError(f'{kind.lower()} "{ref["name"]}" not found')
        prefix = from_.get("prefix", "")
        env.update({prefix + k: v for k, v in data.items()})
    for var in container.get("env") or []:
        name = var["name"]
        if "value" in var or "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), env)
            continue
        value_from = var["valueFrom"]
        if "fieldRef" in value_from:
            env[name] = field_value(pod, value_from["fieldRef"]["fieldPath"], pod_ip)
        elif "secretKeyRef" in value_from or "configMapKeyRef" in value_from:
            kind = "Secret" if "secretKeyRef" in value_from else "ConfigMap"
            ref = value_from["secretKeyRef" if kind == "Secret" else "configMapKeyRef"]
            data = await _lookup(source, kind, ref["name"])
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    continue
                what = f'{kind.lower()} "{ref["name"]}"'
                raise ContainerConfigError(
                    f"{what} not found"
                    if data is None
                    else f"couldn't find key {ref['key']} in {what}"
                )
            env[name] = data[ref["key"]]
        elif "resourceFieldRef" in value_from:
            # Resource limits are not enforced here; report what the spec says.
            resource = value_from["resourceFieldRef"]["resource"]
            group, _, res = resource.partition(".")
            env[name] = str(container.get("resources", {}).get(group, {}).get(res, "0"))
        else:
            raise ContainerConfigError(f"unsupported valueFrom for env {name}")
    return env


class PathRewriter:
    """Maps in-container paths under a mountPath to the volume's folder on this machine."""

    def __init__(self, mounts: Sequence[tuple[str, str]]) -> None:
        # Longest mountPath first, so that nested mounts win over their parents.
        self._mounts = sorted(
            ((m.rstrip("/") or "/", h) for m, h in mounts), key=lambda m: len(m[0]), reverse=True
        )

    def rewrite(self, value: str, *, parents: bool = False) -> str:
        """`value` on this machine when it is (under) a mountPath; with `parents`, also
        when it is a folder above mountPaths, as long as their folders here sit below
        one folder the same way (else `value` is left as written)."""
        for mount_path, host_path in self._mounts:
            if mount_path == "/":
                continue
            if value == mount_path or value.startswith(mount_path + "/"):
                return host_path + value[len(mount_path) :]
        folder = value.rstrip("/")
        if not parents or not folder.startswith("/"):
            return value
        # /var/run/kubesoar/secrets above .../secrets/vt -> <pod root>/var/run/kubesoar/secrets
        hosts: set[str | None] = set()
        for mount_path, host_path in self._mounts:
            if mount_path.startswith(folder + "/"):
                below = mount_path[len(folder) :]
                hosts.add(host_path[: -len(below)] if host_path.endswith(below) else None)
        (host,) = hosts if len(hosts) == 1 else (None,)
        return value if host is None else host + value[len(folder) :]

    def rewrite_env(self, env: Mapping[str, str], base: Mapping[str, str]) -> dict[str, str]:
        """`env` with the pod spec's paths mapped, folders above mountPaths included.

        Only what the pod spec says is rewritten: the agent's own values (`base`: HOME,
        TMPDIR under the state dir, this Python) are host paths already, and may well
        start with a mount path such as /tmp when the checkout or state dir lives there."""
        return {k: v if base.get(k) == v else self.rewrite(v, parents=True) for k, v in env.items()}

    def rewrite_all(self, values: Sequence[str]) -> list[str]:
        """Command words and args; the value of `--flag=/path` is rewritten too."""
        return [self._rewrite_word(v) for v in values]

    def _rewrite_word(self, word: str) -> str:
        flag, equals, value = word.partition("=")
        if equals and flag.startswith("-") and value.startswith("/"):
            return f"{flag}={self.rewrite(value)}"
        return self.rewrite(word)
