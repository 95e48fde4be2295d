"""Query parameters the API's reads share: time windows, page sizes and cursors.

Pages are keyset pages: a cursor is where the previous page ended (opaque to clients,
base64url of the last row's sort key), so each page is one short read on an index, however
deep into a large export it is - on SQLite, whose one connection every live call shares, a
page never holds it for longer than one page's query.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from fsbill.api.routing import Param
from fsbill.errors import InvalidInput
from fsbill.instant import parse_iso

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_CURSOR_CHARS = 200

LIMIT = Param(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    f"rows per page (1-{MAX_LIMIT}, default {DEFAULT_LIMIT})",
)
CURSOR = Param("cursor", {"type": "string", "maxLength": MAX_CURSOR_CHARS}, "the `next_cursor` of the previous page")
SINCE = Param("since", {"type": "string", "format": "date-time"}, "at or after this instant (ISO 8601; naive = UTC)")
UNTIL = Param("until", {"type": "string", "format": "date-time"}, "before this instant (ISO 8601; naive = UTC)")
ACCOUNT = Param("account", {"type": "string", "minLength": 1, "maxLength": 64}, "only this account's")


def limit(query: dict[str, str]) -> int:
    text = query.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit()) or len(text) > 6 or not 1 <= int(text) <= MAX_LIMIT:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {text[:20]!r}")
    return int(text)


def instant(query: dict[str, str], name: str) -> int | None:
    text = query.get(name)
    if text is None:
        return None
    if not text.isascii() or len(text) > 64:
        raise InvalidInput(f"{name} must be an ISO 8601 instant, e.g. 2026-11-23T10:00:00Z")
    try:
        return parse_iso(text)
    except (InvalidInput, OverflowError, ValueError):
        raise InvalidInput(
            f"{name} must be an ISO 8601 instant, e.g. 2026-11-23T10:00:00Z, got {text[:40]!r}"
        ) from None


def window(query: dict[str, str]) -> tuple[int | None, int | None]:
    since, until = instant(query, "since"), instant(query, "until")
    if since is not None and until is not None and until <= since:
        raise InvalidInput("until must be after since")
    return since, until


def encode_cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(query: dict[str, str], shape: type | tuple[type, ...]) -> Any:
    """The cursor's key (checked against `shape`, the types of its parts), or None."""
    text = query.get("cursor")
    if text is None:
        return None
    try:
        if len(text) > MAX_CURSOR_CHARS or not text.isascii():
            raise ValueError
        key = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        parts = shape if isinstance(shape, tuple) else (shape,)
        values = key if isinstance(key, list) else [key]
        if len(values) != len(parts) or not all(
            isinstance(v, t) and not isinstance(v, bool) for v, t in zip(values, parts, strict=True)
        ):
            raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("cursor is not one this API gave (pass next_cursor back unchanged)") from None
    return key


__all__ = [
    "ACCOUNT",
    "CURSOR",
    "LIMIT",
    "SINCE",
    "UNTIL",
    "decode_cursor",
    "encode_cursor",
    "instant",
    "limit",
    "window",
]
