"""The runs API's pure parts, without a cluster: content negotiation, selectors,
the objects kubectl receives and the OpenAPI document kubectl explain reads."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from kubesoar_router.api import negotiation, objects, openapi, selectors
from kubesoar_router.api.status import ApiProblem

KUBECTL_GET = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,"
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)


@pytest.mark.parametrize(
    ("accept", "wanted"),
    [
        (KUBECTL_GET, ("table", "v1")),
        ("application/json", ("object", "")),
        ("", ("object", "")),
        ("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1", ("metadata", "v1")),
        ("application/vnd.kubernetes.protobuf, application/json", ("object", "")),
    ],
)
def test_the_first_representation_we_serve_wins(accept: str, wanted: tuple[str, str]) -> None:
    assert negotiation.representation(accept) == wanted


def test_protobuf_only_is_406() -> None:
    with pytest.raises(ApiProblem) as caught:
        negotiation.representation("application/vnd.kubernetes.protobuf")
    assert caught.value.code == 406


def test_an_alert_is_named_by_its_uuid_or_by_the_id_ingest_answered() -> None:
    stored = uuid.UUID("4681e7ab-2d6a-1b09-1c38-1b83e5653dce")
    answered = "al-4681e7ab2d6a1b091c381b83e5653dce"  # the 202's alertId, same 128 bits
    assert objects.parse_name(str(stored)) == objects.parse_name(answered) == stored
    for wrong in ("al-4681e7ab", "al-" + "z" * 32, "al-" + str(stored), "nope"):
        assert objects.parse_name(wrong) is None
    where = selectors.run_filter({"fieldSelector": f"spec.alertId={answered}"}, "acme")
    assert where is not None and where.alert_id == stored


def test_selectors_become_filters_and_unknown_ones_are_refused() -> None:
    where = selectors.run_filter({"fieldSelector": "status=failed,spec.playbook=triage"}, "acme")
    assert where is not None
    assert (where.namespace, where.status, where.playbook) == ("acme", "failed", "triage")
    labels = selectors.run_filter({"labelSelector": "kubesoar.dev/playbook==enrich"}, "acme")
    assert labels is not None and labels.playbook == "enrich"
    # Contradictions and other namespaces match nothing; a malformed alert id too.
    assert selectors.run_filter({"fieldSelector": "status=failed,status=dead"}, "acme") is None
    assert selectors.run_filter({"fieldSelector": "metadata.namespace=other"}, "acme") is None
    assert selectors.run_filter({"fieldSelector": "spec.alertId=nope"}, "acme") is None
    for query in (
        {"fieldSelector": "status!=failed"},
        {"fieldSelector": "spec.secret=1"},
        {"fieldSelector": "status=finished"},
        {"labelSelector": "env in (prod)"},
    ):
        with pytest.raises(ApiProblem) as caught:
            selectors.run_filter(query, "acme")
        assert caught.value.code == 400
    since = selectors.run_filter({"fieldSelector": "since=2026-12-01T08:00:00Z"}, "acme")
    assert since is not None and since.since == datetime(2026, 12, 1, 8, tzinfo=UTC)
    for bad in ("since=yesterday", "since=2026-12-01T08:00:00", "since=5y"):
        with pytest.raises(ApiProblem) as caught:
            selectors.run_filter({"fieldSelector": bad}, "acme")
        assert caught.value.code == 400 and "30m" in caught.value.message
    alerts = selectors.alert_filter({"fieldSelector": "spec.status=resolved"}, "")
    assert alerts is not None and alerts.status == "resolved" and alerts.namespace is None


def _run_row(**changes: object) -> dict[str, object]:
    now = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    run_id = uuid.uuid4()
    row: dict[str, object] = {
        "id": run_id,
        "name": str(run_id),
        "namespace": "acme",
        "playbook": "triage",
        "entry_points": ["main"],
        "status": "failed",
        "attempt": 2,
        "max_attempts": 3,
        "idempotency_key": "k",
        "alert_id": uuid.uuid4(),
        "created_at": now,
        "started_at": now + timedelta(seconds=1),
        "finished_at": now + timedelta(seconds=95),
        "updated_at": now,
        "error": "KeyError: 'ip'",
    }
    return {**row, **changes}


def test_a_run_object_and_its_table_row() -> None:
    row = _run_row()
    run = objects.run_object(row)
    assert run["metadata"]["labels"] == {
        "kubesoar.dev/playbook": "triage",
        "runs.kubesoar.dev/status": "failed",
    }
    assert run["metadata"]["creationTimestamp"] == "2026-01-02T03:04:05Z"
    assert objects.parse_resource_version(run["metadata"]["resourceVersion"]) == row["updated_at"]
    assert run["status"]["durationSeconds"] == 94.0 and "traceback" not in run["status"]
    now = row["created_at"] + timedelta(minutes=5)  # type: ignore[operator]
    assert objects.run_cells(row, now) == [row["name"], "triage", "failed", 2, "5m", "94s"]
    table = objects.table(
        version="v1",
        columns=objects.RUN_COLUMNS,
        rows=[row],
        cells=objects.run_cells,
        render=objects.run_object,
        metadata=objects.run_metadata,
        include_object="Metadata",
        token="next",
    )
    assert table["metadata"] == {"continue": "next"}
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert table["rows"][0]["object"]["metadata"] == run["metadata"]
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "Playbook",
        "Status",
        "Attempt",
        "Age",
        "Duration",
    ]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (5, "5s"),
        (119, "119s"),
        (125, "2m5s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 3600, "3d1h"),
        (40 * 86400, "40d"),
        (800 * 86400, "2y"),
    ],
)
def test_ages_read_as_kubectl_shows_them(seconds: int, shown: str) -> None:
    assert objects.human_duration(seconds) == shown


def test_openapi_names_each_kind_on_its_paths() -> None:
    document = json.loads(openapi.document())
    get_run = document["paths"][
        "/apis/runs.kubesoar.dev/v1alpha1/namespaces/{namespace}/runs/{name}"
    ]
    assert get_run["get"]["x-kubernetes-group-version-kind"]["kind"] == "Run"
    schemas = document["components"]["schemas"]
    alert = schemas["dev.kubesoar.runs.v1alpha1.Alert"]
    assert alert["properties"]["spec"]["properties"]["status"]["enum"] == [
        "new",
        "in_progress",
        "resolved",
    ]
    assert openapi.root()["paths"]["apis/runs.kubesoar.dev/v1alpha1"]["serverRelativeURL"].endswith(
        openapi.etag()
    )
    v2 = json.loads(openapi.document_v2())
    assert (
        "#/components/" not in json.dumps(v2)
        and "dev.kubesoar.runs.v1alpha1.Run" in v2["definitions"]
    )
