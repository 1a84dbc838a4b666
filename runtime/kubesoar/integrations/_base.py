"""The machinery every integration shares, so that each vendor module only
says which paths to call and what to return.

A call goes: cache (lookups only) -> token bucket -> request -> retry on
429/5xx/transport errors (honouring `Retry-After`) -> record the attempt on
the run -> answer. Settings (credentials, base URL, limits) come from the
explicit config first, then from the Playbook's mounted Secret named like
the integration (`virustotal/api_key`), then the vendor default.
"""

from __future__ import annotations

import hashlib
import json as jsonlib
import os
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, TypeVar

import httpx

from kubesoar._context import DEFAULT_HTTP_TIMEOUT, current_context, known_secret_values
from kubesoar._redact import redact
from kubesoar._secrets import SecretNotFound, Secrets
from kubesoar.integrations import _retry
from kubesoar.integrations._cache import answer_cache
from kubesoar.integrations._clock import get_clock
from kubesoar.integrations._errors import IntegrationError, IntegrationHTTPError, NotConnected
from kubesoar.integrations._ratelimit import bucket_for

__all__ = ["Integration", "Retryable"]

T = TypeVar("T")
MAX_ERROR_BODY_CHARS: Final = 300
MAX_ANSWER_BYTES: Final = 8 * 1024 * 1024


class Retryable(Exception):
    """Raised by an operation for a failure worth another attempt."""

    def __init__(self, message: str, *, retry_after: float | None = None, final: Exception) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.final = final  # what the caller sees once the attempts are used up


