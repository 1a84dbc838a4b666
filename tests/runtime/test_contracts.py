"""The contracts package is the one place the parts' shared names live, and
docs/CONTRACTS.md says what the code does.

- Every HTTP model's field table and every condition reason appears in the doc exactly as
  rendered from the code (a changed model without a changed doc fails here, and the
  failure prints the block to paste).
- No module outside `kubesoar.contracts` spells a contract string (label and annotation
  keys, the API group, header names, paths) as a literal.
- The YAML the project ships (CRDs, chart) uses the same group, kinds and labels.
"""

from __future__ import annotations

import ast
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubesoar.contracts import caller, conditions, http, kube
from pydantic import BaseModel, ValidationError

ROOT = Path(__file__).parents[2]
DOC = (ROOT / "docs" / "CONTRACTS.md").read_text()
MODELS: list[type[BaseModel]] = [
    http.ErrorBody,
    http.RunRequest,
    http.ReportTo,
    http.JournalEntry,
    http.RunAccepted,
    http.RunResult,
    http.ApprovalRequest,
    http.ApprovalDecision,
    http.LeaseAnswer,
    http.RunRecord,
    http.Report,
    http.EntryPointInfo,
    http.LoadErrorInfo,
    http.RunTotals,
    http.IngestAccepted,
    http.Delivery,
]


