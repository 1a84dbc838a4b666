"""The AlertSource status the operator writes: Ready, Stalled with reasons, the path,
and never a secret value."""

from __future__ import annotations

import pytest
from kubesoar_operator import alertsources

SECRET_VALUE = "do-not-leak-me"
SPEC = {
    "format": "elastic",
    "auth": {
        "bearer": {"secretRef": {"name": "tok", "key": "token"}},
        "hmac": {"secretRef": {"name": "sig", "key": "key"}},
    },
}


def reader(secrets):
    return lambda name: secrets.get(name)


def ready_condition(status):
    return next(c for c in status["conditions"] if c["type"] == "Ready")


def test_ready_with_path():
    status = alertsources.evaluate(
        "tenant-a",
        "siem",
        SPEC,
        3,
        reader({"tok": {"token": SECRET_VALUE}, "sig": {"key": SECRET_VALUE}}),
    )
    assert status["path"] == "/v1/namespaces/tenant-a/sources/siem/alerts"
    assert status["observedGeneration"] == 3
    ready = ready_condition(status)
    assert (ready["status"], ready["reason"]) == ("True", alertsources.SUCCEEDED)
    assert [c["type"] for c in status["conditions"]] == ["Ready"]


@pytest.mark.parametrize(
    ("secrets", "reason", "words"),
    [
        ({}, alertsources.SECRET_NOT_FOUND, "'tok' not found"),
        ({"tok": {"token": SECRET_VALUE}}, alertsources.SECRET_NOT_FOUND, "'sig' not found"),
        (
            {"tok": {"other": SECRET_VALUE}, "sig": {"key": "x"}},
            alertsources.SECRET_KEY_NOT_FOUND,
            "key 'token'",
        ),
    ],
)
def test_stalled_on_secrets(secrets, reason, words):
    status = alertsources.evaluate("t", "s", SPEC, 1, reader(secrets))
    ready = ready_condition(status)
    assert (ready["status"], ready["reason"]) == ("False", reason)
    assert words in ready["message"]
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"
    assert SECRET_VALUE not in str(status)


def test_invalid_spec_is_stalled_with_the_field():
    status = alertsources.evaluate("t", "s", {"auth": {}}, 1, reader({}))
    ready = ready_condition(status)
    assert ready["reason"] == alertsources.INVALID_SPEC
    assert "auth" in ready["message"]


def test_suspended_is_not_ready_but_not_stalled():
    spec = {**SPEC, "suspend": True}
    status = alertsources.evaluate(
        "t", "s", spec, 1, reader({"tok": {"token": "a"}, "sig": {"key": "b"}})
    )
    assert ready_condition(status)["reason"] == alertsources.SUSPENDED
    assert [c["type"] for c in status["conditions"]] == ["Ready"]
