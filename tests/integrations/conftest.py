"""Fixtures for the integration clients: the fake vendor server, a fake clock
(rate limits and backoff without sleeping), and a clean cache and buckets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fakevendors import FakeVendors, start, write_secrets
from kubesoar.integrations import FakeClock, answer_cache, reset_buckets, set_clock


@pytest.fixture
async def vendors() -> AsyncIterator[FakeVendors]:
    fake = FakeVendors()
    runner = await start(fake)
    yield fake
    await runner.cleanup()


@pytest.fixture(autouse=True)
def clock() -> Iterator[FakeClock]:
    fake = FakeClock()
    previous = set_clock(fake)
    answer_cache.clear()
    reset_buckets()
    yield fake
    set_clock(previous)
    answer_cache.clear()
    reset_buckets()


@pytest.fixture
def secrets_dir(tmp_path: Path, vendors: FakeVendors, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every integration's Secret, pointing at the fakes; also the default
    secrets folder of this process (calls outside a run read it)."""
    folder = tmp_path / "secrets"
    write_secrets(folder, vendors)
    monkeypatch.setenv("KUBESOAR_SECRETS_DIR", str(folder))
    return folder
