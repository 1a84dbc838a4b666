"""Addresses in a pod's spec, made to work without network namespaces or DNS.

Pods here are processes sharing the machine's network, so two things a
container can count on do not exist, and the agent rewrites the spec instead
(only what the spec says: command, args and env values, after `$(VAR)`
expansion, like the path rewriting in podenv.py):

- **The wildcard address.** In a container, binding `0.0.0.0` means the pod's
  own interfaces. Here it would mean every address of the machine, and two pods
  listening on `0.0.0.0:9090` would collide. `0.0.0.0` written as a host (before
  a `:port` or at the end of a value) becomes the pod's address.
- **Service names.** No DNS answers `<service>.<namespace>.svc`. A name like
  that, with a port (or an `http://`/`https://` scheme that implies one), is
  resolved when the container starts to the address and target port of a ready
  pod behind the Service. The agent runs every pod of this one-node cluster, so
  it knows them without reading EndpointSlices (which a node may not read).
  A name with no ready pod behind it is left as written: the program fails to
  resolve it, and the restart that follows tries again.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

# `0.0.0.0` as a host: not part of a longer address, followed by a port or nothing.
_WILDCARD = re.compile(r"(?<![\w.])0\.0\.0\.0(?=:|$)")
_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_SERVICE_NAME = re.compile(
    rf"(?<![\w.-])(?:(?P<scheme>https?)://)?(?P<service>{_LABEL})\.(?P<namespace>{_LABEL})"
    rf"\.svc(?:\.cluster\.local)?(?::(?P<port>\d{{1,5}}))?(?![\w.-])"
)
_SCHEME_PORTS = {"http": 80, "https": 443}

# (namespace, service, service port) -> "address:target port" of a ready pod, or None.
ServiceLookup = Callable[[str, str, int], Awaitable[str | None]]


def bind_pod_address(value: str, pod_ip: str) -> str:
    """`value` with the wildcard address, written as a host, replaced by the pod's."""
    return _WILDCARD.sub(pod_ip, value)


async def resolve_services(value: str, lookup: ServiceLookup) -> str:
    """`value` with each `<service>.<namespace>.svc[:port]` replaced by a ready pod's address."""
    parts: list[str] = []
    last = 0
    for match in _SERVICE_NAME.finditer(value):
        scheme, port_text = match.group("scheme"), match.group("port")
        port = int(port_text) if port_text else _SCHEME_PORTS.get(scheme or "")
        if port is None:
            continue
        target = await lookup(match.group("namespace"), match.group("service"), port)
        if target is None:
            continue
        parts += [value[last : match.start()], f"{scheme}://{target}" if scheme else target]
        last = match.end()
    return "".join(parts) + value[last:] if parts else value


async def rewrite(value: str, pod_ip: str, lookup: ServiceLookup) -> str:
    """Both rewrites: the wildcard address, then Service names."""
    return await resolve_services(bind_pod_address(value, pod_ip), lookup)


def pick_backend(
    service: Mapping[str, Any], port: int, ready_pods: Iterable[tuple[Mapping[str, Any], str]]
) -> str | None:
    """ "address:target port" of the first ready pod (pod, address) the Service selects."""
    spec = service.get("spec") or {}
    selector: Mapping[str, str] = spec.get("selector") or {}
    entry = next((p for p in spec.get("ports") or [] if p.get("port") == port), None)
    if not selector or entry is None:
        return None  # no selector: endpoints are managed by hand, which nothing does here
    target = entry.get("targetPort", port)
    for pod, address in ready_pods:
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        if meta["namespace"] != service["metadata"]["namespace"]:
            continue
        if any(labels.get(key) != value for key, value in selector.items()):
            continue
        if isinstance(target, int):
            return f"{address}:{target}"
        for container in pod["spec"]["containers"]:
            for declared in container.get("ports") or []:
                if declared.get("name") == target:
                    return f"{address}:{declared['containerPort']}"
    return None
