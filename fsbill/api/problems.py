"""Errors as RFC 9457 problem details (`application/problem+json`).

Each problem has a `kind`: the CLI's error kinds (`fsbill --json`'s `kind`: usage, not_found,
database, internal) plus the HTTP API's own: unauthorized, forbidden, conflict. `type` is a URN
naming the kind, so a client matches on `kind` (or `type`), never on `detail`, which is the
same operator-facing sentence the CLI prints.
"""

from __future__ import annotations

from typing import Any

from fsbill.errors import Conflict, DatabaseUnavailable, FsbillError, NotFound

MEDIA_TYPE = "application/problem+json"

# kind -> (HTTP status, title); a few HTTP-level refusals (405, 413) are `usage` with their own status
KINDS: dict[str, tuple[int, str]] = {
    "usage": (400, "Bad request"),
    "unauthorized": (401, "Unauthorized"),
    "forbidden": (403, "Forbidden"),
    "not_found": (404, "Not found"),
    "conflict": (409, "Conflict"),
    "internal": (500, "Internal error"),
    "database": (503, "Database unavailable"),
}
_TITLES = {405: "Method not allowed", 413: "Payload too large"}
TYPE_PREFIX = "urn:fsbill:problem:"


class Problem(Exception):
    """An HTTP error response: raised by any part of the API, turned into one problem body."""

    def __init__(
        self, kind: str, detail: str, headers: list[tuple[str, str]] | None = None, status: int | None = None
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown problem kind {kind!r}")
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.headers = list(headers or [])
        self.status = status or KINDS[kind][0]

    def body(self, instance: str = "") -> dict[str, Any]:
        status, title = self.status, _TITLES.get(self.status, KINDS[self.kind][1])
        out: dict[str, Any] = {
            "type": TYPE_PREFIX + self.kind,
            "title": title,
            "status": status,
            "detail": self.detail,
            "kind": self.kind,
        }
        if instance:
            out["instance"] = instance
        return out


def from_error(exc: FsbillError) -> Problem:
    """fsbill's own errors as problems, as the CLI maps them to exit codes (fsbill.cli.main):
    not found, database, and everything else bad input (usage) - except a Conflict, which the
    API reports as such (409)."""
    if isinstance(exc, NotFound):
        return Problem("not_found", str(exc))
    if isinstance(exc, DatabaseUnavailable):
        return Problem("database", str(exc), [("Retry-After", "5")])
    if isinstance(exc, Conflict):
        return Problem("conflict", str(exc))
    return Problem("usage", str(exc))


def schema() -> dict[str, Any]:
    """The JSON schema of a problem body (for the OpenAPI document)."""
    return {
        "type": "object",
        "required": ["type", "title", "status", "detail", "kind"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "kind": {"type": "string", "enum": list(KINDS)},
            "instance": {"type": "string"},
        },
    }


__all__ = ["KINDS", "MEDIA_TYPE", "Problem", "from_error", "schema"]