class Integration:
    """Base of the vendor clients. Subclasses set the class attributes and
    call `_request` (HTTP) or `_attempts` (anything else)."""

    name: ClassVar[str] = ""  # the Secret's name, and the prefix of recorded actions
    display_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    default_base_url: ClassVar[str] = ""
    cache_ttl_seconds: ClassVar[float] = 0.0  # 0: answers are not cached
    requests_per_minute: ClassVar[float | None] = None  # None: no bucket
    credential_keys: ClassVar[tuple[str, ...]] = ("api_key",)
    # OpenSOAR's clients hand error answers back as data; kubesoar's raise.
    error_answers: ClassVar[str] = "raise"

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        base_url: str | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._config: dict[str, Any] = dict(config or {})
        if base_url is not None:
            self._config["base_url"] = base_url
        self._http = http
        self._own_http: httpx.AsyncClient | None = None
        self._connected = False

    # ----- settings ---------------------------------------------------------

    def _secrets(self) -> Secrets:
        ctx = current_context()
        return ctx.secrets if ctx is not None else Secrets()

    def setting(self, key: str, default: str | None = None) -> str | None:
        """`key` from the config, else the mounted Secret `<name>/<key>`, else `default`."""
        value = self._config.get(key)
        if value is not None and value != "":
            return str(value)
        try:
            return self._secrets().get(self.name, key)
        except SecretNotFound:
            return default

    def require(self, key: str) -> str:
        value = self.setting(key)
        if not value:
            raise ValueError(
                f"{self.display_name} requires {key!r}: pass it in the config or mount "
                f"a Secret {self.name!r} with key {key!r}"
            )
        return value

    @property
    def base_url(self) -> str:
        return (self.setting("base_url") or self.default_base_url).rstrip("/")

    def _number(self, key: str, default: float | None) -> float | None:
        raw = self.setting(key)
        if raw is None:
            return default
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{self.name} {key} must be a number, got {raw!r}") from None

    def _ttl(self) -> float:
        """Seconds answers stay cached: Secret `<name>/cache_ttl_seconds`, else
        `ENRICHMENT_CACHE_TTL_<NAME>` (OpenSOAR's variable), else the default."""
        env = os.environ.get(f"ENRICHMENT_CACHE_TTL_{self.name.upper()}")
        default = float(env) if env and env.strip().isdigit() else self.cache_ttl_seconds
        return self._number("cache_ttl_seconds", default) or 0.0

    def _credentials(self) -> list[str]:
        return [v for k in self.credential_keys if (v := self.setting(k))]

    def _fingerprint(self) -> str:
        material = "\0".join([self.base_url, *self._credentials()])
        return hashlib.sha256(material.encode()).hexdigest()[:16]

    def _redact(self, text: str) -> str:
        return redact(text, (*known_secret_values(), *self._credentials()))

    # ----- lifecycle (OpenSOAR's names) -------------------------------------

    async def connect(self) -> None:
        """Check the configuration; the HTTP client is the run's."""
        self._validate()
        self._connected = True

    async def disconnect(self) -> None:
        self._connected = False
        if self._own_http is not None:
            await self._own_http.aclose()
            self._own_http = None

    aclose = disconnect

    async def __aenter__(self) -> Integration:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    def _validate(self) -> None:
        for key in self.credential_keys[:1]:
            self.require(key)

    def _require_connected(self) -> None:
        """OpenSOAR-style clients must be connected first (as in OpenSOAR);
        kubesoar's connect on first use."""
        if not self._connected:
            if self.error_answers == "return":
                raise NotConnected()
            self._validate()
            self._connected = True

    def client(self) -> httpx.AsyncClient:
        if self._http is not None:
            return self._http
        ctx = current_context()
        if ctx is not None:
            return ctx.http  # the run's client: its timeouts, closed with the run
        if self._own_http is None:
            self._own_http = httpx.AsyncClient(timeout=DEFAULT_HTTP_TIMEOUT)
        return self._own_http

    # ----- calls ------------------------------------------------------------

    async def _request(
        self,
        action: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        cache_key: str | None = None,
        url: str | None = None,
        request_timeout: float | None = None,
        raise_errors: bool = False,
    ) -> Any:
        """Send one logical request; returns the decoded answer (JSON, else text)."""
        self._require_connected()
        target = url or f"{self.base_url}{path}"
        per_request = httpx.USE_CLIENT_DEFAULT if request_timeout is None else request_timeout

        async def send() -> Any:
            try:
                response = await self.client().request(
                    method,
                    target,
                    params=params,
                    json=json,
                    data=data,
                    headers=headers,
                    auth=auth,
                    timeout=per_request,
                )
            except httpx.TransportError as exc:
                error = IntegrationError(f"{action}: {type(exc).__name__}: {exc}")
                raise Retryable(str(error), final=error) from exc
            body = _decode(response)
            if response.is_success:
                return body
            message = f"{action}: HTTP {response.status_code} from {target}" + _snippet(body)
            error = IntegrationHTTPError(
                message, status=response.status_code, body=body if isinstance(body, dict) else None
            )
            if _retry.is_retryable_status(response.status_code):
                after = _retry.parse_retry_after(response.headers.get("retry-after"))
                raise Retryable(message, retry_after=after, final=error)
            raise error

        try:
            return await self._attempts(action, send, cache_key=cache_key)
        except IntegrationHTTPError as exc:
            if self.error_answers == "return" and not raise_errors and exc.body is not None:
                return exc.body  # OpenSOAR returns the vendor's error JSON as the answer
            raise

    async def _attempts(
        self, action: str, operation: Callable[[], Awaitable[T]], *, cache_key: str | None = None
    ) -> T:
        """Run `operation` with the cache, the bucket and retries, recording
        every attempt on the current run."""
        ttl = self._ttl()
        key = f"{self.name}:{self._fingerprint()}:{cache_key}" if cache_key and ttl > 0 else None
        if key is not None:
            found, answer = answer_cache.get(key)
            if found:
                self._record(action, 1, "cached", datetime.now(UTC), time.perf_counter(), None, 0.0)
                return answer  # type: ignore[no-any-return]
        per_minute = self._number("requests_per_minute", self.requests_per_minute)
        bucket = bucket_for(self.name, self._fingerprint(), per_minute) if per_minute else None
        for attempt in range(1, _retry.MAX_ATTEMPTS + 1):
            waited = await bucket.acquire() if bucket is not None else 0.0
            started, clock = datetime.now(UTC), time.perf_counter()
            try:
                answer = await operation()
            except Retryable as exc:
                delay = exc.retry_after if exc.retry_after is not None else None
                too_long = delay is not None and delay > _retry.MAX_RETRY_AFTER_SECONDS
                last = attempt == _retry.MAX_ATTEMPTS or too_long
                note = f" (retry after {delay:g}s)" if delay is not None else ""
                self._record(action, attempt, "failed", started, clock, str(exc) + note, waited)
                if last:
                    raise self._cleaned(exc.final) from None
                wait = delay if delay is not None else _retry.backoff_seconds(attempt)
                if bucket is not None and delay is not None:
                    bucket.hold(wait)  # every caller of this bucket waits, not only this one
                else:
                    await get_clock().sleep(wait)
                continue
            except Exception as exc:
                error = "".join(traceback.format_exception_only(exc)).strip()
                self._record(action, attempt, "failed", started, clock, error, waited)
                raise self._cleaned(exc) from None
            self._record(action, attempt, "succeeded", started, clock, None, waited)
            if key is not None:
                answer_cache.put(key, answer, ttl)
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    def _cleaned(self, exc: Exception) -> Exception:
        """`exc` with credentials masked from its message (args rewritten)."""
        if exc.args and isinstance(exc.args[0], str):
            exc.args = (self._redact(exc.args[0]), *exc.args[1:])
        return exc

    def _record(
        self,
        action: str,
        attempt: int,
        status: str,
        started: datetime,
        clock: float,
        error: str | None,
        waited: float,
    ) -> None:
        ctx = current_context()
        if ctx is None:
            return
        record: dict[str, Any] = {
            "action": action,
            "attempt": attempt,
            "status": status,
            "started": started.isoformat(),
            "durationSeconds": round(time.perf_counter() - clock, 6),
            "error": self._redact(error) if error else None,
        }
        if waited:
            record["rateLimitWaitSeconds"] = round(waited, 3)
        ctx.record_attempt(record)


def _decode(response: httpx.Response) -> Any:
    if len(response.content) > MAX_ANSWER_BYTES:
        raise IntegrationError(f"answer larger than {MAX_ANSWER_BYTES} bytes")
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def _snippet(body: Any) -> str:
    if body is None:
        return ""
    text = body if isinstance(body, str) else jsonlib.dumps(body)
    return f": {text[:MAX_ERROR_BODY_CHARS]}"
