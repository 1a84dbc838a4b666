"""Helpers for testing playbooks with pytest (also a pytest plugin, so the
fixtures `fake_secrets`, `mock_http` and `no_backoff` are available once
kubesoar is installed).

    from kubesoar.testing import make_alert, run_playbook, assert_attempts

    async def test_triage(fake_secrets, mock_http):
        fake_secrets.set("virustotal", "api_key", "k")
        mock_http.add("GET", "https://vt.example/api/ip/10.0.0.1", json={"malicious": 3})
        run = await run_playbook(triage, make_alert(severity="high", iocs={"ips": ["10.0.0.1"]}))
        assert run.status == "succeeded"
        assert_attempts(run, "vt.lookup", ["succeeded"])

    async def test_retries(no_backoff, mock_http):   # retries do not wait
        ...
        assert no_backoff.delays == [1.5, 2.25]       # the schedule actions asked for

`async def` tests run without any pytest configuration in the author's
repository: when no async plugin has taken an `async def` test that uses
kubesoar (one of the fixtures above, or a name imported from `kubesoar`), this
plugin runs it in a fresh event loop (`asyncio.run`). Tests that pytest-asyncio
(any mode), anyio or trio run are left to them.

This module is imported by pytest for every test session, so at import time
it touches only the standard library and pytest; kubesoar's own modules are
imported when a helper is used.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import httpx

    from kubesoar._alert import Alert
    from kubesoar._engine import Run

__all__ = [
    "BackoffRecorder",
    "FakeSecrets",
    "MockHTTP",
    "assert_attempts",
    "assert_succeeded",
    "attempts_of",
    "fake_secrets",
    "load_alert",
    "make_alert",
    "mock_http",
    "no_backoff",
    "run_playbook",
    "run_playbook_sync",
]

_active_mock: MockHTTP | None = None

_FIXTURES = frozenset({"fake_secrets", "mock_http", "no_backoff"})
# Markers of other async test runners: their tests are theirs, even unhandled.
_OTHER_RUNNERS = ("anyio", "trio")


def _from_kubesoar(value: object) -> bool:
    name = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
    return isinstance(name, str) and (name == "kubesoar" or name.startswith("kubesoar."))


def _uses_kubesoar(item: pytest.Function) -> bool:
    if _FIXTURES.intersection(item.fixturenames):
        return True
    module = getattr(item, "module", None)
    return module is not None and any(_from_kubesoar(v) for v in vars(module).values())


def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run a kubesoar-using `async def` test that no async plugin has taken.

    An ordinary hook, not `trylast`: pytest's own last-resort hook, which fails
    every coroutine test ("async def functions are not natively supported"),
    is `trylast` and registered first, and pluggy calls a later `trylast` after
    it. anyio's hook is `tryfirst`, and pytest-asyncio swaps the coroutine for
    a synchronous wrapper before any hook sees it, so both still decide first."""
    func = pyfuncitem.obj
    if not inspect.iscoroutinefunction(func) or hasattr(func, "hypothesis"):
        return None
    if any(pyfuncitem.get_closest_marker(name) for name in _OTHER_RUNNERS):
        return None
    if "anyio_backend" in pyfuncitem.fixturenames or not _uses_kubesoar(pyfuncitem):
        return None
    parameters = inspect.signature(func).parameters
    kwargs = {name: pyfuncitem.funcargs[name] for name in parameters if name in pyfuncitem.funcargs}
    asyncio.run(func(**kwargs))
    return True


def reset_integrations() -> None:
    """Empty the integrations' answer cache and refill their rate-limit buckets (both
    live for the process, as in a runtime pod), if the integrations were imported."""
    cache = sys.modules.get("kubesoar.integrations._cache")
    if cache is not None:
        cache.answer_cache.clear()
    ratelimit = sys.modules.get("kubesoar.integrations._ratelimit")
    if ratelimit is not None:
        ratelimit.reset_buckets()


