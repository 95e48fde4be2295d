"""Routes: what each path and method does, who may call it, and what it takes and gives. The
OpenAPI document (fsbill.api.openapi) is written from the same table, so the two cannot
drift apart.

Who may call a route (`access`), by the token's role (fsbill.api.tokens):
- PUBLIC: anyone (the OpenAPI document);
- ADMIN: admin only (every change, every money movement);
- READ: admin and readonly (what spans accounts: the account list, vendors, all tariffs);
- OWN_ACCOUNT: admin, readonly, and an `account` token for its own `{code}`;
- OWN_TARIFF: admin, readonly, and an `account` token for its account's tariff `{name}`;
- OWN_QUERY: admin, readonly, and an `account` token whose `account` query parameter is its
  own (it is its own when left out).

A `reseller` token for R (docs/RESELLERS.md "Reseller tokens") may call a route only if the
route says how (`reseller`), else it is a 403:
- IN_SUBTREE: `{code}` is R or an account below R;
- IN_SUBTREE_QUERY: the `account` query parameter is R or below R (R when left out);
- CHILD: `{code}` sits directly under R (a funding moves R's own money);
- SEEN_TARIFF: `{name}` is a tariff owned inside R's subtree or held by an account of it;
- OWNED_TARIFF: `{name}` is a tariff owned by R or by a reseller below R;
- SCOPED: the handler narrows what it lists, or checks the body (the parent of a new account,
  the owner of a new tariff), to R's subtree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fsbill.api.app import Api
    from fsbill.api.tokens import Token

PUBLIC, ADMIN, READ, OWN_ACCOUNT, OWN_TARIFF, OWN_QUERY = (
    "public",
    "admin",
    "read",
    "own_account",
    "own_tariff",
    "own_query",
)
IN_SUBTREE, IN_SUBTREE_QUERY, CHILD, SEEN_TARIFF, OWNED_TARIFF, SCOPED = (
    "in_subtree",
    "in_subtree_query",
    "child",
    "seen_tariff",
    "owned_tariff",
    "scoped",
)


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # decoded, e.g. /v1/accounts/1001/topups
    params: dict[str, str]  # from the path template
    query: dict[str, str]
    body: Any  # the JSON value sent (None when none)
    token: Token | None
    idempotency_key: str | None
    now_us: int


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any = None
    raw: str | None = None  # the body as recorded (an idempotent replay), sent verbatim
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[["Api", Request], Reply]


@dataclass(frozen=True)
class Param:
    """A query parameter."""

    name: str
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # /v1/accounts/{code}
    handler: Handler
    access: str
    operation_id: str
    summary: str
    response: str  # component schema of the success body
    status: int = 200
    request: str | None = None  # component schema of the body, when it takes one
    body_required: bool = True
    query: tuple[Param, ...] = ()
    idempotent: bool = False  # a money movement: needs an Idempotency-Key
    reseller: str = ""  # how a `reseller` token may call it ("": it may not)
    max_body: int = 0  # the largest body it takes, in bytes (0: fsbill.api.app.MAX_BODY_BYTES)
    segments: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(self.template.strip("/").split("/")))

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        if len(segments) != len(self.segments):
            return None
        params: dict[str, str] = {}
        for mine, theirs in zip(self.segments, segments, strict=True):
            if mine.startswith("{"):
                if not theirs:
                    return None
                params[mine[1:-1]] = theirs
            elif mine != theirs:
                return None
        return params

    @property
    def path_params(self) -> list[str]:
        return [s[1:-1] for s in self.segments if s.startswith("{")]


def find(
    routes: Sequence[Route], method: str, segments: Sequence[str]
) -> tuple[Route | None, dict[str, str], list[str]]:
    """The route for the method and path, its path parameters, and the methods the path allows
    (empty: no such path)."""
    allowed: list[str] = []
    for route in routes:
        params = route.match(segments)
        if params is None:
            continue
        allowed.append(route.method)
        if route.method == method:
            return route, params, allowed
    return None, {}, allowed


# -- validating a body or a parameter against its schema -------------------------------------------------
class Invalid(ValueError):
    pass


def validate(value: Any, schema: dict[str, Any], where: str) -> None:
    """A small JSON-schema check of what the API's own schemas use (type, enum, pattern,
    lengths, bounds, items, required and closed objects), so what is documented is what is
    enforced. Raises Invalid naming the field."""
    kinds = schema.get("type")
    if kinds is not None:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if not any(_is(value, k) for k in kinds):
            raise Invalid(f"{where} must be {' or '.join(kinds)}")
    if value is None:
        return
    if "enum" in schema and value not in schema["enum"]:
        raise Invalid(f"{where} must be one of {', '.join(map(str, schema['enum']))}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            raise Invalid(f"{where} must be {schema.get('minLength', 0)}-{schema.get('maxLength', 'any')} characters")
        pattern = schema.get("pattern")
        if pattern and not re.search(_python(pattern), value):
            raise Invalid(f"{where} is malformed: {value[:40]!r}")
    if isinstance(value, int) and not isinstance(value, bool):
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            raise Invalid(f"{where} must be from {schema.get('minimum')} to {schema.get('maximum')}")
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", len(value)):
            raise Invalid(f"{where} takes at most {schema['maxItems']} items")
        for i, item in enumerate(value):
            validate(item, schema.get("items", {}), f"{where}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                raise Invalid(f"{where}.{name} is required")
        for name, item in value.items():
            if name not in props:
                if schema.get("additionalProperties") is False:
                    raise Invalid(f"{where} has an unknown field {name[:40]!r} (known: {', '.join(props)})")
                continue
            validate(item, props[name], f"{where}.{name}")


def _python(pattern: str) -> str:
    # JSON Schema's `$` is the end of the text; Python's also matches before a final newline
    return pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern


def _is(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return True


__all__ = [
    "ADMIN",
    "CHILD",
    "IN_SUBTREE",
    "IN_SUBTREE_QUERY",
    "OWNED_TARIFF",
    "OWN_ACCOUNT",
    "OWN_QUERY",
    "OWN_TARIFF",
    "PUBLIC",
    "READ",
    "SCOPED",
    "SEEN_TARIFF",
    "Param",
    "Reply",
    "Request",
    "Route",
]