def _json_type(annotation: Any) -> str:
    """A field's type as JSON readers think of it (`string or null`, `array of string`)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _json_type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        parts = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(parts) < len(typing.get_args(annotation))
        text = " or ".join(_json_type(a) for a in parts)
        return f"{text} or null" if nullable else text
    if origin is list:
        return f"array of {_json_type(typing.get_args(annotation)[0])}"
    if origin is dict or annotation is dict:
        return "object"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"`{annotation.__name__}`"
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return names.get(annotation, str(annotation))


def render_model(model: type[BaseModel]) -> str:
    lines = [
        f"### `{model.__name__}`",
        "| field | type | required | meaning |",
        "|---|---|---|---|",
    ]
    for name, field in model.model_fields.items():
        required = "yes" if field.is_required() else "no"
        wire = field.alias or name
        lines.append(
            f"| `{wire}` | {_json_type(field.annotation)} | {required} | {field.description} |"
        )
    return "\n".join(lines)


def render_reasons() -> str:
    lines = ["| reason | meaning |", "|---|---|"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in conditions.REASONS.items()]
    return "\n".join(lines)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_each_model_is_documented_as_it_is(model: type[BaseModel]) -> None:
    block = render_model(model)
    assert block in DOC, f"docs/CONTRACTS.md must contain, verbatim:\n\n{block}\n"
    for field in model.model_fields.values():
        assert field.description, f"{model.__name__}: every field needs a description"


def test_every_condition_reason_is_documented() -> None:
    block = render_reasons()
    assert block in DOC, f"docs/CONTRACTS.md must contain, verbatim:\n\n{block}\n"
    for type_ in conditions.ALL_TYPES:
        assert f"`{type_}`" in DOC


def test_labels_annotations_and_paths_are_documented() -> None:
    names = [
        value
        for module in (kube, http, caller)
        for key, value in vars(module).items()
        if key.isupper() and isinstance(value, str)
    ]
    missing = [name for name in names if name not in DOC]
    assert not missing, f"docs/CONTRACTS.md does not mention: {missing}"


# --- defined once ---------------------------------------------------------------------
def _contract_strings() -> set[str]:
    """Values that must be spelled only in `kubesoar.contracts` (short generic words such
    as `Ready` are left out: pods and Deployments have conditions of that name too)."""
    values = {
        value
        for module in (kube, http, caller)
        for key, value in vars(module).items()
        if key.isupper() and isinstance(value, str) and ("/" in value or "-" in value)
    }
    return values | {kube.API_GROUP, kube.API_VERSION}


def _literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if id(node) not in docstrings
    ]


def test_no_module_outside_the_contracts_spells_a_contract_name() -> None:
    wanted = _contract_strings()
    contracts_dir = ROOT / "runtime" / "kubesoar" / "contracts"
    offenders = []
    for folder in ("runtime", "operator", "router"):
        for path in (ROOT / folder).rglob("*.py"):
            if contracts_dir in path.parents:
                continue
            for line, value in _literals(path):
                if value in wanted:
                    offenders.append(f"{path.relative_to(ROOT)}:{line}: {value!r}")
    assert not offenders, "import these from kubesoar.contracts:\n" + "\n".join(offenders)


# --- the YAML agrees ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", [kube.PLAYBOOK, kube.ALERT_SOURCE], ids=lambda k: k.kind)
def test_crds_use_the_contract_names(kind: kube.Kind) -> None:
    crd = yaml.safe_load((ROOT / "crds" / f"{kind.kind.lower()}.yaml").read_text())
    assert crd["spec"]["group"] == kube.API_GROUP
    assert crd["spec"]["names"]["kind"] == kind.kind
    assert crd["spec"]["names"]["plural"] == kind.plural
    assert crd["metadata"]["name"] == f"{kind.plural}.{kube.API_GROUP}"
    served = [v["name"] for v in crd["spec"]["versions"] if v.get("served")]
    assert kube.API_VERSION in served


def test_chart_labels_use_the_contract_keys() -> None:
    helpers = (ROOT / "helm" / "kubesoar" / "templates" / "_helpers.tpl").read_text()
    for key in (kube.LABEL_NAME, kube.LABEL_COMPONENT):
        assert key in helpers
    for component in (kube.COMPONENT_OPERATOR, kube.COMPONENT_ROUTER):
        assert any(
            component in path.read_text()
            for path in (ROOT / "helm" / "kubesoar" / "templates").glob("*.yaml")
        )


# --- the models do what the parts rely on -------------------------------------------
def test_run_request_encoding_round_trips() -> None:
    body = http.encode_run_request(
        key='k:"1"', correlation_id="c-1", entries=["a", "b"], alert_json=b'{"title":"t\\u00e9"}'
    )
    request = http.RunRequest.model_validate_json(body)
    assert request.idempotency_key == 'k:"1"'
    assert request.correlation_id == "c-1"
    assert request.playbooks == ["a", "b"]
    assert request.alert == {"title": "té"}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"alert": {}}, "idempotencyKey is required"),
        ({"idempotencyKey": "", "alert": {}}, "idempotencyKey must be a string of 1-256 chars"),
        ({"idempotencyKey": 5, "alert": {}}, "idempotencyKey must be a string"),
        ({"idempotencyKey": "k", "alert": []}, "alert must be a JSON object"),
        ({"idempotencyKey": "k", "alert": {}, "playbooks": [""]}, "playbooks must be null"),
        ({"idempotencyKey": "k", "alert": {}, "playbooks": ["a"] * 257}, "playbooks must be"),
        ({"idempotencyKey": "k", "alert": {}, "extra": 1}, "extra"),
    ],
)
def test_a_refused_run_request_names_the_field(body: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        http.parse_run_request(body)
    assert problem in http.run_request_problem(caught.value)


def test_labels_select_what_they_label() -> None:
    labels = kube.runtime_labels("triage")
    selector = kube.runtime_selector_labels("triage")
    assert selector.items() <= labels.items()
    assert labels[kube.LABEL_PLAYBOOK] == "triage"
    assert kube.RUNTIME_SELECTOR == f"{kube.LABEL_COMPONENT}={labels[kube.LABEL_COMPONENT]}"
    assert kube.PLAYBOOK.path("acme", "triage") == (
        "/apis/kubesoar.dev/v1alpha1/namespaces/acme/playbooks/triage"
    )


def test_the_alertsource_reference_names_its_reasons() -> None:
    # The Playbook reference's table is checked in tests/operator/test_op_status.py.
    alertsource = (ROOT / "docs" / "reference" / "alertsource.md").read_text()
    assert [r for r in conditions.ALERT_SOURCE_REASONS if f"`{r}`" not in alertsource] == []


async def test_a_runtime_run_record_follows_the_contract() -> None:
    """What `GET /v1/runs/{id}` serves is a `RunRecord`, a failed one included, and what a
    dispatched run reports is a `RunResult`."""
    from kubesoar import Alert, action, playbook
    from kubesoar._engine import Engine
    from kubesoar._sdk import entry_points_of, forget_module

    module = "contract_record_book"
    forget_module(module)

    @action()
    async def lookup(ip: str) -> dict[str, str]:
        return {"ip": ip}

    async def ok(alert: Alert) -> dict[str, str]:
        return await lookup("10.0.0.1")

    async def broken(alert: Alert) -> None:
        raise KeyError("nope")

    for func in (ok, broken):
        func.__module__ = module
        playbook(trigger="webhook", name=func.__name__)(func)
    engine = Engine(entry_points_of(module))
    alert = Alert(title="t", severity="high")
    run = await engine.execute(engine.create_run(alert, engine.select(alert, None)))
    record = http.RunRecord.model_validate(run.to_json())
    assert record.status == "failed" and len(record.results) == 2
    result = run.to_result()
    assert result.status == "failed" and "KeyError" in (result.error or "")
    assert result.traceback and "broken" in result.traceback
    forget_module(module)


def test_an_opensoar_entry_point_says_whose_fields_its_conditions_name() -> None:
    from kubesoar import _opensoar_sdk, playbook
    from kubesoar._sdk import entry_points_of, forget_module

    module = "contract_fields_book"
    forget_module(module)

    async def migrated(alert: object) -> None:
        return None

    async def native(alert: object) -> None:
        return None

    migrated.__module__ = native.__module__ = module
    _opensoar_sdk.playbook("webhook", conditions={"severity": "low"})(migrated)
    playbook(trigger="webhook", conditions={"severity": "low"})(native)
    described = {
        e.name: http.EntryPointInfo.model_validate(e.describe()) for e in entry_points_of(module)
    }
    forget_module(module)
    assert described["migrated"].fields == "opensoar"
    assert described["native"].fields == "kubesoar"
