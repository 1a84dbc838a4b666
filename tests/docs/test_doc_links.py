"""Every relative link in the repository's Markdown points at a file that exists.

Docs are read by users first; a link to a page that moved or was never written is
a broken promise. External links (http, mailto) and in-page anchors are not checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")
SKIPPED_DIRS = {".venv", "build", ".git", "node_modules"}


def markdown_files() -> list[Path]:
    return sorted(
        p for p in REPO.rglob("*.md") if not SKIPPED_DIRS.intersection(p.relative_to(REPO).parts)
    )


def relative_links(text: str) -> list[str]:
    links = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        links.append(target.split("#", 1)[0])
    return links


def test_the_link_pattern_finds_relative_links_only() -> None:
    text = "[a](docs/x.md#y) [b](https://e.example) [c](#top) [d](../z/)"
    assert relative_links(text) == ["docs/x.md", "../z/"]


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    broken = [
        link for link in relative_links(page.read_text()) if not (page.parent / link).exists()
    ]
    assert not broken, f"{page.relative_to(REPO)} links to missing files: {broken}"
