"""The Argo CD health checks of docs/gitops.md, run as written.

The Lua is taken from the page's `argocd-cm` ConfigMap and run with Lua 5.1
(the language of Argo CD's interpreter, gopher-lua) from the `lupa` package,
with the object as the global `obj`, as Argo CD does. The Playbooks carry
statuses written by the operator's own status code (`status.summarize`) for
each state a user meets, and hand-made objects lack every optional field.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubesoar_operator import conditions as c
from kubesoar_operator.report import Summary
from kubesoar_operator.status import Observation, RolloutState, SourceState, summarize
from support.gitops_health import health

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SOURCE = SourceState(
    url="https://git.example.com/soc/playbooks.git",
    revision=f"main@sha1:{COMMIT}",
    commit=COMMIT,
    digest="ab" * 32,
    resolved_at="2026-01-01T00:00:00Z",
)


def playbook(status: dict[str, Any] | None, *, generation: int = 1, **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "kubesoar.dev/v1alpha1",
        "kind": "Playbook",
        "metadata": {"name": "triage", "namespace": "soc-acme", "generation": generation},
        "spec": {"source": {"git": {"url": SOURCE.url}}, **spec},
    }
    if status is not None:
        obj["status"] = status
    return obj


def rollout(*, ready: int) -> RolloutState:
    return RolloutState(
        exists=True,
        desired=1,
        commit=COMMIT,
        revision=SOURCE.revision,
        generation_observed=True,
        replicas=1,
        updated=ready,
        ready=ready,
    )


def written(obs: Observation, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    status, _ = summarize(obs, previous)
    return status


REPORTED = Summary(entry_points=[{"name": "triage"}], reports_at_commit=1)
READY = Observation(generation=1, source=SOURCE, rollout=rollout(ready=1), summary=REPORTED)

OPERATOR_STATES = [
    pytest.param(READY, "Healthy", f"Succeeded: running {SOURCE.revision}", id="ready"),
    pytest.param(Observation(generation=1), "Progressing", "Progressing: ", id="resolving"),
    pytest.param(
        Observation(generation=1, source=SOURCE, rollout=rollout(ready=0)),
        "Progressing",
        "RollingOut: 0/1 pods ready",
        id="rolling-out",
    ),
    pytest.param(
        Observation(
            generation=1,
            source_error=(c.GIT_OPERATION_FAILED, "git.example.com: connection refused"),
            source_failures=5,
        ),
        "Progressing",
        "ProgressingWithRetry: retrying after GitOperationFailed",
        id="git-unreachable-retried",
    ),
    pytest.param(
        Observation(
            generation=1,
            source_error=(c.AUTHENTICATION_FAILED, "Authentication failed"),
            source_failures=1,
        ),
        "Progressing",
        "ProgressingWithRetry: retrying after AuthenticationFailed",
        id="wrong-password-first-attempt",
    ),
    pytest.param(
        Observation(
            generation=1,
            source_error=(c.AUTHENTICATION_FAILED, "Authentication failed"),
            source_failures=c.STALL_AFTER_FAILURES,
        ),
        "Degraded",
        "AuthenticationFailed: AuthenticationFailed on 3 attempts",
        id="wrong-password-stalled",
    ),
    pytest.param(
        Observation(generation=1, spec_error="spec.source.git.url: not a URL"),
        "Degraded",
        "InvalidSpec: spec.source.git.url: not a URL",
        id="invalid-spec",
    ),
    pytest.param(
        Observation(
            generation=1,
            source=SOURCE,
            rollout=rollout(ready=0),
            summary=Summary(
                load_error={"type": "NameError", "message": "x", "file": "t.py", "line": 3}
            ),
        ),
        "Degraded",
        "LoadFailed: NameError: x (t.py:3)",
        id="load-failed",
    ),
]


@pytest.mark.parametrize(("obs", "expected", "message"), OPERATOR_STATES)
def test_playbook_health_in_each_operator_state(obs, expected, message):
    answer = health("Playbook", playbook(written(obs)))
    assert answer["status"] == expected
    assert answer["message"].startswith(message), answer


def test_a_suspended_playbook_is_suspended():
    status = written(Observation(generation=2, suspended=True), written(READY))
    assert health("Playbook", playbook(status, generation=2, suspend=True))["status"] == "Suspended"


def test_a_new_generation_waits_for_the_operator():
    answer = health("Playbook", playbook(written(READY), generation=2))
    assert answer == {
        "status": "Progressing",
        "message": "Waiting for the operator to observe the latest generation",
    }


def _cond(type_: str, status: str, **fields: str) -> dict[str, str]:
    return {"type": type_, "status": status, **fields}


MISSING_FIELDS = [
    pytest.param({"kind": "Playbook"}, "Progressing", "Waiting for the operator", id="bare"),
    pytest.param(playbook({}), "Progressing", "Waiting for the operator", id="no-conditions"),
    pytest.param(
        playbook({"observedGeneration": 1, "conditions": []}),
        "Progressing",
        "Waiting for the operator",
        id="empty-conditions",
    ),
    pytest.param(
        playbook({"conditions": [_cond("Ready", "True")]}),
        "Progressing",
        "Waiting for the operator to observe the latest generation",
        id="no-observed-generation",
    ),
    pytest.param(
        {"status": {"conditions": [_cond("Ready", "True", reason="Succeeded")]}},
        "Healthy",
        "Succeeded",
        id="no-metadata",
    ),
    pytest.param(
        playbook({"observedGeneration": 1, "conditions": [_cond("Stalled", "True")]}),
        "Degraded",
        "Stalled",
        id="stalled-without-reason-or-message",
    ),
    pytest.param(
        playbook(
            {
                "observedGeneration": 1,
                "conditions": [
                    _cond("Ready", "False", reason="AuthenticationFailed"),
                    _cond("Stalled", "True", reason="AuthenticationFailed"),
                ],
            }
        ),
        "Degraded",
        "AuthenticationFailed",
        id="stalled-without-message",
    ),
    pytest.param(
        playbook(
            {"observedGeneration": 1, "conditions": [_cond("Reconciling", "True", reason="X")]}
        ),
        "Progressing",
        "X",
        id="reconciling-without-message",
    ),
    pytest.param(
        playbook({"observedGeneration": 1, "conditions": [_cond("Ready", "False")]}),
        "Degraded",
        "Ready",
        id="ready-false-without-reason",
    ),
    pytest.param(
        playbook(
            {"observedGeneration": 1, "conditions": [{"status": "True"}, _cond("Ready", "True")]}
        ),
        "Healthy",
        "Ready",
        id="condition-without-type",
    ),
]


@pytest.mark.parametrize(("obj", "expected", "message"), MISSING_FIELDS)
def test_playbook_health_with_missing_fields(obj, expected, message):
    assert health("Playbook", obj) == {"status": expected, "message": message}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, "Progressing"),
        ({"conditions": [_cond("Ready", "True", reason="Succeeded", message="ok")]}, "Healthy"),
        ({"conditions": [_cond("Ready", "False")]}, "Degraded"),
        ({"conditions": [_cond("Ready", "False", reason="Suspended")]}, "Suspended"),
    ],
)
def test_alertsource_health(status, expected):
    obj: dict[str, Any] = {"kind": "AlertSource", "metadata": {"name": "siem"}}
    if status is not None:
        obj["status"] = status
    assert health("AlertSource", obj)["status"] == expected
