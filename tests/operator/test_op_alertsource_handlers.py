"""The AlertSource handlers follow the Playbook pattern: nothing is registered on import,
`register(api, registry=…)` wires them, and `check` is the one status writer (the kopf
handlers and the periodic re-check both go through it), with fake Kube clients."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Iterator
from typing import Any

import kopf
import pytest
from kopf._core.engines import posting
from kubesoar.contracts.kube import ALERT_SOURCE
from kubesoar_operator import alertsources
from kubesoar_operator import conditions as c
from kubesoar_operator.refresher import REFRESHER
from op_fakes import FakeKube


def _alertsource(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubesoar.dev/v1alpha1",
        "kind": "AlertSource",
        "metadata": {"name": "siem", "namespace": "tenant", "uid": "u-1", "generation": 2},
        "spec": {
            "format": "generic",
            "auth": {"bearer": {"secretRef": {"name": "tok", "key": "token"}}},
        },
        **({"status": status} if status else {}),
    }


Posted = Callable[[], list[tuple[str, str]]]


@pytest.fixture
def posted() -> Iterator[Posted]:
    """kopf's Event queue, as its handlers see it (so `kopf.event` works in `check`);
    calling the fixture's value returns the (type, reason) of the Events posted so far."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    settings = kopf.OperatorSettings()
    settings.posting.enabled = True
    loop = asyncio.new_event_loop()
    tokens = (
        posting.settings_var.set(settings),
        posting.event_queue_var.set(queue),
        posting.event_queue_loop_var.set(loop),
    )

    def drain() -> list[tuple[str, str]]:
        loop.run_until_complete(asyncio.sleep(0))  # posted as if from another thread
        out = []
        while not queue.empty():
            event = queue.get_nowait()
            out.append((event.type, event.reason))
        return out

    yield drain
    posting.event_queue_loop_var.reset(tokens[2])
    posting.event_queue_var.reset(tokens[1])
    posting.settings_var.reset(tokens[0])
    loop.close()


def test_importing_registers_nothing_and_register_wires_the_handlers() -> None:
    default = kopf.get_default_registry()
    ids = [h.id for h in default._changing.get_all_handlers()]
    assert not [i for i in ids if "alertsource" in i]  # no import-time registration
    registry = kopf.OperatorRegistry()
    alertsources.register(FakeKube(), registry=registry)  # type: ignore[arg-type]
    changing = {h.id for h in registry._changing.get_all_handlers()}
    assert changing and all(i.startswith("alertsource") for i in changing)
    assert len(registry._watching.get_all_handlers()) == 1
    assert ALERT_SOURCE.plural in REFRESHER._refresh


def test_check_writes_the_status_through_the_one_writer(posted: Posted) -> None:
    kube = FakeKube()
    body = _alertsource()
    kube.add(body)
    alertsources.check(kube, kopf.Body(body), alertsources._log)  # type: ignore[arg-type]
    status = kube.objects[("AlertSource", "tenant", "siem")]["status"]
    assert status["path"] == "/v1/namespaces/tenant/sources/siem/alerts"
    ready = c.find(status["conditions"], c.READY)
    stalled = c.find(status["conditions"], c.STALLED)
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", c.SECRET_NOT_FOUND)
    assert stalled is not None and stalled["reason"] == c.SECRET_NOT_FOUND
    assert posted() == [("Warning", c.SECRET_NOT_FOUND)]  # the transition, once


def test_an_unchanged_status_is_not_written_again(posted: Posted) -> None:
    kube = FakeKube()
    kube.add(_alertsource())
    alertsources.check(kube, kopf.Body(_alertsource()), alertsources._log)  # type: ignore[arg-type]
    written = kube.objects[("AlertSource", "tenant", "siem")]["status"]
    kube.calls.clear()
    alertsources.check(kube, kopf.Body(_alertsource(**written)), alertsources._log)  # type: ignore[arg-type]
    assert ("patch_status", "siem") not in kube.calls
    assert posted() == [("Warning", c.SECRET_NOT_FOUND)]  # only the first check's


def test_a_fixed_secret_clears_stalled(posted: Posted) -> None:
    kube = FakeKube()
    kube.add(_alertsource())
    alertsources.check(kube, kopf.Body(_alertsource()), alertsources._log)  # type: ignore[arg-type]
    stalled = kube.objects[("AlertSource", "tenant", "siem")]["status"]
    token = base64.b64encode(b"t0ken").decode()
    kube.add({"kind": "Secret", "metadata": {"name": "tok", "namespace": "tenant"},
              "data": {"token": token}})  # fmt: skip
    alertsources.check(kube, kopf.Body(_alertsource(**stalled)), alertsources._log)  # type: ignore[arg-type]
    status = kube.objects[("AlertSource", "tenant", "siem")]["status"]
    assert [x["type"] for x in status["conditions"]] == [c.READY]  # Stalled went
    assert c.is_true(status["conditions"], c.READY)


def test_a_deleted_alertsource_is_reported_gone() -> None:
    """The re-check of an object that 404s on its status write tells the refresher so."""
    from kubesoar_operator.kube import NotFound

    with pytest.raises(NotFound):
        alertsources.check(FakeKube(), kopf.Body(_alertsource()), alertsources._log)  # type: ignore[arg-type]
