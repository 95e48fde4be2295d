"""What a database row is, for the type checker.

A row reaches the adapters either as a peewee model instance (peewee ships no type information,
so its instances are ``Any`` to mypy) or as the ``SimpleNamespace`` that ``statements.row`` builds
from a raw SQL result. Both are read by attribute name, the column's name. ``DbRow`` names that role
in signatures so a reader sees "a row of the database" rather than ``object``.
"""

from typing import Any, TypeAlias

from fsbill.core.call import AccountState
from fsbill.core.money import Money, RoundingMethod, RoundingRule
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


def rounding_of(row: DbRow) -> RoundingRule:
    """The rounding rule a row holds in its rounding columns (tariff, live_call, recovery,
    live_call_vendor)."""
    return RoundingRule(row.rounding_decimals, RoundingMethod(row.rounding_method))


def rate_of(row: DbRow, rounding: RoundingRule | None = None) -> Rate:
    """The rate a row froze with `rate_columns` (so that a deck change or a crash cannot change
    what a call costs), rounded by the row's own rule unless `rounding` names the one kept
    elsewhere (a cdr's is on its recovery row)."""
    return Rate(
        prefix=row.prefix,
        rate=Money(row.rate_micros),
        connect_fee=Money(row.connect_fee_micros),
        initial_increment_s=row.initial_increment_s,
        increment_s=row.increment_s,
        min_duration_s=row.min_duration_s,
        rounding=rounding if rounding is not None else rounding_of(row),
    )


def account_state_of(row: DbRow) -> AccountState:
    """What a decision needs of an account, from its row (ACCOUNT_COLUMNS, read under its lock)."""
    return AccountState(
        status=row.status,
        balance=Money(row.balance_micros),
        credit_limit=Money(row.credit_limit_micros),
        held=Money(row.reserved_micros),
        live_channels=row.live_channels,
        max_channels=row.max_channels or 0,
        arrears=Money(row.arrears_micros),
    )
