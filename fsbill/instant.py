"""Instants as fsbill stores them (epoch microseconds, like FreeSWITCH's `*_uepoch`) and as
people read and write them (ISO 8601, UTC)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import overload

from fsbill.errors import InvalidInput


def parse_iso(text: str) -> int:
    """ISO 8601 date or date-time (naive = UTC) as epoch microseconds."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"not an ISO 8601 date/time: {text!r} (e.g. 2026-11-23T10:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


@overload
def iso(us: int) -> str: ...
@overload
def iso(us: None) -> None: ...
@overload
def iso(us: int | None) -> str | None: ...
def iso(us: int | None) -> str | None:
    if us is None:
        return None
    moment = datetime.fromtimestamp(us // 1_000_000, tz=timezone.utc).replace(microsecond=us % 1_000_000)
    return moment.isoformat().replace("+00:00", "Z")
