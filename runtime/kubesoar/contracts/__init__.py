"""What kubesoar's parts agree on, defined once: the runtime, the router and the
operator import these modules, and no other module spells these names.

- `kube`: the CRD group, version and kinds, labels and annotations.
- `conditions`: condition types and reasons on Playbook and AlertSource status.
- `http`: the bodies of `POST /v1/runs`, `GET /v1/runs/{id}`, `GET /v1/report` and
  the router's ingest answer, as pydantic models.
- `paths`: the HTTP paths and headers alone (standard library only; `http` re-exports them).
- `alertsource`: the AlertSource spec, read by the operator and the router alike.

`docs/CONTRACTS.md` describes them; `tests/runtime/test_contracts.py` keeps the page
and the code in step. This package depends on pydantic only, so a playbook author's
`pip install kubesoar` carries it without the operator's or router's dependencies.
"""
