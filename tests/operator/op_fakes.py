"""Fakes of the operator's two outside clients, for tests that need no cluster and no Git
server: `FakeKube` (the `kube.Kube` calls a reconcile makes, against objects held in
memory) and `FakeGit` (resolve and fetch, against a real local repository). Both record
what was asked of them, so a test can say what did *not* happen."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git
from kubesoar.contracts.kube import PLAYBOOK, Kind
from kubesoar_operator.gitsource import Credentials, Resolved, SourceError
from kubesoar_operator.kube import NotFound
from kubesoar_operator.spec import GitRef

UID = "0b6a3d52-7d1c-4b8e-9a51-5f2d4c3b2a10"


def playbook(
    name: str = "pb", namespace: str = "tenant", *, secret: str | None = None, **spec: Any
) -> dict[str, Any]:
    """A Playbook body as the API server returns it."""
    git_spec: dict[str, Any] = {"url": "https://git.example/pb.git", "ref": {"branch": "main"}}
    if secret:
        git_spec["secretRef"] = {"name": secret}
    return {
        "apiVersion": "kubesoar.dev/v1alpha1",
        "kind": "Playbook",
        "metadata": {"name": name, "namespace": namespace, "uid": UID, "generation": 1},
        "spec": {
            "source": {"git": git_spec, "path": "pb/", "interval": "1m"},
            "module": "triage",
            "replicas": 0,
            **spec,
        },
    }


@dataclass
class FakeKube:
    """Objects by (kind, namespace, name); every call is recorded in `calls`."""

    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def add(self, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        self.objects[(obj["kind"], meta["namespace"], meta["name"])] = copy.deepcopy(dict(obj))

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self.objects.pop((kind, namespace, name), None)

    def read_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        self.calls.append(("read_secret_data", name))
        secret = self.objects.get(("Secret", namespace, name))
        return None if secret is None else dict(secret.get("data") or {})

    def read_playbook(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("read_playbook", name))
        found = self.objects.get(("Playbook", namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def read_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("read_deployment", name))
        found = self.objects.get(("Deployment", namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def list_pods(self, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        self.calls.append(("list_pods", namespace))
        return []

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(("apply", f"{obj['kind']}/{obj['metadata']['name']}"))
        self.add(obj)
        return dict(obj)

    def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any], *, kind: Kind = PLAYBOOK
    ) -> None:
        self.calls.append(("patch_status", name))
        found = self.objects.get((kind.kind, namespace, name))
        if found is None:
            raise NotFound(404, "Not Found")
        found["status"] = {**(found.get("status") or {}), **status}

    def applied(self) -> list[str]:
        return [what for call, what in self.calls if call == "apply"]


class FakeGit:
    """Resolves every ref to the head of a real local repository, unless told to fail.

    `failures` is consumed one per `resolve`: a SourceError is raised, None resolves.
    """

    def __init__(self, folder: Path, files: Mapping[str, str] | None = None) -> None:
        self.repo_path = folder
        repo = git.Repo.init(folder)
        self._author = git.Actor("test", "test@example.invalid")
        self.commit(files or {"pb/triage.py": "def triage():\n    return 1\n"}, repo=repo)
        self.failures: list[SourceError | None] = []
        self.resolves = 0
        self.fetches = 0
        self.seen_creds: list[Credentials | None] = []

    def commit(self, files: Mapping[str, str], repo: git.Repo | None = None) -> str:
        repo = repo or git.Repo(self.repo_path)
        for name, text in files.items():
            path = self.repo_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            repo.index.add([name])
        commit = repo.index.commit("change", author=self._author, committer=self._author)
        return str(commit.hexsha)

    def head(self) -> str:
        return str(git.Repo(self.repo_path).head.commit.hexsha)

    def resolve(self, url: str, ref: GitRef, creds: Credentials | None = None) -> Resolved:
        self.resolves += 1
        self.seen_creds.append(creds)
        if self.failures:
            failure = self.failures.pop(0)
            if failure is not None:
                raise failure
        return Resolved(self.head(), ref.branch or "")

    def fetch(self, url: str, resolved: Resolved, creds: Credentials | None = None) -> git.Repo:
        self.fetches += 1
        return git.Repo(self.repo_path)


def fail(reason: str, times: int) -> Iterator[SourceError]:
    for _ in range(times):
        yield SourceError(reason, f"{reason} for the test")
