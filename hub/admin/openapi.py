"""The OpenAPI 3.1 description of the admin API, generated from the route table and the handlers' models.

Every handler is marked with `@operation` (summary, request model, response models); the document is
built by walking the Starlette routes, so a route whose handler is not marked makes the document
fail to build (`Undocumented`) instead of going missing from it. The models are the `TypedDict`s the
handlers use (`hub.admin.models`, `auth.clients`), turned into JSON Schema by `hub.schema`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.routing import BaseRoute, Route

from hub.admin.models import ErrorBody, FieldError
from hub.config import Settings
from hub.schema import JsonSchema, is_model, model_fields, required_keys, schema_of

REF = "#/components/schemas/"
H = TypeVar("H", bound=Callable[..., Any])


class Undocumented(Exception):
    """A route whose handler has no `@operation`: describe it before serving it."""


@dataclass(frozen=True, slots=True)
class Operation:
    """What the document says about one handler."""

    summary: str
    responses: dict[int, Any]  # status -> model or type hint; None: no body
    body: Any = None  # the request model (a TypedDict)
    body_required: bool = True
    query: Any = None  # a TypedDict naming the query parameters
    errors: dict[int, str] = field(default_factory=dict)  # further ErrorBody answers: status -> when
    secured: bool = False  # set by `AdminApi.guarded`
    name: str = ""


def operation(summary: str, responses: dict[int, Any], **details: Any) -> Callable[[H], H]:
    """Mark a handler with what it takes and answers (the fields of `Operation`)."""

    def mark(handler: H) -> H:
        handler.operation = Operation(summary, responses, name=handler.__name__, **details)  # type: ignore[attr-defined]
        return handler

    return mark


def operation_of(endpoint: Any) -> Operation | None:
    return getattr(endpoint, "operation", None)


def openapi_document(routes: Sequence[BaseRoute], settings: Settings) -> dict[str, Any]:
    """The document for `routes` (relative to `/admin/api`); raises `Undocumented` for an unmarked one."""
    schemas: dict[str, JsonSchema] = {}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.methods:
            raise Undocumented(f"{route!r} is not a plain HTTP route; describe it in hub/admin/openapi.py")
        described = operation_of(route.endpoint)
        if described is None:
            raise Undocumented(f"{sorted(route.methods)} {route.path} has no @operation")
        item = paths.setdefault(route.path, {})
        for method in sorted(route.methods - {"HEAD"}):
            item[method.lower()] = _operation(described, route, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "rthub admin API",
            "version": "1",
            "description": "Manage rthub's OAuth clients, their deliveries and dead letters. Generated from "
            "the hub's route table and request/response models. The event stream and the deliveries are "
            "described by the AsyncAPI document at /v1/asyncapi.json.",
        },
        "servers": [{"url": settings.issuer.rstrip("/") + "/admin/api"}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "Client-credentials access token with the admin scope, from /oauth/token",
                }
            },
            "schemas": schemas,
        },
    }


def _operation(described: Operation, route: Route, schemas: dict[str, JsonSchema]) -> dict[str, Any]:
    responses = {
        str(status): _response(model, status, schemas, _first_line(model) or described.summary)
        for status, model in described.responses.items()
    }
    errors = dict(described.errors)
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in route.param_convertors
    ]
    if parameters:
        errors.setdefault(404, "No such client")
    if described.query is not None:
        parameters += _query(described.query, schemas)
        errors[422] = ""
    result: dict[str, Any] = {"operationId": described.name, "summary": described.summary}
    if parameters:
        result["parameters"] = parameters
    if described.body is not None:
        result["requestBody"] = {
            "required": described.body_required,
            "content": {"application/json": {"schema": schema_of(described.body, schemas, REF)}},
        }
        errors.setdefault(400, "The body is not JSON")
        errors[422] = ""
    if described.secured:
        result["security"] = [{"bearer": []}]
        errors[401] = "Missing, invalid, expired or revoked token"
        errors[403] = "The token lacks the admin scope, or its client is revoked or no longer an admin"
    for status, when in sorted(errors.items()):
        if status == 422:
            responses["422"] = _response(FieldError, 422, schemas, "Invalid input; `field` names the offending field")
        else:
            responses[str(status)] = _response(ErrorBody, status, schemas, when)
    result["responses"] = responses
    return result


def _first_line(model: Any) -> str:
    return (model.__doc__ or "").strip().split("\n")[0] if is_model(model) else ""


def _response(model: Any, status: int, schemas: dict[str, JsonSchema], description: str) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if model is not None:
        answer["content"] = {"application/json": {"schema": schema_of(model, schemas, REF)}}
    return answer


def _query(model: Any, schemas: dict[str, JsonSchema]) -> list[dict[str, Any]]:
    required = set(required_keys(model))
    parameters = []
    for name, hint in model_fields(model).items():
        schema = schema_of(hint, schemas, REF)
        parameter = {"name": name, "in": "query", "required": name in required, "schema": schema}
        if "description" in schema:
            parameter["description"] = schema["description"]
        parameters.append(parameter)
    return parameters
