"""The OpenAPI 3.1 document (`GET /v1/openapi.json`), written from the route table: every route,
its parameters, body, success response and the problems it can answer with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fsbill import __version__
from fsbill.api import idempotency, problems, schemas
from fsbill.api.routing import ADMIN, PUBLIC, Route

_PROBLEM = {problems.MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}


PATH_PARAMS = {
    "code": {"type": "string", "pattern": schemas.CODE_PATTERN, "description": "the account code"},
    "number": {"type": "string", "pattern": r"^\+?[0-9]{1,32}$", "description": "a dialled number, digits"},
    "key": {"type": "string", "pattern": r"^rch_[!-~]{1,60}$", "description": "a recharge request's key"},
}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": _PROBLEM}


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.operation_id, "summary": route.summary}
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": PATH_PARAMS.get(name, {"type": "string", "minLength": 1}),
        }
        for name in route.path_params
    ]
    params += [
        {"name": p.name, "in": "query", "required": False, "schema": p.schema, "description": p.description}
        for p in route.query
    ]
    if route.idempotent:
        params.append(
            {
                "name": idempotency.HEADER,
                "in": "header",
                "required": True,
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": idempotency.MAX_KEY_CHARS,
                    "pattern": "^[!-~]([ -~]*[!-~])?$",
                },
                "description": "unique per request across the installation; a replay returns the first reply",
            }
        )
    if params:
        op["parameters"] = params
    if route.request is not None:
        op["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{route.request}"}}},
        }
    ok = {
        "description": "OK",
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{route.response}"}}},
    }
    responses: dict[str, Any] = {str(route.status): ok}
    if route.idempotent:
        responses["200"] = {"description": "its reference was already applied (applied: false)", **ok}
        responses["201"]["description"] = "moved (applied: true); a replay returns the same"
    responses["400"] = _problem("bad input (kind usage)")
    if route.access != PUBLIC:
        op["security"] = [{"bearer": []}]
        responses["401"] = _problem("no valid bearer token (kind unauthorized)")
        responses["403"] = _problem("outside the token's role, account or subtree (kind forbidden)")
    if route.path_params or route.access != PUBLIC:
        responses["404"] = _problem("no such account, tariff, vendor or rate (kind not_found)")
    if route.access == ADMIN or route.request is not None:
        responses["409"] = _problem("conflicts with what exists, or an Idempotency-Key reused (kind conflict)")
    if route.request is not None:
        responses["413"] = _problem("body too large (kind usage)")
    responses["405"] = _problem("method not allowed (kind usage)")
    responses["500"] = _problem("a bug in fsbill (kind internal)")
    responses["503"] = _problem("the database is unavailable; retry (kind database)")
    op["responses"] = responses
    return op


def document(routes: Sequence[Route], extra_paths: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The OpenAPI document of `routes`; `extra_paths` (path -> path item) is merged in as given,
    for routes served by other WSGI apps mounted beside the API (fsbill.api.app.Api `extra`)."""
    paths: dict[str, Any] = {}
    for route in routes:
        paths.setdefault(route.template, {})[route.method.lower()] = _operation(route)
    for path, item in (extra_paths or {}).items():
        paths.setdefault(path, {}).update(item)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fsbill",
            "version": __version__,
            "description": "Prepaid billing for FreeSWITCH: accounts, money, calls, CDRs, tariffs, vendors (docs/API.md). "
            "Amounts are exact decimal strings; errors are RFC 9457 problem details.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas.components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "fsbill api token add"}},
        },
    }


__all__ = ["document"]
