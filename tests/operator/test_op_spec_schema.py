"""The pydantic spec model and crds/playbook.yaml stay in step: same fields, same defaults,
descriptions everywhere; and parse_spec turns bad input into one readable message."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubesoar_operator.spec import InvalidSpec, PlaybookSpec, parse_spec
from pydantic import BaseModel

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "playbook.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


def _schema(crd: dict[str, Any]) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model inside `Model`, `Model | None` or `tuple[Model, ...]`."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _compare(model: type[BaseModel], schema: dict[str, Any], where: str) -> list[str]:
    problems = []
    props = schema.get("properties", {})
    names = {}
    for field_name, info in model.model_fields.items():
        key = info.alias or field_name
        names[key] = info
        if key not in props:
            problems.append(f"{where}.{key}: in the model, not in the CRD")
            continue
        prop = props[key]
        if info.is_required():
            if key not in schema.get("required", []):
                problems.append(f"{where}.{key}: required in the model only")
        else:
            default = info.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                default = {}
            elif isinstance(default, tuple):
                default = list(default)
            if default is not None and prop.get("default") != default:
                problems.append(f"{where}.{key}: default {default!r} vs {prop.get('default')!r}")
        nested = _model_of(info.annotation)
        if nested is not None:
            target = prop.get("items", prop)
            problems += _compare(nested, target, f"{where}.{key}")
    for key in props:
        if key not in names:
            problems.append(f"{where}.{key}: in the CRD, not in the model")
    return problems


def test_model_and_crd_have_the_same_fields_and_defaults(crd: dict[str, Any]) -> None:
    spec_schema = _schema(crd)["properties"]["spec"]
    assert _compare(PlaybookSpec, spec_schema, "spec") == []


def test_every_schema_field_has_a_description(crd: dict[str, Any]) -> None:
    missing = []

    def walk(node: dict[str, Any], where: str) -> None:
        for key, prop in node.get("properties", {}).items():
            if where == "" and key == "metadata":
                continue
            if not prop.get("description"):
                missing.append(f"{where}.{key}")
            walk(prop, f"{where}.{key}")
            if "items" in prop:
                walk(prop["items"], f"{where}.{key}[]")

    walk(_schema(crd), "")
    assert missing == []


def test_crd_names_printer_columns_and_status(crd: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == "playbooks.kubesoar.dev"
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["pb"] and names["categories"] == ["kubesoar"]
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Revision"] == ".status.source.revision"
    assert {"Replicas", "Age"} <= set(columns)


def _valid() -> dict[str, Any]:
    return {
        "source": {"git": {"url": "https://git.example.com/a.git", "ref": {"branch": "main"}}},
        "module": "triage",
    }


def test_minimal_spec_gets_the_documented_defaults() -> None:
    spec = parse_spec(_valid())
    assert spec.replicas == 1 and spec.source.interval_seconds == 60
    assert spec.runtime.concurrency == 8 and spec.runtime.queue_size == 100
    assert spec.runtime.timeout_seconds == 300 and spec.source.path == ""


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"ref": {"branch": "main", "tag": "v1"}}, "exactly one"),
        ({"ref": {}}, "exactly one"),
        ({"ref": {"commit": "abc"}}, "spec.source.git.ref.commit"),
        ({"ref": {"semver": ">=banana"}}, "invalid version"),
        ({"url": "file:///etc"}, "spec.source.git.url"),
    ],
)
def test_invalid_git_specs_are_explained(change: dict[str, Any], expected: str) -> None:
    raw = _valid()
    raw["source"]["git"].update(change)
    with pytest.raises(InvalidSpec, match=expected):
        parse_spec(raw)


def test_path_may_not_leave_the_repository_and_env_prefix_is_reserved() -> None:
    raw = _valid()
    raw["source"]["path"] = "a/../../etc"
    with pytest.raises(InvalidSpec, match="inside the repository"):
        parse_spec(raw)
    raw = _valid()
    raw["runtime"] = {"env": [{"name": "KUBESOAR_MODULE", "value": "x"}]}
    with pytest.raises(InvalidSpec, match="reserved"):
        parse_spec(raw)
