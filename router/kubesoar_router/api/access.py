"""May this user do this? The cluster's RBAC answers, through a SubjectAccessReview.

Every request is reviewed as the attributes a built-in resource would have: verb
(get, list, watch, patch, update), group runs.kubesoar.dev, resource, namespace and
name — so a RoleBinding to the built-in `view` or `edit` role (which the chart's
ClusterRoles aggregate into) is all a tenant needs, and nothing else grants access.

Decisions are cached for a few seconds per (user, attributes), as the kube-apiserver's
own webhook authorizer caches them, so paging through 10,000 runs costs one review,
not twenty; the cache is bounded in entries. A review that fails (API server
unreachable) denies, and is not cached.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from kubesoar._expiring import ExpiringMap
from kubesoar.contracts import kube

from kubesoar_router.api.identity import User
from kubesoar_router.kubeapi import ApiError, KubeApi

logger = logging.getLogger("kubesoar.router.api")

REVIEW_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
CACHE_SECONDS = 10.0
CACHE_ENTRIES = 10_000


@dataclass(frozen=True)
class Attributes:
    verb: str
    resource: str
    namespace: str  # "" for every namespace
    name: str = ""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


class Authorizer:
    def __init__(self, api: KubeApi, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self._api = api
        self._cache_seconds = cache_seconds
        self._cache: ExpiringMap[tuple[Any, ...], Decision] = ExpiringMap(CACHE_ENTRIES)
        self.reviews = 0  # SubjectAccessReviews sent (the bench reports it)

    async def decide(self, user: User, attributes: Attributes) -> Decision:
        key = (*user.cache_key(), attributes)
        now = time.monotonic()
        cached = self._cache.get(key, now)
        if cached is not None:
            return cached
        try:
            answer = await self._api.create(REVIEW_PATH, review_body(user, attributes))
        except (ApiError, OSError, TimeoutError) as exc:
            logger.warning("SubjectAccessReview failed, denying: %s", exc)
            return Decision(False, "the authorization check failed; retry")
        self.reviews += 1
        status = answer.get("status") or {}
        decision = Decision(bool(status.get("allowed")), str(status.get("reason") or ""))
        self._cache.put(key, decision, expires_at=now + self._cache_seconds, now=now)
        return decision


def review_body(user: User, attributes: Attributes) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "verb": attributes.verb,
        "group": kube.RUNS_API_GROUP,
        "version": kube.RUNS_API_VERSION,
        "resource": attributes.resource,
    }
    if attributes.namespace:
        resource["namespace"] = attributes.namespace
    if attributes.name:
        resource["name"] = attributes.name
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user.name,
            "groups": list(user.groups),
            "extra": {key: list(values) for key, values in user.extra.items()},
            "resourceAttributes": resource,
        },
    }


def forbidden_message(user: User, attributes: Attributes) -> str:
    """Worded as the kube-apiserver words its own refusals."""
    where = (
        f' in the namespace "{attributes.namespace}"'
        if attributes.namespace
        else (" at the cluster scope")
    )
    subject = f"{attributes.resource}.{kube.RUNS_API_GROUP}"
    if attributes.name:
        subject += f' "{attributes.name}"'
    return (
        f'{subject} is forbidden: User "{user.name}" cannot {attributes.verb} resource '
        f'"{attributes.resource}" in API group "{kube.RUNS_API_GROUP}"{where}'
    )
