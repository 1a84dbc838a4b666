"""A small asyncio client for the Kubernetes API server, on aiohttp.

Only what the router needs: list, watch (a stream of events), get,
merge-patch and create (access reviews). Connection settings come from a
kubeconfig or the in-cluster service account, read with the official client's
loaders so every auth method those support (certificates, tokens, exec
plugins) works here too.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config.incluster_config import InClusterConfigLoader

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

MAX_EVENT_BYTES = 16 * 1024 * 1024


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"API server answered {status}: {message}")
        self.status = status


class KubeApi:
    def __init__(
        self, host: str, *, ssl_context: ssl.SSLContext | None, headers: Mapping[str, str]
    ) -> None:
        self._host = host.rstrip("/")
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else False
        self._headers = dict(headers)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_config(cls, kubeconfig: str | None) -> KubeApi:
        configuration = k8s_client.Configuration()
        if kubeconfig:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration
            )
        else:
            # The token and CA folder may be moved (KUBESOAR_SERVICE_ACCOUNT_DIR): the
            # local node agent runs pods as processes that cannot see the fixed path.
            folder = os.environ.get("KUBESOAR_SERVICE_ACCOUNT_DIR", SERVICE_ACCOUNT_DIR)
            InClusterConfigLoader(  # type: ignore[no-untyped-call]
                token_filename=f"{folder}/token", cert_filename=f"{folder}/ca.crt"
            ).load_and_set(configuration)
        headers = {}
        token = configuration.api_key.get("authorization") or configuration.api_key.get(
            "BearerToken"
        )
        if token:
            prefix = configuration.api_key_prefix.get("authorization", "")
            headers["Authorization"] = f"{prefix} {token}".strip()
        context: ssl.SSLContext | None = None
        if configuration.host.startswith("https"):
            context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
            if not configuration.verify_ssl:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if configuration.cert_file:
                context.load_cert_chain(configuration.cert_file, configuration.key_file)
        return cls(configuration.host, ssl_context=context, headers=headers)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=aiohttp.ClientTimeout(sock_connect=10)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        async with self.session.get(
            self._host + path, params=params, ssl=self._ssl, timeout=aiohttp.ClientTimeout(60)
        ) as response:
            return await _json(response)

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST `body` (e.g. a SubjectAccessReview, answered in the response's status)."""
        async with self.session.post(
            self._host + path, json=body, ssl=self._ssl, timeout=aiohttp.ClientTimeout(10)
        ) as response:
            return await _json(response)

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        async with self.session.patch(
            self._host + path,
            data=json.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"},
            ssl=self._ssl,
            timeout=aiohttp.ClientTimeout(30),
        ) as response:
            return await _json(response)

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        """Events of one watch request, until the server ends it."""
        query = {**params, "watch": "true", "allowWatchBookmarks": "true"}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
        async with self.session.get(
            self._host + path, params=query, ssl=self._ssl, timeout=timeout
        ) as response:
            if response.status != 200:
                await _json(response)
            response.content._high_water = MAX_EVENT_BYTES  # long lines (big objects)
            while True:
                line = await response.content.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    text = await response.text()
    if response.status >= 300:
        try:
            message = json.loads(text).get("message", text)
        except ValueError:
            message = text
        raise ApiError(response.status, str(message)[:500])
    result: dict[str, Any] = json.loads(text)
    return result
