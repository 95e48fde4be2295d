"""What a database row is, for the type checker.

A row reaches the adapters either as a peewee model instance (peewee ships no type information,
so its instances are ``Any`` to mypy) or as the ``SimpleNamespace`` that ``statements.row`` builds
from a raw SQL result. Both are read by attribute name, the column's name. ``DbRow`` names that role
in signatures so a reader sees "a row of the database" rather than ``object``.
"""

from typing import Any, TypeAlias

from fsbill.core.rating import Rate

DbRow: TypeAlias = Any


def rate_columns(rate: Rate) -> dict[str, Any]:
    """A rate as the columns every table that freezes one holds (cdr, live_call_vendor)."""
    return dict(
        prefix=rate.prefix,
        rate_micros=rate.rate.micros,
        connect_fee_micros=rate.connect_fee.micros,
        initial_increment_s=rate.initial_increment_s,
        increment_s=rate.increment_s,
        min_duration_s=rate.min_duration_s,
    )