@pytest.fixture(autouse=True)
def _integrations_start_fresh() -> Iterator[None]:
    """Every test starts with no cached integration answer and full buckets: one test's
    VirusTotal answer must not satisfy the next test's lookup."""
    reset_integrations()
    yield


def make_alert(**fields: Any) -> Alert:
    """An Alert with test defaults (`title`, `source`), overridden by `fields`."""
    from kubesoar._alert import Alert

    return Alert.model_validate({"title": "test alert", "source": "test", **fields})


def load_alert(path: str | Path, **overrides: Any) -> Alert:
    """An Alert from a fixture file: a plain alert, or a recorded
    `POST /v1/runs` body (its `alert` is used)."""
    from kubesoar._alert import Alert

    data = json.loads(Path(path).read_text())
    if isinstance(data, dict) and isinstance(data.get("alert"), dict):
        data = data["alert"]
    return Alert.model_validate({**data, **overrides})


class FakeSecrets:
    """Secrets as files in a temporary folder, as the pod mounts them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def set(self, name: str, key: str, value: str) -> None:
        folder = self.directory / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / key).write_text(value)


@pytest.fixture
def fake_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSecrets:
    """A secrets folder wired into runs through KUBESOAR_SECRETS_DIR."""
    directory = tmp_path / "kubesoar-secrets"
    directory.mkdir()
    monkeypatch.setenv("KUBESOAR_SECRETS_DIR", str(directory))
    return FakeSecrets(directory)


class MockHTTP:
    """Canned answers for `ctx.http`, routed by method and URL (exact, or a
    compiled regex); every request is kept in `requests`. A request without
    a route fails loudly, so an unexpected call is never silent."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, str | re.Pattern[str], Callable[[Any], Any]]] = []
        self.requests: list[httpx.Request] = []

    def add(
        self,
        method: str,
        url: str | re.Pattern[str],
        *,
        status: int = 200,
        json: Any = None,
        text: str | None = None,
        handler: Callable[[httpx.Request], httpx.Response] | None = None,
    ) -> None:
        import httpx

        def answer(request: httpx.Request) -> httpx.Response:
            if handler is not None:
                return handler(request)
            if text is not None:
                return httpx.Response(status, text=text)
            return httpx.Response(status, json=json)

        self.routes.append((method.upper(), url, answer))

    def _route(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = str(request.url)
        for method, pattern, answer in self.routes:
            if method != request.method:
                continue
            if (isinstance(pattern, str) and pattern == url) or (
                isinstance(pattern, re.Pattern) and pattern.search(url)
            ):
                response: httpx.Response = answer(request)
                return response
        raise AssertionError(f"mock_http: no route for {request.method} {url}")

    @property
    def transport(self) -> httpx.MockTransport:
        import httpx

        return httpx.MockTransport(self._route)


@pytest.fixture
def mock_http() -> Iterator[MockHTTP]:
    """A MockHTTP that `run_playbook` wires into the run context by default."""
    global _active_mock
    mock = MockHTTP()
    previous, _active_mock = _active_mock, mock
    yield mock
    _active_mock = previous


class BackoffRecorder:
    """Stands in for the sleep actions take between retries: records each
    requested delay (seconds, in the order asked) and returns at once, after
    yielding to the event loop as a real sleep would."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)

    @property
    def total(self) -> float:
        """Seconds the run would have spent waiting."""
        return sum(self.delays)

    def clear(self) -> None:
        self.delays.clear()


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> BackoffRecorder:
    """Actions retry without waiting for the rest of the test, in every run
    of this process (`run_playbook`, an `Engine`, an in-process runtime);
    `no_backoff.delays` lists the waits they asked for, so a test can assert
    the backoff schedule instead of sleeping through it."""
    from kubesoar import _sdk

    recorder = BackoffRecorder()
    monkeypatch.setattr(_sdk, "default_backoff_sleep", recorder)
    return recorder


def _entry_points(target: Any) -> tuple[list[Any], bool]:
    """(entry points, select by conditions?) for a function, module or path."""
    from kubesoar._loader import load_target
    from kubesoar._sdk import ENTRY_ATTRIBUTE, entry_points_of

    entry = getattr(target, ENTRY_ATTRIBUTE, None)
    if entry is not None:
        return [entry], False
    if isinstance(target, ModuleType):
        return entry_points_of(target.__name__), True
    if isinstance(target, str | Path):
        loaded = load_target(str(target))
        if loaded.error is not None:
            raise AssertionError(f"cannot load {target}: {loaded.error}")
        return loaded.entry_points, True
    raise TypeError(f"not a @playbook function, module or path: {target!r}")


async def run_playbook(
    target: Any,
    alert: Alert | dict[str, Any],
    *,
    playbooks: list[str] | None = None,
    secrets_dir: str | Path | None = None,
    http: MockHTTP | httpx.AsyncBaseTransport | None = None,
    timeout_seconds: float = 60.0,
    backoff: bool | Callable[[float], Awaitable[None]] = True,
    approvals: bool | Callable[[Any], Awaitable[Any]] | None = None,
) -> Run:
    """Run a `@playbook` function (always), or a module's / file's entry
    points that the alert matches (or those named in `playbooks`), with the
    runtime's engine. Returns the Run with results and action attempts.

    `backoff=False` makes retries not wait (the `no_backoff` fixture does the
    same and records the delays); a callable (`BackoffRecorder()`, or any
    `async def sleep(seconds)`) is awaited instead of each wait.

    `approvals` decides the run's `ctx.approval` calls: True approves each, False denies
    each, an `async def decide(request)` returns True/False (or a `kubesoar.Approval`)
    per request (`request.title`, `request.details`); None leaves them undecidable
    (`ApprovalUnavailable`), as outside the cluster."""
    from kubesoar._alert import Alert
    from kubesoar._approval import always
    from kubesoar._engine import Engine

    if isinstance(alert, dict):
        alert = make_alert(**alert)
    assert isinstance(alert, Alert)
    entries, by_conditions = _entry_points(target)
    mock = http if http is not None else _active_mock
    transport = mock.transport if isinstance(mock, MockHTTP) else mock
    sleep: Callable[[float], Awaitable[None]] | None = None
    if backoff is False:
        sleep = BackoffRecorder()
    elif callable(backoff):
        sleep = backoff
    engine = Engine(
        entries,
        default_timeout=timeout_seconds,
        secrets_dir=secrets_dir,
        http_transport=transport,
        backoff_sleep=sleep,
        approver=(
            approvals
            if approvals is None or callable(approvals)
            else always(bool(approvals), by="test")
        ),
    )
    names = playbooks if playbooks is not None or by_conditions else [e.name for e in entries]
    selected = engine.select(alert, names)
    return await engine.execute(engine.create_run(alert, selected))


def run_playbook_sync(target: Any, alert: Alert | dict[str, Any], **kwargs: Any) -> Run:
    """`run_playbook` for tests that are not async."""
    return asyncio.run(run_playbook(target, alert, **kwargs))


def attempts_of(run: Run, action: str) -> list[dict[str, Any]]:
    return [attempt for attempt in run.attempts if attempt["action"] == action]


def assert_attempts(run: Run, action: str, statuses: list[str]) -> None:
    """Assert the statuses of every attempt of `action`, in order."""
    actual = [attempt["status"] for attempt in attempts_of(run, action)]
    assert actual == statuses, f"attempts of {action}: {actual}, expected {statuses}"


def assert_succeeded(run: Run) -> None:
    """Assert the run succeeded, showing each entry point's error if not."""
    if run.status != "succeeded":
        details = "; ".join(
            f"{r['name']}: {r['status']} {r.get('error') or ''}" for r in run.results
        )
        raise AssertionError(f"run {run.status}: {details}")
