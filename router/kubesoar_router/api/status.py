"""Errors as Kubernetes `Status` objects, so kubectl prints them as it prints its own
("Error from server (Forbidden): …")."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from kubesoar.contracts import kube

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    503: "ServiceUnavailable",
}


class ApiProblem(Exception):
    """Raised by a handler; answered as a `Status` with this code and message."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        resource: str | None = None,
        name: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.resource = resource
        self.name = name
        self.field = field  # for 422: the field at fault, listed as the cause kubectl prints


def body(problem: ApiProblem) -> dict[str, Any]:
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": problem.message,
        "reason": REASONS.get(problem.code, "InternalError"),
        "code": problem.code,
    }
    if problem.resource is not None:
        details: dict[str, Any] = {"group": kube.RUNS_API_GROUP, "kind": problem.resource}
        if problem.name:
            details["name"] = problem.name
        if problem.field:
            details["causes"] = [
                {"reason": "FieldValueInvalid", "field": problem.field, "message": problem.message}
            ]
        status["details"] = details
    return status


def response(problem: ApiProblem, **headers: str) -> web.Response:
    return web.Response(
        text=json.dumps(body(problem)),
        status=problem.code,
        content_type="application/json",
        headers=headers,
    )


def not_found(resource: str, name: str) -> ApiProblem:
    return ApiProblem(
        404,
        f'{resource}.{kube.RUNS_API_GROUP} "{name}" not found',
        resource=resource,
        name=name,
    )


def invalid(resource: str, name: str, field: str, message: str) -> ApiProblem:
    """422 as kubectl shows it: `The alerts "x" is invalid: spec.status: <message>`."""
    return ApiProblem(
        422,
        f'{resource}.{kube.RUNS_API_GROUP} "{name}" is invalid: {field}: {message}',
        resource=resource,
        name=name,
        field=field,
    )
