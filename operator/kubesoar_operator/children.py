"""Render a Playbook's children, own them, and apply them when they changed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, cast

import kopf

from kubesoar_operator import render
from kubesoar_operator.kube import ApiError, Kube, NotFound
from kubesoar_operator.sanitize import sanitize


class ApplyError(Exception):
    """The API server refused a child; the message is safe to show."""


def owned_children(ctx: render.RenderContext, owner: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rendered children with a controller owner reference to the Playbook, so the
    garbage collector deletes them with it (no finalizer needed)."""
    objs = render.children(ctx)
    for obj in objs:
        kopf.append_owner_reference(obj, owner=cast(kopf.Body, owner))
    return objs


def fingerprint(objs: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(objs, sort_keys=True).encode()).hexdigest()


def apply_all(kube: Kube, objs: list[dict[str, Any]]) -> None:
    """Apply each child; `ApplyError` when one is refused. `kube.NotFound` (the namespace
    is gone, and with it the Playbook) is left to the caller."""
    for obj in objs:
        try:
            kube.apply(obj)
        except NotFound:
            raise
        except ApiError as exc:
            detail = exc.detail or "error"
            text = f"applying {obj['kind']} {obj['metadata']['name']}: {exc.status} {detail}"
            raise ApplyError(sanitize(text)[:800]) from None
