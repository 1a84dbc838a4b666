"""The Argo CD health checks of docs/gitops.md, run as written: the Lua is taken from the
page's `argocd-cm` ConfigMap and run with Lua 5.1 (Argo CD's dialect, gopher-lua) from
`lupa`, with the object as the global `obj`. Used by the doc's own test and by the
cluster tests that capture real Playbooks in each state."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from lupa import lua51

PAGE = Path(__file__).resolve().parents[2] / "docs" / "gitops.md"


def health_checks() -> dict[str, str]:
    for block in re.findall(r"```yaml\n(.*?)```", PAGE.read_text(), re.S):
        doc = yaml.safe_load(block)
        if isinstance(doc, dict) and doc.get("metadata", {}).get("name") == "argocd-cm":
            return {key.rsplit("_", 1)[1]: lua for key, lua in doc["data"].items()}
    raise AssertionError("no argocd-cm ConfigMap in docs/gitops.md")


def health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    lua = lua51.LuaRuntime()
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(health_checks()[kind])
    return {"status": result["status"], "message": result["message"]}
