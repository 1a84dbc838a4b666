"""Fixtures of the operator's tests: a real Git smart-HTTP server on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.git_http import GitHTTPServer


@pytest.fixture
def make_git_server(tmp_path: Path) -> Iterator[Callable[..., GitHTTPServer]]:
    """make_git_server(username=, password=, token=) -> a started server, closed after."""
    servers: list[GitHTTPServer] = []

    def make(**auth: Any) -> GitHTTPServer:
        server = GitHTTPServer(tmp_path / f"git-{len(servers)}", **auth).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def git_server(make_git_server: Callable[..., GitHTTPServer]) -> GitHTTPServer:
    """A Git server without auth."""
    return make_git_server()
