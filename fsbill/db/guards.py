"""Fraud guards in the database: the settings (per tariff, per account), what they count (the
period's spend from the ledger, the calls admitted in the last minute), and setting them.

The call path (fsbill.db.calls reserve/heartbeat) calls `read_guards` and `read_usage` inside
its transaction, after the account row is locked: two calls of one account, on any node, are
serialized on that row, so each sees the other's hold and call_start row. The decisions are the
core's (fsbill.core.guards); docs/FRAUD.md is the operator's view.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

from fsbill.core.guards import (
    CALL_RATE_WINDOW_US,
    GUARD_COLUMNS,
    OFF,
    Guards,
    Usage,
    guards_of,
    parse_prefixes,
    period_starts_us,
)
from fsbill.core.money import Money
from fsbill.db import audit
from fsbill.db.audit import Change
from fsbill.db.connection import Store
from fsbill.db.ledger import account_for_update
from fsbill.errors import InvalidInput, NotFound

_SELECT = ", ".join([f'a."{c}"' for c in GUARD_COLUMNS] + [f't."{c}"' for c in GUARD_COLUMNS] + ['t."timezone"'])


@functools.cache
def _sql(p: str) -> dict[str, str]:
    return {
        "guards": f'SELECT {_SELECT} FROM "account" a JOIN "tariff" t ON t."id" = a."tariff_id" WHERE a."id" = {p}',
        "spent": (
            f'SELECT COALESCE(SUM(CASE WHEN "created_us" >= {p} THEN "amount_micros" ELSE 0 END), 0), '
            f'COALESCE(SUM("amount_micros"), 0) FROM "ledger_entry" '
            f'WHERE "account_id" = {p} AND "kind" = \'call\' AND "created_us" >= {p}'
        ),
        "calls": f'SELECT COUNT(*) FROM "call_start" WHERE "account_id" = {p} AND "created_us" > {p}',
        "prune": f'DELETE FROM "call_start" WHERE "account_id" = {p} AND "created_us" <= {p}',
        "start": f'INSERT INTO "call_start" ("account_id", "created_us") VALUES ({p}, {p})',
    }


def _q(store: Store) -> dict[str, str]:
    return _sql(store.db.param)


def read_guards(store: Store, db: Any, account_id: int) -> tuple[Guards, str]:
    """The guards in force for the account and its tariff's time zone; call inside the
    transaction that locked the account row."""
    found = db.execute_sql(_q(store)["guards"], (account_id,)).fetchone()
    n = len(GUARD_COLUMNS)
    account = dict(zip(GUARD_COLUMNS, found[:n], strict=True))
    tariff = dict(zip(GUARD_COLUMNS, found[n : 2 * n], strict=True))
    return guards_of(account, tariff), found[2 * n] or "UTC"


def read_usage(
    store: Store,
    db: Any,
    account_id: int,
    guards: Guards,
    tz: str,
    now_us: int,
    *,
    calls: bool = True,
    always: bool = False,
) -> Usage:
    """What the guards count now: call charges posted in the day and the month (only if a cap is
    set) and, with `calls`, the calls admitted in the last minute (only if that is capped).
    `always`: count everything, caps or not (for showing)."""
    q = _q(store)
    spent_day = spent_month = Money(0)
    if guards.has_caps or always:
        day_us, month_us = period_starts_us(now_us, tz)
        since = month_us if guards.monthly_cap is not None or always else day_us
        day, month = db.execute_sql(q["spent"], (day_us, account_id, since)).fetchone()
        spent_day, spent_month = Money(-int(day)), Money(-int(month))  # call charges are negative amounts
    recent = 0
    if calls and (guards.max_calls_per_minute is not None or always):
        recent = db.execute_sql(q["calls"], (account_id, now_us - CALL_RATE_WINDOW_US)).fetchone()[0]
    return Usage(spent_day, spent_month, int(recent))


def record_call_start(store: Store, db: Any, account_id: int, now_us: int) -> None:
    """Count an admitted call for max_calls_per_minute (and forget those out of the window)."""
    q = _q(store)
    db.execute_sql(q["prune"], (account_id, now_us - CALL_RATE_WINDOW_US))
    db.execute_sql(q["start"], (account_id, now_us))


# -- operators: showing and setting -------------------------------------------------------------------
@dataclass(frozen=True)
class GuardsView:
    """An account's guards: in force, its own settings, its tariff's defaults, and its usage."""

    account: str
    tariff: str
    currency: str
    timezone: str
    effective: Guards
    own: dict[str, Any]  # the account's stored values (None = the tariff's default)
    defaults: dict[str, Any]  # the tariff's stored values
    spent_today: Money  # ledger + held
    spent_this_month: Money
    calls_last_minute: int
    changes: tuple[Change, ...] = ()  # what the command that returned it changed (audited)

    def source(self, column: str) -> str:
        value = self.own.get(column)
        if value is None:
            return "tariff" if self.defaults.get(column) not in (None, OFF, "") else ""
        return "account"

    def as_json(self) -> dict:
        return guards_json(self.effective) | {
            "from": {_key(c): self.source(c) or None for c in GUARD_COLUMNS},
            "timezone": self.timezone,
            "spent_today": str(self.spent_today),
            "spent_this_month": str(self.spent_this_month),
            "calls_last_minute": self.calls_last_minute,
        }


def guards_json(g: Guards) -> dict:
    def money(m: Money | None) -> str | None:
        return None if m is None else str(m)

    return {
        "daily_cap": money(g.daily_cap),
        "monthly_cap": money(g.monthly_cap),
        "block": list(g.block),
        "allow": list(g.allow),
        "max_rate": money(g.max_rate),
        "max_calls_per_minute": g.max_calls_per_minute,
    }


def _stored(row: Any) -> dict[str, Any]:
    return {c: getattr(row, c) for c in GUARD_COLUMNS}


def account_guards(store: Store, code: str, now_us: int) -> GuardsView:
    """The account's guards and usage, read under its row lock like a reservation: the ledger and
    the holds seen at one instant (a heartbeat's debit moves money from one to the other)."""
    m = store.models
    with store.transaction() as db:
        locked = db.execute_sql(store.sql.account_by_code, (code,)).fetchone()
        acc = m.Account.select(m.Account, m.Tariff).join(m.Tariff).where(m.Account.code == code).first()
        if locked is None or acc is None:
            raise NotFound(f"no account {code!r} (see 'fsbill account list')")
        guards, tz = read_guards(store, db, acc.id)
        usage = read_usage(store, db, acc.id, guards, tz, now_us, always=True)
        held = Money(acc.reserved_micros)
        return GuardsView(
            account=acc.code,
            tariff=acc.tariff.name,
            currency=acc.currency,
            timezone=tz,
            effective=guards,
            own=_stored(acc),
            defaults=_stored(acc.tariff),
            spent_today=usage.spent_day + held,
            spent_this_month=usage.spent_month + held,
            calls_last_minute=usage.calls_last_minute,
        )


# What an operator may write for a guard: a value, `none` (clear: on an account the tariff's
# default applies again) or `off` (on an account: off whatever the tariff says; on a tariff the
# same as none).
CLEAR, TURN_OFF = "none", "off"


def stored_value(column: str, text: str, *, on_account: bool) -> Any:
    """The column value for an operator's text; raises InvalidInput with the rule."""
    word = text.strip().lower()
    is_list = column in ("block_prefixes", "allow_prefixes")
    if word == CLEAR:
        return None
    if word == TURN_OFF:
        if not on_account:
            return None
        return "" if is_list else OFF
    if is_list:
        return ",".join(parse_prefixes(text))
    if column == "max_calls_per_minute":
        if not (text.isascii() and text.isdigit()) or int(text) <= 0:
            raise InvalidInput(f"max calls per minute must be a whole number > 0, none or off, got {text!r}")
        return int(text)
    try:
        value = Money.parse(text)
    except ValueError as exc:
        raise InvalidInput(f"{_label(column)}: {exc} (or none, off)") from None
    if value.is_negative():
        raise InvalidInput(f"{_label(column)} must not be negative, got {text}")
    return value.micros


def _key(column: str) -> str:
    """The guard's name in JSON and on the command line: daily_cap, block, max_rate..."""
    return column.removesuffix("_micros").removesuffix("_prefixes")


def _label(column: str) -> str:
    return _key(column).replace("_", " ")


def _as_text(column: str, value: Any) -> str | None:
    """A stored guard value as the audit trail keeps it: as an operator would type it (amounts as
    exact decimal strings, prefixes comma-separated, `off`); None when unset."""
    if value is None:
        return None
    if value == OFF or value == "":
        return TURN_OFF
    if column.endswith("_micros"):
        return str(Money(int(value)))
    return str(value)


def _guard_changes(before: Any, values: dict[str, Any]) -> list[Change]:
    """One audit Change per guard whose stored value the update changes."""
    changes = []
    for column, new in values.items():
        old_text, new_text = _as_text(column, getattr(before, column)), _as_text(column, new)
        if old_text != new_text:
            changes.append(Change(_key(column), old_text, new_text))
    return changes


def set_account_guards(store: Store, code: str, changes: dict[str, str], now_us: int, *, actor: str) -> GuardsView:
    """Write the account's own guard settings (`changes`: column -> operator text), each changed
    guard audited (who, old and new value) in the same transaction. A closed account cannot be
    changed."""
    values = {c: stored_value(c, t, on_account=True) for c, t in changes.items()}
    m = store.models
    done: list[Change] = []
    if values:
        with store.transaction():
            row = account_for_update(store, code)
            if row is None:
                raise NotFound(f"no account {code!r} (see 'fsbill account list')")
            if row.status == "closed":
                raise InvalidInput(f"account {code!r} is closed: a closed account cannot be changed")
            m.Account.update(**values, updated_us=now_us).where(m.Account.id == row.id).execute()
            done = _guard_changes(row, values)
            audit.record(store, actor, now_us, "set", "account", code, done)
    return dataclasses.replace(account_guards(store, code, now_us), changes=tuple(done))


@dataclass(frozen=True)
class TariffGuardsView:
    tariff: str
    currency: str
    timezone: str
    defaults: Guards
    changes: tuple[Change, ...] = ()  # what the command that returned it changed (audited)

    def as_json(self) -> dict:
        return {"tariff": self.tariff, "currency": self.currency, "timezone": self.timezone} | guards_json(
            self.defaults
        )


def set_tariff_guards(store: Store, name: str, changes: dict[str, str], now_us: int, *, actor: str) -> TariffGuardsView:
    """Write a tariff's default guards for its accounts (`changes`: column -> operator text), each
    changed guard audited in the same transaction."""
    values = {c: stored_value(c, t, on_account=False) for c, t in changes.items()}
    m = store.models
    done: list[Change] = []
    with store.transaction():
        q = m.Tariff.select().where(m.Tariff.name == name)
        row = (q.for_update() if store.kind == "postgresql" else q).first()
        if row is None:
            raise NotFound(f"no tariff named {name!r} (see 'fsbill tariff list')")
        if values:
            m.Tariff.update(**values).where(m.Tariff.id == row.id).execute()
            done = _guard_changes(row, values)
            audit.record(store, actor, now_us, "set", "tariff", name, done)
            row = m.Tariff.get_by_id(row.id)
    return TariffGuardsView(row.name, row.currency, row.timezone, guards_of({}, _stored(row)), tuple(done))
