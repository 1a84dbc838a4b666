"""Git resolution and packing shared by every Playbook that asks the same question.

A thousand Playbooks on one repository and ref would otherwise each run their own
`git ls-remote` every interval, and each fetch and pack the same folder. Here:

- **Resolutions** are keyed by (URL, credential identity, ref). A resolution answers
  every Playbook with that key that accepts its age (`max_age`: the asker's interval)
  and, for a `requestedAt`, that started no earlier than the request (`not_before`).
  Concurrent askers join the resolution in flight (single flight), so 100 reconciles
  at once make one `ls-remote`, and Playbooks that took a shared answer fall due
  together at its time, so they share the next one too.
- **Artifacts** are keyed by (URL, credential identity, commit, path): one fetch and
  one pack per key, stored once (`ArtifactStore.put_blob`) and linked to each Playbook.

Never across credential identities: the key holds an HMAC of the URL and the
credential values (as the Git cache's folders do, `gitsource.GitClient._cache_key`),
so a tenant without the credentials that succeeded is never handed their answer or
their code. A failure is shared only with the askers that joined it in flight: once
finished, the next asker asks again (each Playbook keeps its own backoff).

Memory is bounded: at most `max_entries` finished resolutions and artifact digests are
remembered, the oldest dropped first.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import git

from kubesoar_operator.artifacts import ArtifactStore, pack
from kubesoar_operator.gitsource import Credentials, Resolved
from kubesoar_operator.spec import GitRef

log = logging.getLogger("kubesoar_operator.git")

MAX_ENTRIES = 4096

T = TypeVar("T")


class GitResolver(Protocol):
    def resolve(self, url: str, ref: GitRef, creds: Credentials | None = None) -> Resolved: ...

    def fetch(self, url: str, resolved: Resolved, creds: Credentials | None = None) -> git.Repo: ...


@dataclass(frozen=True)
class Resolution:
    """A shared answer: the commit, and when Git was asked (monotonic and wall clock)."""

    resolved: Resolved
    asked_at: float
    asked_at_wall: float


@dataclass
class _Flight(Generic[T]):
    """One call to Git, in flight or finished, joined by every asker it satisfies."""

    started: float
    started_wall: float
    # Requests up to this moment are answered: its start, or the later moment of the
    # request it was started for (a timestamp whose second had not ended yet).
    answers_until: float
    done: threading.Event = field(default_factory=threading.Event)
    result: T | None = None
    error: Exception | None = None

    def usable(self, now: float, max_age: float, not_before_wall: float | None) -> bool:
        if not_before_wall is not None and self.answers_until < not_before_wall:
            return False
        if not self.done.is_set():
            return True  # it started after anything an asker could want
        return self.error is None and now - self.started < max_age


class _SingleFlight(Generic[T]):
    """Results by key, each computed by one caller while the others wait for it."""

    def __init__(
        self, clock: Callable[[], float], wallclock: Callable[[], float], max_entries: int
    ) -> None:
        self._clock, self._wallclock, self._max = clock, wallclock, max_entries
        self._flights: OrderedDict[Hashable, _Flight[T]] = OrderedDict()
        self._lock = threading.Lock()
        self.calls = 0  # how many times `compute` ran: what sharing saves

    def get(
        self,
        key: Hashable,
        compute: Callable[[], T],
        *,
        max_age: float = float("inf"),
        not_before_wall: float | None = None,
    ) -> tuple[T, _Flight[T]]:
        with self._lock:
            now = self._clock()
            flight = self._flights.get(key)
            mine = flight is None or not flight.usable(now, max_age, not_before_wall)
            if mine:
                wall = self._wallclock()
                until = max(wall, not_before_wall) if not_before_wall is not None else wall
                flight = _Flight(started=now, started_wall=wall, answers_until=until)
                self._flights[key] = flight
                self._flights.move_to_end(key)
                self.calls += 1
                self._trim()
        assert flight is not None
        if mine:
            try:
                flight.result = compute()
            except Exception as exc:  # handed to every asker that joined this flight
                flight.error = exc
            finally:
                flight.done.set()
        else:
            flight.done.wait()  # the owner always finishes: `finally` above
        if flight.error is not None:
            raise flight.error
        assert flight.result is not None
        return flight.result, flight

    def _trim(self) -> None:
        while len(self._flights) > self._max:
            oldest = next(iter(self._flights))
            if not self._flights[oldest].done.is_set():
                break  # in flight: its askers still need it; trimmed once finished
            del self._flights[oldest]


class SharedSource:
    """Resolve and pack for many Playbooks, once per key (see the module docstring)."""

    def __init__(
        self,
        git_client: GitResolver,
        store: ArtifactStore,
        *,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.git, self.store = git_client, store
        self._resolutions: _SingleFlight[Resolved] = _SingleFlight(clock, wallclock, max_entries)
        self._artifacts: _SingleFlight[str] = _SingleFlight(clock, wallclock, max_entries)
        self._salt = secrets.token_bytes(32)

    @property
    def resolutions(self) -> int:
        """Resolutions asked of Git so far."""
        return self._resolutions.calls

    @property
    def packs(self) -> int:
        """Fetch-and-pack runs so far."""
        return self._artifacts.calls

    def identity(self, url: str, creds: Credentials | None) -> str:
        """Who asks what: the URL as written and the credential values, salted and hashed
        (this process's salt), so the key is no offline oracle for a password."""
        values = "\0".join(creds.secret_values()) if creds else ""
        material = f"{url}\0{values}".encode()
        return hmac.new(self._salt, material, hashlib.sha256).hexdigest()

    def resolve(
        self,
        url: str,
        ref: GitRef,
        creds: Credentials | None,
        *,
        max_age: float,
        not_before_wall: float | None = None,
    ) -> Resolution:
        """The commit `ref` points at, from a resolution younger than `max_age` seconds
        that started at or after `not_before_wall` (a `time.time()`), else asked now."""
        key = (self.identity(url, creds), ref.kind, ref.value)
        resolved, flight = self._resolutions.get(
            key,
            lambda: self.git.resolve(url, ref, creds),
            max_age=max_age,
            not_before_wall=not_before_wall,
        )
        return Resolution(resolved, flight.started, flight.started_wall)

    def artifact(self, url: str, resolved: Resolved, creds: Credentials | None, path: str) -> str:
        """The digest of `path` at the commit, packed and stored once for every Playbook
        with this key; `ArtifactError` and `SourceError` as `pack` and `fetch` raise them."""
        key = (self.identity(url, creds), resolved.sha, path.strip("/"))

        def fetch_and_pack() -> str:
            repo = self.git.fetch(url, resolved, creds)
            try:
                artifact = pack(repo, resolved.sha, path)
            finally:
                repo.close()
            self.store.put_blob(artifact)
            return artifact.digest

        digest, _ = self._artifacts.get(key, fetch_and_pack)
        if not self.store.has_blob(digest):
            # Pruned meanwhile (every Playbook on it moved on): pack again, once.
            digest, _ = self._artifacts.get(key, fetch_and_pack, max_age=0.0)
        return digest
