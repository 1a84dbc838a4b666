"""The Dockerfile, read as instructions: shared by the textual checks and the image-root build."""

from __future__ import annotations

import re

from packaging_support import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each stage, each list starting with its FROM."""
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def build_args() -> dict[str, str]:
    """ARG defaults declared before the first stage (and in stages)."""
    return {
        a.split("=", 1)[0]: a.split("=", 1)[1] for i, a in instructions() if i == "ARG" and "=" in a
    }


def env_pairs(args: str) -> dict[str, str]:
    """`ENV A=1 B="two"` -> {"A": "1", "B": "two"} (the key=value form only)."""
    pairs = re.findall(r'(\w+)=("[^"]*"|\S+)', args)
    return {key: value.strip('"') for key, value in pairs}


def dockerignore() -> tuple[set[str], list[str]]:
    """(paths the context admits after `*`, `**/name` patterns excluded within them)."""
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    excluded = [line[3:] for line in lines if line.startswith("**/")]
    return allowed, excluded
