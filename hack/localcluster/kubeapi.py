"""A small asyncio client for the Kubernetes API (aiohttp, client-certificate auth).

The node agent needs a handful of calls (get, create, patch, delete, and a
watch that survives restarts), so this is simpler to reason about than a
generated client, and it keeps watches on one event loop with the processes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml

log = logging.getLogger("nodeagent.api")

MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


class WatchExpired(Exception):
    """The resourceVersion is too old (410 Gone): list again."""


def _ssl_context(user: Mapping[str, Any], cluster: Mapping[str, Any]) -> ssl.SSLContext:
    ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    ctx = ssl.create_default_context(cadata=ca)
    # load_cert_chain only reads files; keep them private and short-lived.
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.touch(mode=0o600)
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


class KubeApi:
    def __init__(self, kubeconfig: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        context_name = config["current-context"]
        context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        self.server: str = cluster["server"].rstrip("/")
        self._ssl = _ssl_context(user, cluster)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeApi:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=20),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use `async with KubeApi(...)`"
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        request_timeout: float = 30.0,
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        async with self.session.request(
            method,
            self.server + path,
            data=data,
            params=params,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=request_timeout),
        ) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise ApiError(resp.status, text)
            parsed: dict[str, Any] = json.loads(text) if text else {}
            return parsed

    async def get(self, path: str, **params: str) -> dict[str, Any]:
        return await self.request("GET", path, params=params or None)

    async def get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def create(self, path: str, body: Any) -> dict[str, Any]:
        return await self.request("POST", path, body=body)

    async def merge_patch(self, path: str, body: Any) -> dict[str, Any]:
        return await self.request("PATCH", path, body=body, content_type=MERGE_PATCH)

    async def delete(self, path: str, body: Any = None) -> dict[str, Any]:
        return await self.request("DELETE", path, body=body)

    async def watch(
        self, path: str, resource_version: str, **params: str
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield watch events from `resource_version` until the server ends the watch.

        Raises WatchExpired when the version is too old; BOOKMARK events are
        yielded so that the caller can keep its resourceVersion fresh.
        """
        query = {
            **params,
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            # The server closes the watch after this; the caller resumes.
            "timeoutSeconds": "300",
        }
        async with self.session.get(
            self.server + path,
            params=query,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=330),
        ) as resp:
            if resp.status == 410:
                raise WatchExpired(path)
            if resp.status >= 400:
                raise ApiError(resp.status, await resp.text())
            async for line in resp.content:
                if not line.strip():
                    continue
                event: dict[str, Any] = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object", {})
                    if status.get("code") == 410:
                        raise WatchExpired(path)
                    raise ApiError(int(status.get("code", 500)), json.dumps(status))
                yield event


async def retrying(what: str, call: Any, attempts: int = 5, delay: float = 0.5) -> Any:
    """Await `call()` again after transient failures (connection errors, 5xx, 429)."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except (TimeoutError, aiohttp.ClientError) as exc:
            error: Exception = exc
        except ApiError as exc:
            if exc.status < 500 and exc.status != 429:
                raise
            error = exc
        if attempt == attempts:
            raise error
        log.warning("%s failed (attempt %d): %s", what, attempt, error)
        await asyncio.sleep(delay * attempt)
    raise AssertionError("unreachable")
